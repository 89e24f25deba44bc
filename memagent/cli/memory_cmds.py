"""`memagent memory …`: see, search, edit, undo, import, export and reset an agent's memory."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import MemagentError, NotFoundError
from ..memory.kinds import StateKey
from .context import AppContext, pass_app
from .memory_view import fact_records, format_fact

if TYPE_CHECKING:
    from ..memory import AgentStore, SearchPage

DEFAULT_AGENT = "default"

agent_option = click.option(
    "--agent", "agent_name", envvar="MEMAGENT_AGENT", default=DEFAULT_AGENT, show_default=True,
    help="Agent name (see `memagent agents list`).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@contextmanager
def agent_lock(app: AppContext, name: str, *, must_exist: bool = True) -> Iterator[None]:
    """Hold the agent's lock (the one `memagent chat` holds), so a running chat is never changed under it."""
    from ..memory.store import AgentStore, check_agent_name
    from ..runtime import agent_lock

    check_agent_name(name)
    if must_exist:
        AgentStore.require(app.paths, app.settings, name)
    lock = agent_lock(app.paths, app.settings, name)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def open_agent(app: AppContext, name: str, *, write: bool = False) -> Iterator[AgentStore]:
    """The agent's store; with `write`, under the agent's lock."""
    from ..memory.store import AgentStore

    AgentStore.require(app.paths, app.settings, name)
    with agent_lock(app, name) if write else nullcontext(), AgentStore.open(app.paths, app.settings, name) as store:
        store.archival.progress = show_progress()
        yield store


def show_progress() -> bool:
    return sys.stderr.isatty()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def one_line(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def print_page(page: SearchPage, as_json: bool) -> None:
    if as_json:
        echo_json([hit.to_json_obj() for hit in page.hits])
        return
    if not page.total:
        click.echo("no hits")
        return
    click.echo(f"{page.total_text} hits; page {page.page + 1} of {page.pages}")
    for hit in page.hits:
        who = f" {hit.role}" if hit.role else ""
        click.echo(f"[{hit.id}] {hit.time.astimezone():%Y-%m-%d %H:%M}{who} ({hit.score:.3f}): {one_line(hit.text)}")


def confirm_or_abort(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MemagentError(f"{question} — confirmation needed; run it again with --yes")
    if not click.confirm(question, default=False):
        raise click.exceptions.Abort()


def _show(store: AgentStore, history: bool, messages: int, passages: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "agent": store.name,
        "blocks": [{"label": b.label, "value": b.value, "length": b.length, "limit": b.limit,
                    "updated_at": b.updated_at.isoformat()} for b in store.core.list()],
        "summary": (store.get_state(StateKey.SUMMARY) or ""),
        "messages": store.recall.count(),
        "passages": store.archival.count(),
        "facts": fact_records(store, store.facts.current()),
    }
    if history:
        data["history"] = [{"id": e.id, "label": e.label, "time": e.time.isoformat(), "reason": e.reason,
                            "turn_id": e.turn_id, "undone": e.undone, "old_value": e.old_value,
                            "new_value": e.new_value} for e in store.core.history(limit=50)]
    if messages:
        data["recent_messages"] = [{"id": m.id, "turn_id": m.turn_id, "role": m.role, "kind": m.kind,
                                    "time": m.time.isoformat(), "content": m.content,
                                    "function_name": m.function_name, "in_context": m.in_context}
                                   for m in store.recall.recent(messages)]
    if passages:
        data["recent_passages"] = [{"id": p.id, "time": p.time.isoformat(), "text": p.text, "source": p.source}
                                   for p in store.archival.recent(passages)]
    return data


def _print_show(data: dict[str, Any]) -> None:
    click.echo(f"agent {data['agent']}: {data['messages']} messages, {data['passages']} archival passages")
    for block in data["blocks"]:
        click.secho(f"\n<{block['label']}> {block['length']}/{block['limit']} characters", bold=True)
        click.echo(block["value"] or "(empty)")
    if data["summary"]:
        click.secho("\n<summary>", bold=True)
        click.echo(data["summary"])
    if data["facts"]:
        click.secho("\n<captured facts, each with the message it came from>", bold=True)
        for fact in data["facts"]:
            click.echo(format_fact(fact))
    for edit in data.get("history", []):
        mark = " (undone)" if edit["undone"] else ""
        click.echo(f"edit {edit['id']} {edit['time'][:19]} {edit['label']} {edit['reason']}{mark}: "
                   f"{one_line(edit['old_value'], 60)!r} → {one_line(edit['new_value'], 60)!r}")
    for message in data.get("recent_messages", []):
        text = message["content"] or (f"{message['function_name']}(…)" if message["function_name"] else "")
        click.echo(f"#{message['id']} {message['time'][:19]} {message['kind']}: {one_line(text, 160)}")
    for passage in data.get("recent_passages", []):
        click.echo(f"[{passage['id']}] {passage['time'][:19]}: {one_line(passage['text'], 160)}")


def echo_stats(data: dict[str, Any], as_json: bool) -> None:
    """Agent statistics as JSON, or one `key: value` line each."""
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if key == "blocks":
            value = ", ".join(f"{b['label']} {b['length']}/{b['limit']}" for b in value)
        elif key == "index":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        click.echo(f"{key}: {value}")


def register(cli: click.Group) -> None:
    @cli.group()
    def memory() -> None:
        """See, search, edit, undo, import, export and reset an agent's memory."""

    @memory.command()
    @agent_option
    @click.option("--history", is_flag=True, help="Also list the latest core memory edits.")
    @click.option("--messages", default=0, metavar="N", help="Also list the last N messages.")
    @click.option("--passages", default=0, metavar="N", help="Also list the last N archival passages.")
    @json_option
    @pass_app
    def show(app: AppContext, agent_name: str, history: bool, messages: int, passages: int, as_json: bool) -> None:
        """Core memory blocks, the conversation summary and how much is stored."""
        with open_agent(app, agent_name) as store:
            data = _show(store, history, messages, passages)
        echo_json(data) if as_json else _print_show(data)

    @memory.command()
    @agent_option
    @click.argument("query", required=False)
    @click.option("--recall", "store_kind", flag_value="recall", default=True, help="Search the conversation (default).")
    @click.option("--archival", "store_kind", flag_value="archival", help="Search archival memory (hybrid).")
    @click.option("--start", help="Recall: first date (YYYY-MM-DD) to search; without QUERY, every message in the range.")
    @click.option("--end", help="Recall: last date of the range (default: --start).")
    @click.option("--literal", is_flag=True, help="Recall: messages containing QUERY as written, newest first.")
    @click.option("--limit", "-k", default=None, type=click.IntRange(1, 1000), help="Hits per page (default: memory.search_limit).")
    @click.option("--page", default=1, type=click.IntRange(1), help="Page number, from 1.")
    @click.option("--all-kinds", is_flag=True, help="Recall: also search heartbeats, function results and notices.")
    @json_option
    @pass_app
    def search(app: AppContext, agent_name: str, query: str | None, store_kind: str, start: str | None,
               end: str | None, literal: bool, limit: int | None, page: int, all_kinds: bool, as_json: bool) -> None:
        """Search recall or archival memory by meaning and words together, best first.

        QUERY is plain text in any language: quotes, *, AND, NEAR(...) are searched as written."""
        from ..memory.recall import CONVERSATION_KINDS

        size = limit or app.settings.memory.search_limit
        kinds = None if all_kinds else CONVERSATION_KINDS
        if store_kind != "recall" and (start or end or literal):
            raise MemagentError("--start/--end and --literal search the conversation; drop --archival")
        with open_agent(app, agent_name) as store:
            if not query and (start or end):
                result = store.recall.search_date(start or end or "", end or start or "", page - 1, size, kinds=kinds)
            elif not query:
                raise MemagentError("give a QUERY to search for (or --start/--end for a date range)")
            elif store_kind == "archival":
                result = store.archival.search(query, page - 1, size)
            else:
                result = store.recall.search(query, page - 1, size, kinds=kinds, literal=literal, start=start, end=end)
        print_page(result, as_json)

    @memory.command()
    @agent_option
    @click.argument("text")
    @json_option
    @pass_app
    def insert(app: AppContext, agent_name: str, text: str, as_json: bool) -> None:
        """Add TEXT to archival memory ('-' reads it from stdin)."""
        if text == "-":
            text = sys.stdin.read()
        if not text.strip():
            raise MemagentError("nothing to insert: the text is empty")
        with open_agent(app, agent_name, write=True) as store:
            passage = store.archival.insert(text.strip(), source="user")
        if as_json:
            echo_json({"id": passage.id, "text": passage.text, "time": passage.time.isoformat()})
        else:
            click.echo(f"inserted passage {passage.id}")

    @memory.command("import")
    @agent_option
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--archival", is_flag=True, help="JSONL lines are passages ({\"text\": …}) instead of messages.")
    @click.option("--create", is_flag=True, help="Create the agent from the export file if it does not exist.")
    @json_option
    @pass_app
    def import_cmd(app: AppContext, agent_name: str, file: Path, archival: bool, create: bool, as_json: bool) -> None:
        """Import FILE: JSONL messages {"role", "content", "time", "id"?}, JSONL passages with
        --archival {"text", "time"?, "id"?}, or a file from `memagent memory export`.
        The whole file is checked first: one bad line and nothing is imported."""
        from ..memory.store import AgentStore

        if not file.is_file():
            raise MemagentError(f"{file}: no such file")
        if not AgentStore.exists(app.paths, app.settings, agent_name):
            if not create:
                raise NotFoundError(f"no agent named {agent_name!r}; create it first with `memagent agents create "
                                    f"{agent_name}` (or add --create to make it from a `memory export` file)")
            _create_from_export(app, agent_name, file)
        with open_agent(app, agent_name, write=True) as store:
            counts = store.import_file(file, archival=archival, progress=show_progress())
        if as_json:
            echo_json(counts)
        else:
            click.echo("imported " + ", ".join(f"{n} {what}" for what, n in counts.items()) + f" into {agent_name}")

    @memory.command("export")
    @agent_option
    @click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
    @pass_app
    def export_cmd(app: AppContext, agent_name: str, file: Path) -> None:
        """Write everything the agent remembers to FILE (JSON; `memory import` reads it back)."""
        with open_agent(app, agent_name) as store:
            counts = store.export(file)
        click.echo(f"exported {counts['blocks']} blocks, {counts['messages']} messages, "
                   f"{counts['passages']} passages to {file}")

    @memory.command()
    @agent_option
    @click.option("--core", is_flag=True, help="Core blocks back to their first values (undoable).")
    @click.option("--recall", is_flag=True, help="Delete every message and the summary.")
    @click.option("--archival", is_flag=True, help="Delete every archival passage.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @pass_app
    def reset(app: AppContext, agent_name: str, core: bool, recall: bool, archival: bool, yes: bool) -> None:
        """Reset core, recall and/or archival memory (all three when none is named)."""
        if not (core or recall or archival):
            core = recall = archival = True
        parts = [name for name, chosen in (("core", core), ("recall", recall), ("archival", archival)) if chosen]
        with open_agent(app, agent_name, write=True) as store:
            confirm_or_abort(f"reset {', '.join(parts)} memory of agent {agent_name!r}?", yes)
            store.reset(core=core, recall=recall, archival=archival)
        click.echo(f"reset {', '.join(parts)} memory of {agent_name}")

    @memory.command()
    @agent_option
    @click.option("--block", "label", required=True, help="Block to take one edit back (e.g. persona, human).")
    @json_option
    @pass_app
    def undo(app: AppContext, agent_name: str, label: str, as_json: bool) -> None:
        """Take back the latest edit of a core memory block (repeat to go further back)."""
        with open_agent(app, agent_name, write=True) as store:
            block = store.core.undo(label)
        if as_json:
            echo_json({"label": block.label, "value": block.value, "length": block.length, "limit": block.limit})
        else:
            click.echo(f"<{block.label}> is back to:\n{block.value or '(empty)'}")

    @memory.command()
    @agent_option
    @click.option("--block", "label", help="Core block to edit (e.g. persona, human).")
    @click.option("--summary", is_flag=True, help="Edit the conversation summary instead.")
    @pass_app
    def edit(app: AppContext, agent_name: str, label: str | None, summary: bool) -> None:
        """Edit a core memory block or the summary in $EDITOR (undo with `memory undo`)."""
        if bool(label) == summary:
            raise MemagentError("choose what to edit: --block LABEL or --summary")
        with open_agent(app, agent_name, write=True) as store:
            current = (store.get_state(StateKey.SUMMARY) or "") if summary else store.core.get(label or "").value
            edited = click.edit(current, extension=".md", require_save=True)
            if edited is None or edited.rstrip("\n") == current:
                click.echo("no change")
                return
            if summary:
                store.set_state(StateKey.SUMMARY, edited.rstrip("\n"))
            else:
                store.core.set(label or "", edited.rstrip("\n"))
        click.echo("saved" + ("" if summary else f"; `memagent memory undo --agent {agent_name} --block {label}` takes it back"))

    @memory.command()
    @agent_option
    @pass_app
    def reindex(app: AppContext, agent_name: str) -> None:
        """Rebuild the vector indexes (archival and recall) from the database (after changing the embedder, say)."""
        with open_agent(app, agent_name, write=True) as store:
            passages, messages = store.reindex(progress=show_progress())
        click.echo(f"indexed {passages} passages" + (f" and {messages} messages" if messages is not None else
                                                      " (recall_embeddings is off: messages are searched by words)"))

    @memory.command()
    @agent_option
    @json_option
    @pass_app
    def stats(app: AppContext, agent_name: str, as_json: bool) -> None:
        """Counts, sizes and the state of the archival index."""
        with open_agent(app, agent_name) as store:
            echo_stats(store.stats(), as_json)


def _create_from_export(app: AppContext, name: str, file: Path) -> None:
    from ..creation import create_agent
    from ..memory.jsonl import read_export
    from ..memory.store import AgentStore

    data = read_export(file)
    if data is None:
        raise MemagentError(f"--create needs a file from `memagent memory export`; {file} is not one "
                            f"(start the agent with `memagent chat --agent {name}` first)")
    agent = data.get("agent") or {}
    persona, human = str(agent.get("persona", "")), str(agent.get("human", ""))
    language = str(agent.get("language") or "") or None
    try:
        store, _, _ = create_agent(app.paths, app.settings, name, persona=persona or None, human=human or None,
                                   language=language, lorebook=False)
    except NotFoundError:
        # The export's persona is not installed here: its blocks, imported next, carry the texts anyway.
        store = AgentStore.create(app.paths, app.settings, name, persona="", human="", persona_name=persona,
                                  human_name=human, language=language)
    store.close()

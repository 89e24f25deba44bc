"""memagent's own agent functions, each defined once and registered through the same hook a plugin
uses. Their prompt lines are `prompts/<lang>/functions/<name>.j2`; their results render from the
`result_*.j2` templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from memagent.functions.base import AgentFunction, Arguments, Execution, FunctionContext, FunctionParams
from memagent.memory.errors import MemoryEditError, QueryError
from memagent.memory.records import Block, SearchPage
from memagent.plugins import hookimpl

if TYPE_CHECKING:
    from memagent.memory.store import AgentStore

_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE_RE = re.compile(_DATE_PATTERN)

# Other names models write for a block label (MemGPT's own format calls it `name`).
_LABEL_ALIASES = {"name": "label", "section": "label", "block": "label"}
_QUERY_ALIASES = {"q": "query", "keyword": "query", "search": "query"}


# --- parameter models -------------------------------------------------------------------------
class SendMessage(FunctionParams):
    message: Annotated[str, Field(min_length=1)]

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class CoreMemoryAppend(FunctionParams):
    label: str
    content: str
    request_heartbeat: bool = False


class CoreMemoryReplace(FunctionParams):
    label: str
    old_content: str
    new_content: str
    request_heartbeat: bool = False


class ConversationSearch(FunctionParams):
    query: str
    page: Annotated[int, Field(ge=0)] = 0
    request_heartbeat: bool = False


class ConversationSearchDate(FunctionParams):
    start_date: Annotated[str, Field(pattern=_DATE_PATTERN)]
    end_date: Annotated[str, Field(pattern=_DATE_PATTERN)]
    page: Annotated[int, Field(ge=0)] = 0
    request_heartbeat: bool = False

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _calendar_date(cls, value: object) -> object:
        # Runs before the pattern check so the model reads one message for every bad date.
        if not isinstance(value, str) or not _DATE_RE.match(value.strip()):
            raise ValueError("must be YYYY-MM-DD")
        try:
            date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be a real calendar date in YYYY-MM-DD") from None
        return value.strip()


class ArchivalMemoryInsert(FunctionParams):
    content: str
    request_heartbeat: bool = False


class ArchivalMemorySearch(FunctionParams):
    query: str
    page: Annotated[int, Field(ge=0)] = 0
    request_heartbeat: bool = False


class PauseHeartbeats(FunctionParams):
    minutes: Annotated[int, Field(ge=1, le=360)]


# --- handlers ---------------------------------------------------------------------------------
def _send_message(ctx: FunctionContext, args: Arguments) -> Execution:
    return Execution(ok=True, result_text=None, summary="sent")


def _edit_result(ctx: FunctionContext, label: str, action: Callable[[], Block]) -> Execution:
    try:
        block = action()
    except MemoryEditError as exc:
        text = ctx.prompts.render(
            "result_memory_edit.j2", ok=False, label=label, error=exc.kind, closest=exc.closest,
            length=None, limit=exc.limit, new_length=exc.length, labels=list(exc.labels),
        )
        return Execution(ok=False, result_text=text, summary=f"failed: {exc.kind}")
    length, limit = block.length, block.limit
    text = ctx.prompts.render(
        "result_memory_edit.j2", ok=True, label=label, error=None, closest=None,
        length=None, limit=limit, new_length=length, labels=[],
    )
    return Execution(ok=True, result_text=text, summary=f"{label}: {length}/{limit}", memory_changed=True)


def _core_memory_append(ctx: FunctionContext, args: Arguments) -> Execution:
    label, content = str(args["label"]), str(args["content"])
    return _edit_result(ctx, label, lambda: ctx.store.core.append(label, content, turn_id=ctx.turn_id))


def _core_memory_replace(ctx: FunctionContext, args: Arguments) -> Execution:
    label, old, new = str(args["label"]), str(args["old_content"]), str(args["new_content"])
    return _edit_result(ctx, label, lambda: ctx.store.core.replace(label, old, new, turn_id=ctx.turn_id))


def _search_result(ctx: FunctionContext, query: str, run: Callable[[], SearchPage]) -> Execution:
    try:
        page = run()
    except QueryError as exc:
        text = ctx.prompts.render("result_search.j2", query=query, hits=[], total=0, capped=False, page=0, pages=0,
                                  error=str(exc))
        return Execution(ok=False, result_text=text, summary="bad query")
    hits = [hit.to_json_obj() for hit in page.hits]
    text = ctx.prompts.render(
        "result_search.j2", query=query, hits=hits, total=page.total, capped=page.capped, page=page.page,
        pages=page.pages, error=None,
    )
    return Execution(ok=True, result_text=text, summary=f"{page.total_text} hits")


def _page(args: Arguments) -> int:
    page = args.get("page", 0)
    return page if isinstance(page, int) else 0


def _conversation_search(ctx: FunctionContext, args: Arguments) -> Execution:
    query = str(args["query"])
    return _search_result(ctx, query, lambda: ctx.store.recall.search(query, page=_page(args), page_size=ctx.page_size))


def _conversation_search_date(ctx: FunctionContext, args: Arguments) -> Execution:
    start, end = str(args["start_date"]), str(args["end_date"])
    return _search_result(
        ctx, f"{start}..{end}",
        lambda: ctx.store.recall.search_date(start, end, page=_page(args), page_size=ctx.page_size),
    )


def _archival_memory_search(ctx: FunctionContext, args: Arguments) -> Execution:
    query = str(args["query"])
    return _search_result(ctx, query, lambda: ctx.store.archival.search(query, page=_page(args), page_size=ctx.page_size))


def _archival_memory_insert(ctx: FunctionContext, args: Arguments) -> Execution:
    passage = ctx.store.archival.insert(str(args["content"]))
    text = ctx.prompts.render("result_archival_insert.j2", ok=True, id=passage.id, total=ctx.store.archival.count())
    return Execution(ok=True, result_text=text, summary="saved", record={"passage_ids": [passage.id]})


def _undo_archival_insert(store: AgentStore, record: Mapping[str, object]) -> None:
    ids = record.get("passage_ids")
    if isinstance(ids, list) and ids:
        store.archival.delete([int(i) for i in ids if isinstance(i, int | str)])


def _pause_heartbeats(ctx: FunctionContext, args: Arguments) -> Execution:
    minutes = args["minutes"]
    return Execution(ok=True, result_text=ctx.prompts.render("result_pause.j2", minutes=minutes), summary=f"{minutes} min")


BUILTIN_FUNCTIONS: tuple[AgentFunction, ...] = (
    AgentFunction(
        "send_message", SendMessage, _send_message, example={"message": "..."},
        aliases={"content": "message", "text": "message", "msg": "message"}, ends_chain=True, needs_memory=False,
    ),
    AgentFunction(
        "core_memory_append", CoreMemoryAppend, _core_memory_append,
        example={"label": "human", "content": "...", "request_heartbeat": False},
        aliases=_LABEL_ALIASES | {"text": "content"},
    ),
    AgentFunction(
        "core_memory_replace", CoreMemoryReplace, _core_memory_replace,
        example={"label": "human", "old_content": "...", "new_content": "...", "request_heartbeat": False},
        aliases=_LABEL_ALIASES | {"old": "old_content", "new": "new_content"},
    ),
    AgentFunction(
        "conversation_search", ConversationSearch, _conversation_search,
        example={"query": "...", "page": 0, "request_heartbeat": True}, aliases=_QUERY_ALIASES,
    ),
    AgentFunction(
        "conversation_search_date", ConversationSearchDate, _conversation_search_date,
        example={"start_date": "2024-01-01", "end_date": "2024-01-31", "page": 0, "request_heartbeat": True},
        aliases={"start": "start_date", "end": "end_date", "from": "start_date", "to": "end_date"},
    ),
    AgentFunction(
        "archival_memory_insert", ArchivalMemoryInsert, _archival_memory_insert,
        example={"content": "...", "request_heartbeat": False},
        aliases={"text": "content", "memory": "content"}, undo=_undo_archival_insert,
    ),
    AgentFunction(
        "archival_memory_search", ArchivalMemorySearch, _archival_memory_search,
        example={"query": "...", "page": 0, "request_heartbeat": True}, aliases=_QUERY_ALIASES,
    ),
    AgentFunction(
        "pause_heartbeats", PauseHeartbeats, _pause_heartbeats, example={"minutes": 60},
        aliases={"duration": "minutes", "mins": "minutes"}, ends_chain=True,
    ),
)


@hookimpl
def register_functions(register: Callable[[AgentFunction], None]) -> None:
    for function in BUILTIN_FUNCTIONS:
        register(function)

"""Runs one validated function call against the agent's memory and renders its result for the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .conversation import FunctionCall
from .memory.errors import MemoryEditError, QueryError
from .prompts import PromptLibrary


@dataclass
class Execution:
    ok: bool
    result_text: str | None  # what the model reads next (None for send_message: nothing to read)
    summary: str  # a short line for the UI, e.g. "3 hits"
    memory_changed: bool = False  # core memory changed: the system prompt must be rebuilt
    record: dict[str, Any] = field(default_factory=dict)  # stored with the result (e.g. inserted passage ids, for undo)


class FunctionExecutor:
    def __init__(self, store: Any, prompts: PromptLibrary, settings: Settings) -> None:
        self.store = store
        self.prompts = prompts
        self.page_size = settings.memory.search_limit

    def execute(self, call: FunctionCall, turn_id: int) -> Execution:
        handler = getattr(self, f"_do_{call.function}")
        return handler(call.arguments, turn_id)

    def _do_send_message(self, args: dict[str, Any], turn_id: int) -> Execution:
        return Execution(ok=True, result_text=None, summary="sent")

    def _edit_result(self, label: str, action: Any) -> Execution:
        try:
            block = action()
        except MemoryEditError as exc:
            text = self.prompts.render(
                "result_memory_edit.j2", ok=False, label=label, error=exc.kind, closest=exc.closest,
                length=None, limit=exc.limit, new_length=exc.length, labels=list(exc.labels),
            )
            return Execution(ok=False, result_text=text, summary=f"failed: {exc.kind}")
        text = self.prompts.render(
            "result_memory_edit.j2", ok=True, label=label, error=None, closest=None,
            length=None, limit=block.limit, new_length=block.length, labels=[],
        )
        return Execution(ok=True, result_text=text, summary=f"{label}: {block.length}/{block.limit}", memory_changed=True)

    def _do_core_memory_append(self, args: dict[str, Any], turn_id: int) -> Execution:
        label = args["label"]
        return self._edit_result(label, lambda: self.store.core.append(label, args["content"], turn_id=turn_id))

    def _do_core_memory_replace(self, args: dict[str, Any], turn_id: int) -> Execution:
        label = args["label"]
        return self._edit_result(
            label, lambda: self.store.core.replace(label, args["old_content"], args["new_content"], turn_id=turn_id)
        )

    def _search_result(self, query: str, run: Any) -> Execution:
        try:
            page = run()
        except QueryError as exc:
            text = self.prompts.render("result_search.j2", query=query, hits=[], total=0, page=0, pages=0, error=str(exc))
            return Execution(ok=False, result_text=text, summary="bad query")
        hits = [hit.to_json_obj() for hit in page.hits]
        text = self.prompts.render(
            "result_search.j2", query=query, hits=hits, total=page.total, page=page.page, pages=page.pages, error=None
        )
        return Execution(ok=True, result_text=text, summary=f"{page.total} hits")

    def _do_conversation_search(self, args: dict[str, Any], turn_id: int) -> Execution:
        query, page = args["query"], args.get("page", 0)
        return self._search_result(query, lambda: self.store.recall.search(query, page=page, page_size=self.page_size))

    def _do_conversation_search_date(self, args: dict[str, Any], turn_id: int) -> Execution:
        start, end, page = args["start_date"], args["end_date"], args.get("page", 0)
        return self._search_result(
            f"{start}..{end}", lambda: self.store.recall.search_date(start, end, page=page, page_size=self.page_size)
        )

    def _do_archival_memory_search(self, args: dict[str, Any], turn_id: int) -> Execution:
        query, page = args["query"], args.get("page", 0)
        return self._search_result(query, lambda: self.store.archival.search(query, page=page, page_size=self.page_size))

    def _do_archival_memory_insert(self, args: dict[str, Any], turn_id: int) -> Execution:
        passage = self.store.archival.insert(args["content"])
        text = self.prompts.render("result_archival_insert.j2", ok=True, id=passage.id, total=self.store.archival.count())
        return Execution(ok=True, result_text=text, summary="saved", record={"passage_ids": [passage.id]})

    def _do_pause_heartbeats(self, args: dict[str, Any], turn_id: int) -> Execution:
        minutes = args["minutes"]
        return Execution(ok=True, result_text=self.prompts.render("result_pause.j2", minutes=minutes), summary=f"{minutes} min")

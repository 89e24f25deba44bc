"""Structured memory errors. Fields carry the data; the words the model reads live in templates."""

from __future__ import annotations

from typing import Literal

from ..errors import MemagentError

EditErrorKind = Literal["unknown_label", "not_found", "over_limit", "empty_old", "nothing_to_undo", "label_exists"]


class MemoryEditError(MemagentError):
    """A core-memory edit that could not be applied; nothing was changed.

    kind          what went wrong
    label         the block the edit was aimed at
    closest       (not_found) the block's text that most resembles `old_content`, if any
    length/limit  (over_limit) the length the block would have had, and its limit
    labels        (unknown_label) the labels that do exist
    """

    def __init__(
        self,
        kind: EditErrorKind,
        label: str,
        *,
        closest: str | None = None,
        length: int | None = None,
        limit: int | None = None,
        labels: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.label = label
        self.closest = closest
        self.length = length
        self.limit = limit
        self.labels = labels
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.kind == "unknown_label":
            return f"no memory block {self.label!r}; blocks: {', '.join(self.labels) or '(none)'}"
        if self.kind == "not_found":
            hint = f"; closest text: {self.closest!r}" if self.closest else ""
            return f"the text to replace was not found in block {self.label!r}{hint}"
        if self.kind == "over_limit":
            return f"block {self.label!r} would hold {self.length} characters; its limit is {self.limit}"
        if self.kind == "empty_old":
            return f"the text to replace in block {self.label!r} is empty; give the exact text to change"
        if self.kind == "label_exists":
            return f"memory block {self.label!r} already exists"
        return f"block {self.label!r} has no edit to undo"


class QueryError(MemagentError):
    """A search request that cannot be run (e.g. an empty query or an unreadable date)."""

    def __init__(self, kind: Literal["empty", "bad_date", "bad_range"], detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(detail)

"""Immutable records of what is stored. Callers never hold ORM objects (no detached-state surprises).

A message, passage or fact has one record shape: read from its row (`model_validate(row)`), written
to and read back from an export file (memory/backup.py) as it is. Only the ORM row (the schema) and
the insert input without an id yet (`NewMessage`, `NewPassage`) differ from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from .kinds import MessageKind

# An id the caller sees: the `id` given at import time (any JSON scalar) or the row id.
HitId = int | str | float | bool


class Record(BaseModel):
    """A stored thing as callers and export files see it: frozen, read from its ORM row by attribute."""

    model_config = ConfigDict(frozen=True, from_attributes=True, extra="forbid")


@dataclass(frozen=True)
class Block:
    label: str
    value: str
    limit: int
    updated_at: datetime

    @property
    def length(self) -> int:
        return len(self.value)


@dataclass(frozen=True)
class BlockEdit:
    id: int
    label: str
    old_value: str
    new_value: str
    time: datetime
    turn_id: int | None
    reason: str
    undone: bool


class StoredMessage(Record):
    id: int
    turn_id: int
    role: str
    kind: MessageKind
    content: str
    function_name: str | None = None
    function_args: dict[str, Any] | None = None
    inner_thoughts: str | None = None
    time: datetime
    in_context: bool = True
    token_count: int | None = None
    external_id: HitId | None = None

    @property
    def reply(self) -> str | None:
        """What the persona said, when this is a send_message call (None for anything else)."""
        if self.kind != MessageKind.ASSISTANT_CALL or self.function_name != "send_message":
            return None
        return str((self.function_args or {}).get("message", ""))


class Passage(Record):
    id: int
    text: str
    time: datetime
    source: str
    external_id: HitId | None = None


class Fact(Record):
    """A fact captured from what was said, with where it came from and where it was written."""

    id: int
    kind: str
    label: str
    value: str
    line: str
    block: str | None
    passage_id: int | None
    message_id: int | None
    turn_id: int
    time: datetime
    superseded_by: int | None = None

    @property
    def current(self) -> bool:
        return self.superseded_by is None

    def to_json_obj(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "value": self.value, "line": self.line,
                "block": self.block, "passage_id": self.passage_id, "message_id": self.message_id,
                "turn_id": self.turn_id, "time": self.time.isoformat(), "superseded_by": self.superseded_by}


@dataclass(frozen=True)
class SearchHit:
    """One result. `id` is the imported id when there was one, else the row id."""

    id: HitId
    text: str
    time: datetime
    score: float
    role: str | None = None  # recall hits only
    row_id: int = 0

    def to_json_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": self.id, "text": self.text, "time": self.time.isoformat(), "score": self.score}
        if self.role is not None:
            obj["role"] = self.role
        return obj


@dataclass(frozen=True)
class SearchPage:
    """A page of results; `page` counts from 0, `pages` is how many pages `total` hits fill."""

    hits: list[SearchHit]
    total: int
    page: int
    page_size: int
    capped: bool = False  # `total` is a lower bound: counting every match of a common word costs too much
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pages", math.ceil(self.total / self.page_size) if self.page_size else 0)

    @property
    def total_text(self) -> str:
        return f"{self.total}+" if self.capped else str(self.total)

    @property
    def has_more(self) -> bool:
        return self.page + 1 < self.pages


def page_of(ranked: Sequence[tuple[int, float]], hits: Mapping[int, SearchHit], page: int, page_size: int) -> SearchPage:
    """Page `page` of `ranked` (row id, score; best first), each row's hit from `hits` with its score."""
    chosen = ranked[page * page_size:(page + 1) * page_size]
    return SearchPage(hits=[replace(hits[i], score=round(score, 6)) for i, score in chosen], total=len(ranked),
                      page=page, page_size=page_size)

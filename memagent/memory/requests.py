"""Requests with an Idempotency-Key, kept in the agent's database (migration _V6): a retried request
gets the first answer from whichever worker took it, and a turn its worker never finished (killed
mid-turn) is finished by the retry instead of being started twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from .db import Database
from .models import RequestRow, utc_now


@dataclass(frozen=True)
class KnownRequest:
    turns_before: int
    answer: dict[str, Any] | None  # None: started, never answered


class RequestLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str) -> KnownRequest | None:
        with self._db.read() as session:
            row = session.get(RequestRow, key)
            return KnownRequest(row.turns_before, row.answer) if row is not None else None

    def started(self, key: str, turns_before: int) -> None:
        """Record that the request is being answered, from turn count `turns_before`."""
        with self._db.transaction() as session:
            row = session.get(RequestRow, key)
            if row is None:
                session.add(RequestRow(key=key, turns_before=turns_before, answer=None, created_at=utc_now()))

    def answered(self, key: str, answer: dict[str, Any]) -> None:
        with self._db.transaction() as session:
            row = session.get(RequestRow, key)
            if row is not None:
                row.answer = answer

    def forget(self, key: str) -> None:
        """The request's turn was cancelled and undone: a retry starts afresh."""
        with self._db.transaction() as session:
            session.execute(delete(RequestRow).where(RequestRow.key == key))

    def forget_older_than(self, seconds: int) -> int:
        with self._db.transaction() as session:
            horizon = utc_now() - timedelta(seconds=seconds)
            doomed = list(session.scalars(select(RequestRow.key).where(RequestRow.created_at < horizon)))
            if doomed:
                session.execute(delete(RequestRow).where(RequestRow.key.in_(doomed)))
            return len(doomed)

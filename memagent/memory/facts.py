"""Captured facts: the provenance record of what the system wrote into memory, and from which message.

The text itself lives where the model reads it (a line of a core block, or an archival passage);
this table says which message each line came from and which newer fact replaced it."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from .db import Database, rows_affected
from .models import FactRow, utc_now
from .records import Fact

# The fact kind (facts.toml) that holds the user's own name: the persona's `{{user}}` becomes it.
USER_NAME_KIND = "name"


def _view(row: FactRow) -> Fact:
    return Fact.model_validate(row)


class FactStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, *, kind: str, label: str, value: str, line: str, turn_id: int, message_id: int | None,
            block: str | None = None, passage_id: int | None = None, replaces: int | None = None) -> Fact:
        """Record one captured fact (inside the caller's transaction, if any); `replaces` is the id of
        the fact it supersedes."""
        row = FactRow(kind=kind, label=label, value=value, line=line, block=block, passage_id=passage_id,
                      message_id=message_id, turn_id=turn_id, time=utc_now())
        with self._db.transaction() as session:
            session.add(row)
            session.flush()
            if replaces is not None:
                session.execute(update(FactRow).where(FactRow.id == replaces).values(superseded_by=row.id))
            return _view(row)

    def current(self, kind: str | None = None) -> list[Fact]:
        """Facts not replaced by a newer one, oldest first."""
        query = select(FactRow).where(FactRow.superseded_by.is_(None)).order_by(FactRow.id)
        if kind is not None:
            query = query.where(FactRow.kind == kind)
        with self._db.read() as session:
            return [_view(row) for row in session.scalars(query)]

    def all(self) -> list[Fact]:
        with self._db.read() as session:
            return [_view(row) for row in session.scalars(select(FactRow).order_by(FactRow.id))]

    def of_turn(self, turn_id: int) -> list[Fact]:
        with self._db.read() as session:
            return [_view(row) for row in session.scalars(select(FactRow).where(FactRow.turn_id == turn_id))]

    def delete_turn(self, turn_id: int) -> int:
        """Forget the facts captured in a turn (its core edits are reverted by the caller); the facts
        they had replaced become current again."""
        with self._db.transaction() as session:
            ids = list(session.scalars(select(FactRow.id).where(FactRow.turn_id == turn_id)))
            if not ids:
                return 0
            session.execute(update(FactRow).where(FactRow.superseded_by.in_(ids)).values(superseded_by=None))
            return rows_affected(session.execute(delete(FactRow).where(FactRow.id.in_(ids))))

    def delete_all(self) -> int:
        with self._db.transaction() as session:
            return rows_affected(session.execute(delete(FactRow)))

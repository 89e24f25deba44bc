"""Core memory: the small, always-in-context blocks (persona, human, …) and every edit to them."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .closest import closest_substring
from .db import Database
from .errors import MemoryEditError
from .models import BlockHistoryRow, BlockRow, utc_now
from .records import Block, BlockEdit

APPEND_SEPARATOR = "\n"


def _view(row: BlockRow) -> Block:
    return Block(label=row.label, value=row.value, limit=row.char_limit, updated_at=row.updated_at)


class CoreMemory:
    def __init__(self, db: Database, default_limit: int) -> None:
        self._db = db
        self.default_limit = default_limit

    # --- reading -------------------------------------------------------------------------------
    def list(self) -> list[Block]:
        with self._db.read() as session:
            return [_view(row) for row in session.scalars(select(BlockRow).order_by(BlockRow.position, BlockRow.id))]

    def labels(self) -> builtins.list[str]:
        return [block.label for block in self.list()]

    def get(self, label: str) -> Block:
        with self._db.read() as session:
            return _view(self._row(session, label))

    def last_modified(self) -> datetime | None:
        with self._db.read() as session:
            return session.scalar(select(func.max(BlockRow.updated_at)))

    def first_value(self, label: str) -> str:
        """What block `label` held before its first edit (its value now, if it was never edited)."""
        with self._db.read() as session:
            first = session.scalar(
                select(BlockHistoryRow.old_value).join(BlockRow, BlockRow.id == BlockHistoryRow.block_id)
                .where(BlockRow.label == label).order_by(BlockHistoryRow.id).limit(1))
            return first if first is not None else self._row(session, label).value

    def history(self, label: str | None = None, limit: int = 50) -> builtins.list[BlockEdit]:
        """Edits, newest first."""
        query = (
            select(BlockHistoryRow, BlockRow.label).join(BlockRow, BlockRow.id == BlockHistoryRow.block_id)
            .order_by(BlockHistoryRow.id.desc()).limit(limit)
        )
        if label is not None:
            query = query.where(BlockRow.label == label)
        with self._db.read() as session:
            return [
                BlockEdit(id=edit.id, label=block_label, old_value=edit.old_value, new_value=edit.new_value,
                          time=edit.time, turn_id=edit.turn_id, reason=edit.reason, undone=edit.undone)
                for edit, block_label in session.execute(query)
            ]

    def revert_turn(self, turn_id: int) -> int:
        """Undo the edits made in turn `turn_id` (the agent's and captured facts), newest first, so each
        block ends at its value from before the turn; every revert is itself kept in the history.
        Returns how many edits were reverted."""
        with self._db.transaction() as session:
            edits = list(session.scalars(
                select(BlockHistoryRow)
                .where(BlockHistoryRow.turn_id == turn_id, ~BlockHistoryRow.undone, BlockHistoryRow.reason != "undo")
                .order_by(BlockHistoryRow.id.desc())
            ))
            for edit in edits:
                block = session.get(BlockRow, edit.block_id)
                if block is None:  # the block was deleted since (memory reset): nothing to revert
                    continue
                session.add(BlockHistoryRow(block_id=block.id, old_value=block.value, new_value=edit.old_value,
                                            time=utc_now(), turn_id=turn_id, reason="undo"))
                block.value = edit.old_value
                block.updated_at = utc_now()
                edit.undone = True
            return len(edits)

    # --- editing (each raises MemoryEditError and changes nothing when it cannot apply) ---------
    def create(self, label: str, value: str = "", limit: int | None = None) -> Block:
        with self._db.transaction() as session:
            if session.scalar(select(BlockRow.id).where(BlockRow.label == label)) is not None:
                raise MemoryEditError("label_exists", label)
            limit = limit or self.default_limit
            if len(value) > limit:
                raise MemoryEditError("over_limit", label, length=len(value), limit=limit)
            position = (session.scalar(select(func.max(BlockRow.position))) or 0) + 1
            row = BlockRow(label=label, value=value, char_limit=limit, initial_value=value, position=position,
                           updated_at=utc_now())
            session.add(row)
            session.flush()
            return _view(row)

    def append(self, label: str, content: str, turn_id: int | None = None, reason: str = "append") -> Block:
        with self._db.transaction() as session:
            row = self._row(session, label)
            new_value = f"{row.value}{APPEND_SEPARATOR}{content}" if row.value else content
            return self._write(session, row, new_value, turn_id, reason)

    def replace(self, label: str, old_content: str, new_content: str, turn_id: int | None = None,
                reason: str = "replace") -> Block:
        """Replace every exact occurrence of `old_content`; an empty `new_content` deletes it."""
        with self._db.transaction() as session:
            row = self._row(session, label)
            if not old_content:
                raise MemoryEditError("empty_old", label)
            if old_content not in row.value:
                raise MemoryEditError("not_found", label, closest=closest_substring(row.value, old_content))
            new_value = row.value.replace(old_content, new_content)
            return self._write(session, row, new_value, turn_id, reason)

    def set(self, label: str, value: str, turn_id: int | None = None, reason: str = "user_edit") -> Block:
        with self._db.transaction() as session:
            return self._write(session, self._row(session, label), value, turn_id, reason)

    def undo(self, label: str, turn_id: int | None = None) -> Block:
        """Go back one edit. Repeated undos walk further back; an undo is itself recorded (and can
        be reverted with `set`)."""
        with self._db.transaction() as session:
            row = self._row(session, label)
            edit = session.scalars(
                select(BlockHistoryRow)
                .where(BlockHistoryRow.block_id == row.id, ~BlockHistoryRow.undone, BlockHistoryRow.reason != "undo")
                .order_by(BlockHistoryRow.id.desc()).limit(1)
            ).first()
            if edit is None:
                raise MemoryEditError("nothing_to_undo", label)
            edit.undone = True
            return self._write(session, row, edit.old_value, turn_id, "undo", check_limit=False)

    def reset(self) -> None:
        """Every block back to the value it was created with; the history is kept, so this can be undone."""
        with self._db.transaction() as session:
            for row in session.scalars(select(BlockRow)):
                if row.value != row.initial_value:
                    self._write(session, row, row.initial_value, None, "reset", check_limit=False)

    # --- internals -----------------------------------------------------------------------------
    def _row(self, session: Session, label: str) -> BlockRow:
        row = session.scalars(select(BlockRow).where(BlockRow.label == label)).first()
        if row is None:
            labels = tuple(session.scalars(select(BlockRow.label).order_by(BlockRow.position)))
            raise MemoryEditError("unknown_label", label, labels=labels)
        return row

    def _write(
        self, session: Session, row: BlockRow, new_value: str, turn_id: int | None, reason: str, check_limit: bool = True
    ) -> Block:
        if check_limit and len(new_value) > row.char_limit:
            raise MemoryEditError("over_limit", row.label, length=len(new_value), limit=row.char_limit)
        now = utc_now()
        session.add(BlockHistoryRow(block_id=row.id, old_value=row.value, new_value=new_value, time=now,
                                    turn_id=turn_id, reason=reason))
        row.value = new_value
        row.updated_at = now
        session.flush()
        return _view(row)

"""Taking back a turn: its messages and every memory side effect it had, in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .functions.registry import function_registry
from .memory.models import BlockHistoryRow, BlockRow, MessageRow, utc_now

if TYPE_CHECKING:
    from .memory.store import AgentStore


def undo_turn(store: AgentStore, turn_id: int, *, keep_user_message: bool) -> int:
    """Remove turn `turn_id`'s messages (all, or all but the user's own message), revert the core
    memory edits made in it (the agent's and captured facts) and let each function call's `undo`
    revert the rest of what it did (archival inserts). Returns messages removed."""
    registry = function_registry()
    with store.transaction() as session:
        messages = list(session.scalars(select(MessageRow).where(MessageRow.turn_id == turn_id)))
        for message in messages:
            function = registry.get(message.function_name) if message.kind == "function_result" else None
            if function is not None and function.undo is not None:
                function.undo(store, message.function_args or {})
        passage_ids = [fact.passage_id for fact in store.facts.of_turn(turn_id) if fact.passage_id is not None]
        _revert_core_edits(session, turn_id)
        store.facts.delete_turn(turn_id)
        removed = [m.id for m in messages if not (keep_user_message and m.kind == "user_message")]
        if removed:
            session.execute(delete(MessageRow).where(MessageRow.id.in_(removed)))
        if passage_ids:
            store.archival.delete(passage_ids)
    return len(removed)


def _revert_core_edits(session: Session, turn_id: int) -> None:
    edits = list(session.scalars(
        select(BlockHistoryRow)
        .where(BlockHistoryRow.turn_id == turn_id, ~BlockHistoryRow.undone, BlockHistoryRow.reason != "undo")
        .order_by(BlockHistoryRow.id.desc())
    ))
    for edit in edits:  # newest first, so each block ends at its value from before the turn
        block = session.get(BlockRow, edit.block_id)
        if block is None:  # the block was deleted since (memory reset): nothing to revert
            continue
        session.add(BlockHistoryRow(block_id=block.id, old_value=block.value, new_value=edit.old_value,
                                    time=utc_now(), turn_id=turn_id, reason="undo"))
        block.value = edit.old_value
        block.updated_at = utc_now()
        edit.undone = True

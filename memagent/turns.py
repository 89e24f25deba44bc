"""Taking back a turn: its messages and every memory side effect it had, in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from .memory.models import BlockHistoryRow, BlockRow, MessageRow, utc_now


def undo_turn(store: Any, turn_id: int, *, keep_user_message: bool) -> int:
    """Remove turn `turn_id`'s messages (all, or all but the user's own message), revert the core
    memory edits made in it (the agent's and captured facts) and delete the archival passages it
    inserted. Returns messages removed."""
    with store.transaction() as session:
        messages = list(session.scalars(select(MessageRow).where(MessageRow.turn_id == turn_id)))
        passage_ids = [
            pid for m in messages if m.kind == "function_result"
            for pid in (m.function_args or {}).get("passage_ids", [])
        ] + [fact.passage_id for fact in store.facts.of_turn(turn_id) if fact.passage_id is not None]
        _revert_core_edits(session, turn_id)
        store.facts.delete_turn(turn_id)
        removed = [m.id for m in messages if not (keep_user_message and m.kind == "user_message")]
        if removed:
            session.execute(delete(MessageRow).where(MessageRow.id.in_(removed)))
        if passage_ids:
            store.archival.delete(passage_ids)
    return len(removed)


def _revert_core_edits(session: Any, turn_id: int) -> None:
    edits = list(session.scalars(
        select(BlockHistoryRow)
        .where(BlockHistoryRow.turn_id == turn_id, ~BlockHistoryRow.undone, BlockHistoryRow.reason != "undo")
        .order_by(BlockHistoryRow.id.desc())
    ))
    for edit in edits:  # newest first, so each block ends at its value from before the turn
        block = session.get(BlockRow, edit.block_id)
        session.add(BlockHistoryRow(block_id=block.id, old_value=block.value, new_value=edit.old_value,
                                    time=utc_now(), turn_id=turn_id, reason="undo"))
        block.value = edit.old_value
        block.updated_at = utc_now()
        edit.undone = True

"""Taking back a turn: its messages and every memory side effect it had, in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .functions.registry import function_registry
from .memory.kinds import MessageKind

if TYPE_CHECKING:
    from .memory.store import AgentStore


def undo_turn(store: AgentStore, turn_id: int, *, keep_user_message: bool) -> int:
    """Remove turn `turn_id`'s messages (all, or all but the user's own message), revert the core
    memory edits made in it (the agent's and captured facts), let each function call's `undo`
    revert the rest of what it did (archival inserts) and drop the facts captured in it.
    Returns messages removed."""
    registry = function_registry()
    with store.transaction():
        messages = store.recall.of_turn(turn_id)
        for message in messages:
            function = registry.get(message.function_name) if message.kind == MessageKind.FUNCTION_RESULT else None
            if function is not None and function.undo is not None:
                function.undo(store, message.function_args or {})
        captured_passages = [fact.passage_id for fact in store.facts.of_turn(turn_id) if fact.passage_id is not None]
        store.core.revert_turn(turn_id)
        store.facts.delete_turn(turn_id)
        removed = [m.id for m in messages if not (keep_user_message and m.kind == MessageKind.USER)]
        store.recall.delete(removed)
        if captured_passages:
            store.archival.delete(captured_passages)
    return len(removed)

"""How captured facts are shown to the user (`memory show`, `/memory`): each with its source message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..memory.records import Fact
    from ..memory.store import AgentStore

QUOTE_CHARS = 60


def fact_records(store: AgentStore, facts: list[Fact]) -> list[dict[str, Any]]:
    """Facts as JSON objects with their source message (`source`: id, time, text; None once deleted)."""
    records = []
    for fact in facts:
        message = store.recall.get(fact.message_id) if fact.message_id is not None else None
        source = None if message is None else {"id": message.id, "time": message.time.isoformat(), "text": message.content}
        records.append({**fact.to_json_obj(), "source": source})
    return records


def format_fact(record: dict[str, Any]) -> str:
    """`line  [where it is] ← message #id time: 'what was said'`."""
    where = f"core:{record['block']}" if record["block"] else f"archival #{record['passage_id']}"
    source = record["source"]
    if source is None:
        return f"{record['line']}  [{where}] ← source message deleted"
    quoted = " ".join(source["text"].split())
    quoted = quoted if len(quoted) <= QUOTE_CHARS else quoted[: QUOTE_CHARS - 1] + "…"
    return f"{record['line']}  [{where}] ← message #{source['id']} {source['time'][:19]}: {quoted!r}"

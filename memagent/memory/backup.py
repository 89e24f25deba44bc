"""Export an agent's whole memory to one JSON file and restore it. Nothing secret is stored in the
agent database, so an export holds everything there is; ids and times round-trip exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..files import atomic_writer
from .db import Database
from .jsonl import EXPORT_FORMAT, ImportFileError
from .migrations import SCHEMA_VERSION
from .models import AgentRow, BlockHistoryRow, BlockRow, FactRow, MessageRow, PassageRow, utc_now
from .recall_sql import bulk_insert_messages
from .records import Fact, Passage, Record, StoredMessage

EXPORT_VERSION = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedAgent(_Record):
    name: str
    persona: str
    human: str
    language: str
    created_at: datetime
    state: dict[str, Any]


class ExportedEdit(_Record):
    old_value: str
    new_value: str
    time: datetime
    turn_id: int | None
    reason: str
    undone: bool


class ExportedBlock(_Record):
    label: str
    value: str
    limit: int
    initial_value: str
    position: int
    updated_at: datetime
    history: list[ExportedEdit]


class ExportFile(_Record):
    format: str
    version: int
    schema_version: int
    exported_at: datetime
    agent: ExportedAgent
    blocks: list[ExportedBlock]
    messages: list[StoredMessage]
    passages: list[Passage]
    facts: list[Fact] = []  # captured facts with their source message ids (absent before schema 3)


def _json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False)


def _agent(row: AgentRow) -> ExportedAgent:
    return ExportedAgent(name=row.name, persona=row.persona, human=row.human, language=row.language,
                         created_at=row.created_at, state=row.state or {})


def _blocks(session: Session) -> list[ExportedBlock]:
    blocks = []
    for row in session.scalars(select(BlockRow).order_by(BlockRow.position, BlockRow.id)):
        edits = session.scalars(select(BlockHistoryRow).where(BlockHistoryRow.block_id == row.id).order_by(BlockHistoryRow.id))
        blocks.append(ExportedBlock(
            label=row.label, value=row.value, limit=row.char_limit, initial_value=row.initial_value,
            position=row.position, updated_at=row.updated_at,
            history=[ExportedEdit(old_value=e.old_value, new_value=e.new_value, time=e.time, turn_id=e.turn_id,
                                  reason=e.reason, undone=e.undone) for e in edits],
        ))
    return blocks


def write_export(db: Database, path: Path) -> dict[str, int]:
    """Stream the export to `path` (written beside it, then moved into place); returns counts."""
    counts = {"blocks": 0, "messages": 0, "passages": 0, "facts": 0}
    with db.read() as session, atomic_writer(path) as out:
        agent = session.scalars(select(AgentRow)).one()
        blocks = _blocks(session)
        counts["blocks"] = len(blocks)
        out.write(f'{{"format": "{EXPORT_FORMAT}", "version": {EXPORT_VERSION}, "schema_version": {SCHEMA_VERSION},\n')
        out.write(f'"exported_at": {json.dumps(utc_now().isoformat())},\n"agent": {_json(_agent(agent))},\n')
        out.write('"blocks": [' + ",\n".join(_json(block) for block in blocks) + "],\n")
        # (key, ORM class, record): the classes differ, so the row type is Any here.
        tables: tuple[tuple[str, Any, type[Record]], ...] = (
            ("messages", MessageRow, StoredMessage), ("passages", PassageRow, Passage), ("facts", FactRow, Fact))
        for key, row_type, record in tables:
            out.write(f'"{key}": [\n')
            query = select(row_type).order_by(row_type.id).execution_options(yield_per=5000)
            for number, row in enumerate(session.scalars(query)):
                out.write((",\n" if number else "") + _json(record.model_validate(row)))
                counts[key] += 1
            out.write("]" + (",\n" if key != "facts" else "}\n"))
    return counts


def export_data(db: Database) -> dict[str, Any]:
    """The export as a dict (what `write_export` writes, as JSON types)."""
    with db.read() as session:
        data = ExportFile(
            format=EXPORT_FORMAT, version=EXPORT_VERSION, schema_version=SCHEMA_VERSION, exported_at=utc_now(),
            agent=_agent(session.scalars(select(AgentRow)).one()), blocks=_blocks(session),
            messages=[StoredMessage.model_validate(row) for row in session.scalars(select(MessageRow).order_by(MessageRow.id))],
            passages=[Passage.model_validate(row) for row in session.scalars(select(PassageRow).order_by(PassageRow.id))],
            facts=[Fact.model_validate(row) for row in session.scalars(select(FactRow).order_by(FactRow.id))],
        )
    return data.model_dump(mode="json")


def parse_export(data: dict[str, Any], source: str) -> ExportFile:
    try:
        parsed = ExportFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ImportFileError(f"{source}: {where}: {error['msg'].lower()}") from None
    if parsed.version > EXPORT_VERSION:
        raise ImportFileError(f"{source}: export format {parsed.version} is newer than this memagent reads; upgrade")
    return parsed


def restore(db: Database, export: ExportFile, agent_name: str, after_commit: Callable[[], None]) -> dict[str, int]:
    """Load an export into this (empty) agent: its blocks are replaced, messages and passages keep
    their ids. Refuses when the agent already has messages or passages: a restore never merges."""
    with db.transaction() as session:
        messages = session.scalar(select(func.count()).select_from(MessageRow)) or 0
        passages = session.scalar(select(func.count()).select_from(PassageRow)) or 0
        if messages or passages:
            raise ImportFileError(
                f"agent {agent_name!r} already has {messages} messages and {passages} passages; an export is "
                f"restored into an empty agent: run `memagent memory reset --agent {agent_name} --yes` first"
            )
        agent = session.scalars(select(AgentRow)).one()
        agent.persona, agent.human, agent.language = export.agent.persona, export.agent.human, export.agent.language
        agent.created_at, agent.state = export.agent.created_at, dict(export.agent.state)
        for stored in session.scalars(select(BlockRow)):
            session.delete(stored)
        session.flush()
        for block in export.blocks:
            row = BlockRow(label=block.label, value=block.value, char_limit=block.limit,
                           initial_value=block.initial_value, position=block.position, updated_at=block.updated_at)
            session.add(row)
            session.flush()
            session.add_all(BlockHistoryRow(block_id=row.id, **edit.model_dump()) for edit in block.history)
        bulk_insert_messages(session.connection(), (m.model_dump() for m in export.messages))
        if export.passages:
            session.execute(insert(PassageRow), [p.model_dump() for p in export.passages])
        if export.facts:
            session.execute(insert(FactRow), [f.model_dump() for f in export.facts])
        db.ids_restored(session.connection(), ("message", "passage", "fact"))
        db.after_commit(after_commit)
    return {"blocks": len(export.blocks), "messages": len(export.messages), "passages": len(export.passages),
            "facts": len(export.facts)}

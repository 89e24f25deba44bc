"""`AgentStore`: one agent's memory (core, recall, archival, state) and the agents on disk."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import MemagentError, NotFoundError
from ..paths import Paths
from .archival import ArchivalStore, NewPassage
from .backup import parse_export, restore, write_export
from .chroma_index import IndexLocation
from .core import CoreMemory
from .db import DB_FILENAME, Database, read_only_disk
from .embeddings import make_embedder
from .facts import FactStore
from .jsonl import read_export, read_messages, read_passages
from .kinds import CONVERSATION_KINDS, StateKey
from .models import AgentRow, utc_now
from .pgvector_index import PgVectorLocation
from .postgres import PostgresDatabase, Registry, schema_for
from .recall import NewMessage, RecallIndexSettings, RecallStore
from .records import HitId
from .requests import RequestLog
from .vector_index import VectorLocation

_NAME = re.compile(r"[^\W_][\w.-]{0,63}")  # \w includes kana and kanji: 「さくら」 is a fine name
CHROMA_DIRNAME = "chroma"
STAGING_FILENAME = DB_FILENAME + ".new"  # a database being created; renamed to DB_FILENAME when complete
DEFAULT_BLOCKS = ("persona", "human")


@dataclass(frozen=True)
class AgentInfo:
    name: str
    uid: str
    persona: str
    human: str
    language: str
    created_at: datetime


def check_agent_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise MemagentError(
            f"agent name {name!r} is not allowed; use up to 64 letters, digits, '.', '-' or '_', starting with a letter or digit"
        )
    return name


def _db_path(paths: Paths, name: str) -> Path:
    return paths.agent_dir(name) / DB_FILENAME


def _index_location(settings: Settings, agent_dir: Path, db: Database) -> VectorLocation:
    if isinstance(db, PostgresDatabase):
        return PgVectorLocation(db)
    memory = settings.memory
    if memory.chroma == "server":
        return IndexLocation(local_dir=None, host=memory.chroma_host, port=memory.chroma_port)
    return IndexLocation(local_dir=agent_dir / CHROMA_DIRNAME)


def _remove_db_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _remove_partial_agent(agent_dir: Path) -> None:
    """Undo a failed creation: our files go; the folder too, unless something else lives there
    (the chat's lock file, say)."""
    _remove_db_files(agent_dir / DB_FILENAME)
    _remove_db_files(agent_dir / STAGING_FILENAME)
    shutil.rmtree(agent_dir / CHROMA_DIRNAME, ignore_errors=True)
    try:
        agent_dir.rmdir()
    except OSError:
        pass  # not empty: leave the other files alone


def _collection_names(uid: str, db: Database) -> tuple[str, str]:
    """The archival and recall indexes' names: tables in the agent's schema, or Chroma collections
    by uid, not name (a rename must not orphan a server-side collection)."""
    if isinstance(db, PostgresDatabase):
        return "passage_vectors", "message_vectors"
    return f"memagent-{uid}", f"memagent-{uid}-recall"


def _registry(settings: Settings) -> Registry | None:
    """The PostgreSQL database's list of agents, when [storage] url names one."""
    url = settings.storage.database_url
    return Registry(url) if url else None


class AgentStore:
    """Open with `AgentStore.open(...)`; use as a context manager or call `close()`."""

    def __init__(self, paths: Paths, settings: Settings, name: str, db: Database) -> None:
        self.paths = paths
        self.settings = settings
        self.name = name
        self.db = db
        self.info = self._read_info()
        self.core = CoreMemory(db, settings.memory.core_limit)
        location = _index_location(settings, paths.agent_dir(name), db)
        archival_index, recall_index = _collection_names(self.info.uid, db)
        self.recall = RecallStore(db, RecallIndexSettings(
            lambda: make_embedder(settings), location, recall_index,
            settings.memory.dense_weight) if settings.memory.recall_embeddings else None)
        self.facts = FactStore(db)
        self.requests = RequestLog(db)
        self.archival = ArchivalStore(
            db, lambda: make_embedder(settings), location, archival_index, settings.memory.dense_weight,
        )

    # --- the agents there are (files in the data folder, or a PostgreSQL database's registry) ----
    @staticmethod
    def exists(paths: Paths, settings: Settings, name: str) -> bool:
        registry = _registry(settings)
        if registry is not None:
            return registry.schema(name) is not None
        return _db_path(paths, name).is_file()

    @classmethod
    def require(cls, paths: Paths, settings: Settings, name: str) -> None:
        """Raise NotFoundError, saying how to see the agents there are, unless agent `name` exists."""
        check_agent_name(name)
        if not cls.exists(paths, settings, name):
            raise NotFoundError(f"no agent named {name!r}; `memagent agents list` shows the agents there are")

    @staticmethod
    def list_agents(paths: Paths, settings: Settings) -> list[str]:
        registry = _registry(settings)
        if registry is not None:
            return registry.names()
        if not paths.agents_dir.is_dir():
            return []
        return sorted(entry.name for entry in paths.agents_dir.iterdir() if (entry / DB_FILENAME).is_file())

    @classmethod
    def open(
        cls,
        paths: Paths,
        settings: Settings,
        name: str,
        *,
        create: bool = False,
        persona: str = "",
        human: str = "",
        persona_name: str = "",
        human_name: str = "",
        language: str | None = None,
    ) -> AgentStore:
        """Open agent `name`; with `create=True` a missing agent is created from the given texts."""
        check_agent_name(name)
        if not cls.exists(paths, settings, name):
            if not create:
                cls.require(paths, settings, name)
            return cls.create(paths, settings, name, persona=persona, human=human, persona_name=persona_name,
                              human_name=human_name, language=language)
        registry = _registry(settings)
        if registry is not None:
            schema = registry.schema(name)
            if schema is None:  # deleted since
                cls.require(paths, settings, name)
            db: Database = PostgresDatabase(registry.url, str(schema), name)
        else:
            path = _db_path(paths, name)
            db = Database(path, read_only=read_only_disk(path))
        try:
            return cls(paths, settings, name, db)
        except BaseException:
            db.close()
            raise

    @classmethod
    def create(
        cls,
        paths: Paths,
        settings: Settings,
        name: str,
        *,
        persona: str,
        human: str,
        persona_name: str = "",
        human_name: str = "",
        language: str | None = None,
        extra_blocks: Mapping[str, str] | None = None,
    ) -> AgentStore:
        """A new agent with blocks `persona`, `human` (and `extra_blocks`), each limited to memory.core_limit."""
        check_agent_name(name)
        if cls.exists(paths, settings, name):
            raise MemagentError(f"agent {name!r} already exists; pick another name or delete it first")
        registry = _registry(settings)
        if registry is not None:
            return cls._create_in_database(registry, paths, settings, name, persona=persona, human=human,
                                           persona_name=persona_name, human_name=human_name, language=language,
                                           extra_blocks=extra_blocks)
        agent_dir = paths.agent_dir(name)
        agent_dir.mkdir(parents=True, exist_ok=True)
        # Built under another name and renamed when complete, so that a crash (kill -9) part way
        # never leaves an agent.db without its agent row or core blocks.
        staging = agent_dir / STAGING_FILENAME
        _remove_db_files(staging)  # what an interrupted creation left
        db = Database(staging)
        try:
            cls._fill(db, paths, settings, name, uuid.uuid4().hex, persona, human, persona_name, human_name, language,
                      extra_blocks)
            db.close()  # the last connection checkpoints the WAL into the file and removes it
            os.replace(staging, _db_path(paths, name))
            db = Database(_db_path(paths, name))
            store = cls(paths, settings, name, db)
        except BaseException:
            db.close()
            _remove_partial_agent(agent_dir)
            raise
        return store

    @classmethod
    def _fill(cls, db: Database, paths: Paths, settings: Settings, name: str, uid: str, persona: str, human: str,
              persona_name: str, human_name: str, language: str | None, extra_blocks: Mapping[str, str] | None) -> None:
        """The agent row and core blocks of a new agent, in one transaction."""
        with db.transaction() as session:
            session.add(AgentRow(id=1, uid=uid, name=name, persona=persona_name, human=human_name,
                                 language=language or settings.agent.language, created_at=utc_now(), state={}))
            session.flush()
            store = cls(paths, settings, name, db)
            for label, value in {"persona": persona, "human": human, **(extra_blocks or {})}.items():
                # A long imported character must not make the agent impossible to create: its block
                # gets room for the text plus a quarter of the usual limit to grow.
                limit = max(settings.memory.core_limit, len(value) + settings.memory.core_limit // 4)
                store.core.create(label, value, limit=limit)

    @classmethod
    def _create_in_database(cls, registry: Registry, paths: Paths, settings: Settings, name: str, *, persona: str,
                            human: str, persona_name: str, human_name: str, language: str | None,
                            extra_blocks: Mapping[str, str] | None) -> AgentStore:
        """A new schema, filled, then registered: until then no one sees the agent (as a SQLite
        agent is built under another file name); a crash leaves only an unregistered schema."""
        uid = uuid.uuid4().hex
        schema = schema_for(uid)
        try:
            db = PostgresDatabase(registry.url, schema, name)
            cls._fill(db, paths, settings, name, uid, persona, human, persona_name, human_name, language, extra_blocks)
            if not registry.add(name, schema):
                raise MemagentError(f"agent {name!r} already exists; pick another name or delete it first")
        except BaseException:
            with suppress(MemagentError):  # the server may be what failed: its error is the one to show
                registry.drop_schema(schema)
            raise
        return cls(paths, settings, name, db)

    @classmethod
    def delete(cls, paths: Paths, settings: Settings, name: str) -> None:
        """Remove the agent's folder (and its collection on a Chroma server), or its schema."""
        registry = _registry(settings)
        if registry is not None:
            cls.require(paths, settings, name)
            registry.remove(name)
            shutil.rmtree(paths.agent_dir(name), ignore_errors=True)  # input history, if any
            return
        with cls.open(paths, settings, name) as store:
            if settings.memory.chroma == "server":
                store.archival.index.wipe()
                store.recall.wipe_index()
        shutil.rmtree(paths.agent_dir(name))

    @classmethod
    def rename(cls, paths: Paths, settings: Settings, old: str, new: str) -> None:
        check_agent_name(new)
        cls.require(paths, settings, old)
        registry = _registry(settings)
        if registry is not None:
            if registry.schema(new) is not None:
                raise MemagentError(f"agent {new!r} already exists; pick another name")
            registry.rename(old, new)
            if paths.agent_dir(old).exists() and not paths.agent_dir(new).exists():
                paths.agent_dir(old).rename(paths.agent_dir(new))  # input history
            return
        if paths.agent_dir(new).exists():
            raise MemagentError(f"agent {new!r} already exists; pick another name")
        paths.agent_dir(old).rename(paths.agent_dir(new))
        with cls.open(paths, settings, new) as store, store.transaction() as session:
            session.scalars(select(AgentRow)).one().name = new

    # --- transactions and state ----------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Everything done on this store inside the block commits together (or not at all)."""
        with self.db.transaction() as session:
            yield session

    def _read_info(self) -> AgentInfo:
        with self.db.read() as session:
            row = session.scalars(select(AgentRow)).first()
            if row is None:
                raise MemagentError(f"{self.db.where} holds no agent (its creation was interrupted); delete "
                                    f"{self.db.path.parent if self.db.path else 'it'} and start the agent again")
            return AgentInfo(name=row.name, uid=row.uid, persona=row.persona, human=row.human,
                             language=row.language, created_at=row.created_at)

    def state(self) -> dict[str, Any]:
        """Free-form agent state (summary text, context window position, …); cleared with recall."""
        with self.db.read() as session:
            return dict(session.scalars(select(AgentRow)).one().state or {})

    def get_state(self, key: StateKey | str, default: Any = None) -> Any:
        return self.state().get(key, default)

    def set_state(self, key: StateKey | str, value: Any) -> None:
        with self.db.transaction() as session:
            row = session.scalars(select(AgentRow)).one()
            row.state = {**(row.state or {}), key: value}  # a new dict, so the JSON change is noticed

    # --- whole-memory operations ---------------------------------------------------------------
    def reset(self, *, core: bool = False, recall: bool = False, archival: bool = False) -> None:
        """Core goes back to the blocks' first values (undoable); recall and archival are emptied."""
        with self.transaction() as session:
            if core:
                self.core.reset()
                self.facts.delete_all()  # their lines are gone from the blocks
            if recall:
                self.recall.delete_all()
                session.scalars(select(AgentRow)).one().state = {}
            if archival:
                self.archival.delete_all()

    def export(self, path: Path) -> dict[str, int]:
        return write_export(self.db, path)

    def import_file(self, path: Path, *, archival: bool = False, progress: bool = False) -> dict[str, int]:
        """An export file (restored into this empty agent) or JSONL messages / passages (`archival`).
        The file is checked completely before anything is stored."""
        data = read_export(path)
        if data is not None:
            export = parse_export(data, str(path))
            return restore(self.db, export, self.name, after_commit=lambda: self._refresh_indexes(progress))
        # An `id` is a key: a record whose id is already stored (a file imported twice) is skipped.
        if archival:
            passages = read_passages(path, progress)
            fresh_passages = _new_ids(passages, self.archival.external_ids())
            self.archival.insert_many(fresh_passages, progress=progress)
            return _counted("passages", len(fresh_passages), len(passages) - len(fresh_passages))
        messages = read_messages(path, first_turn_id=self.recall.last_turn_id() + 1, progress=progress)
        fresh_messages = _new_ids(messages, self.recall.external_ids())
        stored = self.recall.add_many(fresh_messages, progress=progress)
        return _counted("messages", stored, len(messages) - len(fresh_messages))

    def reindex(self, progress: bool = True) -> tuple[int, int | None]:
        """Rebuild both vector indexes from SQLite: (passages, messages) indexed; messages is None
        when recall_embeddings is off."""
        return self.archival.reindex(progress), self.recall.reindex(progress)

    def _refresh_indexes(self, progress: bool) -> None:
        self.archival.refresh_index(progress)
        self.recall.refresh_index(progress)

    def stats(self) -> dict[str, Any]:
        index = self.archival.index.peek()
        return {
            "agent": self.name,
            "schema_version": self.db.schema_version,
            "blocks": [{"label": b.label, "length": b.length, "limit": b.limit} for b in self.core.list()],
            "messages": self.recall.count(),
            "conversation_messages": self.recall.count(CONVERSATION_KINDS),
            "messages_in_context": len(self.recall.in_context()),
            "last_turn_id": self.recall.last_turn_id(),
            "passages": self.archival.count(),
            "captured_facts": len(self.facts.current()),
            "index": {"location": self.archival.index.location.description, **(index or {"count": None})},
            "recall_index": self.recall.index_status(),
            "database_bytes": self.db.size_bytes(),
        }

    def close(self) -> None:
        self.recall.close()
        self.archival.close()
        self.db.close()

    def __enter__(self) -> AgentStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_Record = TypeVar("_Record", NewMessage, NewPassage)


def _new_ids(records: list[_Record], known: set[HitId]) -> list[_Record]:
    """The records whose `external_id` is not stored yet (nor earlier in the same file)."""
    fresh: list[_Record] = []
    seen = set(known)
    for record in records:
        if record.external_id is not None:
            if record.external_id in seen:
                continue
            seen.add(record.external_id)
        fresh.append(record)
    return fresh


def _counted(what: str, stored: int, skipped: int) -> dict[str, int]:
    return {what: stored, **({"skipped (id already imported)": skipped} if skipped else {})}

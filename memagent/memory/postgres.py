"""Agents in PostgreSQL: one schema per agent, a registry of agents, migrations, advisory locks.

A schema per agent keeps each agent's tables, ids and queries exactly as in its SQLite file (the
same ORM and search code run on both), makes deleting or renaming an agent one statement, and lets
many agents share one database. The registry (`memagent.agent`) maps agent names to schemas; the
text-index functions live in schema `memagent` too, and pgvector's type wherever the extension is.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from ..errors import AgentBusyError, MemagentError
from .db import Database, StorageError
from .migrations import POSTGRES_MIGRATIONS, POSTGRES_SETUP, SCHEMA_VERSION

log = logging.getLogger(__name__)

REGISTRY_SCHEMA = "memagent"
LOCK_POLL_SECONDS = 0.05
POOL_SIZE = 4  # per process and database; agents share it (a turn holds one connection at a time)
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+", "postgres:"))


def _driver_url(url: str) -> str:
    """The URL for SQLAlchemy with psycopg (3): `postgresql://…` as users write it."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def safe_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    try:
        return make_url(_driver_url(url)).render_as_string(hide_password=True).replace("+psycopg", "")
    except ArgumentError:
        return "<unreadable URL>"


def server_error(url: str, exc: BaseException) -> StorageError | None:
    """One clear line for a failure of the server or the connection (not of the code), or None."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if isinstance(exc, (OperationalError, InterfaceError)):
        return StorageError(f"cannot use PostgreSQL at {safe_url(url)} ({first}); check that the server runs and "
                            "that [storage] url (or MEMAGENT_DATABASE_URL) is right — what was stored is intact")
    if "permission denied" in first or "must be owner" in first:
        return StorageError(f"PostgreSQL at {safe_url(url)} refused ({first}); give the user of [storage] url the "
                            "right to create schemas (or run `CREATE EXTENSION vector` once as a superuser)")
    return None


def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per database URL in this process, shared by its agents."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            try:
                engine = create_engine(_driver_url(url), pool_size=POOL_SIZE, max_overflow=POOL_SIZE * 2,
                                       pool_pre_ping=True)
            except (ArgumentError, ImportError) as exc:
                raise MemagentError(f"[storage] url {safe_url(url)} cannot be used ({exc}); write it as "
                                    "postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
            event.listen(engine, "connect", _without_nul)
            event.listen(engine, "begin", _begin)
            _set_up(url, engine)
            _ENGINES[url] = engine
        return engine


def lock_engine_for(url: str) -> Engine:
    """Connections for advisory locks, outside the shared pool: a held lock keeps its connection for
    a whole turn, and a connection closed ends the lock (no pool may keep it alive)."""
    with _ENGINES_LOCK:
        key = "lock " + url
        if key not in _ENGINES:
            _ENGINES[key] = create_engine(_driver_url(url), poolclass=NullPool)
        return _ENGINES[key]


def dispose_engines(url: str | None = None) -> None:
    """Close the connections of `url`'s engines (every engine's when None)."""
    with _ENGINES_LOCK:
        for key in [url, "lock " + url] if url is not None else list(_ENGINES):
            engine = _ENGINES.pop(key, None)
            if engine is not None:
                engine.dispose()


class _NulFreeText(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace("\x00", ""))


class _NulFreeBinary(StrBinaryDumper):
    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace("\x00", ""))


def _without_nul(dbapi_connection: Any, _record: Any) -> None:
    """PostgreSQL text cannot hold NUL characters (SQLite can): they are dropped from every string
    sent, so a pasted binary fragment is stored and searched without them instead of failing."""
    dbapi_connection.adapters.register_dumper(str, _NulFreeBinary)
    dbapi_connection.adapters.register_dumper(str, _NulFreeText)  # last: the one used by default, as before


def _begin(connection: Connection) -> None:
    # Each agent's work runs with its schema first on the search path, for this transaction only.
    schema = connection.get_execution_options().get("memagent_schema")
    if schema:
        connection.exec_driver_sql(f'SET LOCAL search_path TO "{schema}", {REGISTRY_SCHEMA}, public')


def _set_up(url: str, engine: Engine) -> None:
    """The registry, the text-index functions and the vector extension (idempotent; one process at a time)."""
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("memagent setup")})
            for statement in POSTGRES_SETUP:
                connection.exec_driver_sql(statement)
    except DatabaseError as exc:
        engine.dispose()
        raise server_error(url, exc) or MemagentError(
            f"PostgreSQL at {safe_url(url)} could not be prepared ({getattr(exc, 'orig', exc)})") from None


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def schema_for(uid: str) -> str:
    return f"agent_{uid}"


class PostgresDatabase(Database):
    """One agent's schema in a PostgreSQL database, with the same interface as its SQLite file."""

    dialect = "postgresql"

    def __init__(self, url: str, schema: str, agent_name: str) -> None:
        self.url = url
        self.schema = schema
        self.agent_name = agent_name
        self.path = None  # type: ignore[assignment]  # no file: `where` names it
        self.read_only = False
        shared = engine_for(url)
        self.engine: Engine = shared.execution_options(memagent_schema=schema)
        self._write_engine = self.engine
        self._local = threading.local()
        self._migrate()

    @property
    def where(self) -> str:
        return f"agent {self.agent_name!r} in {safe_url(self.url)}"

    def storage_error(self, exc: BaseException) -> StorageError | None:
        return server_error(self.url, exc)

    def _migrate(self) -> None:
        try:
            with self.engine.connect() as connection, connection.begin():
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(self.schema)})
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                version = connection.exec_driver_sql("SELECT max(version) FROM schema_version").scalar() or 0
                if version > SCHEMA_VERSION:
                    raise MemagentError(f"{self.where} was written by a newer memagent (schema {version}, this one "
                                        f"knows {SCHEMA_VERSION}); upgrade memagent")
                for migration in POSTGRES_MIGRATIONS[version:]:
                    migration(connection)
                if version != SCHEMA_VERSION:
                    connection.exec_driver_sql("DELETE FROM schema_version")
                    connection.exec_driver_sql(f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION})")
        except DatabaseError as exc:
            raise self.storage_error(exc) or MemagentError(
                f"{self.where}: cannot open the memory database ({getattr(exc, 'orig', exc)})") from None

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT max(version) FROM schema_version").scalar() or 0)

    def size_bytes(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relkind = 'r'"),
                {"schema": self.schema}).scalar_one())

    def ids_restored(self, connection: Connection, tables: tuple[str, ...]) -> None:
        for table in tables:
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}")

    def close(self) -> None:
        pass  # the engine is shared by every agent of this URL (dispose_engines closes it)


# --- the registry of agents -------------------------------------------------------------------
class Registry:
    """The agents in one PostgreSQL database: name → schema."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, work: Callable[[Connection], Any]) -> Any:
        try:
            with engine_for(self.url).begin() as connection:
                return work(connection)
        except DatabaseError as exc:
            raise server_error(self.url, exc) or MemagentError(
                f"PostgreSQL at {safe_url(self.url)}: {getattr(exc, 'orig', exc)}") from None

    def schema(self, name: str) -> str | None:
        return self._run(lambda c: c.execute(text(f"SELECT schema_name FROM {REGISTRY_SCHEMA}.agent WHERE name = :name"),
                                             {"name": name}).scalar())

    def names(self) -> list[str]:
        return self._run(lambda c: sorted(c.execute(text(f"SELECT name FROM {REGISTRY_SCHEMA}.agent")).scalars()))

    def add(self, name: str, schema: str) -> bool:
        """Register `name`; False when it is taken."""
        return bool(self._run(lambda c: c.execute(text(
            f"INSERT INTO {REGISTRY_SCHEMA}.agent (name, schema_name) VALUES (:name, :schema) "
            "ON CONFLICT (name) DO NOTHING"), {"name": name, "schema": schema}).rowcount))

    def rename(self, old: str, new: str) -> None:
        def work(connection: Connection) -> None:
            connection.execute(text(f"UPDATE {REGISTRY_SCHEMA}.agent SET name = :new WHERE name = :old"),
                               {"old": old, "new": new})
            schema = connection.execute(text(f"SELECT schema_name FROM {REGISTRY_SCHEMA}.agent WHERE name = :new"),
                                        {"new": new}).scalar_one()
            connection.execute(text(f'UPDATE "{schema}".agent SET name = :new'), {"new": new})
        self._run(work)

    def drop_schema(self, schema: str) -> None:
        self._run(lambda c: c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def remove(self, name: str) -> None:
        """Drop the agent's schema (its tables, indexes and vectors) and its registry row, at once."""
        def work(connection: Connection) -> None:
            schema = connection.execute(text(f"DELETE FROM {REGISTRY_SCHEMA}.agent WHERE name = :name "
                                             "RETURNING schema_name"), {"name": name}).scalar()
            if schema is not None:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._run(work)


class AdvisoryLock:
    """One turn-taker per agent across processes and machines: a session-level advisory lock held
    on its own connection. The server drops it when that connection ends (a crash, kill -9)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._connection: Connection | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, trying for up to `wait` seconds (AgentBusyError after). Between tries no
        connection is held: waiting turns must not use up the connections the running ones need."""
        key = {"key": _lock_key("agent " + self.name)}
        deadline = time.monotonic() + wait
        while True:
            try:
                connection = lock_engine_for(self.url).connect()
                locked = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar())
                connection.commit()
            except DatabaseError as exc:
                raise server_error(self.url, exc) or MemagentError(str(exc)) from None
            if locked:
                self._connection = connection
                return
            connection.close()
            if time.monotonic() >= deadline:
                raise AgentBusyError(f"agent {self.name!r} is in use by another memagent process; close that chat first")
            time.sleep(LOCK_POLL_SECONDS)

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key("agent " + self.name)})
                self._connection.commit()
            except DatabaseError as exc:  # the connection is gone, and the lock with it
                log.debug("advisory unlock: %s", exc)
            finally:
                self._connection.close()
                self._connection = None

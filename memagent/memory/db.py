"""The per-agent SQLite database: engine, connection settings, migrations and transactions."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from ..errors import MemagentError
from .fts import FOLD_FUNCTION, SHORT_TOKENS_FUNCTION, fold, short_tokens
from .migrations import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

DB_FILENAME = "agent.db"
BUSY_TIMEOUT_MS = 10_000
# Below this much free space an I/O error while writing is reported as a full disk.
LOW_SPACE_BYTES = 1 << 20


class StorageError(MemagentError):
    """The database file could not be read or written (full disk, read-only, locked, damaged)."""

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged  # the file itself is bad, rather than the disk or another program


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def storage_error(path: Path, exc: BaseException) -> StorageError | None:
    """One clear line for a SQLite failure caused by the machine rather than the code, or None
    (a programming error, which should keep its traceback)."""
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = detail.lower()
    free = _free_bytes(path.parent)
    if "disk is full" in text or (("disk i/o error" in text or "unable to open" in text) and free is not None
                                  and free < LOW_SPACE_BYTES):
        return StorageError(f"the disk is full ({path.parent}: {detail}); free some space and try again "
                            "— what was already stored is intact")
    if "readonly" in text or "read-only" in text or (
            ("disk i/o error" in text or "unable to open" in text) and not os.access(path.parent, os.W_OK)):
        return StorageError(f"{path} cannot be written ({detail}); check that {path.parent} is on a writable disk "
                            "and that you may write to it")
    if "locked" in text or "busy" in text:
        return StorageError(f"{path} stayed locked by another program for {BUSY_TIMEOUT_MS / 1000:g}s ({detail}); "
                            "close it and try again")
    if "malformed" in text or "not a database" in text or "disk i/o error" in text or "unable to open" in text:
        return StorageError(f"{path}: cannot use the memory database ({detail}); check the disk, or move the "
                            "file aside and restore the agent from an export (memagent memory import --create)",
                            damaged=True)
    return None


def _configure_connection(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event own transaction start (pysqlite's implicit BEGIN is unreliable).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; WAL keeps it consistent
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
    _add_functions(dbapi_connection)


def _configure_read_only(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    _add_functions(dbapi_connection)


def _add_functions(dbapi_connection: sqlite3.Connection) -> None:
    # The index triggers call them (migrations _V4, _V5).
    dbapi_connection.create_function(SHORT_TOKENS_FUNCTION, 1, short_tokens, deterministic=True)
    dbapi_connection.create_function(FOLD_FUNCTION, 1, fold, deterministic=True)


def read_only_disk(path: Path) -> bool:
    """True when the folder of `path` cannot be written (a read-only mount, a backup medium)."""
    return not os.access(path.parent, os.W_OK)


def _shared_memory_file(path: Path) -> Path:
    return path.with_name(path.name + "-shm")


def _begin(connection: Any) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get("memagent_begin", "BEGIN"))


@contextmanager
def trigger_suspended(connection: Connection, name: str) -> Iterator[None]:
    """Drop trigger `name` and put it back (same SQL) afterwards, inside the caller's transaction.
    Bulk operations use this to maintain the FTS index in one statement instead of row by row."""
    sql = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)
    ).scalar_one()
    connection.exec_driver_sql(f"DROP TRIGGER {name}")
    yield
    connection.exec_driver_sql(sql)


class Database:
    """One agent's database. `transaction()` nests: inner blocks join the outermost one, so an agent
    step that adds messages and edits memory commits once, or not at all."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """`read_only`: for a database on a disk that cannot be written; reading works, and any
        transaction fails with one line saying the disk is read-only."""
        self.path = path
        self.read_only = read_only
        if read_only:
            # A WAL database opens read-only when its -shm file exists; on a read-only disk it may
            # not (a clean close removes it), and then only as immutable, which is what such a disk is.
            uri = f"file:{quote(str(path))}?mode=ro" + ("" if _shared_memory_file(path).exists() else "&immutable=1")
            self.engine: Engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
                uri, uri=True, check_same_thread=False))
            event.listen(self.engine, "connect", _configure_read_only)
        else:
            self.engine = create_engine(f"sqlite:///{path}")
            event.listen(self.engine, "connect", _configure_connection)
        event.listen(self.engine, "begin", _begin)
        # Writers take the lock up front so a read-then-write never fails half way with SQLITE_BUSY.
        self._write_engine = self.engine.execution_options(memagent_begin="BEGIN IMMEDIATE")
        self._local = threading.local()
        if read_only:
            log.warning("%s is on a read-only disk: memory can be read and searched by words, not changed", path)
            self._check_version()
        else:
            self._migrate()

    @property
    def where(self) -> str:
        """Where this agent's memory lives, for messages."""
        return str(self.path)

    def storage_error(self, exc: BaseException) -> StorageError | None:
        """One clear line for a failure of the machine or the database server, or None."""
        return storage_error(self.path, exc)

    def _migrate(self) -> None:
        try:
            with self._write_engine.connect() as connection, connection.begin():
                version = int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())
                if version > SCHEMA_VERSION:
                    raise MemagentError(
                        f"{self.path} was written by a newer memagent (schema {version}, this one knows "
                        f"{SCHEMA_VERSION}); upgrade memagent"
                    )
                for migration in MIGRATIONS[version:]:
                    migration(connection)
                if version != SCHEMA_VERSION:
                    connection.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            mapped = storage_error(self.path, exc)
            raise mapped or MemagentError(f"{self.path}: cannot open the memory database ({getattr(exc, 'orig', exc)})") from None

    def _check_version(self) -> None:
        try:
            version = self.schema_version
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            mapped = storage_error(self.path, exc)
            raise mapped or MemagentError(f"{self.path}: cannot open the memory database ({getattr(exc, 'orig', exc)})") from None
        if version > SCHEMA_VERSION:
            raise MemagentError(f"{self.path} was written by a newer memagent (schema {version}, this one knows "
                                f"{SCHEMA_VERSION}); upgrade memagent")
        if version < SCHEMA_VERSION:
            raise MemagentError(f"{self.path} is on a read-only disk and has schema {version}, this memagent "
                                f"reads {SCHEMA_VERSION}; open it once where it can be written to upgrade it")

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "session", None) is not None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        active: Session | None = getattr(self._local, "session", None)
        if active is not None:
            yield active
            return
        session = Session(self._write_engine, expire_on_commit=False)
        self._local.session = session
        self._local.after_commit = []
        try:
            with session.begin():
                yield session
            callbacks: list[Callable[[], None]] = self._local.after_commit
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            mapped = self.storage_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            self._local.session = None
            self._local.after_commit = []
            session.close()
        for callback in callbacks:
            callback()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading: the open transaction's, if any, so reads see its uncommitted writes."""
        active: Session | None = getattr(self._local, "session", None)
        if active is not None:
            yield active
            return
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            mapped = self.storage_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def size_bytes(self) -> int:
        """What the agent's memory takes on disk (its file and write-ahead log)."""
        files = [self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))]
        return sum(f.stat().st_size for f in files if f.exists())

    def ids_restored(self, connection: Connection, tables: tuple[str, ...]) -> None:
        """Rows were inserted with their own ids (a restore): new ids must continue above them.
        SQLite's AUTOINCREMENT does so by itself."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the current transaction commits (now, if none is open); dropped on rollback."""
        if self.in_transaction:
            self._local.after_commit.append(callback)
        else:
            callback()

    def close(self) -> None:
        self.engine.dispose()


def rows_affected(result: Result[Any]) -> int:
    """How many rows a DELETE/UPDATE touched (the result is a CursorResult; SQLAlchemy types it as Result)."""
    return cast("CursorResult[Any]", result).rowcount

"""The per-agent database: schema versioning, connection settings, transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from memagent.errors import MemagentError
from memagent.memory.db import Database
from memagent.memory.migrations import SCHEMA_VERSION
from memagent.memory.models import Base, MessageRow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "agent.db")
    yield database
    database.close()


def test_schema_version_is_recorded_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    Database(path).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    reopened = Database(path)  # a second open must not try to create the tables again
    assert reopened.schema_version == SCHEMA_VERSION
    reopened.close()


def test_database_from_a_newer_memagent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    Database(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(MemagentError, match="newer memagent"):
        Database(path)


def test_wal_foreign_keys_and_busy_timeout(db: Database) -> None:
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_models_match_the_migrated_schema(db: Database) -> None:
    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        migrated = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated == {column.name for column in table.columns}, table.name


def _message(text: str) -> MessageRow:
    from memagent.memory.models import utc_now

    return MessageRow(turn_id=1, role="user", kind="user_message", content=text, time=utc_now())


def test_nested_transactions_commit_once_and_roll_back_together(db: Database) -> None:
    committed: list[str] = []
    with pytest.raises(RuntimeError):
        with db.transaction() as outer:
            outer.add(_message("one"))
            db.after_commit(lambda: committed.append("one"))
            with db.transaction() as inner:
                assert inner is outer
                inner.add(_message("two"))
            raise RuntimeError("the step failed")
    with db.read() as session:
        assert session.scalars(select(MessageRow)).all() == []
    assert committed == []  # after-commit work is dropped on rollback

    with db.transaction() as session:
        session.add(_message("three"))
        db.after_commit(lambda: committed.append("three"))
        assert committed == []
    assert committed == ["three"]


def test_reads_inside_a_transaction_see_its_writes(db: Database) -> None:
    with db.transaction() as session:
        session.add(_message("pending"))
        session.flush()
        with db.read() as reader:
            assert [m.content for m in reader.scalars(select(MessageRow))] == ["pending"]


def test_a_version_1_database_is_migrated_and_uses_the_in_context_index(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from memagent.memory.migrations import MIGRATIONS

    path = tmp_path / "agent.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        MIGRATIONS[0](connection)
        connection.exec_driver_sql("PRAGMA user_version = 1")
    engine.dispose()
    database = Database(path)
    assert database.schema_version == SCHEMA_VERSION >= 2
    with database.engine.connect() as connection:
        plan = " ".join(str(row) for row in connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM message WHERE message.in_context = 1 ORDER BY message.id"))
    database.close()
    assert "ix_message_in_context" in plan


def test_a_version_4_database_is_reindexed_width_folded(tmp_path: Path) -> None:
    """Made before the trigram indexes read NFKC-folded text: once opened, ＡＢＣ is found by ABC,
    and the delete trigger gives the index back what it was given."""
    from sqlalchemy import create_engine, event

    from memagent.memory.fts import SHORT_TOKENS_FUNCTION, short_tokens
    from memagent.memory.migrations import MIGRATIONS

    path = tmp_path / "agent.db"
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda connection, _: connection.create_function(
        SHORT_TOKENS_FUNCTION, 1, short_tokens, deterministic=True))
    with engine.begin() as connection:
        for migrate in MIGRATIONS[:4]:
            migrate(connection)
        connection.exec_driver_sql(
            "INSERT INTO message (turn_id, role, kind, content, time) VALUES "
            "(1, 'user', 'user_message', 'ＡＢＣ商事で働いてるよ', '2025-01-02T03:04:05.000000')")
        connection.exec_driver_sql("INSERT INTO passage (text, time) VALUES ('ｶﾀｶﾅの看板', '2025-01-02T03:04:05.000000')")
        connection.exec_driver_sql("PRAGMA user_version = 4")
    engine.dispose()
    database = Database(path)
    assert database.schema_version == SCHEMA_VERSION >= 5

    def found(table: str, query: str) -> list[int]:
        with database.engine.connect() as connection:
            return [row[0] for row in connection.exec_driver_sql(
                f"SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ?", (f'"{query}"',))]

    assert found("message", "ABC商事") == [1] and found("passage", "カタカナ") == [1]
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM message")
        connection.exec_driver_sql("DELETE FROM passage")
        integrity = "INSERT INTO {0}_fts({0}_fts) VALUES ('integrity-check')"
        connection.exec_driver_sql(integrity.format("message"))
        connection.exec_driver_sql(integrity.format("passage"))
    assert found("message", "ABC商事") == [] and found("passage", "カタカナ") == []
    database.close()

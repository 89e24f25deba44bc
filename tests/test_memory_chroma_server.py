"""The archival index in a real Chroma server (`chroma run`), as `memory.chroma = server` uses it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from memagent.config import MemorySettings, Settings
from memagent.errors import MemagentError
from memagent.memory import AgentStore
from memagent.memory.archival import NewPassage
from memagent.paths import Paths

from .memory_support import free_port, ja_facts

CHROMA = Path(sys.executable).with_name("chroma")


def _wait_for_heartbeat(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("chroma server did not answer its heartbeat")


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    executable = CHROMA if CHROMA.exists() else shutil.which("chroma")
    if executable is None:
        pytest.fail("the chroma CLI is missing; it is installed with the chromadb package")
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    process = subprocess.Popen([str(executable), "run", "--path", str(folder), "--port", str(port), "--host", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_heartbeat(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _server_settings(port: int) -> Settings:
    return Settings(memory=MemorySettings(chroma="server", chroma_host="127.0.0.1", chroma_port=port))


def test_archival_search_through_a_chroma_server(paths: Paths, chroma_port: int) -> None:
    settings = _server_settings(chroma_port)
    facts = ja_facts()[:12]
    with AgentStore.create(paths, settings, "remote", persona="p", human="h") as store:
        store.archival.insert_many(NewPassage(r["text"], external_id=r["id"]) for r in facts)
        assert store.archival.search("くろまめ").hits[0].id == "f02"
        assert store.archival.index.count() == len(facts)
        assert not (paths.agent_dir("remote") / "chroma").exists()  # nothing local

    AgentStore.rename(paths, settings, "remote", "renamed")  # the collection is named by uid, not by name
    with AgentStore.open(paths, settings, "renamed") as store:
        assert store.archival.search("くろまめ").hits[0].id == "f02"
        assert store.archival.sync() == 0
        collection = store.archival.index.name

    AgentStore.delete(paths, settings, "renamed")
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_port)
    assert collection not in [c.name for c in client.list_collections()]


def test_server_collection_dropped_is_rebuilt(paths: Paths, chroma_port: int) -> None:
    settings = _server_settings(chroma_port)
    with AgentStore.create(paths, settings, "dropped", persona="p", human="h") as store:
        store.archival.insert_many(NewPassage(r["text"], external_id=r["id"]) for r in ja_facts()[:5])
        name = store.archival.index.name
    import chromadb

    chromadb.HttpClient(host="127.0.0.1", port=chroma_port).delete_collection(name)
    with AgentStore.open(paths, settings, "dropped") as store:
        assert store.archival.search("くろまめ").hits[0].id == "f02"


def test_unreachable_server_is_one_clear_error(paths: Paths) -> None:
    settings = _server_settings(free_port())
    with AgentStore.create(paths, settings, "offline", persona="p", human="h") as store:
        store.archival.insert("まだ索引されない記憶")  # stored; indexing waits for the server
        assert store.archival.count() == 1
        with pytest.raises(MemagentError, match="Chroma server"):
            store.archival.search("記憶")

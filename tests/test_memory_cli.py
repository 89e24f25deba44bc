"""`memagent agents …` and `memagent memory …` through the real entry point (one-line errors)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from memagent.paths import Paths

from .memory_support import make_store, run_cli, write_jsonl

CONVERSATION = [
    {"role": "user", "content": "来週の土曜日は私の誕生日なんだ", "time": "2024-03-07T20:00:00+09:00", "id": "m-1"},
    {"role": "assistant", "content": "誕生日おめでとう！何をするの？", "time": "2024-03-07T20:00:05+09:00", "id": 2},
    {"role": "user", "content": "家族でケーキを食べるよ", "time": "2024-03-07T20:01:00+09:00"},
]
PASSAGES = [
    {"text": "ユーザーの誕生日は3月16日", "id": "p-1"},
    {"text": "ユーザーは黒猫のくろまめを飼っている", "id": "p-2", "time": "2024-01-01T00:00:00Z"},
    {"text": "ユーザーはコーヒーが苦手で緑茶派"},
]


run = run_cli


@pytest.fixture
def agent(paths: Paths) -> str:
    make_store(paths, name="sakura").close()
    return "sakura"


def test_search_contract_recall_and_archival(capsys: pytest.CaptureFixture[str], agent: str, tmp_path: Path) -> None:
    conversation = write_jsonl(tmp_path / "conv.jsonl", CONVERSATION)
    assert run(capsys, "memory", "import", "--agent", agent, str(conversation))[0] == 0
    code, out, _ = run(capsys, "memory", "search", "--agent", agent, "--recall", "--literal", "誕生日", "--json")
    hits = json.loads(out)
    assert code == 0 and [h["id"] for h in hits] == [2, "m-1"]
    assert all({"id", "text", "time", "score"} <= set(h) for h in hits)
    assert hits[1]["text"] == CONVERSATION[0]["content"]

    passages = write_jsonl(tmp_path / "passages.jsonl", PASSAGES)
    code, out, _ = run(capsys, "memory", "import", "--agent", agent, "--archival", str(passages))
    assert code == 0 and "3 passages" in out
    code, out, _ = run(capsys, "memory", "search", "--agent", agent, "--archival", "猫の名前", "--limit", "1", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 1 and hits[0]["id"] == "p-2"
    assert set(hits[0]) == {"id", "text", "time", "score"}

    code, out, _ = run(capsys, "memory", "search", "--agent", agent, "--literal", "誕生日")  # text output, recall default
    assert code == 0 and "2 hits; page 1 of 1" in out


def test_literal_query_and_date_range(capsys: pytest.CaptureFixture[str], agent: str, tmp_path: Path) -> None:
    run(capsys, "memory", "import", "--agent", agent, str(write_jsonl(tmp_path / "c.jsonl", CONVERSATION)))
    code, out, _ = run(capsys, "memory", "search", "--agent", agent, "--literal", 'NEAR("a" b) AND *', "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "memory", "search", "--agent", agent, "--start", "2024-03-07", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_bad_jsonl_line_is_one_line_and_imports_nothing(
    capsys: pytest.CaptureFixture[str], agent: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CONVERSATION[0]) + "\n" + '{"role": "user", "content": "x", "time": "soon"}\n',
                    encoding="utf-8")
    code, out, err = run(capsys, "memory", "import", "--agent", agent, str(path))
    assert code == 1 and err.count("\n") == 1 and f"{path}:2:" in err and "Traceback" not in err
    assert json.loads(run(capsys, "memory", "stats", "--agent", agent, "--json")[1])["messages"] == 0


@pytest.mark.parametrize("command", [
    ["memory", "show"], ["memory", "search", "x"], ["memory", "stats"], ["memory", "reindex"],
    ["memory", "undo", "--block", "human"], ["memory", "export", "out.json"], ["memory", "reset", "--yes"],
    ["memory", "insert", "text"],
])
def test_missing_agent_is_one_clear_line(capsys: pytest.CaptureFixture[str], home: Path, command: list[str]) -> None:
    code, _, err = run(capsys, *command, "--agent", "ghost")
    assert code == 1 and err.strip() == "error: no agent named 'ghost'; `memagent agents list` shows the agents there are"
    assert not (home / "data" / "agents" / "ghost").exists()


def test_agents_commands(capsys: pytest.CaptureFixture[str], agent: str) -> None:
    code, out, _ = run(capsys, "agents", "list", "--json")
    assert code == 0 and [a["name"] for a in json.loads(out)] == ["sakura"]
    code, out, _ = run(capsys, "agents", "show", "sakura", "--json")
    assert code == 0 and json.loads(out)["blocks"][0]["label"] == "persona"
    assert run(capsys, "agents", "rename", "sakura", "hana")[0] == 0
    assert "hana" in run(capsys, "agents", "list")[1]
    code, _, err = run(capsys, "agents", "rename", "hana", "../x")
    assert code == 1 and "not allowed" in err
    code, _, err = run(capsys, "agents", "delete", "hana")
    assert code == 1 and "--yes" in err  # no terminal to confirm on
    assert run(capsys, "agents", "delete", "hana", "--yes")[0] == 0
    assert "no agents yet" in run(capsys, "agents", "list")[1]


def test_show_insert_undo_reset(capsys: pytest.CaptureFixture[str], agent: str, paths: Paths, tmp_path: Path) -> None:
    from memagent.config import Settings
    from memagent.memory import AgentStore

    with AgentStore.open(paths, Settings(), agent) as store:
        store.core.append("human", "誕生日: 3月16日", turn_id=1)
        store.set_state("summary", "誕生日の話")
    data = json.loads(run(capsys, "memory", "show", "--agent", agent, "--json", "--history", "--messages", "5")[1])
    assert data["summary"] == "誕生日の話" and "3月16日" in data["blocks"][1]["value"]
    assert data["history"][0]["reason"] == "append"

    code, out, _ = run(capsys, "memory", "insert", "--agent", agent, "ユーザーの好物はチーズケーキ")
    assert code == 0 and "inserted passage" in out
    hits = json.loads(run(capsys, "memory", "search", "--agent", agent, "--archival", "好物", "--json")[1])
    assert hits[0]["text"] == "ユーザーの好物はチーズケーキ"

    code, out, _ = run(capsys, "memory", "undo", "--agent", agent, "--block", "human", "--json")
    assert code == 0 and json.loads(out)["value"] == "名前: 不明"
    code, _, err = run(capsys, "memory", "undo", "--agent", agent, "--block", "nope")
    assert code == 1 and "no memory block 'nope'" in err

    code, _, err = run(capsys, "memory", "reset", "--agent", agent, "--archival")
    assert code == 1 and "--yes" in err
    assert run(capsys, "memory", "reset", "--agent", agent, "--archival", "--yes")[0] == 0
    assert json.loads(run(capsys, "memory", "stats", "--agent", agent, "--json")[1])["passages"] == 0
    assert run(capsys, "memory", "reindex", "--agent", agent)[1].strip() == "indexed 0 passages and 0 messages"


def test_export_import_round_trip_and_create(capsys: pytest.CaptureFixture[str], agent: str, tmp_path: Path) -> None:
    run(capsys, "memory", "import", "--agent", agent, str(write_jsonl(tmp_path / "c.jsonl", CONVERSATION)))
    run(capsys, "memory", "import", "--agent", agent, "--archival", str(write_jsonl(tmp_path / "p.jsonl", PASSAGES)))
    backup = tmp_path / "backup.json"
    code, out, _ = run(capsys, "memory", "export", "--agent", agent, str(backup))
    assert code == 0 and "3 messages, 3 passages" in out
    assert run(capsys, "memory", "reset", "--agent", agent, "--yes")[0] == 0
    assert run(capsys, "memory", "import", "--agent", agent, str(backup))[0] == 0
    hits = json.loads(run(capsys, "memory", "search", "--agent", agent, "--archival", "くろまめ", "--json")[1])
    assert hits[0]["id"] == "p-2"

    code, _, err = run(capsys, "memory", "import", "--agent", "restored", str(backup))
    assert code == 1 and "no agent named 'restored'" in err and "`memagent agents create restored`" in err
    assert len(err.strip().splitlines()) == 1
    assert run(capsys, "memory", "import", "--agent", "restored", "--create", str(backup))[0] == 0
    hits = json.loads(run(capsys, "memory", "search", "--agent", "restored", "--literal", "誕生日", "--json")[1])
    assert [h["id"] for h in hits] == [2, "m-1"]


def test_edit_block_with_editor(
    capsys: pytest.CaptureFixture[str], agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "editor.py"
    script.write_text("import pathlib, sys\np = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(p.read_text(encoding='utf-8') + '好きな色: 青\\n', encoding='utf-8')\n",
                      encoding="utf-8")
    monkeypatch.setenv("EDITOR", f'"{sys.executable}" "{script}"')
    code, out, _ = run(capsys, "memory", "edit", "--agent", agent, "--block", "human")
    assert code == 0 and "saved" in out
    value = json.loads(run(capsys, "memory", "show", "--agent", agent, "--json")[1])["blocks"][1]["value"]
    assert value == "名前: 不明\n好きな色: 青"
    assert run(capsys, "memory", "edit", "--agent", agent, "--summary")[0] == 0
    assert json.loads(run(capsys, "memory", "show", "--agent", agent, "--json")[1])["summary"].endswith("好きな色: 青")
    code, _, err = run(capsys, "memory", "edit", "--agent", agent)
    assert code == 1 and "--block LABEL or --summary" in err


def test_agents_create_then_import_then_list(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "agents", "create", "diary", "--persona", "sam")
    assert code == 0, err
    assert "created agent diary (persona sam, human default-en, language en)" in out
    code, _, err = run(capsys, "agents", "create", "diary")
    assert code == 1 and err.strip() == "error: agent 'diary' already exists; pick another name or delete it first"
    code, _, err = run(capsys, "agents", "create", "other", "--persona", "nobody")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "nobody" in err and "Traceback" not in err
    conversation = write_jsonl(tmp_path / "conv.jsonl", CONVERSATION)
    assert run(capsys, "memory", "import", "--agent", "diary", str(conversation))[0] == 0
    listed = json.loads(run(capsys, "agents", "list", "--json")[1])
    assert [(a["name"], a["persona"], a["language"], a["messages"]) for a in listed] == [
        ("diary", "sam", "en", len(CONVERSATION))]

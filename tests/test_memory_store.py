"""AgentStore: agents on disk, one-transaction steps, export → reset → import, reset parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memagent.errors import MemagentError, NotFoundError
from memagent.memory import AgentStore
from memagent.memory.backup import export_data
from memagent.memory.jsonl import ImportFileError
from memagent.paths import Paths

from .memory_support import make_store, store_settings

pytestmark = pytest.mark.usefixtures("storage")  # the storage contract: SQLite and PostgreSQL


def _fill(store: AgentStore) -> None:
    with store.transaction():
        store.recall.add("user", "私の誕生日は3月14日です", kind="user_message", turn_id=1)
        store.recall.add("assistant", "覚えておくね！", kind="assistant_call", turn_id=1,
                         function_name="send_message", function_args={"message": "覚えておくね！"},
                         inner_thoughts="誕生日を保存しよう", token_count=12)
        store.recall.add("function", '{"status": "OK"}', kind="function_result", turn_id=1, in_context=False)
        store.core.append("human", "誕生日: 3月14日", turn_id=1)
        store.archival.insert("ユーザーの誕生日は3月14日", external_id="fact-1")
        store.archival.insert("ユーザーは猫を飼っている", external_id=7)
        store.set_state("summary", "誕生日の話をした")
    store.core.replace("human", "3月14日", "3/14", turn_id=2)
    store.core.undo("human")


def test_create_open_list_and_missing(paths: Paths) -> None:
    with make_store(paths, name="さくら") as store:
        assert store.info.name == "さくら" and store.info.language == "ja"
    assert AgentStore.list_agents(paths, store_settings()) == ["さくら"]
    assert AgentStore.exists(paths, store_settings(), "さくら") and not AgentStore.exists(paths, store_settings(), "other")
    with pytest.raises(NotFoundError, match="no agent named 'other'"):
        AgentStore.open(paths, store_settings(), "other")
    with pytest.raises(MemagentError, match="already exists"):
        make_store(paths, name="さくら")
    for bad in ["../escape", "a/b", ".hidden", "", "x" * 65]:
        with pytest.raises(MemagentError, match="not allowed"):
            AgentStore.open(paths, store_settings(), bad, create=True)


def test_failed_creation_leaves_nothing_behind(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from memagent.memory.core import CoreMemory

    real_create = CoreMemory.create

    def failing_create(self, label, value="", limit=None):  # the second block cannot be written
        if label == "human":
            raise MemagentError("simulated failure while writing the human block")
        return real_create(self, label, value, limit)

    monkeypatch.setattr(CoreMemory, "create", failing_create)
    with pytest.raises(MemagentError, match="simulated failure"):
        AgentStore.create(paths, store_settings(), "broken", persona="P", human="h")
    assert not paths.agent_dir("broken").exists() and AgentStore.list_agents(paths, store_settings()) == []


def test_a_long_persona_gets_a_block_that_fits(paths: Paths) -> None:
    with AgentStore.create(paths, store_settings(), "long", persona="あ" * 5000, human="h") as store:
        block = store.core.get("persona")
        assert block.length == 5000 and block.limit > 5000


def test_open_with_create(paths: Paths) -> None:
    with AgentStore.open(paths, store_settings(), "new", create=True, persona="P", human="H", persona_name="sakura") as store:
        assert store.core.get("persona").value == "P" and store.info.persona == "sakura"
    with AgentStore.open(paths, store_settings(), "new", create=True, persona="ignored") as again:
        assert again.core.get("persona").value == "P"


def test_a_failed_step_stores_nothing(paths: Paths) -> None:
    with make_store(paths) as store:
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.recall.add("user", "消えるはずのメッセージ", kind="user_message", turn_id=1)
                store.core.append("human", "消えるはずのメモ", turn_id=1)
                store.set_state("summary", "x")
                raise RuntimeError("model crashed mid-step")
        assert store.recall.count() == 0
        assert "消える" not in store.core.get("human").value
        assert store.state() == {}


def test_export_reset_import_round_trip(paths: Paths, tmp_path: Path) -> None:
    with make_store(paths) as store:
        _fill(store)
        said = store.recall.all()[0]
        store.facts.add(kind="birthday", label="誕生日", value="3月16日", line="誕生日: 3月16日", block="human",
                        turn_id=said.turn_id, message_id=said.id)
        before = export_data(store.db)
        path = tmp_path / "backup.json"
        counts = store.export(path)
        assert counts == {"blocks": 2, "messages": 3, "passages": 2, "facts": 1}
        assert json.loads(path.read_text(encoding="utf-8"))["facts"][0]["message_id"] == said.id
        assert json.loads(path.read_text(encoding="utf-8"))["messages"] == before["messages"]

        store.reset(core=True, recall=True, archival=True)
        assert store.recall.count() == 0 and store.archival.count() == 0 and store.state() == {}

        store.reset(core=True, recall=True, archival=True)
        with pytest.raises(ImportFileError):  # the export is not a JSONL file; nothing half-done
            store.import_file(tmp_path / "missing.json")
        assert store.import_file(path) == counts
        after = export_data(store.db)
        assert {k: v for k, v in after.items() if k != "exported_at"} == \
            {k: v for k, v in before.items() if k != "exported_at"}
        hits = store.archival.search("誕生日").hits
        assert hits[0].id == "fact-1"
        assert store.recall.search("誕生日").hits[0].row_id == 1


def test_export_restores_into_a_new_agent(paths: Paths, tmp_path: Path) -> None:
    with make_store(paths, name="original") as store:
        _fill(store)
        store.export(tmp_path / "backup.json")
        original = export_data(store.db)
    with make_store(paths, name="copy") as copy:
        copy.import_file(tmp_path / "backup.json")
        restored = export_data(copy.db)
        assert restored["messages"] == original["messages"] and restored["blocks"] == original["blocks"]
        assert copy.core.get("human").value == "名前: 不明\n誕生日: 3月14日"
        assert [h.id for h in copy.archival.search("猫").hits][0] == 7


def test_restore_refuses_to_merge(paths: Paths, tmp_path: Path) -> None:
    with make_store(paths) as store:
        _fill(store)
        store.export(tmp_path / "backup.json")
        with pytest.raises(ImportFileError, match="reset"):
            store.import_file(tmp_path / "backup.json")
        assert store.recall.count() == 3


def test_broken_export_names_the_field(paths: Paths, tmp_path: Path) -> None:
    with make_store(paths) as store:
        _fill(store)
        store.export(tmp_path / "backup.json")
        data = json.loads((tmp_path / "backup.json").read_text(encoding="utf-8"))
        data["messages"][1]["time"] = "not a time"
        (tmp_path / "broken.json").write_text(json.dumps(data), encoding="utf-8")
        store.reset(recall=True, archival=True)
        with pytest.raises(ImportFileError, match=r"messages\.1\.time"):
            store.import_file(tmp_path / "broken.json")
        assert store.recall.count() == 0


def test_reset_parts(paths: Paths) -> None:
    with make_store(paths) as store:
        _fill(store)
        store.reset(recall=True)
        assert store.recall.count() == 0 and store.state() == {}
        assert store.archival.count() == 2 and "誕生日" in store.core.get("human").value
        store.reset(core=True)
        assert store.core.get("human").value == "名前: 不明"
        store.reset(archival=True)
        assert store.archival.count() == 0 and store.archival.index.peek() is None


def test_rename_keeps_all_memory(paths: Paths) -> None:
    with make_store(paths, name="before") as store:
        _fill(store)
        uid = store.info.uid
    AgentStore.rename(paths, store_settings(), "before", "after")
    assert AgentStore.list_agents(paths, store_settings()) == ["after"]
    with AgentStore.open(paths, store_settings(), "after") as renamed:
        assert renamed.info.name == "after" and renamed.info.uid == uid
        assert renamed.recall.count() == 3
        assert renamed.archival.search("猫").hits[0].id == 7
    with pytest.raises(MemagentError, match="already exists"):
        make_store(paths, name="other").close()
        AgentStore.rename(paths, store_settings(), "after", "other")
    with pytest.raises(NotFoundError):
        AgentStore.rename(paths, store_settings(), "ghost", "x")


def test_delete(paths: Paths) -> None:
    make_store(paths, name="doomed").close()
    AgentStore.delete(paths, store_settings(), "doomed")
    assert not paths.agent_dir("doomed").exists()
    with pytest.raises(NotFoundError):
        AgentStore.delete(paths, store_settings(), "doomed")


def test_stats(paths: Paths) -> None:
    with make_store(paths) as store:
        _fill(store)
        stats = store.stats()
    assert stats["messages"] == 3 and stats["conversation_messages"] == 2 and stats["passages"] == 2
    assert stats["index"]["count"] == 2 and stats["index"]["dim"] == 384
    assert stats["blocks"][1]["label"] == "human" and stats["database_bytes"] > 0


def test_delete_passages_inside_a_step(paths: Paths) -> None:
    with make_store(paths) as store:
        _fill(store)
        cat = store.archival.search("猫").hits[0].row_id
        with store.transaction():
            assert store.archival.delete([cat]) == 1
        assert store.archival.count() == 1 and store.archival.index.count() == 1
        assert all(hit.id != 7 for hit in store.archival.search("猫").hits)


def test_state_values(paths: Paths) -> None:
    with make_store(paths) as store:
        store.set_state("context_start", 42)
        store.set_state("summary", "要約")
        assert store.state() == {"context_start": 42, "summary": "要約"}
        assert store.get_state("missing", "default") == "default"


def test_times_are_utc_aware(paths: Paths) -> None:
    with make_store(paths) as store:
        message = store.recall.add("user", "x", kind="user_message", turn_id=1,
                                   time=datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC))
        assert store.recall.get(message.id).time == datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)

"""Core memory: append, exact replace with helpful errors, limits, undo, reset, history."""

from __future__ import annotations

import pytest

from memagent.memory import AgentStore, MemoryEditError
from memagent.paths import Paths

from .memory_support import make_store

pytestmark = pytest.mark.usefixtures("storage")  # the storage contract: SQLite and PostgreSQL


@pytest.fixture
def store(paths: Paths) -> AgentStore:
    with make_store(paths, core_limit=200) as opened:
        yield opened


def test_blocks_start_with_persona_and_human(store: AgentStore) -> None:
    assert store.core.labels() == ["persona", "human"]
    assert store.core.get("human").value == "名前: 不明"
    assert store.core.get("human").limit == 200


def test_append_and_replace(store: AgentStore) -> None:
    store.core.append("human", "誕生日は3月14日。", turn_id=1)
    assert store.core.get("human").value == "名前: 不明\n誕生日は3月14日。"
    store.core.replace("human", "名前: 不明", "名前: 健太", turn_id=2)
    assert store.core.get("human").value == "名前: 健太\n誕生日は3月14日。"
    store.core.replace("human", "\n誕生日は3月14日。", "", turn_id=3)  # empty new_content deletes
    assert store.core.get("human").value == "名前: 健太"


def test_replace_of_missing_text_reports_the_closest_text(store: AgentStore) -> None:
    store.core.append("human", "好きな食べ物はラーメンと餃子。")
    with pytest.raises(MemoryEditError) as caught:
        store.core.replace("human", "好きな食べ物はラーメンとギョウザ", "好きな食べ物は寿司")
    error = caught.value
    assert error.kind == "not_found" and error.label == "human"
    assert error.closest is not None and "ラーメン" in error.closest
    assert error.closest in store.core.get("human").value
    assert "好きな食べ物はラーメンと餃子。" in store.core.get("human").value  # unchanged


def test_replace_with_nothing_similar_has_no_closest(store: AgentStore) -> None:
    with pytest.raises(MemoryEditError) as caught:
        store.core.replace("human", "zzzzzzzzzzzzzzzz", "x")
    assert caught.value.kind == "not_found" and caught.value.closest is None


def test_over_limit_edit_is_refused_with_lengths(store: AgentStore) -> None:
    before = store.core.get("persona").value
    with pytest.raises(MemoryEditError) as caught:
        store.core.append("persona", "あ" * 300)
    error = caught.value
    assert (error.kind, error.limit) == ("over_limit", 200)
    assert error.length == len(before) + 1 + 300
    assert store.core.get("persona").value == before


def test_unknown_label_and_empty_old_content(store: AgentStore) -> None:
    with pytest.raises(MemoryEditError) as caught:
        store.core.append("friends", "x")
    assert caught.value.kind == "unknown_label" and caught.value.labels == ("persona", "human")
    with pytest.raises(MemoryEditError) as caught:
        store.core.replace("human", "", "x")
    assert caught.value.kind == "empty_old"


def test_undo_walks_back_one_edit_at_a_time(store: AgentStore) -> None:
    original = store.core.get("human").value
    store.core.append("human", "猫が好き。", turn_id=1)
    store.core.replace("human", "猫", "犬", turn_id=2)
    assert store.core.undo("human").value == original + "\n猫が好き。"
    assert store.core.undo("human").value == original
    with pytest.raises(MemoryEditError) as caught:
        store.core.undo("human")
    assert caught.value.kind == "nothing_to_undo"
    reasons = [edit.reason for edit in store.core.history("human")]
    assert reasons == ["undo", "undo", "replace", "append"]


def test_user_set_is_kept_in_history_and_undoable(store: AgentStore) -> None:
    store.core.set("persona", "私はさくら。静かな性格。")
    assert store.core.history("persona")[0].reason == "user_edit"
    assert store.core.undo("persona").value == "私はさくら。明るい性格。"


def test_reset_goes_back_to_first_values_and_can_be_undone(store: AgentStore) -> None:
    store.core.append("human", "誕生日は3月14日。")
    store.reset(core=True)
    assert store.core.get("human").value == "名前: 不明"
    assert store.core.undo("human").value == "名前: 不明\n誕生日は3月14日。"


def test_failed_edit_inside_a_step_leaves_the_rest_of_the_step(store: AgentStore) -> None:
    with store.transaction():
        store.recall.add("user", "覚えておいて", kind="user_message", turn_id=1)
        with pytest.raises(MemoryEditError):
            store.core.replace("human", "存在しない文章です", "x", turn_id=1)
        store.core.append("human", "メモ", turn_id=1)
    assert store.recall.count() == 1
    assert store.core.get("human").value.endswith("メモ")


def test_create_extra_block(store: AgentStore) -> None:
    store.core.create("schedule", "月曜: ジム", limit=100)
    assert store.core.labels() == ["persona", "human", "schedule"]
    with pytest.raises(MemoryEditError) as caught:
        store.core.create("schedule")
    assert caught.value.kind == "label_exists"

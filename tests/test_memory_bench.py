"""The memory benchmarks run at small sizes, and the retrieval quality they report holds."""

from __future__ import annotations

from bench.memory_bench import archival_latency, ja_retrieval, longconv_quality, recall_hybrid_latency, recall_search_vs_like


def test_recall_search_vs_like_small() -> None:
    result = recall_search_vs_like(3000, repeats=3, needle_every=100)
    assert result["hits"] == result["like_hits"] == 30
    assert result["fts_ms_p50"] > 0 and result["like_ms_p50"] > 0
    # The mixed query set was answered, not just timed: 1-2 character queries through the word
    # index find the 30 planted lines; a word in every Japanese line is counted up to the cap.
    hits = result["mix_hits"]
    assert hits["猫"] == hits["夏"] == hits["AI"] == hits["誕生"] == hits["誕生日"] == 30
    assert hits["で"] == hits["を"] == 1000
    assert result["mix_ms_p95"] > 0


def test_recall_hybrid_latency_small() -> None:
    result = recall_hybrid_latency(400, embedded=100, queries=3)
    assert result["messages"] == 400 and result["search_ms_p50"] > 0


def test_recall_by_meaning_finds_what_literal_search_cannot_on_long_conversations() -> None:
    """One Japanese and one English conversation of bench/data/longconv_*: 14 sessions, 448 lines."""
    result = longconv_quality(per_language=1)
    assert result["literal"]["all"]["hit@5"] == 0.0  # questions are not substrings of what was said
    assert result["hybrid"]["all"]["hit@5"] >= result["words"]["all"]["hit@5"] + 0.2
    # an answer embedded after its question, and the days a question names, help on top
    assert result["hybrid"]["all"]["hit@5"] >= result["hybrid, message alone"]["all"]["hit@5"] + 0.05
    for kind in ("single", "temporal"):
        assert result["hybrid"][kind]["hit@5"] >= 0.6, (kind, result["hybrid"])


def test_archival_latency_small() -> None:
    result = archival_latency(120, queries=3, embedded=40)
    assert result["passages"] == 120 and result["embedded_for_real"] == 40
    assert result["search_ms_p50"] > 0 and result["insert_passages_per_s"] > 0
    # What was timed was also right: each probed passage, searched by its own words, came first.
    assert result["self_hit_rate"] == 1.0


def test_ja_retrieval_hybrid_is_never_worse_than_either_ranker() -> None:
    result = ja_retrieval(weights=())
    for kind in ("paraphrase", "keyword"):
        figures = result[kind]
        for at in ("r1", "r3"):
            assert figures["hybrid"][at] >= max(figures["dense"][at], figures["lexical"][at]), (kind, at, figures)
    assert result["paraphrase"]["questions"] >= 30
    assert result["paraphrase"]["dense"]["r3"] >= 0.85


def test_a_question_by_its_plain_words_ranks_its_answer_higher() -> None:
    # Dev split of the open-memory evaluation (132 questions per language among 34 statements): an
    # English question embedded without its question mark and capitals lands nearer its answer.
    from bench.open_memory import retrieval_run

    for language, gain in (("en", 0.1), ("ja", 0.0)):
        plain = retrieval_run("dev", language)["scores"]
        typed = retrieval_run("dev", language, plain=False)["scores"]
        assert plain["R@1"] >= typed["R@1"] + gain, (language, plain, typed)
        assert plain["R@3"] >= typed["R@3"], (language, plain, typed)

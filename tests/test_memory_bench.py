"""The memory benchmarks run at small sizes, and the retrieval quality they report holds."""

from __future__ import annotations

from bench.memory_bench import archival_latency, ja_retrieval, recall_search_vs_like


def test_recall_search_vs_like_small() -> None:
    result = recall_search_vs_like(3000, repeats=3, needle_every=100)
    assert result["hits"] == result["like_hits"] == 30
    assert result["fts_ms_p50"] > 0 and result["like_ms_p50"] > 0


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

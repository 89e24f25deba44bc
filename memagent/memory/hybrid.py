"""Hybrid candidates, shared by archival and recall search: the best rows by meaning (the vector
index) and by words (BM25 over the query's informative trigrams), each scored by both rankers so
that fusion compares like with like."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .chroma_index import Where
from .lexical import QueryTerms, coverage
from .vector_index import VectorIndex

# Each ranker contributes its best CANDIDATE_POOL rows; the union is fused and paged.
CANDIDATE_POOL = 50

# The lexical query (SQLite) runs here while the caller's thread asks the vector index: both release
# the GIL (archival at 100k passages, 2 cores, cached query vector: p50 13.2 ms against 14.1 ms one
# after the other). Not during the query embedding: its threads already use every core.
_LEXICAL_WORKER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memagent-lexical")


@dataclass(frozen=True)
class Candidates:
    dense: dict[int, float]  # row id → cosine similarity (rows not embedded yet are absent)
    lexical: dict[int, float]  # row id → lexical coverage in [0, 1], for every candidate


def candidates(
    query: str,
    terms: QueryTerms,
    index: VectorIndex | None,
    lexical_top: Callable[[QueryTerms, int], list[int]],
    texts: Callable[[Sequence[int]], dict[int, str]],
    where: Where | None = None,
    dense_pool: int = CANDIDATE_POOL,
    parallel: bool = True,
) -> Candidates:
    """`index` None: words only (recall without embeddings). `texts` gives the text of each id that
    may be a hit (stored, and of the kinds asked for): the others are dropped from both sides.
    `parallel` False keeps the lexical query on this thread: inside a write transaction, whose
    uncommitted rows only this thread's session sees."""
    if index is None:
        return _scored(terms, {}, lexical_top(terms, CANDIDATE_POOL), texts)
    # Started after the query embedding, which keeps both cores busy by itself.
    vector = index.query_vector(query)
    pending: Future[list[int]] | None = _LEXICAL_WORKER.submit(lexical_top, terms, CANDIDATE_POOL) if parallel else None
    dense = dict(index.nearest(vector, dense_pool, where))
    lexical_ids = pending.result() if pending is not None else lexical_top(terms, CANDIDATE_POOL)
    dense.update(index.similarities(vector, [i for i in lexical_ids if i not in dense]))
    return _scored(terms, dense, lexical_ids, texts)


def _scored(terms: QueryTerms, dense: dict[int, float], lexical_ids: list[int],
            texts: Callable[[Sequence[int]], dict[int, str]]) -> Candidates:
    union = list(dict.fromkeys([*dense, *lexical_ids]))
    bodies = texts(union)
    return Candidates(dense={i: s for i, s in dense.items() if i in bodies},
                      lexical={i: coverage(terms, body) for i, body in bodies.items()})

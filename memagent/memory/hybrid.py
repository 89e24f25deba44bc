"""Hybrid candidates, shared by archival and recall search: the best rows by meaning (the vector
index) and by words (BM25 over the query's informative trigrams), each scored by both rankers so
that fusion compares like with like."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .chroma_index import Where
from .lexical import QueryTerms, coverage
from .vector_index import VectorIndex

# Each ranker contributes its best CANDIDATE_POOL rows; the union is fused and paged.
CANDIDATE_POOL = 50


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
) -> Candidates:
    """`index` None: words only (recall without embeddings). `texts` gives the text of each id that
    may be a hit (stored, and of the kinds asked for): the others are dropped from both sides."""
    dense: dict[int, float] = {}
    lexical_ids = lexical_top(terms, CANDIDATE_POOL)
    if index is not None:
        vector = index.query_vector(query)
        dense = dict(index.nearest(vector, dense_pool, where))
        dense.update(index.similarities(vector, [i for i in lexical_ids if i not in dense]))
    union = list(dict.fromkeys([*dense, *lexical_ids]))
    bodies = texts(union)
    return Candidates(dense={i: s for i, s in dense.items() if i in bodies},
                      lexical={i: coverage(terms, body) for i, body in bodies.items()})

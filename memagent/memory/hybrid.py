"""Hybrid candidates, shared by archival and recall search: the best rows by meaning (the vector
index) and by words (BM25 over the query's informative trigrams), each scored by both rankers so
that fusion compares like with like."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from .chroma_index import Where
from .lexical import QueryTerms, coverage
from .records import SearchHit
from .vector_index import VectorIndex

# Each ranker contributes its best CANDIDATE_POOL rows; the union is fused and paged.
CANDIDATE_POOL = 50

# SQLite work runs here while the caller's thread asks the vector index (both release the GIL): the
# query's trigram weights and the lexical query beside the nearest-neighbour query, then the
# candidates' rows beside the similarities of the lexical candidates. Not during the query
# embedding: its threads already use every core.
_SQLITE_WORKER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memagent-lexical")

# The stored rows among the given ids that may be hits (stored, and of the kinds asked for), each as
# a hit with score 0; the others are dropped from both sides.
RowsFor = Callable[[Sequence[int]], dict[int, SearchHit]]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Candidates:
    dense: dict[int, float]  # row id → cosine similarity (rows not embedded yet are absent)
    lexical: dict[int, float]  # row id → lexical coverage in [0, 1], for every candidate
    rows: dict[int, SearchHit]  # row id → the stored row as a hit (score 0), for every candidate


def candidates(
    query: str,
    terms_of: Callable[[str], QueryTerms],
    index: VectorIndex | None,
    lexical_top: Callable[[QueryTerms, int], list[int]],
    rows: RowsFor,
    where: Where | None = None,
    dense_pool: int = CANDIDATE_POOL,
    parallel: bool = True,
    meaning: str | None = None,
) -> Candidates:
    """`index` None: words only (recall without embeddings). `parallel` False keeps the SQLite
    queries on this thread: inside a write transaction, whose uncommitted rows only this thread's
    session sees. `meaning`: the text embedded for the dense ranker, when not the query itself."""
    if index is None:
        terms = terms_of(query)
        return _joined({}, _covered(terms, rows, lexical_top(terms, CANDIDATE_POOL)))
    run = _SQLITE_WORKER.submit if parallel else _run_here
    # Started after the query embedding, which keeps both cores busy by itself.
    vector = index.query_vector(meaning or query)
    lexical = run(_lexical_ids, query, terms_of, lexical_top)
    dense = dict(index.nearest(vector, dense_pool, where))
    terms, lexical_ids = lexical.result()
    dense_rows = run(_covered, terms, rows, list(dense))
    lexical_only = [i for i in lexical_ids if i not in dense]
    lexical_rows = run(_covered, terms, rows, lexical_only)
    dense.update(index.similarities(vector, lexical_only))
    return _joined(dense, dense_rows.result(), lexical_rows.result())


def _lexical_ids(query: str, terms_of: Callable[[str], QueryTerms],
                 lexical_top: Callable[[QueryTerms, int], list[int]]) -> tuple[QueryTerms, list[int]]:
    terms = terms_of(query)
    return terms, lexical_top(terms, CANDIDATE_POOL)


def _run_here(action: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
    """`action` run now on this thread, as a finished Future (its exception raised at once)."""
    done: Future[_T] = Future()
    done.set_result(action(*args, **kwargs))
    return done


_Covered = tuple[dict[int, SearchHit], dict[int, float]]


def _covered(terms: QueryTerms, rows: RowsFor, ids: Sequence[int]) -> _Covered:
    """The stored rows among `ids` and their lexical coverage."""
    stored = rows(ids)
    return stored, {i: coverage(terms, hit.text) for i, hit in stored.items()}


def _joined(dense: dict[int, float], *parts: _Covered) -> Candidates:
    stored = {i: hit for part, _ in parts for i, hit in part.items()}
    return Candidates(dense={i: s for i, s in dense.items() if i in stored},
                      lexical={i: score for _, scores in parts for i, score in scores.items()}, rows=stored)

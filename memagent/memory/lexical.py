"""Lexical relevance shared by archival and recall search: a query's trigrams weighted by how rare
they are (BM25's IDF over an fts5vocab table), and how much of that weight a text contains.

Coverage is an absolute score in [0, 1], unlike BM25 divided by the best candidate's: a text that
shares only 「ている」 with a question gets almost nothing, while one that contains a rare name from
the query gets most of the weight. Trigrams no text contains count at full IDF, so a question phrased
in other words than the memory contributes little lexical evidence, as it should."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.orm import Session

from .fts import chunks, fold, fts_string, query_trigrams

MAX_QUERY_TRIGRAMS = 64
MAX_QUERY_CHARS = 2000  # the first 64 distinct trigrams are in here; a 1 MB message is not scanned whole
MAX_LOOKUP_TRIGRAMS = 16
COMMON_SHARE = 0.1  # a trigram in more than this share of documents is not looked up (still weighed)
MIN_COMMON_DOCS = 50
# BM25 scores every document a looked-up trigram is in: the rarest trigrams are looked up until
# about this many postings, which bounds a search's cost at any size (the rest still weigh in coverage).
LOOKUP_POSTINGS = 5_000
VOCAB_TABLES = ("passage_vocab", "message_vocab")
FTS_TABLES = ("passage_fts", "message_fts")


@dataclass(frozen=True)
class QueryTerms:
    weights: dict[str, float]  # term → idf (1.0 each for LIKE words)
    frequency: dict[str, int]  # trigram → documents containing it
    documents: int
    like: bool

    def informative(self) -> list[str]:
        """Trigrams worth an index lookup: present somewhere, and not in most documents (「ユーザ」,
        「ている」 would make BM25 score nearly every document for no gain), rarest first."""
        present = sorted((t for t in self.weights if self.frequency.get(t)), key=lambda t: self.frequency[t])
        common = max(COMMON_SHARE * self.documents, MIN_COMMON_DOCS)
        chosen: list[str] = []
        postings = 0
        for term in present[:MAX_LOOKUP_TRIGRAMS]:
            if self.frequency[term] > common or (chosen and postings + self.frequency[term] > LOOKUP_POSTINGS):
                break
            chosen.append(term)
            postings += self.frequency[term]
        return chosen


def weighted_matches(fts_table: str, terms: QueryTerms, searchable: Sequence[str]) -> tuple[str, dict[str, object]]:
    """SQL for (id, relevance) of every row containing one of the `searchable` trigrams, relevance
    being the summed IDF of those it contains: the rows' coverage (what fusion uses) over the
    looked-up trigrams. Each trigram's posting list is read once, with no per-row scoring, which
    costs less than half of BM25's (term frequencies, lengths from the docsize table)."""
    if fts_table not in FTS_TABLES:  # interpolated into SQL
        raise ValueError(f"unknown FTS table {fts_table!r}")
    lookups = " UNION ALL ".join(f"SELECT rowid AS id, :w{n} AS w FROM {fts_table} WHERE {fts_table} MATCH :m{n}"
                                 for n in range(len(searchable)))
    params: dict[str, object] = {}
    for n, term in enumerate(searchable):
        params[f"w{n}"], params[f"m{n}"] = terms.weights[term], fts_string(term)
    return f"SELECT id, sum(w) AS relevance FROM ({lookups}) GROUP BY id", params


class Vocabulary:
    """Document frequencies of trigrams for one table, as its database keeps them (SQLite: an
    fts5vocab table, `fts5`; PostgreSQL: the (trigram, id) table, `postgres`).

    Counting a term's documents reads its whole posting list, so common trigrams (「ている」, "the")
    cost most; their counts are cached. A rare term (under CACHED_FROM documents) is read every time:
    cheap, and its count must be current (a name said a minute ago). The cache is dropped when the
    table has grown or shrunk by more than STALE_SHARE."""

    CACHED_FROM = 50
    STALE_SHARE = 0.05
    MAX_CACHED = 100_000

    def __init__(self, lookup: TextClause, table: str,
                 trigrams: Callable[[Session, str], list[str]] | None = None) -> None:
        """`lookup`: SQL of (term, documents) for the terms in :terms; `trigrams`: a query's trigrams
        as the index reads text (default: fts.query_trigrams of the folded query)."""
        if table not in ("passage", "message"):  # interpolated into SQL
            raise ValueError(f"unknown table {table!r}")
        self._lookup = lookup
        # About how many documents there are, from two index lookups instead of a count(*), which
        # grows with the table: ids only grow, and deletions are few. Enough for IDF.
        self._documents = text(f"SELECT coalesce((SELECT max(id) FROM {table}) - (SELECT min(id) FROM {table}) + 1, 0)")
        self._trigrams = trigrams or (lambda _session, needle: query_trigrams(fold(needle)))
        self._cache: dict[str, int] = {}
        self._cached_for = 0
        self._lock = threading.Lock()

    @classmethod
    def fts5(cls, vocab_table: str, table: str) -> Vocabulary:
        if vocab_table not in VOCAB_TABLES:  # interpolated into SQL
            raise ValueError(f"unknown vocabulary table {vocab_table!r}")
        return cls(text(f"SELECT term, doc FROM {vocab_table} WHERE term IN :terms").bindparams(
            bindparam("terms", expanding=True)), table)

    @classmethod
    def postgres(cls, table: str) -> Vocabulary:
        def trigrams(session: Session, needle: str) -> list[str]:
            found = list(session.execute(text("SELECT memagent.trigrams(:t)"), {"t": needle}).scalars())
            return sorted(found, key=fold(needle).lower().find)  # in order of appearance, as query_trigrams

        lookup = text(f"SELECT term, count(*) FROM {table}_gram WHERE term IN :terms GROUP BY term").bindparams(
            bindparam("terms", expanding=True))
        return cls(lookup, table, trigrams)

    def terms(self, session: Session, needle: str) -> QueryTerms:
        """The query's trigrams with their IDF and document frequency; for a query too short for
        trigrams, its words (weighted equally)."""
        needle = needle[:MAX_QUERY_CHARS]
        trigrams = self._trigrams(session, needle)[:MAX_QUERY_TRIGRAMS]  # the index reads folded text
        if not trigrams:
            return QueryTerms({word.lower(): 1.0 for word in chunks(needle) or [needle]}, {}, 0, like=True)
        documents = int(session.execute(self._documents).scalar_one())
        with self._lock:
            if abs(documents - self._cached_for) > self.STALE_SHARE * max(self._cached_for, 1) or \
                    len(self._cache) > self.MAX_CACHED:
                self._cache, self._cached_for = {}, documents
            frequency = {t: self._cache[t] for t in trigrams if t in self._cache}
        missing = [t for t in trigrams if t not in frequency]
        if missing:
            found = {term: int(doc) for term, doc in session.execute(self._lookup, {"terms": missing}).all()}
            frequency.update(found)
            with self._lock:
                self._cache.update({t: n for t, n in found.items() if n >= self.CACHED_FROM})
        # BM25's idf: rare terms weigh most; a term no document contains weighs the most of all.
        weights = {t: math.log(1 + (documents - frequency.get(t, 0) + 0.5) / (frequency.get(t, 0) + 0.5))
                   for t in trigrams}
        return QueryTerms(weights, frequency, documents, like=False)


def coverage(terms: QueryTerms, body: str) -> float:
    """The IDF-weighted share of the query's terms found in `body`."""
    total = sum(terms.weights.values())
    if not total:
        return 0.0
    lowered = (body if terms.like else fold(body)).lower()
    return sum(weight for term, weight in terms.weights.items() if term in lowered) / total

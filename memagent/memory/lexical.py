"""Lexical relevance shared by archival and recall search: a query's trigrams weighted by how rare
they are (BM25's IDF over an fts5vocab table), and how much of that weight a text contains.

Coverage is an absolute score in [0, 1], unlike BM25 divided by the best candidate's: a text that
shares only 「ている」 with a question gets almost nothing, while one that contains a rare name from
the query gets most of the weight. Trigrams no text contains count at full IDF, so a question phrased
in other words than the memory contributes little lexical evidence, as it should."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from .fts import chunks, query_trigrams

MAX_QUERY_TRIGRAMS = 64
MAX_QUERY_CHARS = 2000  # the first 64 distinct trigrams are in here; a 1 MB message is not scanned whole
MAX_LOOKUP_TRIGRAMS = 16
COMMON_SHARE = 0.1  # a trigram in more than this share of documents is not looked up (still weighed)
MIN_COMMON_DOCS = 50
VOCAB_TABLES = ("passage_vocab", "message_vocab")


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
        return [t for t in present if self.frequency[t] <= common][:MAX_LOOKUP_TRIGRAMS]


def query_terms(session: Session, vocab_table: str, documents: int, needle: str) -> QueryTerms:
    """The query's trigrams with their IDF and document frequency; for a query too short for
    trigrams, its words (weighted equally, matched with LIKE)."""
    if vocab_table not in VOCAB_TABLES:  # interpolated into SQL below: never user text
        raise ValueError(f"unknown vocabulary table {vocab_table!r}")
    needle = needle[:MAX_QUERY_CHARS]
    trigrams = query_trigrams(needle)[:MAX_QUERY_TRIGRAMS]
    if not trigrams:
        return QueryTerms({word.lower(): 1.0 for word in chunks(needle) or [needle]}, {}, 0, like=True)
    statement = text(f"SELECT term, doc FROM {vocab_table} WHERE term IN :terms").bindparams(
        bindparam("terms", expanding=True))
    frequency = {term: int(doc) for term, doc in session.execute(statement, {"terms": trigrams}).all()}
    # BM25's idf: rare terms weigh most; a term no document contains weighs the most of all.
    weights = {t: math.log(1 + (documents - frequency.get(t, 0) + 0.5) / (frequency.get(t, 0) + 0.5)) for t in trigrams}
    return QueryTerms(weights, frequency, documents, like=False)


def coverage(terms: QueryTerms, body: str) -> float:
    """The IDF-weighted share of the query's terms found in `body`."""
    total = sum(terms.weights.values())
    if not total:
        return 0.0
    lowered = body.lower()
    return sum(weight for term, weight in terms.weights.items() if term in lowered) / total

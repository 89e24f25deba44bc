"""The word and trigram indexes of one table (message or passage), as each database keeps them.

SQLite has FTS5 (trigram and word tables kept by triggers, migrations _V1-_V5); PostgreSQL has
tables of (term, row id) kept by triggers (migrations._pg_text_index). Recall and archival search
build their queries from the pieces here, so ranking is the same code on both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Row, text
from sqlalchemy.orm import Session

from .db import Database, trigger_suspended
from .fts import (
    MIN_FTS_CHARS,
    chunks,
    count_occurrences,
    fold,
    fts_string,
    like_pattern,
    short_match,
    short_phrase,
    short_tokens,
)
from .lexical import QueryTerms, Vocabulary, weighted_matches
from .recall_sql import COUNT_CAP, FTS_COUNT, FTS_HITS, LIKE_COUNT, LIKE_HITS, SHORT_COUNT, SHORT_HITS, hits_sql

TABLES = {"message": "content", "passage": "text"}
# Finding a needle's rarest term: each term's rows are counted up to this many, for at most this many terms.
RAREST_COUNT_CAP = 2000
MAX_RAREST_TERMS = 12


class TextIndex(Protocol):
    def terms(self, session: Session, needle: str) -> QueryTerms:
        """The query's trigrams with IDF weights (or its words, for a query too short for trigrams)."""

    def weighted(self, terms: QueryTerms, searchable: Sequence[str]) -> tuple[str, dict[str, object]]:
        """SQL of (id, relevance) for rows containing any of `searchable`: the summed IDF of those."""

    def any_word(self, words: Sequence[str]) -> tuple[str, dict[str, object]] | None:
        """SQL of (id) for rows containing any of the 1-2 character `words`, or None."""

    def literal(self, session: Session, needle: str, kinds: Sequence[str] | None, limit: int,
                offset: int) -> tuple[list[tuple[Row[Any], float]], int]:
        """Messages containing `needle` as written (folded), newest first, each with a score, and
        how many there are (counted up to COUNT_CAP + 1)."""

    def delete_all(self, connection: Connection) -> int:
        """Delete every row of the table and its index entries; how many rows there were."""


class SqliteTextIndex:
    """FTS5 tables `{table}_fts` (trigram), `{table}_short` (words) and `{table}_vocab`."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._vocabulary = Vocabulary.fts5(f"{table}_vocab", table)

    def terms(self, session: Session, needle: str) -> QueryTerms:
        return self._vocabulary.terms(session, needle)

    def weighted(self, terms: QueryTerms, searchable: Sequence[str]) -> tuple[str, dict[str, object]]:
        return weighted_matches(f"{self.table}_fts", terms, searchable)

    def any_word(self, words: Sequence[str]) -> tuple[str, dict[str, object]] | None:
        match = short_match(list(words))
        if match is None:
            return None
        return f"SELECT rowid AS id FROM {self.table}_short WHERE {self.table}_short MATCH :match", {"match": match}

    def literal(self, session: Session, needle: str, kinds: Sequence[str] | None, limit: int,
                offset: int) -> tuple[list[tuple[Row[Any], float]], int]:
        """Queries of 3+ characters use the trigram index (any substring); shorter ones the word
        index (a word, or kana/kanji in a row); one with no letters at all, a scan."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "cap": COUNT_CAP + 1}
        if kinds is not None:
            params["kinds"] = list(kinds)
        if len(fold(needle)) >= MIN_FTS_CHARS:
            params["match"] = fts_string(fold(needle))
            total = session.execute(hits_sql(FTS_COUNT, kinds), params).scalar_one()
            rows = session.execute(hits_sql(FTS_HITS, kinds, typed=True), params).all()
            return [(row, float(row.score)) for row in rows], int(total)
        if (phrase := short_phrase(needle)) is not None:
            params["match"] = phrase
            total = session.execute(hits_sql(SHORT_COUNT, kinds), params).scalar_one()
            rows = session.execute(hits_sql(SHORT_HITS, kinds, typed=True), params).all()
            folded = short_tokens(needle).replace(" ", "")
            return [(row, float(max(1, count_occurrences(short_tokens(row.content).replace(" ", ""), folded))))
                    for row in rows], int(total)
        return _like_hits(session, needle, kinds, params)

    def delete_all(self, connection: Connection) -> int:
        index, short = f"{self.table}_fts", f"{self.table}_short"
        with trigger_suspended(connection, f"{index}_delete"), trigger_suspended(connection, f"{short}_delete"):
            removed = connection.exec_driver_sql(f"DELETE FROM {self.table}").rowcount
            connection.exec_driver_sql(f"INSERT INTO {index}({index}) VALUES ('delete-all')")
            connection.exec_driver_sql(f"INSERT INTO {short}({short}) VALUES ('delete-all')")
        return removed


class PostgresTextIndex:
    """Tables `{table}_gram` and `{table}_word` of (term, id). Query terms come from the same SQL
    functions as the indexed ones (memagent.trigrams, memagent.short_tokens), so they always agree."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.column = TABLES[table]
        self._vocabulary = Vocabulary.postgres(table)

    def terms(self, session: Session, needle: str) -> QueryTerms:
        return self._vocabulary.terms(session, needle)

    def weighted(self, terms: QueryTerms, searchable: Sequence[str]) -> tuple[str, dict[str, object]]:
        return (f"SELECT g.id AS id, sum(q.w) AS relevance FROM {self.table}_gram AS g "
                "JOIN unnest(CAST(:grams AS varchar[]), CAST(:weights AS float8[])) AS q(term, w) ON g.term = q.term "
                "GROUP BY g.id", {"grams": list(searchable), "weights": [terms.weights[t] for t in searchable]})

    def _in_a_row(self, tokens: list[str], word: str, n: int, params: dict[str, object]) -> str:
        """SQL of (id) for rows with the words `tokens` (of a 1-2 character `word`): one word is a
        lookup; more (or one repeated, as in 「にに」) must also stand in a row, as `word` does."""
        if _one_word(word):
            params[f"w{n}"] = tokens[0]
            return f"SELECT id FROM {self.table}_word WHERE term = :w{n}"
        params[f"w{n}"], params[f"k{n}"], params[f"p{n}"] = tokens, len(tokens), fold(word).lower()
        return (f"SELECT r.id FROM (SELECT id FROM {self.table}_word WHERE term = ANY(CAST(:w{n} AS varchar[])) "
                f"GROUP BY id HAVING count(*) = :k{n}) AS w JOIN {self.table} AS r ON r.id = w.id "
                f"WHERE strpos(memagent.folded(r.{self.column}), :p{n}) > 0")

    def any_word(self, words: Sequence[str]) -> tuple[str, dict[str, object]] | None:
        params: dict[str, object] = {}
        parts = [self._in_a_row(tokens, word, n, params)
                 for n, (word, tokens) in enumerate((w, _words(w)) for w in words) if tokens]
        return (" UNION ".join(parts), params) if parts else None

    def literal(self, session: Session, needle: str, kinds: Sequence[str] | None, limit: int,
                offset: int) -> tuple[list[tuple[Row[Any], float]], int]:
        """As SQLite's: 3+ characters, any substring; shorter, its words in a row; no words at all, a
        scan. The rarest of the needle's trigrams (or words) drives the search, newest first, and each
        row it finds is checked for the whole needle: a page costs about its size, a rare needle only
        its few rows, as FTS5's phrase queries do."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "cap": COUNT_CAP + 1, "needle": needle}
        if kinds is not None:
            params["kinds"] = list(kinds)
        contains = "strpos(memagent.folded(m.content), memagent.folded(:needle)) > 0"
        tokens = _words(needle)
        if len(fold(needle)) < MIN_FTS_CHARS and tokens:
            index, terms = "message_word", tokens
            condition = "true" if _one_word(needle) else contains  # one word: the lookup is the match
        elif grams := list(session.execute(text("SELECT memagent.trigrams(:needle)"), params).scalars()):
            index, terms, condition = "message_gram", grams, contains
        else:
            index, terms, condition = "", [], contains
        columns = "m.id, m.content, m.time, m.role, m.external_id"
        if index:
            # The term's rows newest first, each looked up (LATERAL, kept apart by OFFSET 0: whatever
            # the table statistics say, the planner cannot turn it into a scan of every message).
            params["term"] = self._rarest(session, index, terms)
            found = (f"(SELECT id FROM {index} WHERE term = :term ORDER BY id DESC) AS t CROSS JOIN LATERAL "
                     f"(SELECT {columns} FROM message AS m WHERE m.id = t.id AND {condition} {{kind_filter}} OFFSET 0) AS m")
            newest = "t.id DESC"
        else:
            found, newest = f"message AS m WHERE {condition} {{kind_filter}}", "m.id DESC"
        total = session.execute(hits_sql(f"SELECT count(*) FROM (SELECT 1 FROM {found} LIMIT :cap) AS c", kinds),
                                params).scalar_one()
        rows = session.execute(hits_sql(f"SELECT {columns} FROM {found} ORDER BY {newest} LIMIT :limit OFFSET :offset",
                                        kinds, typed=True), params).all()
        return [(row, float(max(1, count_occurrences(fold(row.content), fold(needle))))) for row in rows], int(total)

    @staticmethod
    def _rarest(session: Session, index: str, terms: list[str]) -> str:
        """The term of `terms` in the fewest rows (counts stop at RAREST_COUNT_CAP: past it, all alike)."""
        if len(terms) == 1:
            return terms[0]
        counts = {term: int(session.execute(text(
            f"SELECT count(*) FROM (SELECT 1 FROM {index} WHERE term = :term LIMIT {RAREST_COUNT_CAP}) AS c"),
            {"term": term}).scalar_one()) for term in terms[:MAX_RAREST_TERMS]}
        return min(counts, key=counts.__getitem__)

    def delete_all(self, connection: Connection) -> int:
        connection.exec_driver_sql(f"TRUNCATE {self.table}_gram, {self.table}_word")
        return connection.exec_driver_sql(f"DELETE FROM {self.table}").rowcount


def _words(text: str) -> list[str]:
    """The distinct words of `text` as the word index holds them (each kana/kanji a word), in order."""
    return list(dict.fromkeys(chunks(short_tokens(text).lower())))


def _one_word(text: str) -> bool:
    """Whether `text` is exactly one word of the word index (「にに」 is two)."""
    return len(chunks(short_tokens(text).lower())) == 1


def _like_hits(session: Session, needle: str, kinds: Sequence[str] | None,
               params: dict[str, Any]) -> tuple[list[tuple[Row[Any], float]], int]:
    """A query with no letters at all: a scan for it (LIKE)."""
    params = {**params, "pattern": like_pattern(needle)}
    total = session.execute(hits_sql(LIKE_COUNT, kinds), params).scalar_one()
    rows = session.execute(hits_sql(LIKE_HITS, kinds, typed=True), params).all()
    return [(row, float(count_occurrences(row.content, needle))) for row in rows], int(total)


def text_index(db: Database, table: str) -> TextIndex:
    if table not in TABLES:  # interpolated into SQL
        raise ValueError(f"unknown table {table!r}")
    return PostgresTextIndex(table) if db.dialect == "postgresql" else SqliteTextIndex(table)


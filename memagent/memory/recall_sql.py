"""Recall memory's SQL: the literal, short-query and lexical-candidate queries, and bulk insert."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, TextClause, TextualSelect, bindparam, func, insert, select, text
from sqlalchemy.types import TypeEngine

from .db import trigger_suspended
from .fts import LIKE_ESCAPE
from .models import MessageRow, UTCDateTime


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


HIT_COLUMNS: dict[str, TypeEngine[Any]] = {"time": UTCDateTime(), "external_id": JSON(none_as_null=True)}

FTS_HITS = """
SELECT m.id, m.content, m.time, m.role, m.external_id, -bm25(message_fts) AS score
FROM message_fts JOIN message AS m ON m.id = message_fts.rowid
WHERE message_fts MATCH :match {kind_filter}
ORDER BY message_fts.rowid DESC LIMIT :limit OFFSET :offset
"""
# Counts stop at COUNT_CAP: a word in most messages would otherwise be counted row by row (≈0.3 s
# at 1M messages) for a figure nobody pages through.
COUNT_CAP = 1000
FTS_COUNT = """
SELECT count(*) FROM (SELECT 1 FROM message_fts JOIN message AS m ON m.id = message_fts.rowid
WHERE message_fts MATCH :match {kind_filter} LIMIT :cap)
"""
LIKE_HITS = f"""
SELECT m.id, m.content, m.time, m.role, m.external_id
FROM message AS m WHERE m.content LIKE :pattern ESCAPE '{LIKE_ESCAPE}' {{kind_filter}}
ORDER BY m.id DESC LIMIT :limit OFFSET :offset
"""
LIKE_COUNT = (f"SELECT count(*) FROM (SELECT 1 FROM message AS m WHERE m.content LIKE :pattern ESCAPE '{LIKE_ESCAPE}' "
               "{kind_filter} LIMIT :cap)")
# Queries of 1-2 characters: the word index (each kana/kanji its own word; migrations._V4).
SHORT_HITS = """
SELECT m.id, m.content, m.time, m.role, m.external_id
FROM message_short JOIN message AS m ON m.id = message_short.rowid
WHERE message_short MATCH :match {kind_filter}
ORDER BY message_short.rowid DESC LIMIT :limit OFFSET :offset
"""
SHORT_COUNT = """
SELECT count(*) FROM (SELECT 1 FROM message_short JOIN message AS m ON m.id = message_short.rowid
WHERE message_short MATCH :match {kind_filter} LIMIT :cap)
"""
# Hybrid search's lexical candidates: the best matches by summed IDF (lexical.weighted_matches), then
# the caller's filters; among equals, the newest.
LEXICAL_TOP = """
SELECT m.id FROM message AS m
JOIN ({matches} ORDER BY relevance DESC, id DESC LIMIT :pool) AS f ON m.id = f.id
WHERE true {filters} ORDER BY f.relevance DESC, m.id DESC LIMIT :limit
"""
# Short words (text_index.any_word); ordered by the word index's id, which SQLite reads backwards.
SHORT_TOP = """
SELECT m.id FROM ({words}) AS w JOIN message AS m ON m.id = w.id
WHERE true {filters} ORDER BY w.id DESC LIMIT :limit
"""
# Before the kind and date filters, this many BM25 matches are taken (more when a date range is given).
LEXICAL_POOL = 200
LEXICAL_POOL_DATED = 2000


def hits_sql(template: str, kinds: Sequence[str] | None, typed: bool = False) -> TextClause | TextualSelect:
    """`template` with its kind filter; `typed` when the rows are read as hits (times, external ids)."""
    statement = text(template.format(kind_filter="AND m.kind IN :kinds" if kinds is not None else ""))
    if kinds is not None:
        statement = statement.bindparams(bindparam("kinds", expanding=True))
    return statement.columns(**HIT_COLUMNS) if typed else statement


def bulk_insert_messages(connection: Connection, rows: Iterable[dict[str, Any]], batch_size: int = 10_000) -> int:
    """executemany in batches. The trigram index is filled by one INSERT … SELECT once the rows are
    in, instead of by the per-row trigger: about five times faster for large imports."""
    count = 0
    if connection.dialect.name == "postgresql":  # its trigger indexes each statement's rows at once
        for batch in _batches(rows, batch_size):
            connection.execute(insert(MessageRow), batch)
            count += len(batch)
        return count
    last_id = connection.execute(select(func.max(MessageRow.id))).scalar() or 0
    with trigger_suspended(connection, "message_fts_insert"), trigger_suspended(connection, "message_short_insert"):
        for batch in _batches(rows, batch_size):
            connection.execute(insert(MessageRow), batch)
            count += len(batch)
        connection.exec_driver_sql(
            "INSERT INTO message_fts(rowid, content) SELECT id, memagent_fold(content) FROM message WHERE id > ?",
            (last_id,)
        )
        connection.exec_driver_sql(
            "INSERT INTO message_short(rowid, content) SELECT id, memagent_short_tokens(content) FROM message "
            "WHERE id > ?", (last_id,)
        )
    return count

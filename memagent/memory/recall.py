"""Recall memory: every message ever exchanged, searchable by substring (FTS5 trigram) and by date."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import JSON, Connection, bindparam, delete, func, insert, select, text, update
from sqlalchemy.types import TypeEngine

from .dates import DateLike, utc_range
from .db import Database, rows_affected, trigger_suspended
from .errors import QueryError
from .fts import LIKE_ESCAPE, MIN_FTS_CHARS, count_occurrences, fts_any, fts_string, like_pattern
from .kinds import CONVERSATION_KINDS, MessageKind
from .lexical import coverage, query_terms
from .models import MessageRow, UTCDateTime, utc_now
from .records import HitId, SearchHit, SearchPage, StoredMessage

# conversation_search looks through what was said (CONVERSATION_KINDS), not heartbeats, tool output
# or earlier search results (which would echo every past query back).

# JSONL role → kind, for imported conversations.
KIND_FOR_ROLE = {"user": MessageKind.USER, "assistant": MessageKind.ASSISTANT_CALL, "system": MessageKind.SYSTEM_ALERT,
                 "function": MessageKind.FUNCTION_RESULT}


@dataclass
class NewMessage:
    role: str
    content: str = ""
    kind: MessageKind | None = None  # None: from the role (imports)
    turn_id: int = 0
    time: datetime = field(default_factory=utc_now)
    function_name: str | None = None
    function_args: dict[str, Any] | None = None
    inner_thoughts: str | None = None
    in_context: bool = True
    token_count: int | None = None
    external_id: HitId | None = None

    def row(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["kind"] = str(self.kind or KIND_FOR_ROLE[self.role])
        return values


def to_stored(row: MessageRow) -> StoredMessage:
    return StoredMessage(
        id=row.id, turn_id=row.turn_id, role=row.role, kind=MessageKind(row.kind), content=row.content, time=row.time,
        function_name=row.function_name, function_args=row.function_args, inner_thoughts=row.inner_thoughts,
        in_context=row.in_context, token_count=row.token_count, external_id=row.external_id,
    )


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_HIT_COLUMNS: dict[str, TypeEngine[Any]] = {"time": UTCDateTime(), "external_id": JSON(none_as_null=True)}

_FTS_HITS = """
SELECT m.id, m.content, m.time, m.role, m.external_id, -bm25(message_fts) AS score
FROM message_fts JOIN message AS m ON m.id = message_fts.rowid
WHERE message_fts MATCH :match {kind_filter}
ORDER BY message_fts.rowid DESC LIMIT :limit OFFSET :offset
"""
_FTS_COUNT = """
SELECT count(*) FROM message_fts JOIN message AS m ON m.id = message_fts.rowid
WHERE message_fts MATCH :match {kind_filter}
"""
_LIKE_HITS = f"""
SELECT m.id, m.content, m.time, m.role, m.external_id
FROM message AS m WHERE m.content LIKE :pattern ESCAPE '{LIKE_ESCAPE}' {{kind_filter}}
ORDER BY m.id DESC LIMIT :limit OFFSET :offset
"""
# The best-matching messages by BM25 over the query's informative trigrams; re-scored by coverage.
_RELATED_POOL = 200
_RELATED = """
SELECT m.id, m.content, m.time, m.role, m.external_id FROM message AS m
JOIN (SELECT rowid FROM message_fts WHERE message_fts MATCH :match ORDER BY rank LIMIT :pool) AS f ON m.id = f.rowid
WHERE m.kind IN :kinds {context_filter}
"""
_LIKE_COUNT = f"SELECT count(*) FROM message AS m WHERE m.content LIKE :pattern ESCAPE '{LIKE_ESCAPE}' {{kind_filter}}"


def _sql(template: str, kinds: Sequence[str] | None, typed: bool = False) -> Any:
    statement = text(template.format(kind_filter="AND m.kind IN :kinds" if kinds is not None else ""))
    if kinds is not None:
        statement = statement.bindparams(bindparam("kinds", expanding=True))
    return statement.columns(**_HIT_COLUMNS) if typed else statement


def bulk_insert_messages(connection: Connection, rows: Iterable[dict[str, Any]], batch_size: int = 10_000) -> int:
    """executemany in batches. The trigram index is filled by one INSERT … SELECT once the rows are
    in, instead of by the per-row trigger: about five times faster for large imports."""
    count = 0
    last_id = connection.execute(select(func.max(MessageRow.id))).scalar() or 0
    with trigger_suspended(connection, "message_fts_insert"):
        for batch in _batches(rows, batch_size):
            connection.execute(insert(MessageRow), batch)
            count += len(batch)
        connection.exec_driver_sql(
            "INSERT INTO message_fts(rowid, content) SELECT id, content FROM message WHERE id > ?", (last_id,)
        )
    return count


def _hit(row: Any, score: float) -> SearchHit:
    hit_id = row.external_id if row.external_id is not None else row.id
    return SearchHit(id=hit_id, text=row.content, time=row.time, score=score, role=row.role, row_id=row.id)


def _check_paging(page: int, page_size: int) -> None:
    if page < 0 or page_size < 1:
        raise QueryError("bad_range", f"page {page} / page size {page_size}: pages count from 0, sizes from 1")


class RecallStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- writing -------------------------------------------------------------------------------
    def add(self, role: str, content: str = "", *, kind: MessageKind | None = None, turn_id: int = 0,
            **fields: Any) -> StoredMessage:
        """Store one message (inside the caller's transaction, if one is open)."""
        row = MessageRow(**NewMessage(role, content, kind, turn_id, **fields).row())
        with self._db.transaction() as session:
            session.add(row)
            session.flush()
            return to_stored(row)

    def add_many(self, messages: Iterable[NewMessage], batch_size: int = 10_000) -> int:
        """Bulk insert in one transaction; returns how many were stored."""
        with self._db.transaction() as session:
            return bulk_insert_messages(session.connection(), (m.row() for m in messages), batch_size)

    def set_in_context(self, message_ids: Sequence[int], in_context: bool) -> None:
        with self._db.transaction() as session:
            session.execute(update(MessageRow).where(MessageRow.id.in_(message_ids)).values(in_context=in_context))

    def set_token_count(self, message_id: int, token_count: int) -> None:
        with self._db.transaction() as session:
            session.execute(update(MessageRow).where(MessageRow.id == message_id).values(token_count=token_count))

    def external_ids(self) -> set[HitId]:
        """The imported ids stored (an id is a key: importing it again is skipped)."""
        with self._db.read() as session:
            return set(session.scalars(select(MessageRow.external_id).where(MessageRow.external_id.is_not(None))))

    def of_turn(self, turn_id: int) -> list[StoredMessage]:
        with self._db.read() as session:
            rows = session.scalars(select(MessageRow).where(MessageRow.turn_id == turn_id).order_by(MessageRow.id))
            return [to_stored(row) for row in rows]

    def delete(self, message_ids: Sequence[int]) -> int:
        """Delete messages (inside the caller's transaction, if any)."""
        ids = list(message_ids)
        if not ids:
            return 0
        with self._db.transaction() as session:
            return rows_affected(session.execute(delete(MessageRow).where(MessageRow.id.in_(ids))))

    def delete_all(self) -> int:
        with self._db.transaction() as session:
            connection = session.connection()
            with trigger_suspended(connection, "message_fts_delete"):
                removed = connection.execute(delete(MessageRow)).rowcount
                connection.exec_driver_sql("INSERT INTO message_fts(message_fts) VALUES ('delete-all')")
            return removed

    # --- reading -------------------------------------------------------------------------------
    def get(self, message_id: int) -> StoredMessage | None:
        with self._db.read() as session:
            row = session.get(MessageRow, message_id)
            return to_stored(row) if row else None

    def in_context(self) -> list[StoredMessage]:
        """The messages currently in the context window, oldest first."""
        with self._db.read() as session:
            rows = session.scalars(select(MessageRow).where(MessageRow.in_context).order_by(MessageRow.id))
            return [to_stored(row) for row in rows]

    def recent(self, limit: int, kinds: Sequence[str] | None = None) -> list[StoredMessage]:
        """The last `limit` messages, oldest first."""
        query = select(MessageRow).order_by(MessageRow.id.desc()).limit(limit)
        if kinds is not None:
            query = query.where(MessageRow.kind.in_(kinds))
        with self._db.read() as session:
            return [to_stored(row) for row in reversed(list(session.scalars(query)))]

    def all(self) -> list[StoredMessage]:
        with self._db.read() as session:
            return [to_stored(row) for row in session.scalars(select(MessageRow).order_by(MessageRow.id))]

    def count(self, kinds: Sequence[str] | None = None) -> int:
        query = select(func.count()).select_from(MessageRow)
        if kinds is not None:
            query = query.where(MessageRow.kind.in_(kinds))
        with self._db.read() as session:
            return int(session.scalar(query) or 0)

    def last_turn_id(self) -> int:
        with self._db.read() as session:
            return int(session.scalar(select(func.max(MessageRow.turn_id))) or 0)

    # --- search --------------------------------------------------------------------------------
    def search(
        self, query: str, page: int = 0, page_size: int = 5, *, kinds: Sequence[str] | None = CONVERSATION_KINDS
    ) -> SearchPage:
        """Messages containing `query` as a substring (case-insensitive), newest first.

        The query is always literal text. Queries of 3+ characters use the trigram index; shorter
        ones fall back to a LIKE scan, since no trigram can match them."""
        needle = query.strip()
        if not needle:
            raise QueryError("empty", "the search query is empty; give a word or phrase to look for")
        _check_paging(page, page_size)
        params: dict[str, Any] = {"limit": page_size, "offset": page * page_size}
        if kinds is not None:
            params["kinds"] = list(kinds)
        with self._db.read() as session:
            if len(needle) >= MIN_FTS_CHARS:
                params["match"] = fts_string(needle)
                total = session.execute(_sql(_FTS_COUNT, kinds), params).scalar_one()
                rows = session.execute(_sql(_FTS_HITS, kinds, typed=True), params).all()
                hits = [_hit(row, float(row.score)) for row in rows]
            else:
                params["pattern"] = like_pattern(needle)
                total = session.execute(_sql(_LIKE_COUNT, kinds), params).scalar_one()
                rows = session.execute(_sql(_LIKE_HITS, kinds, typed=True), params).all()
                hits = [_hit(row, float(count_occurrences(row.content, needle))) for row in rows]
        return SearchPage(hits=hits, total=int(total), page=page, page_size=page_size)

    def search_date(
        self,
        start: DateLike,
        end: DateLike,
        page: int = 0,
        page_size: int = 5,
        *,
        kinds: Sequence[str] | None = CONVERSATION_KINDS,
        tz: tzinfo | None = None,
    ) -> SearchPage:
        """Messages from `start` to `end` (bare dates are whole days in `tz`), oldest first."""
        _check_paging(page, page_size)
        lower, upper = utc_range(start, end, tz)
        condition = (MessageRow.time >= lower) & (MessageRow.time < upper)
        # The agent's own non-reply calls are stored as empty assistant rows: nothing was said there.
        condition &= ~((MessageRow.kind == MessageKind.ASSISTANT_CALL) & (MessageRow.content == ""))
        if kinds is not None:
            condition &= MessageRow.kind.in_(kinds)
        with self._db.read() as session:
            total = session.scalar(select(func.count()).select_from(MessageRow).where(condition)) or 0
            rows = session.scalars(
                select(MessageRow).where(condition).order_by(MessageRow.time, MessageRow.id)
                .limit(page_size).offset(page * page_size)
            )
            hits = [
                SearchHit(id=row.external_id if row.external_id is not None else row.id, text=row.content,
                          time=row.time, score=1.0, role=row.role, row_id=row.id)
                for row in rows
            ]
        return SearchPage(hits=hits, total=int(total), page=page, page_size=page_size)

    def related(
        self, query: str, limit: int, *, kinds: Sequence[str] = (MessageKind.USER,), out_of_context: bool = True,
    ) -> list[SearchHit]:
        """Messages that contain the most of `query`'s rarer words (IDF-weighted trigrams), best first;
        `score` is the share of the query's weight a message contains (lexical.coverage). For
        surfacing: any text is a valid query, and one with no usable trigrams finds nothing."""
        needle = query.strip()
        if not needle or limit < 1:
            return []
        with self._db.read() as session:
            documents = int(session.scalar(select(func.count()).select_from(MessageRow)) or 0)
            terms = query_terms(session, "message_vocab", documents, needle)
            searchable = [] if terms.like else terms.informative()
            if not searchable:
                return []
            related = text(_RELATED.format(context_filter="AND m.in_context = 0" if out_of_context else ""))
            statement = related.bindparams(bindparam("kinds", expanding=True)).columns(**_HIT_COLUMNS)
            rows = session.execute(statement, {"match": fts_any(searchable), "pool": _RELATED_POOL,
                                               "kinds": list(kinds)}).all()
        scored = sorted(((coverage(terms, row.content), row) for row in rows), key=lambda item: (-item[0], -item[1].id))
        return [_hit(row, round(score, 6)) for score, row in scored[:limit]]

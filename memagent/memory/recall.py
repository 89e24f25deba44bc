"""Recall memory: every message ever exchanged, searchable by meaning and words (hybrid, like
archival), literally (FTS5 trigram; a word index for 1-2 character queries) and by date."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, select, text, update
from sqlalchemy.orm import aliased

from .chroma_index import Where
from .dates import DateLike, NamedDay, days_named_in, utc_range
from .db import Database, rows_affected
from .embeddings import Embedder
from .errors import QueryError
from .fusion import fuse
from .hybrid import CANDIDATE_POOL, Candidates, candidates
from .kinds import CONVERSATION_KINDS, MessageKind
from .lexical import QueryTerms
from .models import MessageRow, to_db_time, utc_now
from .recall_sql import (
    COUNT_CAP,
    LEXICAL_POOL,
    LEXICAL_POOL_DATED,
    LEXICAL_TOP,
    SHORT_TOP,
    bulk_insert_messages,
)
from .records import HitId, SearchHit, SearchPage, StoredMessage, page_of
from .text_index import text_index
from .vector_index import IndexRow, VectorIndex, VectorLocation

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
    return StoredMessage.model_validate(row)


def _hit(row: Any, score: float) -> SearchHit:
    hit_id = row.external_id if row.external_id is not None else row.id
    return SearchHit(id=hit_id, text=row.content, time=row.time, score=score, role=row.role, row_id=row.id)


def _check_paging(page: int, page_size: int) -> None:
    if page < 0 or page_size < 1:
        raise QueryError("bad_range", f"page {page} / page size {page_size}: pages count from 0, sizes from 1")


@dataclass(frozen=True)
class RecallIndexSettings:
    """How recall messages are embedded (None for `RecallStore`: words only)."""

    embedder: Callable[[], Embedder]
    location: VectorLocation
    collection_name: str
    dense_weight: float
    # A message that answers a question is embedded after it ("What do you do?" → "A nurse."), so a
    # short answer carries its question's meaning. False: every message alone (for comparison).
    with_previous: bool = True


class RecallStore:
    def __init__(self, db: Database, index: RecallIndexSettings | None = None) -> None:
        self._db = db
        # What was said (CONVERSATION_KINDS, not empty) is embedded on a background thread after
        # each commit; searches use what is embedded so far, and words for the rest.
        self.vectors = (VectorIndex(index.embedder, index.location, index.collection_name, self, what="messages",
                                    background=True) if index is not None else None)
        self.dense_weight = index.dense_weight if index is not None else 0.0
        self._with_previous = index.with_previous if index is not None else False
        self._text = text_index(db, "message")

    # --- writing -------------------------------------------------------------------------------
    def add(self, role: str, content: str = "", *, kind: MessageKind | None = None, turn_id: int = 0,
            **fields: Any) -> StoredMessage:
        """Store one message (inside the caller's transaction, if one is open)."""
        row = MessageRow(**NewMessage(role, content, kind, turn_id, **fields).row())
        with self._db.transaction() as session:
            session.add(row)
            session.flush()
            stored = to_stored(row)
            if self.vectors is not None and stored.kind in CONVERSATION_KINDS and stored.content:
                vectors = self.vectors
                self._db.after_commit(lambda: vectors.added([stored.id]))
            return stored

    def add_many(self, messages: Iterable[NewMessage], batch_size: int = 10_000, progress: bool = False) -> int:
        """Bulk insert in one transaction; returns how many were stored. They are embedded once it
        commits: in the foreground with a progress bar when `progress`, else in the background."""
        with self._db.transaction() as session:
            first_id = (session.scalar(select(func.max(MessageRow.id))) or 0) + 1
            count = bulk_insert_messages(session.connection(), (m.row() for m in messages), batch_size)
            if self.vectors is not None and count:
                vectors = self.vectors
                self._db.after_commit(lambda: vectors.added(self._indexable_ids_from(first_id), progress))
        return count

    def _indexable_ids_from(self, first_id: int) -> list[int]:
        with self._db.read() as session:
            return list(session.scalars(select(MessageRow.id).where(MessageRow.id >= first_id, self._indexable())
                                        .order_by(MessageRow.id)))

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
            removed = rows_affected(session.execute(delete(MessageRow).where(MessageRow.id.in_(ids))))
            if self.vectors is not None:
                vectors = self.vectors
                self._db.after_commit(lambda: vectors.removed(ids))
            return removed

    def delete_all(self) -> int:
        with self._db.transaction() as session:
            removed = self._text.delete_all(session.connection())
            if self.vectors is not None:
                self._db.after_commit(self.vectors.emptied)
            return removed

    # --- the index's source (vector_index.IndexSource) -----------------------------------------
    @staticmethod
    def _indexable(row: type[MessageRow] = MessageRow) -> ColumnElement[bool]:
        """What was said (CONVERSATION_KINDS, not empty): the rows the vector index embeds."""
        return row.kind.in_(CONVERSATION_KINDS) & (row.content != "")

    def indexable_count(self) -> int:
        with self._db.read() as session:
            return int(session.scalar(select(func.count()).select_from(MessageRow).where(self._indexable())) or 0)

    def indexable_ids(self) -> set[int]:
        with self._db.read() as session:
            return set(session.scalars(select(MessageRow.id).where(self._indexable())))

    def indexable_rows(self, ids: Sequence[int]) -> list[IndexRow]:
        """Each message's text and the line said just before it (see _embedded_text)."""
        before = aliased(MessageRow)
        previous = (select(before.content).where(before.id < MessageRow.id, self._indexable(before))
                    .order_by(before.id.desc()).limit(1).scalar_subquery())
        query = select(MessageRow.id, MessageRow.content, MessageRow.kind, MessageRow.time, previous.label("previous"))
        with self._db.read() as session:
            rows = session.execute(query.where(MessageRow.id.in_(list(ids)), self._indexable())).all()
        return [IndexRow(row.id, self._embedded_text(row.content, row.previous), {"kind": str(row.kind), "t": row.time.timestamp()})
                for row in rows]

    def _embedded_text(self, content: str, previous: str | None) -> str:
        # Only after a question: "In Maine." means little alone, but unrelated chatter before a
        # message would blur what the message itself says.
        if self._with_previous and previous and previous.rstrip().endswith(("?", "？")):
            return f"{previous}\n{content}"
        return content

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

    def recent_replies(self, limit: int) -> list[str]:
        """What the persona said in its last `limit` replies (send_message calls), oldest first;
        only that column is read (this runs before every reply is shown)."""
        query = (select(MessageRow.function_args)
                 .where(MessageRow.kind == MessageKind.ASSISTANT_CALL, MessageRow.function_name == "send_message")
                 .order_by(MessageRow.id.desc()).limit(limit))
        with self._db.read() as session:
            return [str((args or {}).get("message", "")) for args in reversed(list(session.scalars(query)))]

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
        self, query: str, page: int = 0, page_size: int = 5, *, kinds: Sequence[str] | None = CONVERSATION_KINDS,
        literal: bool = False, start: DateLike | None = None, end: DateLike | None = None, tz: tzinfo | None = None,
        days_first: bool = True,
    ) -> SearchPage:
        """Messages about `query`, best first: by meaning and words together (hybrid, as archival),
        optionally from `start` to `end`; without a range, messages of a day the query names ("on
        March 9", 「昨日」) come first (`days_first`). `literal`: messages containing `query` as
        written, newest first. Any text is a valid query: it is never search syntax."""
        needle = query.strip()
        if not needle:
            raise QueryError("empty", "the search query is empty; give a word or phrase to look for")
        _check_paging(page, page_size)
        if literal:
            return self._search_literal(needle, page, page_size, kinds)
        ranked, rows = self._ranked(needle, kinds, start, end, tz)
        if days_first and start is None and end is None:
            # "What did I do on March 9?": that day's messages first, by the same ranking.
            for day in reversed(self._days_said(days_named_in(needle), tz)):
                first, day_rows = self._ranked(needle, kinds, day, day, tz)
                ranked = first + [hit for hit in ranked if hit[0] not in {i for i, _ in first}]
                rows.update(day_rows)
        return page_of(ranked, rows, page, page_size)

    def _ranked(self, needle: str, kinds: Sequence[str] | None, start: DateLike | None, end: DateLike | None,
                tz: tzinfo | None) -> tuple[list[tuple[int, float]], dict[int, SearchHit]]:
        found = self.candidate_scores(needle, kinds=kinds, start=start, end=end, tz=tz)
        ranked = fuse(found.dense, found.lexical, self.dense_weight)
        if not found.dense:  # words only: a message that shares none of them is no hit
            ranked = [(i, score) for i, score in ranked if score > 0]
        return ranked, dict(found.rows)

    def _days_said(self, named: Sequence[NamedDay], tz: tzinfo | None) -> list[date]:
        """The named days on which something was said; a day without a year is its latest such date."""
        days: list[date] = []
        with self._db.read() as session:
            earliest = session.scalar(select(func.min(MessageRow.time)))
            if earliest is None:
                return []
            for named_day in named:
                years = [named_day.year] if named_day.year else range(datetime.now(UTC).year, earliest.year - 1, -1)
                for year in years:
                    day = named_day.in_year(year)
                    if day is None:
                        continue
                    lower, upper = utc_range(day, day, tz)
                    said = session.scalar(select(MessageRow.id).where(
                        MessageRow.time >= lower, MessageRow.time < upper, MessageRow.kind.in_(CONVERSATION_KINDS)).limit(1))
                    if said is not None:
                        days.append(day)
                        break
        return days

    def candidate_scores(
        self, query: str, *, kinds: Sequence[str] | None = CONVERSATION_KINDS, start: DateLike | None = None,
        end: DateLike | None = None, tz: tzinfo | None = None,
    ) -> Candidates:
        """The best messages by meaning and by words, each scored by both (hybrid.candidates)."""
        bounds = utc_range(start or end or "", end or start or "", tz) if (start or end) else None
        filters, params = self._filters(kinds, bounds)
        # Chroma filters by metadata slowly: kinds are filtered here, on a
        # larger pool when they narrow what is embedded; only a date range goes to Chroma.
        where: Where | None = ({"$and": [{"t": {"$gte": bounds[0].timestamp()}}, {"t": {"$lt": bounds[1].timestamp()}}]}
                               if bounds is not None else None)
        narrowed = kinds is not None and not set(CONVERSATION_KINDS) <= {str(kind) for kind in kinds}
        pool = LEXICAL_POOL_DATED if bounds is not None else LEXICAL_POOL

        def lexical_top(terms: QueryTerms, limit: int) -> list[int]:
            return self._lexical_top(terms, limit, filters, params, pool)

        def stored_hits(ids: Sequence[int]) -> dict[int, SearchHit]:
            return self._stored_hits(ids, kinds)

        def terms_of(needle: str) -> QueryTerms:
            with self._db.read() as session:
                return self._text.terms(session, needle)

        # On a read-only disk the vector index cannot be opened (Chroma writes as it opens): words only.
        vectors = self.vectors if self.vectors is not None and self.dense_weight > 0 and not self._db.read_only else None
        return candidates(query, terms_of, vectors, lexical_top, stored_hits, where=where,
                          dense_pool=CANDIDATE_POOL * (3 if narrowed else 1), parallel=not self._db.in_transaction)

    @staticmethod
    def _filters(kinds: Sequence[str] | None, bounds: tuple[datetime, datetime] | None) -> tuple[str, dict[str, Any]]:
        sql, params = "", dict[str, Any]()
        if kinds is not None:
            sql += " AND m.kind IN :kinds"
            params["kinds"] = [str(kind) for kind in kinds]
        if bounds is not None:
            sql += " AND m.time >= :lower AND m.time < :upper"
            params["lower"], params["upper"] = to_db_time(bounds[0]), to_db_time(bounds[1])
        return sql, params

    def _lexical_top(self, terms: QueryTerms, limit: int, filters: str, params: dict[str, Any], pool: int) -> list[int]:
        if terms.like:
            words = self._text.any_word(list(terms.weights))
            if words is None:
                return []
            sql, query_params = SHORT_TOP.format(words=words[0], filters=filters), words[1]
        else:
            searchable = terms.informative()
            if not searchable:
                return []
            matches, query_params = self._text.weighted(terms, searchable)
            sql = LEXICAL_TOP.format(matches=matches, filters=filters)
        statement = text(sql)
        if "kinds" in params:
            statement = statement.bindparams(bindparam("kinds", expanding=True))
        with self._db.read() as session:
            rows = session.execute(statement, {**params, **query_params, "limit": limit, "pool": max(pool, limit)})
            return [int(i) for i, in rows]

    def _stored_hits(self, ids: Sequence[int], kinds: Sequence[str] | None = None) -> dict[int, SearchHit]:
        """The messages among `ids` that are stored (and of `kinds`), as hits of score 0."""
        if not ids:
            return {}
        query = select(MessageRow.id, MessageRow.content, MessageRow.time, MessageRow.external_id,
                       MessageRow.role).where(MessageRow.id.in_(list(ids)))
        if kinds is not None:
            query = query.where(MessageRow.kind.in_([str(kind) for kind in kinds]))
        with self._db.read() as session:
            return {row.id: _hit(row, 0.0) for row in session.execute(query)}

    def _search_literal(self, needle: str, page: int, page_size: int, kinds: Sequence[str] | None) -> SearchPage:
        with self._db.read() as session:
            rows, total = self._text.literal(session, needle, kinds, page_size, page * page_size)
        return SearchPage(hits=[_hit(row, score) for row, score in rows], total=min(total, COUNT_CAP), page=page,
                          page_size=page_size, capped=total > COUNT_CAP)

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

    def reindex(self, progress: bool = True) -> int | None:
        """Rebuild the messages' vector index; how many were indexed (None: recall_embeddings is off)."""
        return self.vectors.reindex(progress) if self.vectors is not None else None

    def refresh_index(self, progress: bool = False) -> None:
        """Bring the messages' index level with SQLite now (after a bulk change); a failure only defers it."""
        if self.vectors is not None:
            self.vectors.refresh(progress)

    def wipe_index(self) -> None:
        """Drop the messages' collection (on a Chroma server, where it outlives the agent's folder)."""
        if self.vectors is not None:
            self.vectors.chroma.wipe()

    def index_status(self) -> dict[str, int | None] | None:
        """Messages embedded vs embeddable; None when recall_embeddings is off."""
        if self.vectors is None:
            return None
        count = (self.vectors.chroma.peek() or {}).get("count")
        return {"embedded": count if isinstance(count, int) else None, "embeddable": self.indexable_count()}

    def close(self) -> None:
        if self.vectors is not None:
            self.vectors.close()

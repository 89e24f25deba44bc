"""Archival memory: passages in SQLite (the truth) with a Chroma vector index, searched hybrid."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, text

from ..errors import MemagentError
from .chroma_index import ChromaIndex, IndexLocation
from .db import Database, rows_affected, trigger_suspended
from .embeddings import Embedder
from .errors import QueryError
from .fts import LIKE_ESCAPE, fts_any, like_pattern
from .fusion import FusionMethod, fuse
from .lexical import QueryTerms, coverage, query_terms
from .models import PassageRow, utc_now
from .records import HitId, Passage, SearchHit, SearchPage

log = logging.getLogger(__name__)

# Each ranker contributes its best CANDIDATE_POOL passages; the union is fused and paged.
CANDIDATE_POOL = 50
EMBED_BATCH = 64

_LEXICAL_TOP = "SELECT rowid FROM passage_fts WHERE passage_fts MATCH :match ORDER BY rank LIMIT :limit"


@dataclass
class NewPassage:
    text: str
    time: datetime = field(default_factory=utc_now)
    source: str = "agent"
    external_id: HitId | None = None


def _view(row: PassageRow) -> Passage:
    return Passage(id=row.id, text=row.text, time=row.time, source=row.source, external_id=row.external_id)


def _progress(total: int, enabled: bool, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=label, unit="passage", leave=False)


class ArchivalStore:
    def __init__(
        self,
        db: Database,
        embedder: Callable[[], Embedder],
        location: IndexLocation,
        collection_name: str,
        dense_weight: float,
        fusion: FusionMethod = "minmax",
    ) -> None:
        self._db = db
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._location = location
        self._collection_name = collection_name
        self._index: ChromaIndex | None = None
        self._index_checked = False
        self.dense_weight = dense_weight
        self.fusion: FusionMethod = fusion
        self.progress = False  # show a progress bar when the index is (re)built

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    # --- writing -------------------------------------------------------------------------------
    def insert(self, content: str, *, source: str = "agent", time: datetime | None = None,
               external_id: HitId | None = None) -> Passage:
        """Store one passage (inside the caller's transaction, if any); indexed once it commits."""
        return self._insert_rows([NewPassage(content, time or utc_now(), source, external_id)])[0]

    def insert_many(self, passages: Iterable[NewPassage], progress: bool = False) -> list[int]:
        """All rows in one transaction; they are embedded and indexed once it commits."""
        return [passage.id for passage in self._insert_rows(list(passages), progress)]

    def _insert_rows(self, passages: Sequence[NewPassage], progress: bool = False) -> list[Passage]:
        rows = [PassageRow(text=p.text, time=p.time, source=p.source, external_id=p.external_id) for p in passages]
        with self._db.transaction() as session:
            session.add_all(rows)
            session.flush()
            views = [_view(row) for row in rows]
            # Embedding happens after commit: the write lock is not held while a model runs, and a
            # failure here only leaves the index behind SQLite, which the next open repairs.
            self._db.after_commit(lambda: self._index_passages(views, progress))
        return views

    def external_ids(self) -> set[HitId]:
        """The imported ids stored (an id is a key: importing it again is skipped)."""
        with self._db.read() as session:
            return set(session.scalars(select(PassageRow.external_id).where(PassageRow.external_id.is_not(None))))

    def replace_source(self, source: str, texts: Sequence[str]) -> int:
        """Replace every passage from `source` (e.g. a persona's lorebook) with `texts`, in one transaction."""
        with self._db.transaction() as session:
            previous = list(session.scalars(select(PassageRow.id).where(PassageRow.source == source)))
            if previous:
                self.delete(previous)
            self.insert_many([NewPassage(text, source=source) for text in texts])
        return len(texts)

    def delete(self, passage_ids: Sequence[int]) -> int:
        """Delete passages (inside the caller's transaction, if any); the index follows on commit."""
        ids = list(passage_ids)
        with self._db.transaction() as session:
            removed = rows_affected(session.execute(delete(PassageRow).where(PassageRow.id.in_(ids))))
            self._db.after_commit(lambda: self._unindex(ids))
        return removed

    def _unindex(self, ids: list[int]) -> None:
        try:
            self._ensure_index()  # a first-time sync already drops them
            self.index.delete(ids)
        except Exception as exc:  # SQLite no longer has them; the next open's sync drops them
            self._index_checked = False
            log.warning("could not remove %d passages from the index yet (%s)", len(ids), exc)

    def delete_all(self) -> int:
        with self._db.transaction() as session:
            connection = session.connection()
            with trigger_suspended(connection, "passage_fts_delete"):
                removed = connection.execute(delete(PassageRow)).rowcount
                connection.exec_driver_sql("INSERT INTO passage_fts(passage_fts) VALUES ('delete-all')")
            self._db.after_commit(self._drop_index)
        return removed

    def _drop_index(self) -> None:
        self._index_checked = False
        try:
            self.index.wipe()
        except Exception as exc:  # SQLite is already empty; the next open's sync empties the index
            log.warning("archival index not emptied yet (%s)", exc)

    # --- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        with self._db.read() as session:
            return int(session.scalar(select(func.count()).select_from(PassageRow)) or 0)

    def get(self, passage_id: int) -> Passage | None:
        with self._db.read() as session:
            row = session.get(PassageRow, passage_id)
            return _view(row) if row else None

    def all(self) -> list[Passage]:
        with self._db.read() as session:
            return [_view(row) for row in session.scalars(select(PassageRow).order_by(PassageRow.id))]

    def recent(self, limit: int) -> list[Passage]:
        with self._db.read() as session:
            rows = session.scalars(select(PassageRow).order_by(PassageRow.id.desc()).limit(limit))
            return [_view(row) for row in reversed(list(rows))]

    # --- search --------------------------------------------------------------------------------
    def search(self, query: str, page: int = 0, page_size: int = 5) -> SearchPage:
        """Hybrid search: dense and lexical candidates, fused (settings.memory.dense_weight)."""
        dense, lexical = self.candidate_scores(self._checked(query, page, page_size))
        return self._page(fuse(dense, lexical, self.dense_weight, self.fusion), page, page_size)

    def candidate_scores(self, query: str) -> tuple[dict[int, float], dict[int, float]]:
        """Each ranker's best CANDIDATE_POOL passages, both scores completed for the union:
        (row id → cosine similarity, row id → lexical coverage in [0, 1])."""
        query_vector = self.embedder.embed_query(query)
        dense = dict(self._dense(query_vector, CANDIDATE_POOL))
        terms = self._query_terms(query)
        lexical_ids = self._lexical(terms, CANDIDATE_POOL)
        dense.update(self._dense_of(query_vector, [i for i in lexical_ids if i not in dense]))
        return dense, self._coverage(terms, list(dense))

    def search_dense(self, query: str, page: int = 0, page_size: int = 5) -> SearchPage:
        needle = self._checked(query, page, page_size)
        found = self._dense(self.embedder.embed_query(needle), max(CANDIDATE_POOL, (page + 1) * page_size))
        return self._page(found, page, page_size)

    def search_lexical(self, query: str, page: int = 0, page_size: int = 5) -> SearchPage:
        terms = self._query_terms(self._checked(query, page, page_size))
        coverage = self._coverage(terms, self._lexical(terms, max(CANDIDATE_POOL, (page + 1) * page_size)))
        ranked = sorted(((i, c) for i, c in coverage.items() if c > 0), key=lambda item: (-item[1], item[0]))
        return self._page(ranked, page, page_size)

    def _checked(self, query: str, page: int, page_size: int) -> str:
        needle = query.strip()
        if not needle:
            raise QueryError("empty", "the search query is empty; describe what to look for")
        if page < 0 or page_size < 1:
            raise QueryError("bad_range", f"page {page} / page size {page_size}: pages count from 0, sizes from 1")
        return needle

    def _page(self, ranked: list[tuple[int, float]], page: int, page_size: int) -> SearchPage:
        with self._db.read() as session:
            known = set(session.scalars(select(PassageRow.id).where(PassageRow.id.in_([i for i, _ in ranked]))))
            ranked = [(i, score) for i, score in ranked if i in known]  # the index may lag behind a rollback
            chosen = ranked[page * page_size:(page + 1) * page_size]
            rows = {row.id: row for row in session.scalars(select(PassageRow).where(PassageRow.id.in_([i for i, _ in chosen])))}
        hits = [
            SearchHit(id=rows[i].external_id if rows[i].external_id is not None else i, text=rows[i].text,
                      time=rows[i].time, score=round(score, 6), row_id=i)
            for i, score in chosen
        ]
        return SearchPage(hits=hits, total=len(ranked), page=page, page_size=page_size)

    def _dense(self, vector: np.ndarray, limit: int) -> list[tuple[int, float]]:
        self._ensure_index()
        try:
            return self.index.query(vector, limit)
        except MemagentError:
            raise
        except Exception as exc:  # reopen (a corrupt index is started over) and bring it level
            log.warning("archival index query failed (%s); reopening it", exc)
            self._index_checked = False
            self.index.close()
            self._ensure_index()
            return self.index.query(vector, limit)

    def _dense_of(self, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        return {i: float(np.dot(v, vector)) for i, v in self.index.vectors(ids).items()}

    def _query_terms(self, needle: str) -> QueryTerms:
        with self._db.read() as session:
            passages = int(session.scalar(select(func.count()).select_from(PassageRow)) or 0)
            return query_terms(session, "passage_vocab", passages, needle)

    def _lexical(self, terms: QueryTerms, limit: int) -> list[int]:
        """Up to `limit` passages sharing the most (BM25-weighted) informative trigrams with the
        query; for short queries, the latest passages containing one of its words."""
        with self._db.read() as session:
            if not terms.like:
                searchable = terms.informative()
                if not searchable:
                    return []
                rows = session.execute(text(_LEXICAL_TOP), {"match": fts_any(searchable), "limit": limit})
                return [int(i) for i, in rows]
            words = list(terms.weights)
            condition = " OR ".join(f"text LIKE :p{n} ESCAPE '{LIKE_ESCAPE}'" for n in range(len(words)))
            rows = session.execute(
                text(f"SELECT id FROM passage WHERE {condition} ORDER BY id DESC LIMIT :limit"),
                {"limit": limit, **{f"p{n}": like_pattern(word) for n, word in enumerate(words)}},
            )
            return [int(i) for i, in rows]

    def _coverage(self, terms: QueryTerms, ids: list[int]) -> dict[int, float]:
        """How much of the query each passage contains (lexical.coverage; words for short queries)."""
        if not ids:
            return {}
        with self._db.read() as session:
            texts = dict(session.execute(select(PassageRow.id, PassageRow.text).where(PassageRow.id.in_(ids))).all())
        return {i: coverage(terms, body) for i, body in texts.items()}

    # --- the index -----------------------------------------------------------------------------
    @property
    def index(self) -> ChromaIndex:
        if self._index is None:
            self._index = ChromaIndex(self._location, self._collection_name)
        return self._index

    def _signature(self) -> dict[str, str | int]:
        return {"embedder": self.embedder.name, "dim": self.embedder.dim}

    def _ensure_index(self, progress: bool | None = None) -> None:
        """Open the index and bring it level with SQLite (first use, or its folder vanished)."""
        if self._index_checked and self.index.is_open and not self.index.missing_on_disk:
            return
        self.index.close()
        self.index.open(self._signature())
        self.sync(progress=self.progress if progress is None else progress)
        self._index_checked = True

    def sync(self, progress: bool = False) -> int:
        """Index passages the index lacks and drop ones SQLite no longer has; returns how many were added."""
        if not self.index.is_open:
            self.index.open(self._signature())
        with self._db.read() as session:
            stored_count = int(session.scalar(select(func.count()).select_from(PassageRow)) or 0)
            if self.index.count() == stored_count:
                return 0
            stored_ids = set(session.scalars(select(PassageRow.id)))
        indexed = self.index.ids()
        stale = sorted(indexed - stored_ids)
        if stale:
            self.index.delete(stale)
        missing = sorted(stored_ids - indexed)
        if missing:
            log.info("archival index is missing %d passages; indexing them", len(missing))
            self._index_ids(missing, progress, "indexing archival memory")
        return len(missing)

    def reindex(self, progress: bool = True) -> int:
        """Rebuild the vector index from SQLite; returns how many passages were indexed."""
        self.index.wipe()
        self.index.open(self._signature())
        with self._db.read() as session:
            ids = list(session.scalars(select(PassageRow.id).order_by(PassageRow.id)))
        self._index_ids(ids, progress, "reindexing archival memory")
        self._index_checked = True
        return len(ids)

    def _index_ids(self, ids: list[int], progress: bool, label: str) -> None:
        with _progress(len(ids), progress, label) as bar:
            for start in range(0, len(ids), EMBED_BATCH * 16):
                with self._db.read() as session:
                    rows = session.execute(
                        select(PassageRow.id, PassageRow.text).where(PassageRow.id.in_(ids[start:start + EMBED_BATCH * 16]))
                    ).all()
                self._embed_and_upsert([row.id for row in rows], [row.text for row in rows], bar)

    def _index_passages(self, passages: list[Passage], progress: bool) -> None:
        try:
            if not self._index_checked or self.index.missing_on_disk:
                self._ensure_index(progress)  # its sync indexes every committed passage, these included
                return
            with _progress(len(passages), progress and len(passages) > EMBED_BATCH, "indexing passages") as bar:
                self._embed_and_upsert([p.id for p in passages], [p.text for p in passages], bar)
        except Exception as exc:  # SQLite already has the passages; the next open indexes them
            self._index_checked = False
            log.warning("could not index %d new passages yet (%s); they will be indexed on next use", len(passages), exc)

    def refresh_index(self, progress: bool = False) -> None:
        """Bring the index level with SQLite now (after a bulk change); a failure only defers it."""
        try:
            self._index_checked = False
            self._ensure_index(progress)
        except Exception as exc:  # the passages are safe in SQLite; the next use tries again
            log.warning("archival index not updated yet (%s); it will be on next use", exc)

    def _embed_and_upsert(self, ids: list[int], texts: list[str], bar: Any) -> None:
        for start in range(0, len(ids), EMBED_BATCH):
            vectors = self.embedder.embed_passages(texts[start:start + EMBED_BATCH])
            self.index.upsert(ids[start:start + EMBED_BATCH], vectors)
            bar.update(len(vectors))

    def close(self) -> None:
        if self._index is not None:
            self._index.close()

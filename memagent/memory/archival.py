"""Archival memory: passages in SQLite (the truth) with a Chroma vector index, searched hybrid."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select, text

from .db import Database, rows_affected
from .embeddings import Embedder
from .errors import QueryError
from .fts import LIKE_ESCAPE, like_pattern
from .fusion import FusionMethod, fuse
from .hybrid import CANDIDATE_POOL, Candidates, candidates
from .lexical import QueryTerms, coverage
from .models import PassageRow, utc_now
from .records import HitId, Passage, SearchHit, SearchPage, page_of
from .text_index import text_index
from .vector_index import IndexRow, VectorIndex, VectorLocation, VectorStore


@dataclass
class NewPassage:
    text: str
    time: datetime = field(default_factory=utc_now)
    source: str = "agent"
    external_id: HitId | None = None


def _view(row: PassageRow) -> Passage:
    return Passage.model_validate(row)


class ArchivalStore:
    def __init__(
        self,
        db: Database,
        embedder: Callable[[], Embedder],
        location: VectorLocation,
        collection_name: str,
        dense_weight: float,
        fusion: FusionMethod = "minmax",
    ) -> None:
        self._db = db
        self.vectors = VectorIndex(embedder, location, collection_name, self, what="passages")
        self._text = text_index(db, "passage")
        self.dense_weight = dense_weight
        self.fusion: FusionMethod = fusion

    @property
    def embedder(self) -> Embedder:
        return self.vectors.embedder

    @property
    def index(self) -> VectorStore:
        return self.vectors.chroma

    @property
    def progress(self) -> bool:
        return self.vectors.progress

    @progress.setter
    def progress(self, enabled: bool) -> None:
        """Show a progress bar when the index is (re)built."""
        self.vectors.progress = enabled

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
            self._db.after_commit(lambda: self.vectors.added([view.id for view in views], progress))
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
            self._db.after_commit(lambda: self.vectors.removed(ids))
        return removed

    def delete_all(self) -> int:
        with self._db.transaction() as session:
            removed = self._text.delete_all(session.connection())
            self._db.after_commit(self.vectors.emptied)
        return removed

    # --- the index's source (vector_index.IndexSource) -----------------------------------------
    def indexable_count(self) -> int:
        return self.count()

    def indexable_ids(self) -> set[int]:
        with self._db.read() as session:
            return set(session.scalars(select(PassageRow.id)))

    def indexable_rows(self, ids: Sequence[int]) -> list[IndexRow]:
        with self._db.read() as session:
            rows = session.execute(select(PassageRow.id, PassageRow.text).where(PassageRow.id.in_(list(ids)))).all()
        return [IndexRow(row.id, row.text) for row in rows]

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
        found = self.candidate_scores(self._checked(query, page, page_size))
        return page_of(fuse(found.dense, found.lexical, self.dense_weight, self.fusion), found.rows, page, page_size)

    def candidate_scores(self, query: str, meaning: str | None = None) -> Candidates:
        """Each ranker's best CANDIDATE_POOL passages, both scores completed for the union; `meaning`
        is embedded instead of the query when given."""
        return candidates(query, self._query_terms, None if self._db.read_only else self.vectors, self._lexical,
                          self._stored_hits, parallel=not self._db.in_transaction, meaning=meaning)

    def search_dense(self, query: str, page: int = 0, page_size: int = 5) -> SearchPage:
        needle = self._checked(query, page, page_size)
        found = self.vectors.nearest(self.vectors.query_vector(needle), max(CANDIDATE_POOL, (page + 1) * page_size))
        return self._page(found, page, page_size)

    def search_lexical(self, query: str, page: int = 0, page_size: int = 5) -> SearchPage:
        terms = self._query_terms(self._checked(query, page, page_size))
        ids = self._lexical(terms, max(CANDIDATE_POOL, (page + 1) * page_size))
        scores = {i: coverage(terms, hit.text) for i, hit in self._stored_hits(ids).items()}
        ranked = sorted(((i, c) for i, c in scores.items() if c > 0), key=lambda item: (-item[1], item[0]))
        return self._page(ranked, page, page_size)

    def _checked(self, query: str, page: int, page_size: int) -> str:
        needle = query.strip()
        if not needle:
            raise QueryError("empty", "the search query is empty; describe what to look for")
        if page < 0 or page_size < 1:
            raise QueryError("bad_range", f"page {page} / page size {page_size}: pages count from 0, sizes from 1")
        return needle

    def _page(self, ranked: list[tuple[int, float]], page: int, page_size: int) -> SearchPage:
        """The page of `ranked` among the passages still stored (the index may lag behind a rollback)."""
        stored = self._stored_hits([i for i, _ in ranked])
        return page_of([(i, score) for i, score in ranked if i in stored], stored, page, page_size)

    def _query_terms(self, needle: str) -> QueryTerms:
        with self._db.read() as session:
            return self._text.terms(session, needle)

    def _lexical(self, terms: QueryTerms, limit: int) -> list[int]:
        """Up to `limit` passages sharing the most (BM25-weighted) informative trigrams with the
        query; for short queries, the latest passages containing one of its words."""
        with self._db.read() as session:
            if not terms.like:
                searchable = terms.informative()
                if not searchable:
                    return []
                matches, params = self._text.weighted(terms, searchable)
                rows = session.execute(text(f"{matches} ORDER BY relevance DESC, id DESC LIMIT :limit"),
                                       {**params, "limit": limit})
                return [int(i) for i, _ in rows]
            short = self._text.any_word(list(terms.weights))
            if short is not None:  # words of 1-2 characters: the short-query index
                return [int(i) for i, in session.execute(text(f"SELECT id FROM ({short[0]}) AS w ORDER BY id DESC LIMIT :limit"),
                                                         {**short[1], "limit": limit})]
            words = list(terms.weights)
            condition = " OR ".join(f"text LIKE :p{n} ESCAPE '{LIKE_ESCAPE}'" for n in range(len(words)))
            rows = session.execute(
                text(f"SELECT id FROM passage WHERE {condition} ORDER BY id DESC LIMIT :limit"),
                {"limit": limit, **{f"p{n}": like_pattern(word) for n, word in enumerate(words)}},
            )
            return [int(i) for i, in rows]

    def _stored_hits(self, ids: Sequence[int]) -> dict[int, SearchHit]:
        """The passages among `ids` that are stored, as hits of score 0."""
        if not ids:
            return {}
        query = select(PassageRow.id, PassageRow.text, PassageRow.time, PassageRow.external_id).where(
            PassageRow.id.in_(list(ids)))
        with self._db.read() as session:
            return {row.id: SearchHit(id=row.external_id if row.external_id is not None else row.id, text=row.text,
                                      time=row.time, score=0.0, row_id=row.id)
                    for row in session.execute(query)}

    # --- the index ---------------------------------------------------------------------------
    def sync(self, progress: bool = False) -> int:
        """Index passages the index lacks and drop ones SQLite no longer has; returns how many were added."""
        return self.vectors.sync(progress)

    def reindex(self, progress: bool = True) -> int:
        """Rebuild the vector index from SQLite; returns how many passages were indexed."""
        return self.vectors.reindex(progress)

    def refresh_index(self, progress: bool = False) -> None:
        """Bring the index level with SQLite now (after a bulk change); a failure only defers it."""
        self.vectors.refresh(progress)

    def close(self) -> None:
        self.vectors.close()

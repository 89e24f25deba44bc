"""The Chroma collection that indexes archival passages by vector. It is derived data: everything in
it can be rebuilt from SQLite, so any trouble opening it is answered by starting it over."""

from __future__ import annotations

import logging
import shutil
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from ..errors import MemagentError
from .db import StorageError, storage_error

log = logging.getLogger(__name__)

# Chroma rejects batches above its own maximum (about 5k on a local client).
MAX_BATCH = 4000
# Chroma's defaults (ef 100, 16 neighbours) miss many of the true nearest among similar chat lines;
# these miss few, for a few ms per query (docs/benchmarks.md, "Figures behind code choices").
HNSW_CONFIG = {"space": "cosine", "ef_construction": 200, "ef_search": 200, "max_neighbors": 32}


Metadata: TypeAlias = dict[str, str | int | float]
# A Chroma `where` filter, e.g. {"$and": [{"kind": {"$in": [...]}}, {"t": {"$gte": 0}}]}.
Where: TypeAlias = dict[str, object]


@dataclass(frozen=True)
class IndexLocation:
    """Where the collection lives: a local folder (PersistentClient) or a server (HttpClient)."""

    local_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def description(self) -> str:
        return str(self.local_dir) if self.local_dir else f"chroma server {self.host}:{self.port}"


# chromadb shares one System per folder between clients and counts them without a lock; the
# archival and recall indexes of one agent live in one folder and use it from their own indexer
# threads. Its calls hold the GIL, so running them one at a time costs nothing, and it keeps a
# failed write (below) from racing another one.
_CHROMA_LOCK = threading.RLock()
# A write that fails on a full disk can leave chromadb's SQLite write lock held; the next write on
# that folder then waits out chromadb's busy timeout (1000 s) with the GIL held. Closing every
# client of the folder drops that connection; each index reopens on its next use.
_OPEN_INDEXES: dict[Path, weakref.WeakSet[ChromaIndex]] = {}


def _client(location: IndexLocation) -> Any:
    with _CHROMA_LOCK:
        return _new_client(location)


def _new_client(location: IndexLocation) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if location.local_dir is not None:
        folder = location.local_dir
        if folder.exists() and not folder.is_dir():
            raise MemagentError(f"{folder} is a file where the archival index folder belongs; move it aside "
                                "(the index is rebuilt from the memory database)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MemagentError(f"cannot create the archival index folder {folder} ({exc.strerror}); "
                                "check the disk and its permissions") from None
        return chromadb.PersistentClient(path=str(folder), settings=settings)
    try:
        return chromadb.HttpClient(host=location.host, port=location.port, settings=settings)
    except Exception as exc:  # chromadb raises plain ValueError/ConnectionError variants here
        raise MemagentError(f"cannot reach the Chroma server at {location.host}:{location.port} ({exc}); start it "
                            "with `chroma run` or set memory.chroma = local") from None


def _forget_cached_system(local_dir: Path) -> None:
    """chromadb keeps one System per folder for the whole process, even one that failed to start
    (a corrupt folder); drop it so the next client starts afresh on the rebuilt folder."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(str(local_dir), None)
        SharedSystemClient._identifier_to_refcount.pop(str(local_dir), None)
    except (ImportError, AttributeError) as exc:  # a chromadb without this cache needs nothing done
        log.debug("chromadb system cache not cleared: %s", exc)


def _disk_trouble(folder: Path, exc: BaseException) -> StorageError | None:
    """The one line for a failure of the machine (a full or read-only disk, a lock) rather than of
    the index files themselves, or None."""
    trouble = storage_error(folder / "chroma.sqlite3", exc)
    return trouble if trouble is not None and not trouble.damaged else None


class ChromaIndex:
    """Passage row id → unit vector, in collection `name`. The signature given to `open` (embedder
    name and dim) is stored in the collection's metadata; a collection with another one is dropped."""

    def __init__(self, location: IndexLocation, name: str) -> None:
        self.location = location
        self.name = name
        self.signature: dict[str, str | int] = {}
        self._client: Any = None
        self._collection: Any = None

    # --- lifecycle -----------------------------------------------------------------------------
    def open(self, signature: dict[str, str | int]) -> None:
        with _CHROMA_LOCK:
            self._open(signature)

    def _open(self, signature: dict[str, str | int]) -> None:
        self.signature = signature
        try:
            self._open_collection()
        except MemagentError:
            raise
        except Exception as exc:
            if self.location.local_dir is None:  # a server's trouble is reported, never "fixed" by deleting
                raise MemagentError(f"the Chroma server at {self.location.description} failed ({exc}); "
                                    "check it, or set memory.chroma = local") from None
            trouble = _disk_trouble(self.location.local_dir, exc)
            if trouble is not None:  # deleting the folder would not help
                self.close()
                _forget_cached_system(self.location.local_dir)
                raise trouble from None
            # A corrupt local index: start it over (every collection in it), SQLite has the data.
            log.warning("vector index at %s unusable (%s); rebuilding it", self.location.description, exc)
            self.close()
            _forget_cached_system(self.location.local_dir)
            shutil.rmtree(self.location.local_dir, ignore_errors=True)
            self._open_collection()

    def _open_collection(self) -> None:
        if self._client is None:
            self._client = _client(self.location)
            if self.location.local_dir is not None:
                _OPEN_INDEXES.setdefault(self.location.local_dir, weakref.WeakSet()).add(self)
        collection = self._get_or_create()
        stored = {key: (collection.metadata or {}).get(key) for key in self.signature}
        if stored != self.signature:
            log.warning("archival index %s was built with %s; rebuilding for %s", self.name, stored, self.signature)
            self._client.delete_collection(self.name)
            collection = self._get_or_create()
        self._collection = collection

    def _get_or_create(self) -> Any:
        return self._client.get_or_create_collection(
            self.name, metadata=dict(self.signature), configuration={"hnsw": HNSW_CONFIG}, embedding_function=None,
        )

    @property
    def missing_on_disk(self) -> bool:
        """True when the local folder was deleted under us (the client would not notice)."""
        return self.location.local_dir is not None and not (self.location.local_dir / "chroma.sqlite3").exists()

    def close(self) -> None:
        if self._client is not None:
            try:
                with _CHROMA_LOCK:
                    self._client.close()
            except Exception as exc:  # closing must never hide the caller's own outcome
                log.debug("closing chroma client: %s", exc)
        self._client = None
        self._collection = None

    @contextmanager
    def _using(self) -> Iterator[Any]:
        """The collection, for one chromadb call (reopened first after a restart of its folder).
        After a failed call every client of a local folder is closed (see _OPEN_INDEXES); a full or
        read-only disk is raised as StorageError."""
        with _CHROMA_LOCK:
            try:
                if self._collection is None:
                    if not self.signature:
                        raise RuntimeError("ChromaIndex.open() must be called first")
                    self.open(self.signature)
                yield self._collection
            except MemagentError:
                raise
            except Exception as exc:
                folder = self.location.local_dir
                if folder is None:
                    raise
                for index in list(_OPEN_INDEXES.pop(folder, ())):
                    index.close()
                _forget_cached_system(folder)
                trouble = _disk_trouble(folder, exc)
                if trouble is not None:
                    raise trouble from None
                raise

    def wipe(self) -> None:
        """Remove the whole collection (others in the same folder or server stay)."""
        if self.missing_on_disk:
            self.close()
            return
        with _CHROMA_LOCK:
            if self._client is None:
                self._client = _client(self.location)
            try:
                self._client.delete_collection(self.name)
            except Exception as exc:  # already gone
                log.debug("delete collection %s: %s", self.name, exc)
            self._collection = None

    def peek(self) -> dict[str, object] | None:
        """Count and metadata of the stored collection, without checking or changing it (None if absent)."""
        if self.missing_on_disk:
            return None
        client = None
        with _CHROMA_LOCK:
            try:
                client = self._client or _client(self.location)
                collection = client.get_collection(self.name)
                return {"count": int(collection.count()), **(collection.metadata or {})}
            except Exception:  # absent or unreadable: both mean "will be rebuilt on next use"
                return None
            finally:
                if client is not None and client is not self._client:
                    client.close()

    @property
    def is_open(self) -> bool:
        return self._collection is not None

    @property
    def collection(self) -> Any:
        if self._collection is None:
            raise RuntimeError("ChromaIndex.open() must be called first")
        return self._collection

    # --- data ----------------------------------------------------------------------------------
    def count(self) -> int:
        with self._using() as collection:
            return int(collection.count())

    def ids(self) -> set[int]:
        found: set[int] = set()
        offset = 0
        while True:
            with self._using() as collection:
                page = collection.get(include=[], limit=MAX_BATCH, offset=offset)["ids"]
            found.update(int(item) for item in page)
            if len(page) < MAX_BATCH:
                return found
            offset += MAX_BATCH

    def upsert(self, ids: list[int], vectors: np.ndarray, metadata: list[Metadata | None] | None = None) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            end = start + MAX_BATCH
            with self._using() as collection:
                collection.upsert(ids=[str(i) for i in ids[start:end]], embeddings=vectors[start:end],
                                  metadatas=metadata[start:end] if metadata is not None else None)

    def delete(self, ids: list[int]) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            with self._using() as collection:
                collection.delete(ids=[str(i) for i in ids[start:start + MAX_BATCH]])

    def query(self, vector: np.ndarray, limit: int, where: Where | None = None) -> list[tuple[int, float]]:
        """Nearest rows as (row id, cosine similarity), best first; `where` filters on metadata."""
        if limit <= 0:
            return []
        with self._using() as collection:
            result = collection.query(query_embeddings=[vector], n_results=limit, include=["distances"], where=where)
        return [(int(i), 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0])]

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        if not ids:
            return {}
        with self._using() as collection:
            result = collection.get(ids=[str(i) for i in ids], include=["embeddings"])
        return {int(i): np.asarray(v, dtype=np.float32) for i, v in zip(result["ids"], result["embeddings"])}

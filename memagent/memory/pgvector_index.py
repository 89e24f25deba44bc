"""The vector index of one table in PostgreSQL: pgvector with an HNSW index, in the agent's schema.

The same interface as ChromaIndex (what VectorIndex drives), and the same rule: derived data,
rebuilt from the rows whenever its embedder changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text
from sqlalchemy.exc import DatabaseError

from ..errors import MemagentError
from .chroma_index import Metadata, Where
from .db import Database

MAX_BATCH = 1000
EF_SEARCH = 200  # as the Chroma collections (chroma_index.HNSW_CONFIG): few true neighbours missed
_OPERATORS = {"$gte": ">=", "$gt": ">", "$lt": "<", "$lte": "<=", "$eq": "="}


@dataclass(frozen=True)
class PgVectorLocation:
    """Vectors live beside the rows, in the agent's PostgreSQL schema."""

    db: Database

    @property
    def description(self) -> str:
        return self.db.where


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def where_sql(where: Where, params: dict[str, object]) -> str:
    """A Chroma-style metadata filter as SQL on the `metadata` column."""
    conditions: list[str] = []
    for key, condition in where.items():
        if key == "$and" and isinstance(condition, list):
            conditions.extend(f"({where_sql(part, params)})" for part in condition)
            continue
        if not isinstance(condition, dict) or not key.isidentifier():
            raise ValueError(f"unsupported vector filter {where!r}")
        for operator, value in condition.items():
            name = f"p{len(params)}"
            if operator == "$in":
                params[name] = [str(v) for v in value]
                conditions.append(f"metadata->>'{key}' = ANY(CAST(:{name} AS varchar[]))")
            elif operator in _OPERATORS:
                params[name] = value
                cast = "float8" if isinstance(value, (int, float)) else "varchar"
                conditions.append(f"CAST(metadata->>'{key}' AS {cast}) {_OPERATORS[operator]} :{name}")
            else:
                raise ValueError(f"unsupported vector filter operator {operator!r}")
    return " AND ".join(conditions) or "true"


class PgVectorIndex:
    """Row id → unit vector in table `name` of the agent's schema."""

    def __init__(self, location: PgVectorLocation, name: str) -> None:
        if not name.isidentifier():  # interpolated into SQL
            raise ValueError(f"bad vector table name {name!r}")
        self.location = location
        self.name = name
        self.signature: dict[str, str | int] = {}
        self._open = False

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        db = self.location.db
        try:
            with db.engine.begin() as connection:
                yield connection
        except DatabaseError as exc:
            raise db.storage_error(exc) or MemagentError(f"{db.where}: vector index {self.name}: "
                                                         f"{getattr(exc, 'orig', exc)}") from None

    # --- lifecycle -----------------------------------------------------------------------------
    def open(self, signature: dict[str, str | int]) -> None:
        self.signature = signature
        dim = int(signature["dim"])
        with self._connection() as connection:
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS vector_signature (name VARCHAR PRIMARY KEY, "
                                       "signature JSON NOT NULL)")
            stored = connection.execute(text("SELECT signature FROM vector_signature WHERE name = :name"),
                                        {"name": self.name}).scalar()
            if stored != signature:
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.name}")
                connection.exec_driver_sql(f"CREATE TABLE {self.name} (id BIGINT PRIMARY KEY, "
                                           f"embedding vector({dim}) NOT NULL, metadata JSONB)")
                connection.exec_driver_sql(f"CREATE INDEX ix_{self.name}_hnsw ON {self.name} USING hnsw "
                                           "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200)")
                connection.execute(text("INSERT INTO vector_signature (name, signature) VALUES (:name, :sig) "
                                        "ON CONFLICT (name) DO UPDATE SET signature = excluded.signature"),
                                   {"name": self.name, "sig": json.dumps(signature)})
        self._open = True

    @property
    def missing_on_disk(self) -> bool:
        return False

    def close(self) -> None:
        self._open = False

    def wipe(self) -> None:
        with self._connection() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.name}")
            if connection.exec_driver_sql("SELECT to_regclass('vector_signature')").scalar() is not None:
                connection.execute(text("DELETE FROM vector_signature WHERE name = :name"), {"name": self.name})
        self._open = False

    def peek(self) -> dict[str, object] | None:
        try:
            with self._connection() as connection:
                if connection.exec_driver_sql(f"SELECT to_regclass('{self.name}')").scalar() is None:
                    return None
                count = int(connection.exec_driver_sql(f"SELECT count(*) FROM {self.name}").scalar_one())
                signature = connection.execute(text("SELECT signature FROM vector_signature WHERE name = :name"),
                                               {"name": self.name}).scalar()
        except MemagentError:
            return None
        return {"count": count, **(signature or {})}

    @property
    def is_open(self) -> bool:
        return self._open

    # --- data ----------------------------------------------------------------------------------
    def count(self) -> int:
        with self._connection() as connection:
            return int(connection.exec_driver_sql(f"SELECT count(*) FROM {self.name}").scalar_one())

    def ids(self) -> set[int]:
        with self._connection() as connection:
            return {int(i) for i in connection.exec_driver_sql(f"SELECT id FROM {self.name}").scalars()}

    def upsert(self, ids: list[int], vectors: np.ndarray, metadata: list[Metadata | None] | None = None) -> None:
        statement = text(f"INSERT INTO {self.name} (id, embedding, metadata) VALUES (:id, CAST(:v AS vector), "
                         "CAST(:m AS jsonb)) ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding, "
                         "metadata = excluded.metadata")
        for start in range(0, len(ids), MAX_BATCH):
            rows = [{"id": ids[n], "v": _vector_text(vectors[n]),
                     "m": json.dumps(metadata[n]) if metadata is not None and metadata[n] is not None else None}
                    for n in range(start, min(start + MAX_BATCH, len(ids)))]
            with self._connection() as connection:
                connection.execute(statement, rows)

    def delete(self, ids: list[int]) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            with self._connection() as connection:
                connection.execute(text(f"DELETE FROM {self.name} WHERE id = ANY(:ids)"), {"ids": ids[start:start + MAX_BATCH]})

    def query(self, vector: np.ndarray, limit: int, where: Where | None = None) -> list[tuple[int, float]]:
        """Nearest rows as (row id, cosine similarity), best first; `where` filters on metadata."""
        if limit <= 0:
            return []
        params: dict[str, object] = {"v": _vector_text(vector), "limit": limit}
        condition = where_sql(where, params) if where else "true"
        with self._connection() as connection:
            connection.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, limit)}")
            if where:  # keep scanning the graph until enough rows pass the filter
                connection.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = connection.execute(text(
                f"SELECT id, embedding <=> CAST(:v AS vector) AS distance FROM {self.name} WHERE {condition} "
                "ORDER BY distance LIMIT :limit"), params).all()
        return sorted(((int(i), 1.0 - float(d)) for i, d in rows), key=lambda item: -item[1])

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        if not ids:
            return {}
        with self._connection() as connection:
            rows = connection.execute(text(f"SELECT id, CAST(embedding AS real[]) FROM {self.name} WHERE id = ANY(:ids)"),
                                      {"ids": ids}).all()
        return {int(i): np.asarray(v, dtype=np.float32) for i, v in rows}

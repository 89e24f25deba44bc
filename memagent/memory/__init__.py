"""Agent memory: one SQLite database per agent (source of truth) plus a rebuildable Chroma index.

`AgentStore` is the entry point; it holds `core` (editable blocks), `recall` (every message) and
`archival` (passages with hybrid search).
"""

from .errors import MemoryEditError, QueryError
from .records import Block, BlockEdit, Passage, SearchHit, SearchPage, StoredMessage
from .store import AgentStore

__all__ = [
    "AgentStore",
    "Block",
    "BlockEdit",
    "MemoryEditError",
    "Passage",
    "QueryError",
    "SearchHit",
    "SearchPage",
    "StoredMessage",
]

"""What the model (or the user, by an edit) wrote into memory itself, compared by meaning with what
capture is about to write: a capable model that keeps its own notes gets no second copy of them,
and a line it wrote that a newer fact supersedes is replaced where it lives."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .fact_vocabulary import FactKind, lowercase, normalised
from .memory.embeddings import Embedder

# e5 cosine between two lines that say the same thing in other words ("I started cello lessons" /
# "User is learning the cello") is about 0.89-0.94; lines about other things 0.78-0.875. A shared
# content word is required as well, so a close score between unrelated lines does not count.
SAME_MEANING = 0.89
# A line about the same kind of fact (lives in Tokyo / lives in Osaka) scores lower than a restatement.
SAME_TOPIC = 0.85
_CONTENT = re.compile(r"[a-z0-9][a-z0-9'’\-]{2,}|[\u4e00-\u9fff\u30a0-\u30ffー]{2,}")
# Words every memory line shares (labels and names of the parties), never evidence of the same content.
_COMMON = frozenset({"user", "user's", "the", "and", "has", "have", "lives", "likes", "named", "ユーザー"})


def content_words(text: str) -> set[str]:
    return {word for word in _CONTENT.findall(lowercase(normalised(text))) if word not in _COMMON}


def _cosines(embedder: Embedder, text: str, lines: Sequence[str]) -> np.ndarray:
    vectors = embedder.embed_passages([text, *lines])
    return np.asarray(vectors[1:] @ vectors[0])


def says_already(text: str, lines: Sequence[str], embedder: Embedder) -> str | None:
    """The line of `lines` that says what `text` says (by meaning, sharing a content word), if any."""
    words = content_words(text)
    candidates = [line for line in lines if words & content_words(line)]
    if not candidates:
        return None
    scores = _cosines(embedder, text, candidates)
    best = int(np.argmax(scores))
    return candidates[best] if scores[best] >= SAME_MEANING else None


def superseded(new_line: str, value: str, kind: FactKind, lines: Sequence[str], embedder: Embedder) -> str | None:
    """The line of `lines` about the same single-valued fact as `new_line` with another value
    ("User lives in Tokyo" when the user has moved to Osaka): it names the kind (label or a cue
    word) and is close in meaning, and does not hold the new value."""
    markers = [lowercase(normalised(word)) for word in (kind.label, *kind.cues)]
    candidates = [line for line in lines if lowercase(normalised(value)) not in lowercase(normalised(line))
                  and any(marker in lowercase(normalised(line)) for marker in markers)]
    if not candidates:
        return None
    scores = _cosines(embedder, new_line, candidates)
    best = int(np.argmax(scores))
    return candidates[best] if scores[best] >= SAME_TOPIC else None

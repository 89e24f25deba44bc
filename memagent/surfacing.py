"""Surfacing (memory mode "assisted"): before a reply, the memories most relevant to the user's
message are put into the prompt, whether or not the model would have searched for them.

No model call: captured facts whose kind the message mentions (「猫の名前覚えてる？」 → the pet's
name), and earlier user messages that have left the context window and archival passages that share
the message's rarer words or its meaning (hybrid search); for a question about the user's own world,
the nearest passages by meaning whatever their score (a captured note shown as the user's words).
They are rendered by recalled.j2 right before the reply, after the conversation, so the cached
beginning of the prompt is untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .config import MemorySettings
from .context import local_time_text
from .fact_grounding import mentioned_kinds
from .fact_vocabulary import FactVocabulary, normalised
from .memory.hybrid import Candidates
from .memory.kinds import MessageKind
from .memory.store import AgentStore
from .prompts import PromptLibrary
from .sentences import is_question, plain_words

log = logging.getLogger(__name__)

MemorySource = Literal["fact", "recall", "note", "archival"]
# e5 cosine similarity at which a passage is related even when it shares no words with the message
# (paraphrase); unrelated Japanese passages score about 0.75-0.82 with multilingual-e5-small.
DENSE_FLOOR = 0.86
# Chat lines are short and alike: half of the Japanese lines of bench/data/longconv_ja have an
# unrelated other line at 0.86 or more (max 0.91), while a question and the line answering it score
# no higher than the best unrelated line (both ≈0.83). So an earlier message needs shared words to
# be surfaced; by meaning alone only a near-repeat.
RECALL_DENSE_FLOOR = 0.92
FACT_SCORE = 1.0  # a fact whose kind the message names is the most relevant memory there is
# A question and the statement that answers it share few words and score like unrelated lines, but
# among the passages the answer is usually near the top by meaning: a question about the user's
# own world gets its nearest passages whatever their score.
NEAREST_FOR_A_QUESTION = 3


@dataclass(frozen=True)
class Memory:
    source: MemorySource
    ref: int  # fact id, message id or passage id (of a note too)
    text: str
    time: str  # local time it was said or stored; "" for facts (they are current by definition)
    score: float
    value: str = ""  # a fact's value ("ミケ"); "" for messages and passages

    def to_json_obj(self) -> dict[str, Any]:
        return {"source": self.source, "id": self.ref, "text": self.text, "time": self.time, "score": self.score}


class Surfacer:
    def __init__(self, store: AgentStore, prompts: PromptLibrary, settings: MemorySettings,
                 vocabulary: Callable[[], FactVocabulary]) -> None:
        self.store = store
        self.prompts = prompts
        self.limit = settings.surface_limit
        self.floor = settings.surface_min_score
        self.nudge = settings.recall_nudge
        self._vocabulary = vocabulary  # loaded on first use, shared with capture

    @property
    def vocabulary(self) -> FactVocabulary:
        return self._vocabulary()

    def surface(self, query: str, persona_name: str = "") -> list[Memory]:
        """Up to surface_limit memories for `query`, most relevant first."""
        if self.limit < 1 or not query.strip():
            return []
        facts = self._facts(query)
        # A message a fact was taken from is shown as that fact; one whose fact was replaced since
        # (「東京に住んでる」 after a move to Osaka) is out of date and not shown at all.
        said = {m.ref for m in facts}
        skipped = {f.message_id for f in self.store.facts.all() if f.id in said or f.superseded_by is not None}
        found = facts + [m for m in self._recall(query) if m.ref not in skipped] + self._archival(query, asking=bool(
            is_question(query) and not self.vocabulary.asks_about_persona(query, persona_name)))
        found.sort(key=lambda memory: -memory.score)
        unique: list[Memory] = []
        for memory in found:
            if not any(normalised(memory.text) in normalised(other.text) for other in unique):
                unique.append(memory)
        return unique[: self.limit]

    def asked_values(self, query: str, memories: list[Memory], persona_name: str) -> tuple[str, ...]:
        """The values of the surfaced facts that `query` asks for (「うちの猫の名前は？」 → ミケ), which the
        reply is steered towards saying (llm/recall_nudge.py); none for a statement, nor for a
        question about the persona (「さくらの好きな食べ物は？」 is not answered with the user's)."""
        if not self.nudge or not is_question(query) or self.vocabulary.asks_about_persona(query, persona_name):
            return ()
        return tuple(memory.value for memory in memories if memory.source == "fact" and memory.value)

    def _facts(self, query: str) -> list[Memory]:
        asked = mentioned_kinds(query, self.vocabulary.kinds)
        return [
            Memory("fact", fact.id, fact.line, "", FACT_SCORE, fact.value)
            for fact in self.store.facts.current()
            if fact.kind in asked
        ]

    def _recall(self, query: str) -> list[Memory]:
        # Earlier user messages that have left the context window (the model sees the rest).
        found = self.store.recall.candidate_scores(query, kinds=(MessageKind.USER,))
        in_view = {message.id for message in self.store.recall.in_context()}
        memories = []
        for message_id, score in self._related(found, RECALL_DENSE_FLOOR):
            message = found.rows[message_id]
            # An earlier question (「私の名前、覚えてる？」) shares the most words with a new one and tells nothing.
            if message_id not in in_view and not is_question(message.text):
                memories.append(Memory("recall", message_id, message.text, local_time_text(message.time), score))
        return memories

    def _archival(self, query: str, asking: bool) -> list[Memory]:
        if self.store.archival.count() == 0:
            return []
        found = self.store.archival.candidate_scores(query, meaning=plain_words(query) if asking else None)
        related = dict(self._related(found, DENSE_FLOOR))
        if asking:
            nearest = sorted(found.dense.items(), key=lambda item: -item[1])[:NEAREST_FOR_A_QUESTION]
            related.update({i: round(score, 4) for i, score in nearest if i not in related})
        # A captured note is shown as the user's words, without the passage's time and framing.
        notes = {fact.passage_id: fact.value for fact in self.store.facts.current("note") if fact.passage_id in related}
        return [Memory("note", passage_id, notes[passage_id], local_time_text(found.rows[passage_id].time), score)
                if passage_id in notes else
                Memory("archival", passage_id, found.rows[passage_id].text, local_time_text(found.rows[passage_id].time),
                       score)
                for passage_id, score in related.items()]

    def _related(self, found: Candidates, dense_floor: float) -> list[tuple[int, float]]:
        """Candidates related to the message, best first: by the share of its weighted words they
        contain (at least surface_min_score), or by meaning alone above `dense_floor` (paraphrase)."""
        scored = [(i, max(lexical, dense if (dense := found.dense.get(i, 0.0)) >= dense_floor else 0.0))
                  for i, lexical in found.lexical.items()]
        related = [(i, round(score, 4)) for i, score in scored
                   if score >= self.floor or found.dense.get(i, 0.0) >= dense_floor]
        return sorted(related, key=lambda item: (-item[1], -item[0]))[: self.limit * 4]

"""Capture (memory mode "assisted"): after a reply, what the user told, and the persona's own
promises, go into memory.

Every sentence of the user's message that tells something (statements.py: not a question, a request
or small talk) is kept as said, as a note: an archival passage that search and surfacing find. No
list decides it. Listed kinds (facts.toml) refine: a sentence with a kind's cue word gets one
grammar-constrained model call proposing values; grounding (fact_grounding.py) files only what the
message really says, with the kind its cue gives it, when it is the user's and true now; a frame
finds what the model missed, and the tighter of the two values wins. A filed value becomes a line of
the human block (a newer value of a single-valued kind replaces the old line of the same subject),
or an archival passage when the block is full. What the model wrote into memory itself is not
written a second time (written_memory.py). A promise (a reply sentence with a promise cue, facts.toml
[promise]) becomes a line of the persona block, as it was said. Every one is recorded with the
message it came from (memory/facts.py), in the same transaction and turn as the reply, so /undo and
/retry revert it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import json_repair

from .agent_deps import AgentDeps
from .config import SamplerPreset
from .context import ContextWindow
from .conversation import ChatMessage
from .fact_grounding import GroundedFact, cue_sentences, framed_facts, ground, promised_sentences
from .fact_vocabulary import MAX_VALUE_CHARS, FactKind, FactVocabulary, PromiseRule, lowercase, normalised
from .llm.base import GenerationRequest
from .memory.errors import MemoryEditError
from .memory.records import Fact, StoredMessage
from .rendering import SAFETY_MARGIN, local_time_text
from .sentences import join_sentences
from .statements import content_weight, statements
from .written_memory import says_already, superseded

log = logging.getLogger(__name__)

HUMAN_BLOCK = "human"
CAPTURE_REASON = "capture"  # block history reason of captured lines (memory show --history)
MAX_PROPOSALS = 4
PROMISE_KIND = "promise"
RECENT_PASSAGES = 10  # the model's newest archival passages compared with a new note
# A sentence whose filed facts leave this many times a statement's minimum content untold is kept as a note too.
LEFT_OVER_FACTOR = 2
NOTE_KIND = "note"  # the user's sentence as said, of no listed kind
PERSONA_BLOCK = "persona"
CAPTURE_MAX_TOKENS = 160
CAPTURE_SAMPLING = SamplerPreset(temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, seed=0)


@dataclass(frozen=True)
class Captured:
    fact: Fact
    replaced: Fact | None = None


def extraction_schema(kinds: list[FactKind]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "facts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": [kind.key for kind in kinds]},
                        "value": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_CHARS},
                    },
                    "required": ["kind", "value"],
                    "additionalProperties": False,
                },
                "maxItems": MAX_PROPOSALS,
            }
        },
        "required": ["facts"],
        "additionalProperties": False,
    }


def parse_proposals(text: str) -> list[tuple[str, str]]:
    """(kind, value) pairs from the model's JSON; anything malformed is skipped, never raised."""
    try:
        data = json.loads(text)
    except ValueError:
        data = json_repair.loads(text)
    facts = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(facts, list):
        return []
    pairs = []
    for item in facts[:MAX_PROPOSALS]:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            pairs.append((str(item.get("kind", "")), item["value"]))
    return pairs


def _tightest_first(framed: list[GroundedFact], proposed: list[GroundedFact]) -> list[GroundedFact]:
    """The frames' values and the model's, one per value: where one holds the other (「先月大阪」 and
    「大阪」, "on March 14" and "March 14"), the tighter one — neither source overrides a better value
    with a worse one. Frames first: their kind comes from words written for it."""
    chosen: list[GroundedFact] = []
    for fact in framed + proposed:
        value = lowercase(fact.value)
        clash = next((i for i, kept in enumerate(chosen)
                      if value in lowercase(kept.value) or lowercase(kept.value) in value), None)
        if clash is None:
            chosen.append(fact)
        elif len(fact.value) < len(chosen[clash].value) and (fact.kind is not None or chosen[clash].kind is None):
            chosen[clash] = replace(fact, kind=chosen[clash].kind or fact.kind, cue=chosen[clash].cue or fact.cue)
    return chosen


class FactCapture:
    """Runs the extraction for one user message and writes what is grounded."""

    def __init__(self, deps: AgentDeps, context: ContextWindow) -> None:
        self.deps = deps
        self.store = deps.store
        self.prompts = deps.prompts
        self.context = context

    @property
    def vocabulary(self) -> FactVocabulary:
        return self.deps.vocabulary

    def capture(self, message: StoredMessage) -> list[Captured]:
        """Keep what one user message tells: each value a listed kind's cue words ground (a line of the
        human block), and every other sentence that tells something, as said (a note). Returns what
        was stored."""
        rules = self.vocabulary.statements
        # Calling the persona by name ("Good morning, Sam!") tells nothing about the user.
        said = statements(message.content, replace(rules, small_talk=(*rules.small_talk, self.deps.persona.name)))
        cued = cue_sentences(message.content, self.vocabulary.kinds)
        if not said and not cued:  # a question, a greeting, a request: nothing to keep, no model call
            return []
        proposals = self._propose(cued) if cued else []
        grounded = _tightest_first(framed_facts(message.content, self.vocabulary),
                                   ground(message.content, proposals, self.vocabulary))
        typed = [fact for fact in grounded if fact.kind is not None]
        rest = [sentence for sentence in said if not self._told_by(sentence, typed)]
        with self.store.transaction():
            stored = [captured for captured in (self._store(fact, message) for fact in typed) if captured is not None]
            if rest:
                note = self._store_note(join_sentences(rest), message)
                stored += [note] if note is not None else []
        # A new fact joins the human block, but the system prompt is not rebuilt for it: the message
        # that stated it is still in view, and a rebuild early in the prompt would make the server
        # evaluate the whole prompt again for the next reply (no KV-cache reuse). A changed fact
        # (Tokyo → Osaka) is different: the old line in view would contradict the conversation.
        if any(captured.replaced is not None for captured in stored):
            self.context.invalidate_system()
        return stored

    def capture_promises(self, replies: list[StoredMessage]) -> list[Captured]:
        """The persona's own promises in this turn's replies, as it said them, into its persona block
        (archival when the block is full), each with the reply it came from. No model call."""
        rule = self.vocabulary.promise
        if rule is None:
            return []
        found = [(message, sentence) for message in replies if message.reply
                 for sentence in promised_sentences(message.reply, rule)]
        if not found:
            return []
        with self.store.transaction():
            return [captured for captured in (self._store_promise(sentence, message, rule) for message, sentence in found)
                    if captured is not None]

    def _store_promise(self, sentence: str, message: StoredMessage, rule: PromiseRule) -> Captured | None:
        if any(old.value == sentence for old in self.store.facts.current(PROMISE_KIND)):
            return None
        line = self.prompts.render("fact_line.j2", label=rule.label, value=sentence)
        block, passage_id = self._write_line(PERSONA_BLOCK, line, None, message)
        record = self.store.facts.add(kind=PROMISE_KIND, label=rule.label, value=sentence, line=line, block=block,
                                      passage_id=passage_id, message_id=message.id, turn_id=message.turn_id)
        return Captured(record)

    def _write_line(self, label: str, line: str, replaced: Fact | None, message: StoredMessage) -> tuple[str | None, int | None]:
        """Write `line` into core block `label` (in place of `replaced`'s line when that is still
        there); when the block is full, into archival memory. Returns (block, passage id)."""
        try:
            if replaced is not None and replaced.block == label and replaced.line in self.store.core.get(label).value:
                self.store.core.replace(label, replaced.line, line, turn_id=message.turn_id, reason=CAPTURE_REASON)
            else:
                self.store.core.append(label, line, turn_id=message.turn_id, reason=CAPTURE_REASON)
            return label, None
        except MemoryEditError as exc:  # the block is full (or gone): the line goes to archival instead
            log.info("core memory cannot take %r (%s); storing it in archival memory", line, exc.kind)
            return None, self.store.archival.insert(line, source="capture", time=message.time).id

    def _propose(self, text: str) -> list[tuple[str, str]]:
        """One constrained model call, as a continuation of the chat prompt (its cached prefix is reused)."""
        instruction = ChatMessage(role="user", content=self.prompts.render("capture.j2", kinds=self.vocabulary.kinds,
                                                                           message=text))
        # The extraction answer is short, so it has more room than a reply. When even that is not
        # enough, the oldest messages go (the system prompt's cached prefix is still reused).
        room = self.deps.backend.context_length - CAPTURE_MAX_TOKENS - SAFETY_MARGIN
        history = self.context.history()
        while True:
            built = self.context.render(self.context.system(), history + [instruction], prefill=False)
            if built.tokens <= room:
                break
            if not history:
                log.info("capture skipped: the system prompt leaves no room for the extraction prompt")
                return []
            history = history[max(1, len(history) // 4):]
        schema = extraction_schema(self.vocabulary.kinds)
        from .functions.grammar import schema_to_gbnf

        request = GenerationRequest(prompt=built.prompt, messages=built.messages, schema=schema,
                                    grammar=schema_to_gbnf(schema) if built.prompt is not None else None,
                                    stop=self.deps.wrapper.stop, sampling=CAPTURE_SAMPLING,
                                    max_tokens=CAPTURE_MAX_TOKENS)
        completion = self.deps.backend.generate(request)
        return parse_proposals(completion.text)

    def _told_by(self, sentence: str, typed: list[GroundedFact]) -> bool:
        """Whether the filed facts tell all `sentence` does: what is left without their values and cue
        words says little ("My sister's name is Yuka."), unlike "I'm from Kyoto, but I live in Osaka now."."""
        mine = [fact for fact in typed if normalised(fact.sentence) == normalised(sentence)]
        if not mine:
            return False
        left = lowercase(normalised(sentence))
        for fact in mine:
            for word in (fact.value, fact.cue):
                left = left.replace(lowercase(normalised(word)), " ") if word else left
        rules = self.vocabulary.statements
        return content_weight(left, rules) < LEFT_OVER_FACTOR * rules.min_content

    def _written_by_others(self) -> tuple[list[str], list[str]]:
        """(human block lines, recent archival passages) that capture did not write: the model's own
        memory writes and the user's edits."""
        ours = {fact.line for fact in self.store.facts.current()}
        value = self.store.core.get(HUMAN_BLOCK).value
        initial = set(self.store.core.first_value(HUMAN_BLOCK).splitlines())  # the profile it started from
        block = [line for line in value.splitlines() if line.strip() and line not in ours and line not in initial]
        passages = [p.text for p in self.store.archival.recent(RECENT_PASSAGES) if p.source != "capture"]
        return block, passages

    def _store(self, fact: GroundedFact, message: StoredMessage) -> Captured | None:
        kind = fact.kind
        assert kind is not None
        current = self.store.facts.current(kind.key)
        if any(lowercase(old.value) == lowercase(fact.value) for old in current):
            return None  # already known
        block_lines, passages = self._written_by_others()
        label = kind.label_for(fact.cue)
        line = self.prompts.render("fact_line.j2", label=label, value=fact.value)
        holding = [text for text in block_lines + passages if lowercase(fact.value) in lowercase(text)]
        if holding and (says_already(fact.sentence, holding, self.store.archival.embedder)
                        or says_already(line, holding, self.store.archival.embedder)):
            return None  # the model wrote it down itself
        # A newer value replaces the old one of the same subject: the label from the cue ("Sister's
        # name") must match, so a brother's name never replaces a sister's.
        same_subject = [old for old in current if old.label == label]
        replaced = same_subject[-1] if kind.replace and same_subject else None
        if kind.replace and replaced is None and block_lines:
            stale = superseded(line, fact.value, kind, block_lines, self.store.archival.embedder)
            if stale is not None:  # the model's own line of the old value ("User lives in Tokyo")
                self.store.core.replace(HUMAN_BLOCK, stale, line, turn_id=message.turn_id, reason=CAPTURE_REASON)
                self.context.invalidate_system()  # the stale line must not stay in view
                record = self.store.facts.add(kind=kind.key, label=label, value=fact.value, line=line, block=HUMAN_BLOCK,
                                              message_id=message.id, turn_id=message.turn_id)
                return Captured(record)
        block, passage_id = self._write_line(HUMAN_BLOCK, line, replaced, message)
        record = self.store.facts.add(kind=kind.key, label=label, value=fact.value, line=line, block=block,
                                      passage_id=passage_id, message_id=message.id, turn_id=message.turn_id,
                                      replaces=replaced.id if replaced else None)
        return Captured(record, replaced)

    def _store_note(self, sentence: str, message: StoredMessage) -> Captured | None:
        """The user's own words, as said, as an archival passage found by search and surfacing."""
        if any(normalised(old.value) == normalised(sentence) for old in self.store.facts.current(NOTE_KIND)):
            return None
        block_lines, passages = self._written_by_others()
        if block_lines + passages and says_already(sentence, block_lines + passages, self.store.archival.embedder):
            return None  # the model wrote it down itself, in its own words
        line = self.prompts.render("note_passage.j2", sentence=sentence, time=local_time_text(message.time))
        passage = self.store.archival.insert(line, source="capture", time=message.time)
        record = self.store.facts.add(kind=NOTE_KIND, label="", value=sentence, line=line, block=None,
                                      passage_id=passage.id, message_id=message.id, turn_id=message.turn_id)
        return Captured(record)

"""Capture (memory mode "assisted"): after a reply, the durable facts the user stated, and the
persona's own promises, go into memory.

The model proposes, the code decides. One grammar-constrained call lists candidate values; each is
kept only if it is grounded:
- the value appears word for word in the user's message (never a paraphrase, never the example's);
- its kind is read off the cue words next to it in the same sentence (facts.toml), not off the
  model's label — a small model calls a cat's name "name" as readily as "pet_name";
- a value with no cue near it is not filed under any kind: the user's sentence goes to archival
  memory as it was said, which is always a true memory.
Kept facts become lines of the human block (a newer value of a single-valued kind replaces the old
line), or archival passages when the block is full. A promise (a reply sentence with a promise cue,
facts.toml [promise]) becomes a line of the persona block, as it was said. Every one is recorded with the message it came
from (memory/facts.py), in the same transaction and turn as the reply, so /undo and /retry revert it.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

import json_repair

from .agent_deps import AgentDeps
from .config import SamplerPreset
from .context import ContextWindow
from .conversation import ChatMessage
from .llm.base import GenerationRequest
from .memory.errors import MemoryEditError
from .memory.records import Fact, StoredMessage
from .prompts import PromptError, PromptLibrary
from .rendering import SAFETY_MARGIN, local_time_text
from .sentences import is_question

log = logging.getLogger(__name__)

FACTS_FILE = "facts.toml"
HUMAN_BLOCK = "human"
CAPTURE_REASON = "capture"  # block history reason of captured lines (memory show --history)
MAX_PROPOSALS = 4
MAX_VALUE_CHARS = 40
MAX_PROMISE_CHARS = 80
PROMISE_KIND = "promise"
PERSONA_BLOCK = "persona"
CAPTURE_MAX_TOKENS = 160
CUE_WINDOW = 24  # characters between a cue and its value, at most
CAPTURE_SAMPLING = SamplerPreset(temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, seed=0)
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]*|[。！？!?]+")
_AFTER_FULL_STOP = re.compile(r"(?<=\.)\s+")  # "Oh, I love that one. I'll save you a copy."
_TRIM = " \t\"'「」『』()（）[]【】、。,.!?！？:："


@dataclass(frozen=True)
class FactKind:
    key: str
    label: str
    cues: tuple[str, ...]
    replace: bool = True
    max_chars: int = MAX_VALUE_CHARS
    # The line is labelled with the cue found next to the value (「妹: 由香」, "Sister's name: Yuka"),
    # not with `label`: "Family member's name: Yuka" does not answer "what's my sister's name?".
    label_from_cue: bool = False

    def label_for(self, cue: str) -> str:
        if not self.label_from_cue or not cue:
            return self.label
        words = cue.split()
        if len(words) > 1 and words[0].lower() in ("my", "our"):
            words = words[1:]
        label = " ".join(words)
        return label[0].upper() + label[1:]


@dataclass(frozen=True)
class PromiseRule:
    """facts.toml [promise]: a sentence of the persona's reply holding one of `cues` is a promise."""

    label: str
    cues: tuple[str, ...]
    max_chars: int = MAX_PROMISE_CHARS


@dataclass(frozen=True)
class FactVocabulary:
    """facts.toml: the kinds in priority order, sentence endings that are never part of a value
    (「ミケだよ」 → 「ミケ」), and what marks the persona's own promises (None: not kept)."""

    kinds: list[FactKind]
    endings: tuple[str, ...] = ()
    promise: PromiseRule | None = None
    # Words that make a question about the persona, not the user (「あなたの好きな食べ物は？」): the
    # user's facts of that kind are not pushed into the reply (see surfacing.asked_values).
    about_persona: tuple[str, ...] = ()

    def asks_about_persona(self, question: str, persona_name: str) -> bool:
        text = _lower(normalised(question))
        name = _lower(normalised(persona_name)).strip()
        words = [*self.about_persona, *((name + ending for ending in PERSONA_NAME_ENDINGS) if name else ())]
        return any(_holds_word(text, _lower(normalised(word))) for word in words)

    def trimmed(self, value: str) -> str:
        for ending in sorted(self.endings, key=len, reverse=True):
            if value.endswith(ending) and len(value) > len(ending):
                return value[: -len(ending)]
        return value


@dataclass(frozen=True)
class GroundedFact:
    """A value found in the message: `kind` None means no cue stood near it (kept as a note)."""

    kind: FactKind | None
    value: str
    sentence: str
    cue: str = ""  # the cue word next to the value, as the user wrote it


@dataclass(frozen=True)
class Captured:
    fact: Fact
    replaced: Fact | None = None


def load_vocabulary(prompts: PromptLibrary) -> FactVocabulary:
    """The fact kinds of the agent's language, from facts.toml (user's copy first), in priority order."""
    path = prompts.source_of(FACTS_FILE)
    if path is None:
        raise PromptError(f"{FACTS_FILE} not found in {' or '.join(str(p) for p in prompts.search_path)}; restore it")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        kinds = [
            FactKind(key=str(entry["key"]), label=str(entry["label"]), cues=tuple(str(c) for c in entry["cues"]),
                     replace=bool(entry.get("replace", True)), max_chars=int(entry.get("max_chars", MAX_VALUE_CHARS)),
                     label_from_cue=bool(entry.get("label_from_cue", False)))
            for entry in data.get("kind", [])
        ]
        endings = tuple(str(ending) for ending in data.get("endings", []))
        about_persona = tuple(str(word) for word in data.get("about_persona", []))
        promise_table = data.get("promise")
        promise = None
        if promise_table and promise_table.get("cues"):
            promise = PromiseRule(label=str(promise_table["label"]), cues=tuple(str(c) for c in promise_table["cues"]),
                                  max_chars=int(promise_table.get("max_chars", MAX_PROMISE_CHARS)))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PromptError(f"{path}: not a valid facts file ({exc}); each [[kind]] needs key, label and cues, "
                          "and [promise] a label and cues") from None
    if not kinds:
        raise PromptError(f"{path}: no [[kind]] entries; add at least one, or set [memory] mode = agent")
    return FactVocabulary(kinds, endings, promise, about_persona)


# After the persona's name, these make it the owner: 「さくらの好きな食べ物は？」, "Sakura's favorite food?"
PERSONA_NAME_ENDINGS = ("の", "は", "って", "ちゃんの", "ちゃんは", "さんの", "さんは", "'s")


def _holds_word(text: str, word: str) -> bool:
    """`word` in `text`; a Latin word only as a whole word ("your" is not in "yourself")."""
    if not word:
        return False
    if word.isascii():
        return re.search(r"(?<![a-z0-9])" + re.escape(word) + r"(?![a-z0-9])", text) is not None
    return word in text


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


def normalised(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _lower(text: str) -> str:
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text  # keep offsets valid for odd scripts


def mentions_a_cue(message: str, kinds: list[FactKind]) -> bool:
    """Cheap gate before any model call: a message with no cue word of any kind states no fact we keep."""
    text = _lower(normalised(message))
    return any(_lower(normalised(cue)) in text for kind in kinds for cue in kind.cues)


def cue_sentences(message: str, kinds: list[FactKind]) -> str:
    """Only the statements that hold a cue word: a small model extracts from 「うちの猫の名前はミケだよ。」
    what it misses in a longer message with a greeting in front. "" when there is none: a question
    (「猫の名前、覚えてる？」) states nothing, and grounding would drop whatever was proposed for it."""
    text = normalised(message)
    chosen = [body.strip() for _, body in _sentences(text) if mentions_a_cue(body, kinds) and not is_question(body)]
    return "".join(chosen)


def _sentences(text: str) -> list[tuple[int, str]]:
    return [(match.start(), match.group()) for match in _SENTENCE.finditer(text)]


def _cue_spans(sentence: str, kinds: list[FactKind]) -> list[tuple[int, int, FactKind]]:
    """Every cue occurrence in `sentence`; of overlapping ones only the longest (then highest-priority) stays."""
    lowered = _lower(sentence)
    found: list[tuple[int, int, int, FactKind]] = []
    for priority, kind in enumerate(kinds):
        for cue in kind.cues:
            needle = _lower(normalised(cue))
            start = lowered.find(needle)
            while needle and start >= 0:
                found.append((start, start + len(needle), priority, kind))
                start = lowered.find(needle, start + 1)
    found.sort(key=lambda span: (-(span[1] - span[0]), span[2]))
    kept: list[tuple[int, int, FactKind]] = []
    for start, end, _, kind in found:
        if all(end <= other_start or start >= other_end for other_start, other_end, _ in kept):
            kept.append((start, end, kind))
    return kept


def mentioned_kinds(text: str, kinds: list[FactKind]) -> set[str]:
    """The kinds whose cue words (or label) `text` holds; of overlapping cues the longer wins, as in
    grounding: 「うちの猫の名前は？」 asks for the pet's name (猫の名前), not the user's (名前は)."""
    labelled = [replace(kind, cues=(*kind.cues, kind.label)) for kind in kinds]
    return {kind.key for _, _, kind in _cue_spans(normalised(text), labelled)}


def _without_cues(start: int, length: int, spans: list[tuple[int, int, FactKind]]) -> tuple[int, int] | None:
    """The value's span with a cue word at its start or end cut off (「そばアレルギー」 → 「そば」), or
    None when nothing else is left."""
    end = start + length
    for cue_start, cue_end, _ in spans:
        if cue_start <= start and end <= cue_end:
            return None
        if cue_start <= start < cue_end:
            start = cue_end
        elif cue_start < end <= cue_end:
            end = cue_start
    return (start, end - start) if end > start else None


def ground(message: str, proposals: list[tuple[str, str]], vocabulary: FactVocabulary) -> list[GroundedFact]:
    """The proposals (model kind, value) that are grounded in `message`, each with the kind its cue
    words give it (see the module docstring). Values are returned as written in the message."""
    kinds = vocabulary.kinds
    text = normalised(message)
    lowered = _lower(text)
    grounded: list[tuple[int, GroundedFact]] = []  # (characters between the value and its cue, fact)
    seen: set[str] = set()
    for _, raw_value in proposals:
        value = vocabulary.trimmed(normalised(raw_value).strip(_TRIM)).strip(_TRIM)
        if not value or len(value) > MAX_VALUE_CHARS:
            continue
        position = lowered.find(_lower(value))
        if position < 0:
            continue  # not said: never stored
        value = text[position:position + len(value)]
        sentence_start, sentence = next(
            ((start, body) for start, body in _sentences(text) if start <= position < start + len(body)), (0, text))
        if is_question(sentence):
            continue  # "do you remember my cat's name?" states nothing
        local = position - sentence_start
        spans = _cue_spans(sentence, kinds)
        cut = _without_cues(local, len(value), spans)
        if cut is None:
            continue  # the value is (part of) a cue word itself: 「猫」 is not a pet's name
        local, length = cut
        value = sentence[local:local + length].strip(_TRIM)
        if not value or _lower(value) in seen:
            continue
        local = sentence.find(value, local)
        gaps = [(min(abs(local - end), abs(start - (local + len(value)))), kind, sentence[start:end])
                for start, end, kind in spans]
        nearby = [(gap, kind, cue) for gap, kind, cue in gaps if gap <= CUE_WINDOW]
        gap, kind, cue = min(nearby, key=lambda item: (item[0], kinds.index(item[1]))) if nearby else (0, None, "")
        if kind is not None and len(value) > kind.max_chars:
            continue
        seen.add(_lower(value))
        grounded.append((gap, GroundedFact(kind=kind, value=value, sentence=sentence.strip(), cue=cue)))
    return _one_value_per_single_kind(grounded)


def _one_value_per_single_kind(grounded: list[tuple[int, GroundedFact]]) -> list[GroundedFact]:
    """A message states one value of a single-valued kind: the one nearest its cue. "I work as a
    nurse at a city hospital" gave "nurse" and "a city hospital", both near "work as", and the
    second replaced the first."""
    nearest: dict[str, int] = {}
    for gap, fact in grounded:
        if fact.kind is not None and fact.kind.replace:
            nearest[fact.kind.key] = min(gap, nearest.get(fact.kind.key, gap))
    kept: list[GroundedFact] = []
    taken: set[str] = set()
    for gap, fact in grounded:
        if fact.kind is not None and fact.kind.replace:
            if fact.kind.key in taken or gap != nearest[fact.kind.key]:
                continue
            taken.add(fact.kind.key)
        kept.append(fact)
    return kept


def promised_sentences(reply: str, rule: PromiseRule) -> list[str]:
    """The sentences of the persona's reply that promise something: a cue word in a sentence that is
    not a question, kept word for word (「じゃあ今度、その本を取っておくね！」)."""
    found = []
    pieces = (piece for _, sentence in _sentences(reply) for piece in _AFTER_FULL_STOP.split(sentence))
    for sentence in pieces:
        sentence = sentence.strip()
        folded = _lower(normalised(sentence))
        if (sentence and not is_question(folded) and len(sentence) <= rule.max_chars
                and any(_lower(normalised(cue)) in folded for cue in rule.cues)):
            found.append(sentence)
    return found


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


class FactCapture:
    """Runs the extraction for one user message and writes what is grounded."""

    def __init__(self, deps: AgentDeps, context: ContextWindow) -> None:
        self.deps = deps
        self.store = deps.store
        self.prompts = deps.prompts
        self.context = context
        self._vocabulary: FactVocabulary | None = None

    @property
    def vocabulary(self) -> FactVocabulary:
        if self._vocabulary is None:
            self._vocabulary = load_vocabulary(self.prompts)
        return self._vocabulary

    def capture(self, message: StoredMessage) -> list[Captured]:
        """Extract, ground and store the facts of one user message. Returns what was stored."""
        statements = cue_sentences(message.content, self.vocabulary.kinds)
        if not statements:  # no model call for a message that states nothing we keep
            return []
        proposals = self._propose(statements)
        grounded = ground(message.content, proposals, self.vocabulary)
        if not grounded:
            return []
        with self.store.transaction():
            stored = [captured for captured in (self._store(fact, message) for fact in grounded) if captured is not None]
        # A new fact joins the human block, but the system prompt is not rebuilt for it: the message
        # that stated it is still in view, and a rebuild early in the prompt would make the server
        # evaluate the whole prompt again for the next reply (no KV-cache reuse). The block is in the
        # prompt from the next rebuild on (a summary, a memory edit). A changed fact (Tokyo → Osaka)
        # is different: the old line in view would contradict the conversation, so it is rebuilt.
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

    def _store(self, fact: GroundedFact, message: StoredMessage) -> Captured | None:
        if fact.kind is None:
            return self._store_note(fact, message)
        kind = fact.kind
        current = self.store.facts.current(kind.key)
        if any(_lower(old.value) == _lower(fact.value) for old in current):
            return None  # already known
        label = kind.label_for(fact.cue)
        line = self.prompts.render("fact_line.j2", label=label, value=fact.value)
        replaced = current[-1] if kind.replace and current else None
        block, passage_id = self._write_line(HUMAN_BLOCK, line, replaced, message)
        record = self.store.facts.add(kind=kind.key, label=label, value=fact.value, line=line, block=block,
                                      passage_id=passage_id, message_id=message.id, turn_id=message.turn_id,
                                      replaces=replaced.id if replaced else None)
        return Captured(record, replaced)

    def _store_note(self, fact: GroundedFact, message: StoredMessage) -> Captured | None:
        if any(old.kind == "note" and old.value == fact.sentence for old in self.store.facts.current("note")):
            return None
        line = self.prompts.render("note_passage.j2", sentence=fact.sentence, time=local_time_text(message.time))
        passage = self.store.archival.insert(line, source="capture", time=message.time)
        record = self.store.facts.add(kind="note", label="", value=fact.sentence, line=line, block=None,
                                      passage_id=passage.id, message_id=message.id, turn_id=message.turn_id)
        return Captured(record)


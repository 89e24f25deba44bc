"""Grounding: which values a user message really states, and of what kind (memory mode "assisted").

The model proposes, the code decides:
- a value is kept only if it appears word for word in the user's message (never a paraphrase, never
  the instruction's example), in a sentence that is not a question;
- its kind is read off the cue words next to it in the same sentence (facts.toml), not off the
  model's label — a small model calls a cat's name "name" as readily as "pet_name";
- a value with no cue near it is not filed under any kind (the caller keeps the sentence as a note).
The persona's promises are found the same way, by cue words in its reply, kept as said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .fact_vocabulary import MAX_VALUE_CHARS, FactKind, FactVocabulary, PromiseRule, lowercase, normalised
from .sentences import is_question

CUE_WINDOW = 24  # characters between a cue and its value, at most
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]*|[。！？!?]+")
_AFTER_FULL_STOP = re.compile(r"(?<=\.)\s+")  # "Oh, I love that one. I'll save you a copy."
_TRIM = " \t\"'「」『』()（）[]【】、。,.!?！？:："


@dataclass(frozen=True)
class GroundedFact:
    """A value found in the message: `kind` None means no cue stood near it (kept as a note)."""

    kind: FactKind | None
    value: str
    sentence: str
    cue: str = ""  # the cue word next to the value, as the user wrote it



def mentions_a_cue(message: str, kinds: list[FactKind]) -> bool:
    """Cheap gate before any model call: a message with no cue word of any kind states no fact we keep."""
    text = lowercase(normalised(message))
    return any(lowercase(normalised(cue)) in text for kind in kinds for cue in kind.cues)


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
    lowered = lowercase(sentence)
    found: list[tuple[int, int, int, FactKind]] = []
    for priority, kind in enumerate(kinds):
        for cue in kind.cues:
            needle = lowercase(normalised(cue))
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
    lowered = lowercase(text)
    grounded: list[tuple[int, GroundedFact]] = []  # (characters between the value and its cue, fact)
    seen: set[str] = set()
    for _, raw_value in proposals:
        value = vocabulary.trimmed(normalised(raw_value).strip(_TRIM)).strip(_TRIM)
        if not value or len(value) > MAX_VALUE_CHARS:
            continue
        position = lowered.find(lowercase(value))
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
        if not value or lowercase(value) in seen:
            continue
        local = sentence.find(value, local)
        gaps = [(min(abs(local - end), abs(start - (local + len(value)))), kind, sentence[start:end])
                for start, end, kind in spans]
        nearby = [(gap, kind, cue) for gap, kind, cue in gaps if gap <= CUE_WINDOW]
        gap, kind, cue = min(nearby, key=lambda item: (item[0], kinds.index(item[1]))) if nearby else (0, None, "")
        if kind is not None and len(value) > kind.max_chars:
            continue
        seen.add(lowercase(value))
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
        folded = lowercase(normalised(sentence))
        if (sentence and not is_question(folded) and len(sentence) <= rule.max_chars
                and any(lowercase(normalised(cue)) in folded for cue in rule.cues)):
            found.append(sentence)
    return found



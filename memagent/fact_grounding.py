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

from .fact_vocabulary import (
    MAX_VALUE_CHARS,
    VALUE_SLOT,
    FactKind,
    FactVocabulary,
    PromiseRule,
    holds_word,
    lowercase,
    normalised,
    whole_word,
)
from .sentences import is_question, join_sentences, split_sentences
from .statements import someone_elses

CUE_WINDOW = 24  # characters between a cue and its value, at most
_AFTER_FULL_STOP = re.compile(r"(?<=\.)\s+")  # "Oh, I love that one. I'll save you a copy."
_TRIM = " \t\"'「」『』()（）[]【】、。,.!?！？:："
_CLAUSE_MARK = re.compile(r"[、。,，！？!?;；:：\n]")  # a value read off a frame never spans one


@dataclass(frozen=True)
class GroundedFact:
    """A value found in the message: `kind` None means no cue stood near it (kept as a note)."""

    kind: FactKind | None
    value: str
    sentence: str
    cue: str = ""  # the cue word next to the value, as the user wrote it



def mentions_a_cue(message: str, kinds: list[FactKind]) -> bool:
    """Whether `message` holds a cue word of any kind (a Latin cue as whole words: "cat" is not in
    "relocated")."""
    text = lowercase(normalised(message))
    return any(holds_word(text, lowercase(normalised(cue))) for kind in kinds for cue in kind.cues)


def cue_sentences(message: str, kinds: list[FactKind]) -> str:
    """Only the statements that hold a cue word: a small model extracts from 「うちの猫の名前はミケだよ。」
    what it misses in a longer message with a greeting in front. "" when there is none: a question
    (「猫の名前、覚えてる？」) states nothing, and grounding would drop whatever was proposed for it."""
    text = normalised(message)
    chosen = [body for _, body in split_sentences(text) if mentions_a_cue(body, kinds) and not is_question(body)]
    return join_sentences(chosen)


def _cue_spans(sentence: str, kinds: list[FactKind]) -> list[tuple[int, int, FactKind]]:
    """Every cue occurrence in `sentence`; of overlapping ones only the longest (then highest-priority) stays."""
    lowered = lowercase(sentence)
    found: list[tuple[int, int, int, FactKind]] = []
    for priority, kind in enumerate(kinds):
        for cue in kind.cues:
            needle = lowercase(normalised(cue))
            if not needle:
                continue
            pattern = whole_word(needle) if needle.isascii() else re.compile(re.escape(needle))
            found += [(m.start(), m.end(), priority, kind) for m in pattern.finditer(lowered)]
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
            ((start, body) for start, body in split_sentences(text) if start <= position < start + len(body)), (0, text))
        if is_question(sentence):
            continue  # "do you remember my cat's name?" states nothing
        local = position - sentence_start
        spans = _cue_spans(sentence, kinds)
        cut = _without_cues(local, len(value), spans)
        if cut is None:
            continue  # the value is (part of) a cue word itself: 「猫」 is not a pet's name
        local, length = cut
        value = sentence[local:local + length].strip(_TRIM)
        if not vocabulary.is_a_value(value) or lowercase(value) in seen:
            continue
        local = sentence.find(value, local)
        gaps = [(min(abs(local - end), abs(start - (local + len(value)))), kind, sentence[start:end])
                for start, end, kind in spans]
        nearby = [(gap, kind, cue) for (gap, kind, cue), (start, end, _) in zip(gaps, spans)
                  if gap <= CUE_WINDOW and not _contrast_between(sentence, local, len(value), start, end, vocabulary)
                  and not _preposition_between(sentence[end:local], vocabulary)]
        gap, kind, cue = min(nearby, key=lambda item: (item[0], kinds.index(item[1]))) if nearby else (0, None, "")
        if kind is not None and len(value) > kind.max_chars:
            continue
        if kind is not None and (_a_phrase(value, local, spans, vocabulary)
                                 or _a_compound_with_its_cue(sentence, local, len(value), kind, spans)):
            kind, cue = None, ""
        if kind is not None and not (_the_users_now(sentence, local, len(value), cue, vocabulary)
                                     and _fits(kind, sentence, local, len(value))):
            kind, cue = None, ""  # someone else's, denied, past or not of this kind: kept as said, never filed
        seen.add(lowercase(value))
        grounded.append((gap, GroundedFact(kind=kind, value=value, sentence=sentence.strip(), cue=cue)))
    return _one_value_per_single_kind(grounded)


def _preposition_between(between: str, vocabulary: FactVocabulary) -> bool:
    """A Latin bound word between a cue and the value after it: "my name is on the list", "work as a
    nurse at a city hospital" — the cue names something else. ("" when the value comes first.)"""
    folded = lowercase(normalised(between))
    return any(bound.isascii() and holds_word(folded, lowercase(bound.strip())) for bound in vocabulary.value_bounds)


def _a_phrase(value: str, value_at: int, spans: list[tuple[int, int, FactKind]], vocabulary: FactVocabulary) -> bool:
    """A stretch of the sentence rather than a value: it holds a cue word inside it, or a word that
    bounds a value before its end (「文鳥のピーを飼ってる」, 「先月結婚した」, "at a city hospital")."""
    end = value_at + len(value)
    if any(value_at < cue_start and cue_end < end for cue_start, cue_end, _ in spans):
        return True
    folded = lowercase(value)
    return any(stop < len(folded) for _, stop in _bounds_in(folded, vocabulary.value_bounds))


def _a_compound_with_its_cue(sentence: str, value_at: int, length: int, kind: FactKind,
                             spans: list[tuple[int, int, FactKind]]) -> bool:
    """A value written onto a cue word of its kind with nothing between (「三毛猫」: 三毛 + 猫) is part
    of one word that says what sort of thing it is, not the value — unless one of the kind's frames
    is written that way (「{value}アレルギー」). A cue that opens or ends with a particle (「に住んで」)
    links rather than compounds."""
    end = value_at + length
    for cue_start, cue_end, cue_kind in spans:
        if cue_kind is not kind:
            continue
        cue = sentence[cue_start:cue_end]
        if cue_start == end and not _is_hiragana(cue[0]) and cue[0].isalnum():
            written = "{value}" + cue
        elif cue_end == value_at and not _is_hiragana(cue[-1]) and cue[-1].isalnum():
            written = cue + "{value}"
        else:
            continue
        if not any(written in frame for frame in kind.frames):
            return True
    return False


def _clause_around(sentence: str, position: int) -> tuple[int, int]:
    folded = lowercase(sentence)
    start = max((m.end() for m in _CLAUSE_MARK.finditer(folded, 0, position)), default=0)
    next_mark = _CLAUSE_MARK.search(folded, position)
    return start, next_mark.start() if next_mark else len(folded)


def _the_users_now(sentence: str, value_at: int, length: int, cue: str, vocabulary: FactVocabulary) -> bool:
    """Whether a value at `value_at` is the user's and true now: its clause denies nothing (「住んでない」,
    "used to", "if"), and no other person owns it ("my friend's cat", 「姉の友だちは」, 「彼の」)."""
    folded = lowercase(normalised(sentence))
    start, end = _clause_around(folded, value_at)
    if _denies(folded[start:end], vocabulary.negations):
        return False
    return not someone_elses(folded[start:value_at + length], lowercase(normalised(cue)), vocabulary.statements)


def _fits(kind: FactKind, sentence: str, value_at: int, length: int) -> bool:
    """The kind's own limits: no excluding word up to the end of the value's clause (「うちの犬は柴犬で、
    名前はコテツ」 names the dog, not the user), no telling word right after the value."""
    folded = lowercase(normalised(sentence))
    _, clause_end = _clause_around(folded, value_at)
    if any(holds_word(folded[:clause_end], lowercase(normalised(word))) for word in kind.excludes):
        return False
    after = folded[value_at + length:].lstrip()
    return not any(after.startswith(lowercase(normalised(word))) for word in kind.not_before)


def _contrast_between(sentence: str, value_at: int, length: int, cue_start: int, cue_end: int,
                      vocabulary: FactVocabulary) -> bool:
    """A contrast (「けど」, "but") between a cue and a value: 「名前は忘れたけど、あの映画が…」 names no one."""
    low, high = (cue_end, value_at) if cue_end <= value_at else (value_at + length, cue_start)
    between = lowercase(normalised(sentence[low:high]))
    return any(holds_word(between, lowercase(word)) for word in vocabulary.contrasts)


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
    pieces = (piece for _, sentence in split_sentences(reply) for piece in _AFTER_FULL_STOP.split(sentence))
    for sentence in pieces:
        sentence = sentence.strip()
        folded = lowercase(normalised(sentence))
        if (sentence and not is_question(folded) and len(sentence) <= rule.max_chars
                and any(lowercase(normalised(cue)) in folded for cue in rule.cues)):
            found.append(sentence)
    return found


def framed_facts(message: str, vocabulary: FactVocabulary) -> list[GroundedFact]:
    """Values read off the kinds' frames (facts.toml), word for word, in the message's statements:
    per sentence and kind, the shortest value its frames give, in a clause that denies nothing
    (「東京に住んでない」 is not where the user lives). No model call: a small model proposes the
    kind's word instead of the value, or nothing, late in a long chat."""
    found: list[GroundedFact] = []
    for _, sentence in split_sentences(normalised(message)):
        if is_question(sentence):
            continue
        for kind in vocabulary.kinds:
            values = [(value, frame) for frame in kind.frames for value in _frame_values(sentence, frame, vocabulary)
                      if len(value) <= kind.max_chars
                      and _fits(kind, sentence, max(sentence.find(value), 0), len(value))]
            if values:
                value, frame = min(values, key=lambda item: len(item[0]))
                found.append(GroundedFact(kind=kind, value=value, sentence=sentence.strip(), cue=_cue_in(frame, kind)))
    return found


def _frame_values(sentence: str, frame: str, vocabulary: FactVocabulary) -> list[str]:
    before, _, after = lowercase(normalised(frame)).partition(VALUE_SLOT)
    folded = lowercase(sentence)
    anchor = before or after
    values: list[str] = []
    start = folded.find(anchor)
    while start >= 0:
        end = start + len(anchor)
        clause_start = max((m.end() for m in _CLAUSE_MARK.finditer(folded, 0, start)), default=0)
        next_mark = _CLAUSE_MARK.search(folded, end)
        clause_end = next_mark.start() if next_mark else len(folded)
        if before and after:  # the value is what the frame brackets
            close = folded.find(after, end, clause_end)
            span = (end, close) if close > end else None
        elif before:  # the value follows the frame, up to the first bound
            rest = folded[end:clause_end]
            # "my name is on the list": a bound right after the frame means it named no value
            starts_bound = any(s == len(rest) - len(rest.lstrip()) for s, _ in _bounds_in(rest, vocabulary.value_bounds))
            span = None if starts_bound else (end, end + _first_bound(rest, vocabulary.value_bounds))
        else:  # the value comes before the frame, from the last bound
            span = (clause_start + _after_last_bound(folded[clause_start:start], vocabulary.value_bounds), start)
        clause = folded[clause_start:clause_end]
        if (span is not None and not _denies(clause, vocabulary.negations)
                and not someone_elses(folded[clause_start:span[0]], anchor, vocabulary.statements)):
            value = vocabulary.trimmed(sentence[span[0]:span[1]].strip(_TRIM)).strip(_TRIM)
            if vocabulary.is_a_value(value):
                values.append(value)
        start = folded.find(anchor, start + 1)
    return values


def _denies(clause: str, negations: tuple[str, ...]) -> bool:
    """A negation in the clause (lower case): a Latin word as a whole word, "n't" anywhere."""
    for word in (lowercase(w) for w in negations if w):
        if holds_word(clause, word) if re.fullmatch(r"[a-z0-9 ]+", word) else word in clause:
            return True
    return False


def _bounds_in(text: str, bounds: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where `bounds` occur in `text` (lower case): a Latin word as a whole word; a hiragana particle
    only right after a character that is not hiragana (「東京に」, 「写真を」 — in 「さくらもち」 the も
    is part of the word)."""
    found: list[tuple[int, int]] = []
    for bound in (lowercase(b) for b in bounds if b):
        if bound.isascii():
            found += [(m.start(), m.end()) for m in whole_word(bound.strip()).finditer(text)]
            continue
        position = text.find(bound)
        while position >= 0:
            if not (_is_hiragana(bound[0]) and (position == 0 or _is_hiragana(text[position - 1]))):
                found.append((position, position + len(bound)))
            position = text.find(bound, position + 1)
    return found


def _first_bound(text: str, bounds: tuple[str, ...]) -> int:
    """Where a value that starts `text` ends: at the first bound after its first character."""
    return min((start for start, _ in _bounds_in(text, bounds) if text[:start].strip()), default=len(text))


def _after_last_bound(text: str, bounds: tuple[str, ...]) -> int:
    """Where a value that ends `text` starts: after the last bound before its last character."""
    return max((end for _, end in _bounds_in(text, bounds) if text[end:].strip()), default=0)


def _is_hiragana(char: str) -> bool:
    return "ぁ" <= char <= "ゖ"


def _cue_in(frame: str, kind: FactKind) -> str:
    """The longest of the kind's cue words that the frame holds (its line's label, with label_from_cue)."""
    folded = lowercase(normalised(frame))
    held = [cue for cue in kind.cues if lowercase(normalised(cue)) in folded]
    return max(held, key=len, default="")

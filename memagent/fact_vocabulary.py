"""What facts are kept, per language: facts.toml (the kinds, their cue words and frames, the sentence
endings that are never part of a value, what marks the persona's promises). Loaded once per agent
(AgentDeps.vocabulary); read by capture, grounding and surfacing."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field

from .prompts import PromptError, PromptLibrary

FACTS_FILE = "facts.toml"
MAX_VALUE_CHARS = 40
MAX_PROMISE_CHARS = 80


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
    # Word-for-word patterns around a value (「{value}アレルギー」, "allergic to {value}"): what the
    # value is when the model proposed nothing usable for this kind (see fact_grounding.framed_facts).
    frames: tuple[str, ...] = ()
    # A clause holding one of these is not about this kind (「嫌いな食べ物」 is no favourite food).
    excludes: tuple[str, ...] = ()
    # A value right before one of these is not of this kind (「4月から」, 「小学校に」 are no name).
    not_before: tuple[str, ...] = ()

    def label_for(self, cue: str) -> str:
        if not self.label_from_cue or not cue:
            return self.label
        words = cue.split()
        if len(words) > 1 and words[0].lower() in ("my", "our"):
            words = words[1:]
        label = " ".join(words)
        return label[0].upper() + label[1:]


@dataclass(frozen=True)
class StatementRules:
    """facts.toml [statements]: what marks a sentence that says nothing and another person
    (statements.py). These only ever drop sentences that carry nothing; no kind depends on them."""

    small_talk: tuple[str, ...] = ()  # phrases that carry nothing: greetings, thanks, reactions
    requests: tuple[str, ...] = ()  # a sentence opening ("tell me") or ending (「してね」) that asks for something
    function_words: tuple[str, ...] = ()  # Latin words that carry no content ("the", "really")
    others: tuple[str, ...] = ()  # words for people other than the user ("friend", 「同僚」, 「さん」)
    # a sentence's opening that makes it about the user (「わたしは」): what follows counts as content
    # even when it is all hiragana (「わたしはゆい。」)
    self_subjects: tuple[str, ...] = ()
    min_content: int = 3  # content needed: 2 per Latin content word, 1 per kanji, katakana or digit


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
    # Where a value read off a frame stops (a particle after a kanji word, "last" in "Osaka last
    # month"), and words that make a clause deny what a frame would read off it (「住んでない」).
    value_bounds: tuple[str, ...] = ()
    negations: tuple[str, ...] = ()
    # Words said about a cue's topic that are never a value: 「犬は苦手かな。」 is no dog named 苦手.
    not_values: tuple[str, ...] = ()
    # [statements]: what marks a sentence that says nothing, and another person (statements.py).
    statements: StatementRules = field(default_factory=StatementRules)
    # Words that part a cue from a value in the same sentence (「忘れたけど」, "but").
    contrasts: tuple[str, ...] = ()

    def is_a_value(self, value: str) -> bool:
        folded = lowercase(normalised(value))
        return bool(folded) and all(folded != lowercase(normalised(word)) for word in self.not_values)

    def asks_about_persona(self, question: str, persona_name: str) -> bool:
        text = lowercase(normalised(question))
        name = lowercase(normalised(persona_name)).strip()
        words = [*self.about_persona, *((name + ending for ending in PERSONA_NAME_ENDINGS) if name else ())]
        return any(holds_word(text, lowercase(normalised(word))) for word in words)

    def trimmed(self, value: str) -> str:
        for ending in sorted(self.endings, key=len, reverse=True):
            if value.endswith(ending) and len(value) > len(ending):
                return value[: -len(ending)]
        return value


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
                     label_from_cue=bool(entry.get("label_from_cue", False)),
                     frames=tuple(_frame(str(frame)) for frame in entry.get("frames", [])),
                     excludes=tuple(str(word) for word in entry.get("excludes", [])),
                     not_before=tuple(str(word) for word in entry.get("not_before", [])))
            for entry in data.get("kind", [])
        ]
        words = {key: tuple(str(word) for word in data.get(key, []))
                 for key in ("endings", "about_persona", "value_bounds", "negations", "not_values", "contrasts")}
        table = data.get("statements", {})
        statement_rules = StatementRules(
            **{key: tuple(str(word) for word in table.get(key, []))
               for key in ("small_talk", "requests", "function_words", "others", "self_subjects")},
            min_content=int(table.get("min_content", StatementRules.min_content)))
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
    return FactVocabulary(kinds, words["endings"], promise, words["about_persona"], words["value_bounds"],
                          words["negations"], words["not_values"], statement_rules,
                          words["contrasts"])


VALUE_SLOT = "{value}"


def _frame(frame: str) -> str:
    if frame.count(VALUE_SLOT) != 1 or frame == VALUE_SLOT:
        raise ValueError(f"frame {frame!r} must hold {VALUE_SLOT} once, with words beside it")
    return frame


# After the persona's name, these make it the owner: 「さくらの好きな食べ物は？」, "Sakura's favorite food?"
PERSONA_NAME_ENDINGS = ("の", "は", "って", "ちゃんの", "ちゃんは", "さんの", "さんは", "'s")


def holds_word(text: str, word: str) -> bool:
    """`word` in `text`; a Latin word only as a whole word ("your" is not in "yourself")."""
    if not word:
        return False
    if word.isascii():
        return whole_word(word).search(text) is not None
    return word in text


def whole_word(word: str) -> re.Pattern[str]:
    """`word` (lower case Latin) with no letter or digit right before or after it."""
    return re.compile(r"(?<![a-z0-9])" + re.escape(word) + r"(?![a-z0-9])")


def normalised(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def lowercase(text: str) -> str:
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text  # keep offsets valid for odd scripts



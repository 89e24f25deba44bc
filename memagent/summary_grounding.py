"""Keeping the conversation summary to what was said.

The summary sits in every later system prompt, so a line in it that nobody said is an invented
memory, shown to the model on every turn. Asked to summarise, a small model copies the
instruction's headings, puts the user's words into the persona's mouth and changes them (a
birthday becomes a meal), and the persona then speaks of what was never said.

So each line of a model's summary is checked against what it summarises (the conversation lines
and the summary so far) and kept only when it holds:
- a heading, or a line copied from the instruction itself, never holds;
- a transcript line ("speaker: words") holds only when that speaker said those words;
- any other line holds when every name-like word in it (a run of two or more kanji or katakana, a
  number, a capitalised Latin word not opening a sentence) appears in what it summarises, and at
  least half of its other longer Latin words do (by their first letters: "works" for "work").
  Strict on purpose: a paraphrase with a new kanji word (「予定」 for 「何をしようか」) is dropped too —
  the words themselves stay in recall memory, where surfacing finds them.
When no line holds, the summary is the user's own lines (`user_lines_summary`), which need no model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from .fact_vocabulary import holds_word
from .junk import is_system_note, nearly_equal, normalise_text
from .sentences import is_question

# Name-like words: runs of kanji (two or more: one kanji is mostly a verb or adjective stem),
# katakana (two or more), digits; Latin words, capitalised ones counted as names.
_KANJI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々〆]{2,}")
_KATAKANA = re.compile(r"[\u30a1-\u30fa\u30fc]{2,}")
_DIGITS = re.compile(r"\d+")
_LATIN = re.compile(r"[A-Za-z][A-Za-z'-]*")
_BULLET = re.compile(r"^\s*(?:[-*・•]|\d+[.)])\s*")
LATIN_PREFIX = 4  # "works" holds where "work" was said: Latin words compare by their first letters
LATIN_CONTENT_LETTERS = 5  # shorter Latin words are mostly glue ("the", "with", "likes" is 5)
LATIN_SHARE = 0.5  # of a line's other Latin words found in what it summarises
# Words a summary uses to tie what was said together, not things said.
SUMMARY_GLUE = frozenset({
    "their", "there", "these", "those", "about", "named", "called", "which", "while", "would", "could",
    "should", "after", "before", "being", "since", "because", "mentioned", "mentions", "talked", "talks",
    "shared", "shares", "person", "users", "user's", "really", "still", "again", "other", "often",
    # how a summary reports speech, not what was said
    "introduced", "introduces", "herself", "himself", "themselves", "yourself", "myself", "explained",
    "described", "revealed", "expressed", "stated", "asked", "answered", "replied", "greeted", "says"})


# Role words a model writes as transcript speakers whatever the instruction's labels were
# (`"user": …` for a line the persona said).
ROLE_WORDS = {"user": "user", "ユーザー": "user", "you": "assistant", "あなた": "assistant",
              "assistant": "assistant", "アシスタント": "assistant", "system": "system", "システム": "system"}
_SPEAKER = re.compile(r"^[\s\"'「『]*([^\s\"'」』:：]{1,16})[\"'」』]?\s*[:：]\s*(.*)$")


@dataclass(frozen=True)
class SummarySource:
    """What a summary may say: the conversation as (role, words), how the instruction labelled each
    role ("ユーザー" → user), the summary so far, and the instruction's own lines."""

    said: tuple[tuple[str, str], ...]
    labels: dict[str, str]
    previous: str = ""
    instruction_lines: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # the persona's and the user's names: a summary may use them

    # Normalised once per summary, not once per line of it.
    @cached_property
    def role_of(self) -> dict[str, str]:
        """Speaker word (casefolded) → role: the instruction's labels, then the common role words."""
        return {**ROLE_WORDS, **{label.casefold(): role for label, role in self.labels.items()}}

    @cached_property
    def said_normalised(self) -> tuple[tuple[str, str], ...]:
        return tuple((role, normalise_text(words)) for role, words in self.said)

    @cached_property
    def previous_lines(self) -> tuple[str, ...]:
        return tuple(line for line in (normalise_text(line) for line in self.previous.splitlines()) if line)


def grounded_summary(summary: str, source: SummarySource) -> str:
    """The lines of `summary` that hold against `source`, in order ("" when none does), each saying
    who said it: a line that names no speaker gets the label of the one whose words it holds against
    (the user's first), so the persona's own claims never read as the user's facts later."""
    everything = [*(words for _, words in source.said), source.previous, *source.labels, *source.names]
    said = _folded("\n".join(everything))
    by_role = {role: _folded("\n".join([*(words for r, words in source.said if r == role), *source.names,
                                         *source.labels]))
               for role in ("user", "assistant")}
    instruction = {normalise_text(line) for line in source.instruction_lines}
    instruction -= {words for _, words in source.said_normalised} | {""}
    label_of = {role: label for label, role in source.labels.items()}
    kept = []
    for line in summary.splitlines():
        role = _holds(line, said, instruction, source, by_role)
        if role is None:
            continue
        if role in ("user", "assistant") and role in label_of:
            kept.append(f"- {label_of[role]}: {_BULLET.sub('', line.strip())}")
        else:
            kept.append(line)
    return "\n".join(kept).strip()


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _holds(line: str, said: str, instruction: set[str], source: SummarySource,
           by_role: dict[str, str]) -> str | None:
    """None when `line` does not hold; else "" for a line that already names its speaker (or the
    summary so far), or the role whose words it holds against."""
    text = line.strip()
    folded = normalise_text(text)
    if not folded or text.startswith("#") or folded in instruction or is_system_note(text):
        return None
    body = _BULLET.sub("", text)
    if body.strip() in ("{", "}", "[", "]", "},", "],"):
        return None
    speaker = _speaker(body, source.role_of)
    if speaker is not None:
        role, words = speaker
        return "" if _said_by(role, words, source) else None
    if not _words_hold(body, said):
        return None
    if any(normalise_text(body) in previous for previous in source.previous_lines):
        return ""  # carried over from the summary so far, with whatever speaker it had
    if any(holds_word(_folded(body), _folded(label)) for label in source.labels):
        return ""  # it names whom it is about ("The user works as a nurse")
    return next((role for role, words in by_role.items() if _words_hold(body, words)), "assistant")


def _speaker(text: str, role_of: dict[str, str]) -> tuple[str, str] | None:
    """(role, words) of a transcript line ("ユーザー: …", '"user": "…",'), or None."""
    match = _SPEAKER.match(text)
    if match is None:
        return None
    role = role_of.get(match.group(1).casefold())
    if role is None:
        return None
    return role, match.group(2).strip().rstrip(",").strip("\"'「」『』 ")


def _said_by(role: str, words: str, source: SummarySource) -> bool:
    """`role` said `words` (nearly) in what is summarised, or the summary so far holds the line."""
    mine = normalise_text(words)
    if not mine:
        return False
    if any(mine in line for line in source.previous_lines):
        return True
    return any(said_role == role and nearly_equal(mine, said, 1) for said_role, said in source.said_normalised)


def _words_hold(text: str, said: str) -> bool:
    normal = unicodedata.normalize("NFKC", text)
    names = _KANJI.findall(normal) + _KATAKANA.findall(normal) + _DIGITS.findall(normal)
    latin = [(match.start(), match.group()) for match in _LATIN.finditer(normal)]
    # A capitalised word is a name unless it opens a sentence ("The user…", "Their cat…").
    names += [word for start, word in latin if word[0].isupper() and len(word) > 1 and word != "I"
              and not _opens_sentence(normal, start)]
    if any(name.casefold().removesuffix("'s") not in said for name in names):
        return False
    common = [word.lower() for _, word in latin if len(word) >= LATIN_CONTENT_LETTERS]
    common = [word for word in common if word not in SUMMARY_GLUE and word.removesuffix("'s") not in names]
    if not common:
        return True
    found = sum(1 for word in common if re.search(r"\b" + re.escape(word[:LATIN_PREFIX]), said))
    return found / len(common) >= LATIN_SHARE


def _opens_sentence(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:-*・•" or _BULLET.fullmatch(text[:start]) is not None


def user_lines_summary(previous: str | None, user_lines: Sequence[str], render_line: Callable[[str], str],
                       fits: Callable[[str], bool]) -> str:
    """The summary so far and the user's statements (not their questions), each as `render_line`
    writes it; the oldest lines go first while the whole does not `fit`."""
    lines = [line for line in (previous or "").splitlines() if line.strip()]
    lines += [render_line(text) for text in user_lines if text.strip() and not is_question(text)]
    while len(lines) > 1 and not fits("\n".join(lines)):
        lines.pop(0)
    return "\n".join(lines)

"""Which sentences of a user's message tell something worth keeping, and whose they are.

Open capture keeps every sentence that carries information, whatever it is about: not a question,
not a request, and more than small talk (greetings, thanks, reactions). What counts as small talk,
a request, a function word or another person is per language, in facts.toml [statements]; those
lists only ever drop sentences that say nothing, they never decide what kind of thing is remembered.
"""

from __future__ import annotations

import re

from .fact_vocabulary import StatementRules, holds_word, lowercase, normalised
from .sentences import is_question, split_sentences

_LATIN_WORD = re.compile(r"[a-z0-9][a-z0-9'’\-]*")
_NAME = re.compile(r"(?<=[A-Za-z0-9,;:'’] )[A-Z][a-z]+")
_POSSESSIVE = re.compile(r"(?<![a-z0-9])([a-z]+)['’]s(?![a-z0-9])")
# "it's", "that's", "let's": a contraction, not somebody's.
_NOT_POSSESSIVE = frozenset({"it", "that", "there", "here", "what", "who", "he", "she", "let", "where", "how", "name",
                              "everyone", "everything", "today", "one"})
_JA_PARTICLES_AFTER_PERSON = ("の", "は", "が", "も", "って", "とは", "にも")


def content_weight(sentence: str, rules: StatementRules) -> int:
    """How much a sentence says beyond small talk: 2 per Latin content word (3 for a name: capitalised
    after the first word), 1 per other letter that is not hiragana (kanji, katakana, a digit) —
    hiragana is mostly grammar."""
    names = len(_NAME.findall(normalised(sentence)))
    text = _without_small_talk(sentence, rules)
    stop = {lowercase(word) for word in rules.function_words}
    latin = [w for w in _LATIN_WORD.findall(text) if w not in stop and not w.isdigit() and len(w) > 1]
    others = sum(1 for char in re.sub(r"[a-z'’\-]+", " ", text)
                 if char.isalnum() and not ("ぁ" <= char <= "ゟ"))
    return 2 * len(latin) + names + others + _said_of_oneself(text, rules)


def _without_small_talk(text: str, rules: StatementRules) -> str:
    """`text` folded to lower case, each small-talk phrase in it replaced by a space."""
    folded_text = lowercase(normalised(text))
    for phrase in sorted(rules.small_talk, key=len, reverse=True):
        folded = lowercase(normalised(phrase))
        folded_text = re.sub(r"(?<![a-z0-9])" + re.escape(folded) + r"(?![a-z0-9])", " ", folded_text) \
            if folded.isascii() else folded_text.replace(folded, " ")
    return folded_text


def only_small_talk(text: str, rules: StatementRules) -> bool:
    """Nothing but small talk and punctuation ("Hi!", 「こんにちは。」, "OK"): not a letter besides."""
    return not any(char.isalnum() for char in _without_small_talk(text, rules))


def _said_of_oneself(text: str, rules: StatementRules) -> int:
    """The hiragana letters after an opening that makes the sentence about the user (「わたしはゆい」):
    there they are a name or a description, not grammar."""
    stripped = text.strip()
    for subject in (lowercase(normalised(s)) for s in rules.self_subjects):
        if subject and stripped.startswith(subject):
            return sum(1 for char in stripped[len(subject):] if "ぁ" <= char <= "ゟ")
    return 0


def is_request(sentence: str, rules: StatementRules) -> bool:
    text = lowercase(normalised(sentence)).strip().rstrip("。.!！~〜ー…")
    text = re.sub(r"^(?:ok(?:ay)?|so|and|well|oh|hey|ねえ|じゃあ)[,、\s]+", "", text)
    for marker in (lowercase(normalised(m)) for m in rules.requests):
        if marker.isascii() and (text == marker or text.startswith(marker + " ")):
            return True
        if not marker.isascii() and text.endswith(marker):
            return True
    return False


def tells_something(sentence: str, rules: StatementRules) -> bool:
    """A statement that carries information: not a question, not a request, not just small talk."""
    return (not is_question(sentence) and not is_request(sentence, rules)
            and content_weight(sentence, rules) >= rules.min_content)


def statements(message: str, rules: StatementRules) -> list[str]:
    """The sentences of `message` that tell something, word for word."""
    return [sentence for _, sentence in split_sentences(normalised(message)) if tells_something(sentence, rules)]


def someone_elses(before_value: str, cue: str, rules: StatementRules) -> bool:
    """Whether the words before a value (in its clause, lower case) make it another person's: a
    possessive that is not the user's ("my friend's cat", "his"), or a person word followed by a
    particle (「友達の猫」, 「姉の友だちは」). The cue itself does not count (「妹の由香」 is the sister's name)."""
    text = before_value.replace(lowercase(normalised(cue)), " ") if cue else before_value
    for match in _POSSESSIVE.finditer(text):
        if match.group(1) not in _NOT_POSSESSIVE:
            return True
    for word in (lowercase(normalised(w)) for w in rules.others):
        if word.isascii():
            if holds_word(text, word):
                return True
        elif any(word + particle in text for particle in _JA_PARTICLES_AFTER_PERSON):
            return True
    return False

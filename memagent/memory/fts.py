"""Turning user text into safe FTS5 / LIKE queries. User text is never FTS syntax: every term is
quoted as an FTS5 string, so `"`, `*`, `NEAR(…)`, `AND`, `-` and parentheses are matched literally."""

from __future__ import annotations

import re
import unicodedata

# The trigram tokenizer indexes 3-character windows; shorter strings go to the word index below.
MIN_FTS_CHARS = 3
LIKE_ESCAPE = "\\"
# Characters written without spaces between words (kana, kanji, hangul): each is a word of its own
# in the short-query index, so 「猫」 or 「夏休」 is found as characters in a row.
_UNSPACED = re.compile(r"([\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])")
SHORT_TOKENS_FUNCTION = "memagent_short_tokens"
FOLD_FUNCTION = "memagent_fold"


def fts_string(text: str) -> str:
    """`text` as one FTS5 string literal: a phrase that matches exactly that substring."""
    return '"' + text.replace('"', '""') + '"'


def like_pattern(text: str) -> str:
    """A LIKE pattern for "contains `text`", with LIKE's own wildcards escaped (use ESCAPE '\\')."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")
    return f"%{escaped}%"


def _is_separator(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "ZPS" or char.isspace()


def chunks(text: str) -> list[str]:
    """Runs of text between whitespace, punctuation and symbols."""
    found: list[str] = []
    current: list[str] = []
    for char in text:
        if _is_separator(char):
            if current:
                found.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        found.append("".join(current))
    return found


def query_trigrams(text: str) -> list[str]:
    """The distinct 3-character windows of each chunk of `text`, in order, lower-cased.

    A bag of trigrams lets a natural-language question match passages that share only some of its
    words, in any order and without word segmentation."""
    seen: dict[str, None] = {}
    for chunk in chunks(text.lower()):
        for start in range(len(chunk) - MIN_FTS_CHARS + 1):
            seen.setdefault(chunk[start:start + MIN_FTS_CHARS], None)
    return list(seen)


def count_occurrences(text: str, needle: str) -> int:
    return text.lower().count(needle.lower()) if needle else 0


def fold(text: str | None) -> str:
    """What the trigram indexes read for `text` (registered in SQLite as FOLD_FUNCTION), and how a
    query reads before it meets them: NFKC, so ＡＢＣ is ABC and ｶﾀｶﾅ is カタカナ (the tokenizer
    folds case)."""
    return unicodedata.normalize("NFKC", text) if text else ""


def short_tokens(text: str | None) -> str:
    """What the short-query index (FTS5 unicode61, registered in SQLite as SHORT_TOKENS_FUNCTION)
    reads for `text`: NFKC-folded, with every kana/kanji/hangul character spaced apart. Latin words
    stay whole words. A query of 1-2 characters is looked up there instead of scanning every row."""
    if not text:
        return ""
    return _UNSPACED.sub(r" \1 ", unicodedata.normalize("NFKC", text))


def short_phrase(query: str) -> str | None:
    """An FTS5 query for the short-query index: the query's tokens as one phrase (adjacent, in
    order), or None when it has no word characters at all."""
    tokens = chunks(short_tokens(query).lower())
    return fts_string(" ".join(tokens)) if tokens else None


def short_match(words: list[str]) -> str | None:
    """An FTS5 query for the short-query index matching any of `words` (each a phrase)."""
    phrases = [phrase for word in words if (phrase := short_phrase(word)) is not None]
    return " OR ".join(phrases) if phrases else None

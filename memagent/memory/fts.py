"""Turning user text into safe FTS5 / LIKE queries. User text is never FTS syntax: every term is
quoted as an FTS5 string, so `"`, `*`, `NEAR(…)`, `AND`, `-` and parentheses are matched literally."""

from __future__ import annotations

import unicodedata

# The trigram tokenizer indexes 3-character windows; shorter strings can only be found with LIKE.
MIN_FTS_CHARS = 3
LIKE_ESCAPE = "\\"


def fts_string(text: str) -> str:
    """`text` as one FTS5 string literal: a phrase that matches exactly that substring."""
    return '"' + text.replace('"', '""') + '"'


def fts_any(terms: list[str]) -> str:
    return " OR ".join(fts_string(term) for term in terms)


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

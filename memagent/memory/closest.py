"""Find the part of a block that most resembles text the model thought was there."""

from __future__ import annotations

from difflib import SequenceMatcher

MIN_SIMILARITY = 0.5


def _candidates(haystack: str, length: int) -> list[str]:
    lines = [line.strip() for line in haystack.splitlines() if line.strip()]
    step = max(1, length // 8)
    windows = [haystack[start:start + length] for start in range(0, max(1, len(haystack) - length + 1), step)]
    return lines + windows


def closest_substring(haystack: str, needle: str) -> str | None:
    """The line or `len(needle)`-character window of `haystack` most similar to `needle`, or None
    when nothing is at least half similar."""
    if not haystack or not needle:
        return None
    best, best_ratio = None, MIN_SIMILARITY
    matcher = SequenceMatcher(autojunk=False)
    matcher.set_seq2(needle)
    for candidate in _candidates(haystack, len(needle)):
        matcher.set_seq1(candidate)
        if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio or (ratio == best_ratio and best is None):
            best, best_ratio = candidate, ratio
    return best.strip() if best else None

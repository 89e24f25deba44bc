"""What kind of sentence a line of chat is, shared by capture, surfacing and the summary."""

from __future__ import annotations


def is_question(sentence: str) -> bool:
    """Ends with a question mark (a closing 。 or ! after it does not count)."""
    stripped = sentence.strip().rstrip("。.!！")
    return stripped.endswith(("?", "？"))

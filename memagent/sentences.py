"""What kind of sentence a line of chat is, and where its sentences are: shared by capture,
grounding, surfacing and the summary."""

from __future__ import annotations

import re

# A sentence ends at 。！？!?… or a line break, or at a full stop before a space and a word that does
# not start in lower case ("at 1 a.m. every day" and "3.5" stay one sentence).
_SENTENCE = re.compile(r"(?:[^。！？!?…\n.]|\.(?!\s+[^a-z\s]|\s*$))+(?:[。！？!?…]+|\.+(?=\s+[^a-z\s]|\s*$))*"
                       r"|[。！？!?….]+")


def split_sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) for each sentence of `text`, end marks kept, surrounding space dropped."""
    found = []
    for match in _SENTENCE.finditer(text):
        body = match.group()
        stripped = body.strip()
        if stripped:
            found.append((match.start() + body.index(stripped[0]), stripped))
    return found


def join_sentences(sentences: list[str]) -> str:
    """Sentences back into one text: with a space between Latin ones, as they are between Japanese ones."""
    return " ".join(sentences) if all(sentence.isascii() for sentence in sentences) else "".join(sentences)


def is_question(sentence: str) -> bool:
    """Ends with a question mark (a closing 。 or ! after it does not count)."""
    stripped = sentence.strip().rstrip("。.!！")
    return stripped.endswith(("?", "？"))

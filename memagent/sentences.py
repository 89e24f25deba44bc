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


_WORD = re.compile(r"[\w'’]+")


def plain_words(question: str) -> str:
    """A Latin-script question as its bare words, lower case, without its question mark ("Do you
    remember my regular spot?" → "do you remember my regular spot"): embedded so, it lands nearer the
    statement that answers it than in its interrogative form. Other scripts are left as they are (in
    Japanese the same change moved nothing, bench.open_memory's dev split)."""
    return " ".join(_WORD.findall(question.lower())) if question.isascii() and _WORD.search(question) else question

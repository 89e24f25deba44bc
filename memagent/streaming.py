"""Show a reply while it is generated: pull the text of `send_message`'s `message` out of the
partial JSON the model is streaming."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_MESSAGE_START = re.compile(r'"function"\s*:\s*"send_message".*?"message"\s*:\s*"', re.DOTALL)


class MessageStreamer:
    """Feed it raw text deltas; it calls `on_message_text` with each new piece of the message."""

    def __init__(self, on_message_text: Callable[[str], None]) -> None:
        self.on_message_text = on_message_text
        self.buffer = ""
        self._start: int | None = None
        self.shown = ""
        self.done = False

    def feed(self, delta: str) -> None:
        if self.done:
            return
        self.buffer += delta
        if self._start is None:
            match = _MESSAGE_START.search(self.buffer)
            if match is None:
                return
            self._start = match.end()
        decoded, closed = _decode_prefix(self.buffer[self._start:])
        if len(decoded) > len(self.shown):
            self.on_message_text(decoded[len(self.shown):])
            self.shown = decoded
        self.done = closed


def _decode_prefix(raw: str) -> tuple[str, bool]:
    """The decoded JSON string content in `raw` up to its closing quote (or as far as it is
    complete), and whether the closing quote was reached. A half-written escape is held back."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == '"':
            return "".join(out), True
        if char != "\\":
            out.append(char)
            i += 1
            continue
        length = 6 if raw[i + 1 : i + 2] == "u" else 2
        escape = raw[i : i + length]
        if len(escape) < length:
            break
        try:
            out.append(json.loads(f'"{escape}"'))
        except ValueError:
            out.append(escape)
        i += length
    return "".join(out), False

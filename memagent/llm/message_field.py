"""Reading one JSON string field of a call while the model writes it, token by token.

The logits processors that steer a reply's wording (repeat_guard.py, recall_nudge.py) act only
inside the `message` string of the call: its JSON around it and its inner thoughts are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Tokenize = Callable[[str], list[int]]
Detokenize = Callable[[list[int]], bytes]


class FieldReader:
    """Keeps the text generated so far for one generation and tells the field's text while it is
    being written (None before the field opens and after its string closes)."""

    def __init__(self, field: str, detokenize: Detokenize) -> None:
        self._detokenize = detokenize
        self._opening = re.compile(r'"' + re.escape(field) + r'"\s*:\s*"')
        self._generated = bytearray()
        self._seen: int | None = None  # tokens already read: the prompt's length at the first call

    def read(self, input_ids: npt.NDArray[np.intc]) -> str | None:
        if self._seen is None:
            self._seen = len(input_ids)
        if len(input_ids) > self._seen:
            self._generated += self._detokenize([int(token) for token in input_ids[self._seen:]])
            self._seen = len(input_ids)
        return self._field_so_far()

    def _field_so_far(self) -> str | None:
        text = self._generated.decode("utf-8", errors="ignore")
        opening = self._opening.search(text)
        if opening is None:
            return None
        body = text[opening.end():]
        escaped = False
        for char in body:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                return None
        try:
            return str(json.loads('"' + body.rstrip("\\") + '"'))
        except json.JSONDecodeError:  # a half-written escape such as \u30
            return body

"""Steering a reply towards a remembered value it was asked for, while it is generated (embedded backend).

Asked 「うちの猫の名前は？」 with the fact 「猫の名前: ミケ」 placed right before the reply, small models
often answer without it (「お疲れ様！」). Memory must not depend on the
model's initiative, so the system leans on decoding as well as on the prompt:

- only while the call's `message` string is being written, and only for the values of the facts the
  user's question asked for (surfacing.py finds them; they are the user's own words, so nothing new
  is invented);
- a token that would start a value not said yet is pushed up by `start` logits — enough to win where
  the model already finds the value a likely next word, meant to be too little to break into the
  middle of another word;
- once a value has begun where it was offered, the token continuing it is pushed up by `follow`
  logits, so a begun name is finished rather than left half-written;
- a value already said is left alone: saying it once answers the question;
- when the reply missed every value all the same, the agent asks once more with `insist`: the token
  starting a value gets `insist` logits, enough to open the message with it (「ミケだよ！…」).

Matching is by text, not tokens, like the repeat guard: the value's next characters are tokenized
whatever way the model split what came before. Written here because llama.cpp's logit bias is static
per token and cannot follow a value token by token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .base import RecallNudge
from .message_field import Detokenize, FieldReader, Tokenize


@dataclass(frozen=True)
class NudgeStrength:
    start: float = 5.0  # logits added to a token starting a value not said yet
    follow: float = 10.0  # logits added to the token continuing a value begun where it was offered
    insist: float = 30.0  # logits added to a token starting a value on the second try (RecallNudge.insist)
    # Right after an insisted value, logits taken from the tokens that would end the message: a reply
    # that is the bare value (「ミケ」) answers, but no person talks like that; it goes on instead.
    go_on: float = 8.0
    go_on_chars: int = 6  # ...until the message holds this many characters beyond the value


class RecallNudgeProcessor:
    """A llama-cpp-python logits processor for one generation (it keeps the text generated so far)."""

    def __init__(self, nudge: RecallNudge, tokenize: Tokenize, detokenize: Detokenize,
                 strength: NudgeStrength | None = None) -> None:
        self._values = [value.strip() for value in dict.fromkeys(nudge.values) if value.strip()]
        self._tokenize = tokenize
        self._detokenize = detokenize
        self._strength = strength or NudgeStrength()
        self._insist = nudge.insist
        self._reader = FieldReader(nudge.field, detokenize)
        # Where in the message each value was offered to start, with the length of the token offered
        # there: a value is followed only once the model took that whole token (the 'Sa' of
        # 'Saturday' has not begun 'Sam', whose first token is 'Sam').
        self._offered: dict[str, dict[int, int]] = {value: {} for value in self._values}
        self.pushed = 0  # how many times a token was pushed up (for the debug log and tests)
        self._closers: list[int] | None = None

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        if not self._values:
            return scores
        message = self._reader.read(input_ids)
        if message is None:
            return scores
        bonuses: dict[int, float] = {}
        for value in self._values:
            if value in message:
                continue
            begun = self._begun(value, message)
            if begun:
                tokens, bonus = self._first_token(value[begun:]), self._strength.follow
            else:
                start = self._strength.insist if self._insist else self._strength.start
                tokens, bonus = self._starting_tokens(value, message), start
            for token in tokens:
                bonuses[token] = max(bonuses.get(token, 0.0), bonus)
        for token, bonus in bonuses.items():
            scores[token] += bonus
            self.pushed += 1
        if self._insist and self._bare(message):
            for token in self._closing_tokens():
                scores[token] -= self._strength.go_on
        return scores

    def _bare(self, message: str) -> bool:
        """The message so far is a value it was asked for and hardly anything else."""
        said = [value for value in self._values if value in message]
        return bool(said) and len(message.strip()) < len(said[0]) + self._strength.go_on_chars

    def _closing_tokens(self) -> list[int]:
        """The tokens that close the message string (a quote, alone or with what follows it)."""
        if self._closers is None:
            self._closers = sorted({token for text in ('"', '",', '"}', '" }')
                                    for token in self._tokenize(text)[:1]
                                    if self._detokenize([token]).decode("utf-8", errors="ignore").startswith('"')})
        return self._closers

    def _begun(self, value: str, message: str) -> int:
        """How many characters of `value` the message ends with, counted from where it was offered."""
        offered = self._offered[value]
        for length in range(min(len(value) - 1, len(message)), 0, -1):
            start = len(message) - length
            if start in offered and length >= offered[start] and message.endswith(value[:length]):
                return length
        return 0

    def _starting_tokens(self, value: str, message: str) -> list[int]:
        """The token that would start `value` here: a Latin word after a Latin letter needs its space."""
        tokens: list[int] = []
        latin = _is_latin(value[0])
        if not (latin and message and _is_latin(message[-1])):
            tokens += self._offer(value, "", len(message))
        if latin and message and not message[-1].isspace():
            tokens += self._offer(value, " ", len(message) + 1)
        return tokens

    def _offer(self, value: str, space: str, start: int) -> list[int]:
        token = self._first_token(space + value)
        if token:
            taken = self._detokenize(token).decode("utf-8", errors="ignore")
            self._offered[value].setdefault(start, max(1, len(taken) - len(space)))
        return token

    def _first_token(self, text: str) -> list[int]:
        raw = json.dumps(text, ensure_ascii=False)[1:-1]  # as it is written inside the JSON string
        return self._tokenize(raw)[:1]


def _is_latin(char: str) -> bool:
    return char.isascii() and char.isalnum()

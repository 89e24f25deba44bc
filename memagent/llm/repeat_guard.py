"""Steering a reply's wording away from earlier replies while it is generated (embedded backend).

Small models copy their previous reply (「どうぞ」 turn after turn), and regenerating with the same
prompt returns the same text. llama.cpp's repeat penalty and DRY act on the whole context, which
here is mostly the call's JSON — repeated by design every turn — and the facts the persona should
repeat when asked (over the whole context, DRY leaves a small model nothing to say but 「え？」).
This is DRY ("don't repeat yourself") with a narrower reach:

- only while the call's `message` string is being written, not its JSON or its inner thoughts;
- only against the texts to avoid (the last replies, and this turn's rejected attempts) and the
  message's own earlier words (a loop);
- never towards words found in the texts to keep (the user's message, the memories in the prompt),
  so a fact asked for again can be said again;
- by text, not tokens: the run copied so far is matched in characters and the token that would
  continue it is pushed down, however the model splits the words.

Written here because llama.cpp's samplers cannot limit DRY to one field of the output, and no
maintained package does; it is a logits processor llama-cpp-python calls once per generated token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .base import RepeatGuard
from .message_field import Detokenize, FieldReader, Tokenize

MAX_RUN = 24  # characters: longer copied runs are pushed down no harder (the penalty is already huge)
CONTINUATION_CHARS = 12  # enough text after a copied run to tokenize the token that would continue it
KEEP_PROBE = 3  # characters of a continuation looked up in the texts to keep


@dataclass(frozen=True)
class RepeatPenalty:
    """DRY's shape: a copied run of `allowed` characters is free, each further character multiplies
    the penalty by `base`. A reply that so far equals the start of an avoided one counts as a run
    from its first character (starting a reply the same way is the habit to break).

    The defaults were chosen by replaying the prompts of real conversations (docs/benchmarks.md,
    "Repeat guard"): they remove most copies, but a small model pushed off its copies starts writing
    words in another script, hence the agent guards regenerations only unless told otherwise
    (`[agent] repeat_guard`)."""

    multiplier: float = 3.0
    base: float = 1.8
    allowed: int = 2
    # A copied token is pushed down only where another token is within this many logits of it: in
    # the middle of a word (お|手伝い) the copy is the only sensible continuation, and pushing it
    # breaks the word (「お_hand伝い」). None: always.
    margin: float | None = 5.0

    def logits(self, run: int) -> float:
        if run < self.allowed:
            return 0.0
        return self.multiplier * self.base ** min(run - self.allowed, MAX_RUN)


class RepeatGuardProcessor:
    """A llama-cpp-python logits processor for one generation (it keeps the text generated so far)."""

    def __init__(self, guard: RepeatGuard, tokenize: Tokenize, detokenize: Detokenize,
                 closing_quote_tokens: Sequence[int], penalty: RepeatPenalty | None = None) -> None:
        self._avoid = [text for text in dict.fromkeys(guard.avoid) if text.strip()]
        self._keep = [text for text in guard.keep if text]
        self._tokenize = tokenize
        self._closing = list(closing_quote_tokens)
        self._penalty = penalty or RepeatPenalty()
        self._reader = FieldReader(guard.field, detokenize)
        self.pushed = 0  # how many times a token was pushed down (for the debug log and tests)

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        if not self._avoid:
            return scores
        message = self._reader.read(input_ids)
        if message is None:
            return scores
        penalties = self._penalties(message)
        if not penalties:
            return scores
        margin = self._penalty.margin
        best_other = float(np.max(np.delete(scores, list(penalties)))) if margin is not None else 0.0
        for token, logits in penalties.items():
            if margin is None or scores[token] - best_other <= margin:
                scores[token] -= logits
                self.pushed += 1
        return scores

    def _penalties(self, message: str) -> dict[int, float]:
        """The token that would continue each copied run, with how hard to push it down. The message
        itself is avoided too: pushed off one copy, a small model falls into looping on its own
        words."""
        worst: dict[int, float] = {}

        def push(source: str, end: int, logits: float) -> None:
            if logits > 0.0:
                for token in self._continuing_tokens(source[end:end + CONTINUATION_CHARS]):
                    worst[token] = max(worst.get(token, 0.0), logits)

        for avoided in self._avoid:
            for end in range(len(avoided) + 1):
                run = _common_suffix(message, avoided[:end])
                anchored = run == len(message) == end  # the reply so far is the avoided one's start
                push(avoided, end, self._penalty.logits(run + (self._penalty.allowed if anchored else 0)))
        for end in range(1, len(message)):
            push(message, end, self._penalty.logits(_common_suffix(message, message[:end])))
        return worst

    def _continuing_tokens(self, continuation: str) -> list[int]:
        if not continuation:
            return self._closing  # the whole avoided reply copied: ending the string here is the copy
        probe = continuation[:KEEP_PROBE]
        if any(probe in kept for kept in self._keep):
            return []  # words from the user's message or from memory: saying them again is fine
        tokens = self._tokenize(continuation)
        return tokens[:1]


def _common_suffix(a: str, b: str) -> int:
    n = 0
    limit = min(len(a), len(b), MAX_RUN + 8)
    while n < limit and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def closing_quote_tokens(vocabulary_size: int, detokenize: Detokenize) -> list[int]:
    """Every token that starts with the double quote closing a JSON string (`"`, `"}`, `",` …)."""
    return [token for token in range(vocabulary_size) if detokenize([token]).startswith(b'"')]

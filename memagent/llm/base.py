"""The backend interface the agent talks to, whatever runs the model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import SamplerPreset

TextCallback = Callable[[str], None]


@dataclass(frozen=True)
class RepeatGuard:
    """Wording a reply must not reuse: while the call's `field` string is written, the backend pushes
    down a token that would continue a run copied from one of `avoid`, never one found in `keep`
    (see llm/repeat_guard.py). A backend that cannot steer decoding ignores it."""

    avoid: tuple[str, ...]
    keep: tuple[str, ...] = ()
    field: str = "message"


@dataclass(frozen=True)
class RecallNudge:
    """Remembered values the reply was asked for (「ミケ」 for 「うちの猫の名前は？」): while the call's
    `field` string is written and a value has not been said yet, the backend pushes up the token that
    starts it, and harder the one that continues it once begun (see llm/recall_nudge.py). A backend
    that cannot steer decoding ignores it."""

    values: tuple[str, ...]
    field: str = "message"
    # The reply missed every value with the usual push: start one at once (the agent's second try).
    insist: bool = False


@dataclass
class GenerationRequest:
    """Either a raw `prompt` (completion mode, rendered by a wrapper) or chat `messages`."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    schema: dict[str, Any] | None = None  # constrain the output to this JSON schema where possible
    grammar: str | None = None  # the same constraint as GBNF, for llama.cpp grammars (optional)
    stop: list[str] = field(default_factory=list)
    sampling: SamplerPreset = field(default_factory=SamplerPreset)
    max_tokens: int = 512
    on_text: TextCallback | None = None  # called with each streamed text delta
    # polled while the model works, reading the prompt included: True stops it (TurnCancelled)
    cancelled: Callable[[], bool] | None = None
    repeat_guard: RepeatGuard | None = None
    recall_nudge: RecallNudge | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Prompt tokens reused from the KV cache and prompt tokens actually evaluated, where known.
    cached_tokens: int | None = None
    evaluated_tokens: int | None = None
    constrained: bool = False
    seconds: float = 0.0


class LLMBackend(ABC):
    """One model, reachable for completions."""

    name: str = "backend"

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def generate(self, request: GenerationRequest) -> Completion: ...

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the model's own tokenizer, or a stated estimate (see `exact_tokens`)."""

    @property
    def exact_tokens(self) -> bool:
        return True

    @property
    def steers_decoding(self) -> bool:
        """Whether `repeat_guard` and `recall_nudge` act on generation (a server backend ignores them)."""
        return False

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        return None


def estimate_tokens(text: str) -> int:
    """A stated estimate for servers that expose no tokenizer: ~1 token per CJK character and
    ~4 characters per token for other text. Deliberately on the high side so the budget holds."""
    cjk = sum(1 for ch in text if ord(ch) >= 0x2E80)
    other = len(text) - cjk
    return cjk + (other + 3) // 4 + 1

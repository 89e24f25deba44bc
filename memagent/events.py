"""What the agent tells its front end (terminal UI, piped mode, --json) while it works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal[
    "assistant_message",  # a visible reply (send_message); data["streamed"] if deltas showed it already
    "assistant_delta",  # a piece of the reply as it is generated (only when the front end asks for it)
    "retract",  # the streamed reply was rejected (invalid or degenerate) and is being regenerated
    "inner_thoughts",  # the model's private reasoning for a call
    "function_call",  # a non-send_message call, e.g. archival_memory_search("誕生日")
    "function_result",  # its outcome, briefly (hit count, ok/failed)
    "recalled",  # memories surfaced into the prompt before the reply (data["memories"]; memory mode assisted)
    "captured",  # facts captured from the user's message after the reply (data["facts"], with provenance)
    "notice",  # something the user should know: step cap, retries exhausted, summary made
    "error",  # the turn failed; nothing was lost
    "status",  # what the agent is doing now (for the spinner)
]


@dataclass
class AgentEvent:
    type: EventType
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json_obj(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text, **self.data}


EventSink = Callable[[AgentEvent], None]


@dataclass
class TurnStats:
    """What one turn took, for /stats, --json and the benchmarks."""

    steps: int = 0
    llm_calls: int = 0
    parse_retries: int = 0
    degenerate_retries: int = 0
    degenerate_kinds: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # the messages regenerated as junk, in that order
    recall_retries: int = 0  # replies generated again because they missed the remembered value asked for
    prompt_tokens: int = 0
    evaluated_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    context_used: float = 0.0
    # (prompt tokens, evaluated tokens) of each model call, for cache-reuse measurements
    calls: list[tuple[int, int | None]] = field(default_factory=list)
    replied: bool = False
    failed: bool = False
    recalled: int = 0  # memories surfaced into the prompt (memory mode assisted)
    captured: int = 0  # facts captured from the user's message after the reply
    surface_seconds: float = 0.0
    reply_seconds: float = 0.0  # from the user's message to the visible reply (or the notice)
    capture_seconds: float = 0.0

"""What the agent tells its front end (terminal UI, piped mode, --json) while it works."""

from __future__ import annotations

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

"""The data that flows between the prompt builder, wrappers, parser and agent loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "function"]


@dataclass
class FunctionCall:
    """One call of an agent function, as the model wrote it (after repair and validation)."""

    function: str
    arguments: dict[str, Any] = field(default_factory=dict)
    inner_thoughts: str = ""

    def to_json_obj(self) -> dict[str, Any]:
        """The canonical wire shape: inner_thoughts first, then function, then params."""
        return {"inner_thoughts": self.inner_thoughts, "function": self.function, "params": self.arguments}

    @property
    def request_heartbeat(self) -> bool:
        return bool(self.arguments.get("request_heartbeat", False))


@dataclass
class ChatMessage:
    """A message in the prompt. Assistant messages carry the call; `content` is already-rendered text
    for user/function/system messages (events are rendered by prompt templates before this point)."""

    role: Role
    content: str = ""
    call: FunctionCall | None = None
    name: str | None = None  # the function name for role == "function"

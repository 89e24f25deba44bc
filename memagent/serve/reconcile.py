"""Chat UIs send the whole visible conversation with every request; the agent already remembers it.
This decides what one request means for the agent, from the tail of what the UI sent:

- The last message must be the user's; its text is the turn.
- It is a **regenerate** (a "swipe") when it is the agent's own last user message and the UI does not
  show the agent's reply to it (the UI dropped it, or that turn got no reply): the turn is retried,
  its memory edits undone first, and the user message is not stored twice.
- Otherwise it is a **new turn**, even when the text repeats an earlier one ("yes", then "yes").
- Earlier messages the user edited or deleted in the UI change nothing: the agent's memory is the
  source of truth (edit it with `memagent memory edit`, or `/undo` in the terminal). The UI's own
  system prompt and character card are ignored: the agent's persona is the character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class IncomingMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class ChatRequest(BaseModel):
    """The fields memagent uses; sampler settings and the like are accepted and ignored (the agent's
    config decides them)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[IncomingMessage]
    stream: bool = False

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, messages: list[IncomingMessage]) -> list[IncomingMessage]:
        if not messages:
            raise ValueError("must hold at least the user's message")
        return messages


@dataclass(frozen=True)
class TurnPlan:
    action: Literal["new", "retry"]
    text: str


class ReconcileError(ValueError):
    """The request cannot become a turn (its last message is not the user's, or is empty)."""


def _same(first: str, second: str) -> bool:
    return first.strip() == second.strip()


def plan_turn(messages: list[IncomingMessage], last_user: str | None, last_reply: str | None) -> TurnPlan:
    """What the request means, given the agent's last stored user message and the reply it got (None
    when that turn got none)."""
    conversation = [m for m in messages if m.role in ("user", "assistant")]
    if not conversation or conversation[-1].role != "user":
        raise ReconcileError("the last message must be the user's (role \"user\"); memagent replies to it")
    text = conversation[-1].text
    if not text.strip():
        raise ReconcileError("the user's message is empty; send some text")
    shown_reply = next((m.text for m in reversed(conversation[:-1]) if m.role == "assistant"), None)
    shows_our_reply = last_reply is not None and shown_reply is not None and _same(shown_reply, last_reply)
    if last_user is not None and _same(text, last_user) and not shows_our_reply:
        return TurnPlan("retry", text)
    return TurnPlan("new", text)

"""Chat UIs send the whole visible conversation with every request; the agent already remembers it.
This decides what one request means for the agent, from the tail of what the UI sent:

- The last message must be the user's; its text is the turn.
- It is a **regenerate** (a "swipe") when it is the agent's own last user message, the UI does not
  show the agent's reply to it (the UI dropped it, or that turn got no reply), and the UI shows the
  same context before it: the reply shown before it is the one stored before it, or neither exists.
  The turn is retried, its memory edits undone first, and the user message is not stored twice.
- Otherwise it is a **new turn**, even when the text repeats an earlier one ("yes", then "yes"; the
  same first question in a new chat, whose greeting the agent never stored): a turn is never
  deleted on a guess.
- A UI's background task about the chat (a title, tags: its last message quotes the chat) is
  answered by the model alone and stores nothing.
- A **connection test** (SillyTavern's Test Message: a request whose only message is the user's and
  is nothing but small talk, "Hi") is answered by the persona and then undone: a chat a person
  writes comes with the UI's system prompt or its history, and a lone greeting holds nothing to keep.
- Earlier messages the user edited or deleted in the UI change nothing: the agent's memory is the
  source of truth (edit it with `memagent memory edit`, or `/undo` in the terminal). The UI's own
  system prompt and character card are ignored: the agent's persona is the character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ..fact_vocabulary import StatementRules
from ..statements import only_small_talk


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
class StoredTail:
    """The end of the agent's stored conversation, as far as a request is compared with it."""

    last_user: str | None = None  # the last user message
    last_reply: str | None = None  # the reply it got (None: none)
    reply_before: str | None = None  # the reply shown just before that user message (None: none)


@dataclass(frozen=True)
class TurnPlan:
    action: Literal["new", "retry"]
    text: str
    keep: bool = True  # False: a connection test, undone once answered


class ReconcileError(ValueError):
    """The request cannot become a turn (its last message is not the user's, or is empty)."""


def _same(first: str, second: str) -> bool:
    return first.strip() == second.strip()


# A request whose last message quotes the chat inside these tags is a UI's own background task about
# the chat (Open WebUI's title, tags and follow-up suggestions), not something the user said.
QUOTED_CHAT_TAGS = (("<chat_history>", "</chat_history>"),)


def is_background_task(messages: list[IncomingMessage]) -> bool:
    last = next((m.text for m in reversed(messages) if m.role == "user"), "")
    return any(opening in last and closing in last for opening, closing in QUOTED_CHAT_TAGS)


def conversation_of(messages: list[IncomingMessage]) -> list[IncomingMessage]:
    """The user's and the agent's messages of a request, checked to end with the user's words."""
    conversation = [m for m in messages if m.role in ("user", "assistant")]
    if conversation and conversation[-1].role == "assistant":
        raise ReconcileError("memagent answers the user's last message, and this request ends with the "
                             "character's (Continue and Impersonate are not supported: use Regenerate, "
                             "or send a message)")
    if not conversation:
        raise ReconcileError("the request holds no message from the user; send a message")
    if not conversation[-1].text.strip():
        raise ReconcileError("the user's message is empty; send some text")
    return conversation


def is_connection_test(messages: list[IncomingMessage], rules: StatementRules) -> bool:
    """The request's only message is the user's and is nothing but small talk (a greeting, in the
    persona language's facts.toml [statements]): a one-word message ("Tokyo") is still a turn."""
    return len(messages) == 1 and messages[0].role == "user" and only_small_talk(messages[0].text, rules)


def plan_turn(messages: list[IncomingMessage], stored: StoredTail, rules: StatementRules | None = None) -> TurnPlan:
    """What the request means, given the end of the agent's stored conversation (`rules`: the
    persona's language's, to tell a connection test)."""
    conversation = conversation_of(messages)
    text = conversation[-1].text
    if rules is not None and is_connection_test(messages, rules):
        return TurnPlan("new", text, keep=False)
    shown_before = next((m.text for m in reversed(conversation[:-1]) if m.role == "assistant"), None)
    shows_our_reply = stored.last_reply is not None and shown_before is not None and _same(shown_before,
                                                                                           stored.last_reply)
    same_context = (shown_before is None and stored.reply_before is None) or (
        shown_before is not None and stored.reply_before is not None and _same(shown_before, stored.reply_before))
    if stored.last_user is not None and _same(text, stored.last_user) and not shows_our_reply and same_context:
        return TurnPlan("retry", text)
    return TurnPlan("new", text)

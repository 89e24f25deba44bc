"""Turning stored messages into prompt messages, and prompt messages into the text (or chat list) the
model gets, with its token count. Pure functions of the agent's deps: no state, no writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .agent_deps import AgentDeps
from .conversation import ChatMessage, FunctionCall
from .memory.kinds import MessageKind
from .memory.records import StoredMessage
from .prompts import PromptLibrary, SystemPrompt

SAFETY_MARGIN = 16


@dataclass
class BuiltPrompt:
    prompt: str | None
    messages: list[dict[str, str]] | None
    tokens: int
    budget: int

    @property
    def used_fraction(self) -> float:
        return self.tokens / self.budget if self.budget else 1.0


def local_time_text(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def token_budget(deps: AgentDeps) -> int:
    """Tokens the prompt may take: the window minus the reply's room."""
    return deps.backend.context_length - deps.settings.llm.max_tokens - SAFETY_MARGIN


def to_chat_message(message: StoredMessage, prompts: PromptLibrary) -> ChatMessage | None:
    """A stored message as the model sees it (None for notices and summary records)."""
    kind = message.kind
    if kind == MessageKind.USER:
        text = prompts.render("event_user.j2", message=message.content, time=local_time_text(message.time))
        return ChatMessage(role="user", content=text)
    if kind == MessageKind.ASSISTANT_CALL:
        call = FunctionCall(message.function_name or "send_message", dict(message.function_args or {}),
                            message.inner_thoughts or "")
        return ChatMessage(role="assistant", call=call)
    if kind == MessageKind.FUNCTION_RESULT:
        ok = bool((message.function_args or {}).get("ok", True))
        text = prompts.render("event_function_result.j2", function=message.function_name, ok=ok, result=message.content)
        return ChatMessage(role="function", content=text, name=message.function_name)
    if kind == MessageKind.HEARTBEAT:
        reason = (message.function_args or {}).get("reason", "function_result")
        return ChatMessage(role="user", content=prompts.render("event_heartbeat.j2", reason=reason))
    if kind == MessageKind.SYSTEM_ALERT:
        return ChatMessage(role="user", content=message.content)
    return None


def render_prompt(deps: AgentDeps, system: SystemPrompt, messages: list[ChatMessage], prefill: bool = True) -> BuiltPrompt:
    """The request body's prompt (raw mode) or chat list (chat mode), and its size in tokens."""
    budget = token_budget(deps)
    if deps.settings.llm.chat_mode:
        chat = deps.wrapper.chat_messages(system, messages)
        tokens = sum(deps.backend.count_tokens(m["content"]) + 4 for m in chat)
        return BuiltPrompt(prompt=None, messages=chat, tokens=tokens, budget=budget)
    prompt = deps.wrapper.render(system, messages, prefill=prefill)
    return BuiltPrompt(prompt=prompt, messages=None, tokens=deps.backend.count_tokens(prompt), budget=budget)

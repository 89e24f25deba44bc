"""The context window: which messages go into the prompt, how many tokens they take, and what to do
when they no longer fit (warn the model, then summarise and evict the oldest messages).

The system prompt is a snapshot, rebuilt only when core memory or the summary changes, so that an
ordinary turn leaves the prompt prefix untouched and llama.cpp can reuse its KV cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .config import SamplerPreset, Settings
from .conversation import ChatMessage, FunctionCall
from .errors import MemagentError
from .llm.base import GenerationRequest, LLMBackend
from .prompts import PromptLibrary, SystemPrompt
from .wrappers import Wrapper

log = logging.getLogger(__name__)
SAFETY_MARGIN = 16
# Share of the room left for conversation (the budget minus the system prompt) that a summary brings
# the history back to: low enough that summaries are rare (each one changes the prompt prefix and
# costs a model call), high enough to keep plenty of recent conversation.
REFILL_TARGET = 0.5
SUMMARY_LINE_CHARS = 600
MAX_FIT_PASSES = 8
MIN_SUMMARY_TOKENS = 64


class ContextOverflow(MemagentError):
    """Even after summarising everything that can be evicted, the prompt does not fit."""


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


class ContextWindow:
    def __init__(
        self,
        store: Any,
        backend: LLMBackend,
        wrapper: Wrapper,
        prompts: PromptLibrary,
        settings: Settings,
        persona: Any,
        human: Any,
        functions: list[str],
    ) -> None:
        self.store = store
        self.backend = backend
        self.wrapper = wrapper
        self.prompts = prompts
        self.settings = settings
        self.persona = persona
        self.human = human
        self.functions = functions
        self.chat_mode = settings.llm.chat_mode
        self._system: SystemPrompt | None = None

    # --- the system prompt snapshot -----------------------------------------------------------
    def invalidate_system(self) -> None:
        self._system = None

    def system(self) -> SystemPrompt:
        if self._system is None:
            core = {block.label: {"value": block.value, "limit": block.limit} for block in self.store.core.list()}
            self._system = self.prompts.render_system(
                persona=self.persona,
                human=self.human,
                core=core,
                recall_count=self.store.recall.count(),
                archival_count=self.store.archival.count(),
                summary=self.store.get_state("summary"),
                functions=self.functions,
                now=local_time_text(datetime.now().astimezone()),
                output=self.wrapper.output,
            )
        return self._system

    # --- messages -----------------------------------------------------------------------------
    def to_chat_message(self, message: Any) -> ChatMessage | None:
        kind = message.kind
        if kind == "user_message":
            text = self.prompts.render("event_user.j2", message=message.content, time=local_time_text(message.time))
            return ChatMessage(role="user", content=text)
        if kind == "assistant_call":
            call = FunctionCall(message.function_name or "send_message", dict(message.function_args or {}),
                                message.inner_thoughts or "")
            return ChatMessage(role="assistant", call=call)
        if kind == "function_result":
            ok = bool((message.function_args or {}).get("ok", True))
            text = self.prompts.render("event_function_result.j2", function=message.function_name, ok=ok,
                                       result=message.content)
            return ChatMessage(role="function", content=text, name=message.function_name)
        if kind == "heartbeat":
            reason = (message.function_args or {}).get("reason", "function_result")
            return ChatMessage(role="user", content=self.prompts.render("event_heartbeat.j2", reason=reason))
        if kind == "system_alert":
            return ChatMessage(role="user", content=message.content)
        return None  # notices and summary records are not part of the prompt

    def history(self) -> list[ChatMessage]:
        converted = (self.to_chat_message(m) for m in self.store.recall.in_context())
        return [m for m in converted if m is not None]

    def post_history(self) -> list[ChatMessage]:
        """Instructions that go after the conversation, right before the reply (post_history.j2)."""
        text = self.prompts.render("post_history.j2", persona=self.persona)
        return [ChatMessage(role="user", content=text)] if text.strip() else []

    # --- rendering and budget -----------------------------------------------------------------
    @property
    def budget(self) -> int:
        return self.backend.context_length - self.settings.llm.max_tokens - SAFETY_MARGIN

    def render(self, system: SystemPrompt, messages: list[ChatMessage], prefill: bool = True) -> BuiltPrompt:
        if self.chat_mode:
            chat = self.wrapper.chat_messages(system, messages)
            tokens = sum(self.backend.count_tokens(m["content"]) + 4 for m in chat)
            return BuiltPrompt(prompt=None, messages=chat, tokens=tokens, budget=self.budget)
        prompt = self.wrapper.render(system, messages, prefill=prefill)
        return BuiltPrompt(prompt=prompt, messages=None, tokens=self.backend.count_tokens(prompt), budget=self.budget)

    def build(self, extra: list[ChatMessage] | None = None, on_summary: Any = None,
              recalled: list[ChatMessage] | None = None) -> BuiltPrompt:
        """The prompt for the next call, summarising old messages first if the conversation would
        not fit. `extra` (a failed attempt and its corrective note) is transient: it never causes a
        summary; when it does not fit, the note goes alone, and when not even that fits, nothing.
        `recalled` (surfaced memories) goes after the conversation, right before the reply."""
        tail = (recalled or []) + self.post_history()
        fitted = self._fit_history(on_summary, tail)
        for candidate in (extra or [], (extra or [])[-1:]):
            if not candidate:
                break
            built = self.render(self.system(), self.history() + candidate + tail)
            if built.tokens <= built.budget:
                return built
        return fitted

    def _fit_history(self, on_summary: Any, tail: list[ChatMessage]) -> BuiltPrompt:
        for _ in range(MAX_FIT_PASSES):
            built = self.render(self.system(), self.history() + tail)
            if built.tokens <= built.budget:
                return built
            system_tokens = self.backend.count_tokens(self.system().text)
            target = system_tokens + int(max(0, built.budget - system_tokens) * REFILL_TARGET)
            self.summarise_oldest(built.tokens - target, on_summary)
        raise ContextOverflow(self._overflow_message())

    def _overflow_message(self) -> str:
        messages = self.store.recall.in_context()
        newest = messages[-1] if messages else None
        if newest is not None and newest.kind == "user_message":
            tokens = self._message_tokens(newest)
            if tokens > self.budget // 2:
                return (
                    f"that message is too long for the {self.backend.context_length}-token context window (about "
                    f"{tokens} tokens); it is kept in recall memory — send it in shorter parts, or raise [llm] context_length"
                )
        return (
            f"the conversation no longer fits the {self.backend.context_length}-token context window even after "
            "summarising; raise [llm] context_length, or shorten core memory (memagent memory edit)"
        )

    def needs_warning(self, built: BuiltPrompt) -> bool:
        return built.tokens >= self.settings.context.warning_threshold * built.budget and not self.store.get_state("warned")

    # --- summarising --------------------------------------------------------------------------
    def _message_tokens(self, message: Any) -> int:
        if message.token_count is not None:
            return message.token_count
        chat = self.to_chat_message(message)
        text = "" if chat is None else (self.wrapper.format_call(chat.call) if chat.call else chat.content)
        count = self.backend.count_tokens(text) + 6
        self.store.recall.set_token_count(message.id, count)
        return count

    def choose_eviction(self, tokens_to_free: int) -> list[Any]:
        """The oldest in-context messages worth at least `tokens_to_free`, ending before a user
        message where possible so a call is never separated from its result."""
        messages = self.store.recall.in_context()
        for keep in (self.settings.context.keep_recent, 1):
            candidates = messages[: max(0, len(messages) - keep)]
            if not candidates:
                continue
            chosen: list[Any] = []
            freed = 0
            for index, message in enumerate(candidates):
                chosen.append(message)
                freed += self._message_tokens(message)
                next_kind = messages[index + 1].kind if index + 1 < len(messages) else None
                if freed >= tokens_to_free and next_kind == "user_message":
                    return chosen
            return chosen
        return []

    def summarise_oldest(self, tokens_to_free: int, on_summary: Any = None) -> None:
        evicted = self.choose_eviction(max(tokens_to_free, 1))
        if not evicted:
            raise ContextOverflow(self._overflow_message())
        lines = [line for line in (self._summary_line(m) for m in evicted) if line is not None]
        previous = self.store.get_state("summary")
        summary = self._summarise(lines, previous) if lines else previous
        with self.store.transaction():
            self.store.recall.set_in_context([m.id for m in evicted], False)
            self.store.set_state("summary", summary)
            self.store.set_state("warned", False)
            self.store.recall.add("system", summary or "", kind="summary", turn_id=evicted[-1].turn_id, in_context=False)
        self.invalidate_system()
        log.info("summarised %d messages", len(evicted))
        if on_summary:
            on_summary(len(evicted), summary or "")

    def _summary_line(self, message: Any) -> dict[str, str] | None:
        if message.kind == "user_message":
            return {"role": "user", "content": message.content[:SUMMARY_LINE_CHARS]}
        if message.kind == "assistant_call" and message.function_name == "send_message":
            return {"role": "assistant", "content": str((message.function_args or {}).get("message", ""))[:SUMMARY_LINE_CHARS]}
        if message.kind == "function_result":
            return {"role": "function", "content": f"{message.function_name}: {message.content[:SUMMARY_LINE_CHARS // 2]}"}
        return None

    def summary_token_limit(self) -> int:
        """The most tokens a summary may take: [context] summary_max_tokens, but in a small window no
        more than a quarter of the room the system prompt leaves for the conversation — the summary
        lives in the system prompt, and a large one would leave room for only a turn or two."""
        summary = self.store.get_state("summary") or ""
        base_system = self.backend.count_tokens(self.system().text) - (self.backend.count_tokens(summary) if summary else 0)
        room = max(0, self.budget - base_system)
        return max(MIN_SUMMARY_TOKENS, min(self.settings.context.summary_max_tokens, room // 4))

    def _summarise(self, lines: list[dict[str, str]], previous: str | None) -> str:
        """Summarise `lines` into one text, splitting recursively when they do not fit one request."""
        instruction = self.prompts.render("summary.j2", messages=lines, previous_summary=previous)
        built = self.render(SystemPrompt(text="", parts={}), [ChatMessage(role="user", content=instruction)])
        summary_tokens = self.summary_token_limit()
        limit = self.backend.context_length - summary_tokens - SAFETY_MARGIN
        if built.tokens > limit and len(lines) > 1:
            half = len(lines) // 2
            return self._summarise(lines[half:], self._summarise(lines[:half], previous))
        if built.tokens > limit:  # one enormous message: keep its beginning
            line = dict(lines[0], content=lines[0]["content"][: SUMMARY_LINE_CHARS // 4])
            return self._summarise([line], None) if line != lines[0] else (previous or "")
        request = GenerationRequest(
            prompt=built.prompt, messages=built.messages, stop=self.wrapper.stop,
            sampling=SamplerPreset(temperature=0.2, top_k=20, top_p=0.9, repeat_penalty=1.1),
            max_tokens=summary_tokens,
        )
        text = self.backend.generate(request).text.strip()
        if not text:  # never lose the thread: fall back to the lines themselves, briefly
            text = "\n".join(f"- {line['content'][:80]}" for line in lines[-8:])
        return text

"""The context window: which messages go into the prompt and in what order, and fitting them into
the model's window (the Summarizer makes room when they do not fit).

The system prompt is a snapshot, rebuilt only when core memory or the summary changes, so that an
ordinary turn leaves the prompt prefix untouched and llama.cpp can reuse its KV cache.
"""

from __future__ import annotations

from datetime import datetime

from .agent_deps import AgentDeps
from .conversation import ChatMessage
from .memory.facts import USER_NAME_KIND
from .memory.kinds import MessageKind
from .personas import Persona, fill_user
from .prompts import SystemPrompt
from .rendering import BuiltPrompt, local_time_text, render_prompt, to_chat_message, token_budget
from .summarizer import ContextOverflow, Summarizer, SummaryListener

__all__ = ["BuiltPrompt", "ContextOverflow", "ContextWindow"]

# Share of the room left for conversation (the budget minus the system prompt) that a summary brings
# the history back to: low enough that summaries are rare (each one changes the prompt prefix and
# costs a model call), high enough to keep plenty of recent conversation.
REFILL_TARGET = 0.5
MAX_FIT_PASSES = 8


class ContextWindow:
    def __init__(self, deps: AgentDeps, summarizer: Summarizer) -> None:
        self.deps = deps
        self.summarizer = summarizer
        self._system: SystemPrompt | None = None
        self._persona: Persona | None = None  # the persona as the snapshot addresses the user

    # --- the system prompt snapshot -----------------------------------------------------------
    def invalidate_system(self) -> None:
        self._system = None
        self._persona = None

    def system(self) -> SystemPrompt:
        if self._system is None:
            store = self.deps.store
            user_name = self.user_name()
            self._persona = self.deps.persona.addressing_user(user_name)
            # The persona block starts as the persona's text, placeholder included.
            core = {block.label: {"value": fill_user(block.value, user_name), "limit": block.limit}
                    for block in store.core.list()}
            self._system = self.deps.prompts.render_system(
                persona=self._persona,
                human=self.deps.human,
                core=core,
                recall_count=store.recall.count(),
                archival_count=store.archival.count(),
                summary=self.summarizer.summary,
                functions=self.deps.functions,
                now=local_time_text(datetime.now().astimezone()),
                output=self.deps.wrapper.output,
                memory_mode=self.deps.settings.memory.mode,
            )
        return self._system

    def persona(self) -> Persona:
        """The persona as the model reads it, `{{user}}` filled (see user_name): the same as in the
        system prompt snapshot, so the name changes everywhere at the next rebuild."""
        if self._persona is None:
            self.system()
        assert self._persona is not None
        return self._persona

    def user_name(self) -> str:
        """What the character calls the user: the name they gave (a captured fact), else the human
        profile's name (the default profiles: 「あなた」, "friend")."""
        named = self.deps.store.facts.current(USER_NAME_KIND)
        return named[-1].value if named else self.deps.human.name

    # --- messages -----------------------------------------------------------------------------
    def history(self) -> list[ChatMessage]:
        converted = (to_chat_message(m, self.deps.prompts) for m in self.deps.store.recall.in_context())
        return [m for m in converted if m is not None]

    def post_history(self) -> list[ChatMessage]:
        """Instructions that go after the conversation, right before the reply (post_history.j2)."""
        text = self.deps.prompts.render("post_history.j2", persona=self.persona())
        return [ChatMessage(role="user", content=text)] if text.strip() else []

    # --- rendering and fitting ----------------------------------------------------------------
    @property
    def budget(self) -> int:
        return token_budget(self.deps)

    def render(self, system: SystemPrompt, messages: list[ChatMessage], prefill: bool = True) -> BuiltPrompt:
        return render_prompt(self.deps, system, messages, prefill)

    def build(self, extra: list[ChatMessage] | None = None, on_summary: SummaryListener | None = None,
              recalled: list[ChatMessage] | None = None) -> BuiltPrompt:
        """The prompt for the next call, summarising old messages first if the conversation would
        not fit. `extra` (a failed attempt and its corrective note) is transient: it never causes a
        summary; when it does not fit, the note goes alone, and when not even that fits, nothing.
        `recalled` (surfaced memories) goes at the end of the conversation (see with_recalled)."""
        recalled = recalled or []
        tail = self.post_history()
        fitted = self._fit_history(on_summary, tail, recalled)
        for candidate in (extra or [], (extra or [])[-1:]):
            if not candidate:
                break
            built = self.render(self.system(), with_recalled(self.history(), recalled) + candidate + tail)
            if built.tokens <= built.budget:
                return built
        return fitted

    def _fit_history(self, on_summary: SummaryListener | None, tail: list[ChatMessage],
                     recalled: list[ChatMessage]) -> BuiltPrompt:
        for _ in range(MAX_FIT_PASSES):
            built = self.render(self.system(), with_recalled(self.history(), recalled) + tail)
            if built.tokens <= built.budget:
                return built
            if self._newest_message_too_long():
                # Refused before anything is summarised away: summaries would not make it fit.
                raise ContextOverflow(self._overflow_message())
            system_text = self.system().text
            system_tokens = self.deps.backend.count_tokens(system_text)
            target = system_tokens + int(max(0, built.budget - system_tokens) * REFILL_TARGET)
            self.summarizer.summarise_oldest(built.tokens - target, system_text, self._overflow_message, on_summary)
            self.invalidate_system()  # the summary is part of the system prompt
        raise ContextOverflow(self._overflow_message())

    def _newest_message_too_long(self) -> bool:
        messages = self.deps.store.recall.in_context()
        newest = messages[-1] if messages else None
        return (newest is not None and newest.kind == MessageKind.USER
                and self.summarizer.message_tokens(newest) > self.budget // 2)

    def _overflow_message(self) -> str:
        messages = self.deps.store.recall.in_context()
        newest = messages[-1] if messages else None
        window = self.deps.backend.context_length
        if newest is not None and newest.kind == MessageKind.USER:
            tokens = self.summarizer.message_tokens(newest)
            if tokens > self.budget // 2:
                return (
                    f"that message is too long for the {window}-token context window (about {tokens} tokens); "
                    "it is kept in recall memory — send it in shorter parts, or raise [llm] context_length"
                )
        return (
            f"the conversation no longer fits the {window}-token context window even after "
            "summarising; raise [llm] context_length, or shorten core memory (memagent memory edit)"
        )


def with_recalled(history: list[ChatMessage], recalled: list[ChatMessage]) -> list[ChatMessage]:
    """The conversation with the surfaced memories at its end. When it ends with a user turn (the
    user's message, or a heartbeat) they join that turn, in the prompt only: a small model uses a
    memory right next to the question far more often than one in a turn of its own (figures in
    docs/memory.md). After a function result they stay a turn of their own."""
    if not recalled:
        return history
    if history and history[-1].role == "user" and history[-1].call is None:
        note = "\n".join(message.content.strip() for message in recalled)
        newest = history[-1]
        return [*history[:-1], ChatMessage(role="user", content=f"{newest.content.rstrip()}\n\n{note}")]
    return history + recalled

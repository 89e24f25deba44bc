"""Making room: when the conversation no longer fits, the oldest messages leave the prompt (they stay
in recall memory) and a summary of them joins the system prompt: the model's, kept to the lines that
hold against what was said (summary_grounding.py), or the user's own lines ([context] summary). Also
the early warning before that happens (memory mode agent: the model gets a chance to save what matters).

Owns the agent's "summary" and "warned" state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .agent_deps import AgentDeps
from .config import SamplerPreset
from .conversation import ChatMessage
from .errors import MemagentError
from .llm.base import GenerationRequest
from .memory.kinds import MessageKind, StateKey
from .memory.records import StoredMessage
from .prompts import SystemPrompt
from .rendering import SAFETY_MARGIN, BuiltPrompt, render_prompt, to_chat_message, token_budget
from .summary_grounding import SummarySource, grounded_summary, user_lines_summary

log = logging.getLogger(__name__)
SUMMARY_LINE_CHARS = 600
USER_LINE_CHARS = 120  # of each of the user's lines in a summary made of them
MIN_SUMMARY_TOKENS = 64
SUMMARY_SAMPLING = SamplerPreset(temperature=0.2, top_k=20, top_p=0.9, repeat_penalty=1.1)
SummaryListener = Callable[[int, str], None]  # (messages summarised, the new summary)


class ContextOverflow(MemagentError):
    """Even after summarising everything that can be evicted, the prompt does not fit."""


class Summarizer:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        # Token counts of stored messages, counted once per process (a read never writes).
        self._tokens: dict[int, int] = {}

    @property
    def summary(self) -> str | None:
        value = self.deps.store.get_state(StateKey.SUMMARY)
        return value if isinstance(value, str) else None

    # --- the early warning ----------------------------------------------------------------------
    def needs_warning(self, built: BuiltPrompt) -> bool:
        threshold = self.deps.settings.context.warning_threshold * built.budget
        return built.tokens >= threshold and not self.deps.store.get_state(StateKey.WARNED)

    def store_pressure_alert(self, built: BuiltPrompt) -> None:
        text = self.deps.prompts.render("alert_memory_pressure.j2", used_pct=round(100 * built.used_fraction))
        store = self.deps.store
        with store.transaction():
            store.recall.add("user", text, kind=MessageKind.SYSTEM_ALERT, turn_id=store.recall.last_turn_id())
            store.set_state(StateKey.WARNED, True)

    # --- eviction -------------------------------------------------------------------------------
    def message_tokens(self, message: StoredMessage) -> int:
        if message.token_count is not None:
            return message.token_count
        if message.id not in self._tokens:
            chat = to_chat_message(message, self.deps.prompts)
            text = "" if chat is None else (self.deps.wrapper.format_call(chat.call) if chat.call else chat.content)
            self._tokens[message.id] = self.deps.backend.count_tokens(text) + 6
        return self._tokens[message.id]

    def choose_eviction(self, tokens_to_free: int) -> list[StoredMessage]:
        """The oldest in-context messages worth at least `tokens_to_free`, ending before a user
        message where possible so a call is never separated from its result."""
        messages = self.deps.store.recall.in_context()
        for keep in (self.deps.settings.context.keep_recent, 1):
            candidates = messages[: max(0, len(messages) - keep)]
            if not candidates:
                continue
            chosen: list[StoredMessage] = []
            freed = 0
            for index, message in enumerate(candidates):
                chosen.append(message)
                freed += self.message_tokens(message)
                next_kind = messages[index + 1].kind if index + 1 < len(messages) else None
                if freed >= tokens_to_free and next_kind == MessageKind.USER:
                    return chosen
            return chosen
        return []

    def summarise_oldest(self, tokens_to_free: int, system_text: str, overflow: Callable[[], str],
                         on_summary: SummaryListener | None = None) -> None:
        """Evict the oldest messages worth `tokens_to_free` and fold them into the summary.
        `overflow()` words the error when nothing can be evicted."""
        evicted = self.choose_eviction(max(tokens_to_free, 1))
        if not evicted:
            raise ContextOverflow(overflow())
        lines = [line for line in (_summary_line(m) for m in evicted) if line is not None]
        previous = self.summary
        summary = self._summarise(lines, previous, self.summary_token_limit(system_text)) if lines else previous
        store = self.deps.store
        with store.transaction():
            store.recall.set_in_context([m.id for m in evicted], False)
            store.set_state(StateKey.SUMMARY, summary)
            store.set_state(StateKey.WARNED, False)
            store.recall.add("system", summary or "", kind=MessageKind.SUMMARY, turn_id=evicted[-1].turn_id, in_context=False)
        log.info("summarised %d messages", len(evicted))
        if on_summary:
            on_summary(len(evicted), summary or "")

    def summary_token_limit(self, system_text: str) -> int:
        """The most tokens a summary may take: [context] summary_max_tokens, but in a small window no
        more than a quarter of the room the system prompt (`system_text`) leaves for the conversation —
        the summary lives in the system prompt, and a large one would leave room for only a turn or two."""
        backend = self.deps.backend
        summary = self.summary or ""
        base_system = backend.count_tokens(system_text) - (backend.count_tokens(summary) if summary else 0)
        room = max(0, token_budget(self.deps) - base_system)
        return max(MIN_SUMMARY_TOKENS, min(self.deps.settings.context.summary_max_tokens, room // 4))

    def _summarise(self, lines: list[dict[str, str]], previous: str | None, summary_tokens: int) -> str:
        """Summarise `lines` into one text, splitting recursively when they do not fit one request."""
        instruction = self.deps.prompts.render("summary.j2", messages=lines, previous_summary=previous)
        built = render_prompt(self.deps, SystemPrompt(text="", parts={}), [ChatMessage(role="user", content=instruction)])
        limit = self.deps.backend.context_length - summary_tokens - SAFETY_MARGIN
        if built.tokens > limit and len(lines) > 1:
            half = len(lines) // 2
            return self._summarise(lines[half:], self._summarise(lines[:half], previous, summary_tokens), summary_tokens)
        if built.tokens > limit:  # one enormous message: keep its beginning
            line = dict(lines[0], content=lines[0]["content"][: SUMMARY_LINE_CHARS // 4])
            return self._summarise([line], None, summary_tokens) if line != lines[0] else (previous or "")
        mode = self.deps.settings.context.summary
        if mode == "user_lines":
            return self._user_lines(lines, previous, summary_tokens)
        request = GenerationRequest(prompt=built.prompt, messages=built.messages, stop=self.deps.wrapper.stop,
                                    sampling=SUMMARY_SAMPLING, max_tokens=summary_tokens)
        text = self.deps.backend.generate(request).text.strip()
        if mode == "grounded":
            held = grounded_summary(text, self._source(lines, previous))
            if held != text:
                log.info("summary: kept %d of %d lines that hold against what was said",
                         len(held.splitlines()), len(text.splitlines()))
            text = held
        if not text:  # never lose the thread: the user's own lines
            text = self._user_lines(lines, previous, summary_tokens)
        return text

    def _user_lines(self, lines: list[dict[str, str]], previous: str | None, summary_tokens: int) -> str:
        prompts, backend = self.deps.prompts, self.deps.backend
        said = [line["content"][:USER_LINE_CHARS] for line in lines if line["role"] == "user"]
        return user_lines_summary(previous, said, lambda text: prompts.render("summary_user_line.j2", text=text).strip(),
                                  lambda text: backend.count_tokens(text) <= summary_tokens)

    def _source(self, lines: list[dict[str, str]], previous: str | None) -> SummarySource:
        """What the summary of `lines` may say, and how summary.j2 labels each speaker."""
        labels = {self._speaker_prefix(role).strip(" :："): role for role in {line["role"] for line in lines}}
        instruction = self.deps.prompts.render("summary.j2", messages=[], previous_summary=previous)
        return SummarySource(said=tuple((line["role"], line["content"]) for line in lines), labels=labels,
                             previous=previous or "", instruction_lines=tuple(instruction.splitlines()),
                             names=(self.deps.persona.name,))

    def _speaker_prefix(self, role: str) -> str:
        """How summary.j2 introduces a line of `role` ("ユーザー: "), found by rendering a marker."""
        marker = "\u241f"
        rendered = self.deps.prompts.render("summary.j2", messages=[{"role": role, "content": marker}], previous_summary=None)
        line = next((line for line in rendered.splitlines() if marker in line), marker)
        return line[: line.index(marker)]


def _summary_line(message: StoredMessage) -> dict[str, str] | None:
    if message.kind == MessageKind.USER:
        return {"role": "user", "content": message.content[:SUMMARY_LINE_CHARS]}
    if message.reply is not None:
        return {"role": "assistant", "content": message.reply[:SUMMARY_LINE_CHARS]}
    if message.kind == MessageKind.FUNCTION_RESULT:
        return {"role": "function", "content": f"{message.function_name}: {message.content[:SUMMARY_LINE_CHARS // 2]}"}
    return None

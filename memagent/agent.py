"""The step loop: event → prompt → LLM → parse + validate → execute → store → heartbeat or wait.

One step is one model call and one function call, stored in one transaction. A user message always
gets a reply or a visible notice; nothing the user said is ever lost; retries are bounded.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .capture import FactCapture
from .config import SamplerPreset, Settings
from .context import BuiltPrompt, ContextWindow
from .conversation import ChatMessage, FunctionCall
from .degenerate import copies_any, detect_degenerate
from .events import AgentEvent
from .executor import FunctionExecutor
from .functions.grammar import call_gbnf
from .functions.registry import function_registry
from .functions.schemas import call_json_schema
from .llm.base import GenerationRequest, LLMBackend
from .memory.records import StoredMessage
from .parsing import CallError, parse_call
from .prompts import PromptLibrary
from .streaming import MessageStreamer
from .surfacing import Surfacer
from .turns import undo_turn
from .wrappers import Wrapper

log = logging.getLogger(__name__)
EventSink = Callable[[AgentEvent], None]
# A reply that copies any of the persona's last this many replies is a repeat: a user notices a line
# said twice an hour apart as much as two in a row. Comparing is cheap (exact match first, difflib
# only between long texts).
RECENT_REPLIES = 300
CORRECTION_CHARS = 600  # of a failed attempt shown back to the model with its corrective note


@dataclass
class TurnStats:
    steps: int = 0
    llm_calls: int = 0
    parse_retries: int = 0
    degenerate_retries: int = 0
    degenerate_kinds: list[str] = field(default_factory=list)
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


@dataclass
class Attempt:
    call: FunctionCall | None
    raw: str
    error: Any = None  # the parser's structured CallError when call is None
    streamed: bool = False  # the message was shown piece by piece while it was generated


class Agent:
    def __init__(
        self,
        store: Any,
        backend: LLMBackend,
        wrapper: Wrapper,
        prompts: PromptLibrary,
        settings: Settings,
        persona: Any,
        human: Any,
    ) -> None:
        self.store = store
        self.backend = backend
        self.wrapper = wrapper
        self.prompts = prompts
        self.settings = settings
        self.persona = persona
        self.human = human
        self.mode = settings.memory.mode
        # Memory mode "off": no memory beyond the conversation window, so no memory functions either.
        self.functions = [f.name for f in function_registry() if self.mode != "off" or not f.needs_memory]
        self.context = ContextWindow(store, backend, wrapper, prompts, settings, persona, human, self.functions)
        self.executor = FunctionExecutor(store, prompts, settings)
        assisted = self.mode == "assisted"
        self.surfacer = Surfacer(store, prompts, settings.memory) if assisted else None
        self.capturer = FactCapture(store, self.context, prompts) if assisted else None
        self.last_stats = TurnStats()
        self.stream_replies = False  # emit assistant_delta events while a reply is generated
        # The terminal captures facts while the user reads and types; piped mode and tests wait for it.
        self.capture_in_background = False
        self._capture_thread: threading.Thread | None = None
        self._capture_events: list[AgentEvent] = []
        self._recalled: list[ChatMessage] = []  # this turn's surfaced memories, rendered

    # --- public API ---------------------------------------------------------------------------
    def greet(self, emit: EventSink) -> None:
        """A new agent's first message: the persona's own, or a generated one (one try, no loop)."""
        if self.store.get_state("greeted") or self.store.recall.count() > 0:
            return
        greetings = [g for g in [self.persona.first_message, *self.persona.alternate_greetings] if g]
        text = random.choice(greetings) if greetings and self.settings.agent.first_message == "persona" else None
        call: FunctionCall | None = None
        if text:
            call = FunctionCall("send_message", {"message": text}, "")
        else:
            stats = TurnStats()
            note = ChatMessage(role="user", content=self.prompts.render("first_message.j2", persona=self.persona))
            attempt = self._generate_valid(stats, [note], emit, allowed=["send_message"], last_user=None)
            call = attempt.call if attempt and attempt.call and attempt.call.function == "send_message" else None
        with self.store.transaction():
            if call is not None:
                self.store.recall.add("assistant", call.arguments["message"], kind="assistant_call", turn_id=0,
                                      function_name="send_message", function_args=call.arguments,
                                      inner_thoughts=call.inner_thoughts)
            self.store.set_state("greeted", True)
        if call is not None:
            emit(AgentEvent("assistant_message", call.arguments["message"], {"name": self.persona.name}))

    def send(self, text: str, emit: EventSink) -> TurnStats:
        """Handle one user message: store it, then step until the model replies or a bound is hit;
        then capture what it stated (memory mode assisted)."""
        self.settle(emit)
        turn_id = self.store.recall.last_turn_id() + 1
        with self.store.transaction():
            message = self.store.recall.add("user", text, kind="user_message", turn_id=turn_id)
        stats = self._run_turn(turn_id, text, emit)
        self._after_reply(message, stats, emit)
        return stats

    def settle(self, emit: EventSink | None = None) -> None:
        """Wait for a capture still running in the background and pass on what it reported."""
        if self._capture_thread is not None:
            self._capture_thread.join()
            self._capture_thread = None
        events, self._capture_events = self._capture_events, []
        for event in events:
            if emit is not None:
                emit(event)

    # --- memory the system keeps (mode assisted) ----------------------------------------------
    def _surface(self, user_text: str, emit: EventSink, stats: TurnStats) -> list[ChatMessage]:
        if self.surfacer is None:
            return []
        started = time.perf_counter()
        try:
            memories = self.surfacer.surface(user_text)
        except Exception as exc:  # surfacing is a help, never a reason for a turn to fail
            log.warning("surfacing failed (%s); replying without recalled memories", exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            memories = []
        stats.surface_seconds = time.perf_counter() - started
        stats.recalled = len(memories)
        if not memories:
            return []
        shown = [memory.to_json_obj() for memory in memories]
        emit(AgentEvent("recalled", " · ".join(memory.text for memory in memories), {"memories": shown}))
        # A system turn, not a user turn: the user did not say this (wrappers without a system turn
        # in the conversation render it as a user turn).
        text = self.prompts.render("recalled.j2", memories=shown, persona_name=self.persona.name)
        return [ChatMessage(role="system", content=text)]

    def _after_reply(self, message: StoredMessage, stats: TurnStats, emit: EventSink) -> None:
        """Capture runs whether or not the model managed a reply: what the user said is what counts."""
        if self.capturer is None:
            return
        if self.capture_in_background:
            self._capture_thread = threading.Thread(target=self._capture, args=(message, stats, self._capture_events.append),
                                                    name="capture", daemon=True)
            self._capture_thread.start()
        else:
            self._capture(message, stats, emit)

    def _capture(self, message: StoredMessage, stats: TurnStats, emit: EventSink) -> None:
        assert self.capturer is not None
        started = time.perf_counter()
        try:
            captured = self.capturer.capture(message)
        except Exception as exc:  # a failed capture costs nothing: the message is in recall anyway
            log.warning("capture failed (%s); nothing was stored from this message", exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            return
        finally:
            stats.capture_seconds = time.perf_counter() - started
        stats.captured = len(captured)
        if captured:
            facts = [{**item.fact.to_json_obj(), "replaced": item.replaced.line if item.replaced else None}
                     for item in captured]
            emit(AgentEvent("captured", " · ".join(item.fact.line for item in captured), {"facts": facts}))

    def retry(self, emit: EventSink, note: str | None = None, sampling: SamplerPreset | None = None) -> TurnStats | None:
        """Regenerate the reply to the last user message (its side effects, captured facts included,
        are undone first)."""
        self.settle(emit)
        last = self._last_user_message()
        if last is None:
            emit(AgentEvent("notice", "nothing to retry yet"))
            return None
        undo_turn(self.store, last.turn_id, keep_user_message=True)
        self.context.invalidate_system()
        stats = self._run_turn(last.turn_id, last.content, emit, extra_note=note, sampling=sampling)
        self._after_reply(last, stats, emit)
        return stats

    def rethink(self, emit: EventSink) -> TurnStats | None:
        """Like retry, but asks the model to reconsider and samples more freely."""
        note = self.prompts.render("rethink.j2")
        return self.retry(emit, note=note, sampling=_loosened(self.settings.preset(), 1))

    def undo(self) -> str | None:
        """Remove the last exchange (user message, replies, memory edits); returns the user text."""
        self.settle()
        last = self._last_user_message()
        if last is None:
            return None
        undo_turn(self.store, last.turn_id, keep_user_message=False)
        self.context.invalidate_system()
        return last.content

    # --- the loop -----------------------------------------------------------------------------
    def _last_user_message(self) -> StoredMessage | None:
        recent = self.store.recall.recent(1, kinds=["user_message"])
        return recent[0] if recent else None

    def _recent_replies(self) -> list[str]:
        calls = self.store.recall.recent(RECENT_REPLIES * 3, kinds=["assistant_call"])
        replies = [str((m.function_args or {}).get("message", "")) for m in calls if m.function_name == "send_message"]
        return replies[-RECENT_REPLIES:]  # `recent` is oldest first

    def _run_turn(self, turn_id: int, user_text: str, emit: EventSink, extra_note: str | None = None,
                  sampling: SamplerPreset | None = None) -> TurnStats:
        stats = TurnStats()
        self.last_stats = stats
        started = time.perf_counter()
        self._recalled = self._surface(user_text, emit, stats)
        try:
            self._steps(turn_id, user_text, emit, stats, extra_note, sampling)
        finally:
            self._recalled = []
            stats.reply_seconds = time.perf_counter() - started
        return stats

    def _steps(self, turn_id: int, user_text: str, emit: EventSink, stats: TurnStats, extra_note: str | None,
               sampling: SamplerPreset | None) -> None:
        max_steps = self.settings.agent.max_steps
        first_step_extra = [ChatMessage(role="user", content=extra_note)] if extra_note else []
        while stats.steps < max_steps:
            stats.steps += 1
            emit(AgentEvent("status", f"step {stats.steps}", {"step": stats.steps}))
            # The last step allowed must be a reply: a user message always gets one.
            last_chance = stats.steps == max_steps and not stats.replied
            attempt = self._generate_valid(stats, first_step_extra, emit, allowed=["send_message"] if last_chance else None,
                                           last_user=user_text, sampling=sampling)
            first_step_extra = []
            if attempt is None or attempt.call is None:
                stats.failed = True
                if stats.degenerate_kinds:
                    emit(AgentEvent("notice", "no usable reply this time (empty, a repeat or a system note); "
                                              "nothing was stored — /retry asks again", {"reason": "no_usable_reply"}))
                else:
                    emit(AgentEvent("notice", "the model could not produce a valid reply; nothing was changed — "
                                              "try /retry or rephrase", {"reason": "invalid_output"}))
                return
            if not self._step(attempt.call, turn_id, emit, stats, streamed=attempt.streamed):
                return
        emit(AgentEvent("notice", f"stopped after {max_steps} steps without a reply (agent.max_steps)",
                        {"reason": "step_cap"}))

    def _step(self, call: FunctionCall, turn_id: int, emit: EventSink, stats: TurnStats, streamed: bool = False) -> bool:
        """Execute and store one call; True when the chain should go on."""
        if call.inner_thoughts:
            emit(AgentEvent("inner_thoughts", call.inner_thoughts))
        if call.function != "send_message":
            emit(AgentEvent("function_call", call.function, {"arguments": call.arguments}))
        with self.store.transaction():
            execution = self.executor.execute(call, turn_id)
            self.store.recall.add(
                "assistant", str(call.arguments.get("message", "")) if call.function == "send_message" else "",
                kind="assistant_call", turn_id=turn_id, function_name=call.function,
                function_args=call.arguments, inner_thoughts=call.inner_thoughts,
            )
            if execution.result_text is not None:
                self.store.recall.add("function", execution.result_text, kind="function_result", turn_id=turn_id,
                                      function_name=call.function, function_args={"ok": execution.ok, **execution.record})
            if call.function == "send_message":
                stats.replied = True
            heartbeat = self._heartbeat_reason(call, stats)
            if heartbeat:
                self.store.recall.add("user", "", kind="heartbeat", turn_id=turn_id, function_args={"reason": heartbeat})
        if execution.memory_changed:
            self.context.invalidate_system()
        if call.function == "send_message":
            emit(AgentEvent("assistant_message", call.arguments["message"], {"name": self.persona.name, "streamed": streamed}))
        else:
            emit(AgentEvent("function_result", execution.summary, {"function": call.function, "ok": execution.ok}))
        return heartbeat is not None

    @staticmethod
    def _heartbeat_reason(call: FunctionCall, stats: TurnStats) -> str | None:
        """Why the chain goes on after `call`, or None when it ends here."""
        if function_registry()[call.function].ends_chain:
            return None
        if call.request_heartbeat:
            return "function_result"
        # The user asked something and has had no answer yet: make sure they get one.
        return None if stats.replied else "forced"

    # --- one valid call, with bounded repair --------------------------------------------------
    def _generate_valid(
        self, stats: TurnStats, extra: list[ChatMessage], emit: EventSink, allowed: list[str] | None,
        last_user: str | None, sampling: SamplerPreset | None = None,
    ) -> Attempt | None:
        """Call the model until it yields a valid, non-degenerate call, within the configured bounds.
        Failed attempts and corrective notes are shown to the model but never stored."""
        corrections: list[ChatMessage] = []
        sampling = sampling or self.settings.preset()
        parse_left = self.settings.agent.parse_retries
        degenerate_left = self.settings.agent.degenerate_retries
        recent = self._recent_replies()
        flawed: list[tuple[int, Attempt, str]] = []
        while True:
            attempt = self._call_model(stats, extra + corrections, sampling, emit, allowed)
            if attempt.call is None:
                self._retract(attempt, emit)
                if parse_left <= 0:
                    return _least_flawed(flawed)
                parse_left -= 1
                stats.parse_retries += 1
                note = self.prompts.render("parse_error.j2", error=attempt.error)
                corrections = self._correction(attempt.raw, note)
                continue
            kind = detect_degenerate(attempt.call, last_user, recent)
            if kind is None:
                # Small models also copy a corrective note, an example reply or any other text the
                # system wrote into the prompt.
                shown = [c.content for c in corrections[-1:]] + self._system_texts()
                if copies_any(str(attempt.call.arguments.get("message", "")), shown):
                    kind = "parrots_user"
            if kind is None:
                return attempt
            stats.degenerate_kinds.append(kind)
            flawed.append((DEGENERATE_SEVERITY[kind], attempt, kind))
            if degenerate_left <= 0:
                chosen = _least_flawed(flawed)
                if chosen is not attempt:
                    self._retract(attempt, emit)
                return chosen
            self._retract(attempt, emit)
            degenerate_left -= 1
            stats.degenerate_retries += 1
            corrections = self._correction(attempt.raw, self.prompts.render("degenerate.j2", kind=kind))
            sampling = _loosened(sampling, stats.degenerate_retries)

    def _system_texts(self) -> list[str]:
        """Texts the system wrote into the prompt, which a reply must not copy: example replies (persona
        example lines, example calls), the system prompt itself, alerts in the history, this turn's
        recalled memories (a reply that only copies one of them is not a reply)."""
        system = self.context.system().text
        texts = [example.char for example in getattr(self.persona, "examples", [])]
        texts += _EXAMPLE_MESSAGE.findall(system)
        texts += [system, *(m.content for m in self._recalled)]
        texts += [m.content for m in self.store.recall.in_context() if m.kind == "system_alert"]
        return texts

    @staticmethod
    def _retract(attempt: Attempt, emit: EventSink) -> None:
        """A reply shown while it was generated is not the one kept: tell the front end."""
        if attempt.streamed:
            attempt.streamed = False
            emit(AgentEvent("retract"))

    def _correction(self, raw: str, note: str) -> list[ChatMessage]:
        """The failed attempt (its beginning is enough to see the mistake) and the note about it."""
        shown = raw.strip()[:CORRECTION_CHARS] or " "
        return [ChatMessage(role="assistant", content=shown), ChatMessage(role="user", content=note)]

    def _call_model(
        self, stats: TurnStats, extra: list[ChatMessage], sampling: SamplerPreset, emit: EventSink, allowed: list[str] | None
    ) -> Attempt:
        built = self.context.build(extra, on_summary=lambda n, s: emit(AgentEvent(
            "notice", f"summarised {n} older messages to make room", {"reason": "summary", "summary": s})),
            recalled=self._recalled)
        # In mode assisted the system captures what matters; asking a small model to save memories
        # before a summary only gives it a text to copy.
        if self.mode != "assisted" and self.context.needs_warning(built) and not extra:
            self._store_pressure_alert(built)
            built = self.context.build(extra, recalled=self._recalled)
        names = allowed or self.functions
        constrained = self.wrapper.constrained and not self.wrapper.prefill
        streamer = MessageStreamer(lambda piece: emit(AgentEvent("assistant_delta", piece))) if self.stream_replies else None
        request = GenerationRequest(
            prompt=built.prompt, messages=built.messages, on_text=streamer.feed if streamer else None,
            schema=call_json_schema(names) if constrained else None,
            grammar=call_gbnf(names) if constrained else None,
            stop=self.wrapper.stop, sampling=sampling, max_tokens=self.settings.llm.max_tokens,
        )
        completion = self.backend.generate(request)
        stats.llm_calls += 1
        stats.prompt_tokens += completion.prompt_tokens or built.tokens
        stats.evaluated_tokens += completion.evaluated_tokens or 0
        stats.cached_tokens += completion.cached_tokens or 0
        stats.completion_tokens += completion.completion_tokens or 0
        stats.context_used = built.used_fraction
        stats.calls.append((completion.prompt_tokens or built.tokens, completion.evaluated_tokens))
        outcome = parse_call(completion.text, prefill=self.wrapper.prefill, allowed=allowed)
        error = outcome.error
        if outcome.call is None and completion.finish_reason == "length":
            # A rambling model ran into max_tokens: ask for brevity rather than for valid JSON.
            error = CallError(kind="truncated", allowed_functions=list(allowed or self.functions))
        return Attempt(call=outcome.call, raw=self.wrapper.prefill + completion.text, error=error,
                       streamed=bool(streamer and streamer.shown))

    def _store_pressure_alert(self, built: BuiltPrompt) -> None:
        text = self.prompts.render("alert_memory_pressure.j2", used_pct=round(100 * built.used_fraction))
        with self.store.transaction():
            turn_id = self.store.recall.last_turn_id()
            self.store.recall.add("user", text, kind="system_alert", turn_id=turn_id)
            self.store.set_state("warned", True)


_EXAMPLE_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]{4,})"')

# Which flawed reply to keep when every regeneration was flawed too: the least harmful one.
DEGENERATE_SEVERITY = {"thoughts_equal_message": 1, "repeated_reply": 2, "parrots_user": 3, "looping": 4,
                       "system_note": 5, "empty_message": 6}
# The only flaw a reply can be shown with: its inner thoughts are dropped and the message is fine.
# An empty message, a system-note tag, a copy of the user's words or of an earlier reply is junk:
# better one notice ("no usable reply — /retry") than junk shown and stored to prime the next turn.
SHOWABLE_FLAWS = ("thoughts_equal_message",)


def _least_flawed(flawed: list[tuple[int, Attempt, str]]) -> Attempt | None:
    """The least harmful showable flawed attempt (earliest among equals), or None if there is none.
    Inner thoughts that merely repeat the message are dropped rather than stored."""
    usable = [entry for entry in flawed if entry[2] in SHOWABLE_FLAWS]
    if not usable:
        return None
    _, attempt, kind = min(usable, key=lambda entry: entry[0])
    log.info("keeping a flawed reply (%s) after the regenerations ran out", kind)
    if kind == "thoughts_equal_message" and attempt.call is not None:
        attempt.call.inner_thoughts = ""
    return attempt


def _loosened(sampling: SamplerPreset, attempt: int) -> SamplerPreset:
    """Changed sampling for a regeneration: warmer, more repetition-averse, a new seed."""
    temperature = max(sampling.temperature or 0.0, 0.6) + 0.2 * attempt
    return sampling.merged(
        temperature=min(temperature, 1.3),
        top_k=max(sampling.top_k or 0, 40),
        top_p=max(sampling.top_p or 0.0, 0.95) if sampling.top_p is not None else 0.95,
        repeat_penalty=(sampling.repeat_penalty or 1.0) + 0.1 * attempt,
        seed=(sampling.seed or 0) + 7919 * attempt,
    )

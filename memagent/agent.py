"""The step loop: event → prompt → LLM → parse + validate → execute → store → heartbeat or wait.

One step is one model call and one function call, stored in one transaction. A user message always
gets a reply or a visible notice; nothing the user said is ever lost; retries are bounded.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

from .agent_deps import AgentDeps
from .capture import FactCapture
from .config import SamplerPreset, Settings
from .context import ContextWindow
from .conversation import ChatMessage, FunctionCall
from .events import AgentEvent, EventSink, TurnStats
from .executor import FunctionExecutor
from .functions.registry import function_registry
from .generation import ReplyGenerator, loosened
from .llm.base import LLMBackend
from .memory.db import StorageError
from .memory.kinds import MessageKind, StateKey
from .memory.records import StoredMessage
from .personas import Human, Persona
from .prompts import PromptLibrary
from .summarizer import Summarizer
from .surfacing import Surfacer
from .turns import undo_turn
from .wrappers import Wrapper

if TYPE_CHECKING:
    from .memory.store import AgentStore

__all__ = ["Agent", "EventSink", "TurnStats"]
log = logging.getLogger(__name__)


class Agent:
    """The turn loop. Prompt assembly (ContextWindow), making room (Summarizer), one usable call
    (ReplyGenerator), running a call (FunctionExecutor), surfacing and capture are pieces it drives;
    they share one AgentDeps."""

    def __init__(self, store: AgentStore, backend: LLMBackend, wrapper: Wrapper, prompts: PromptLibrary,
                 settings: Settings, persona: Persona, human: Human) -> None:
        mode = settings.memory.mode
        # Memory mode "off": no memory beyond the conversation window, so no memory functions either.
        functions = [f.name for f in function_registry() if mode != "off" or not f.needs_memory]
        self.deps = AgentDeps(store, backend, wrapper, prompts, settings, persona, human, functions)
        self.summarizer = Summarizer(self.deps)
        self.context = ContextWindow(self.deps, self.summarizer)
        self.generator = ReplyGenerator(self.deps, self.context, self.summarizer)
        self.executor = FunctionExecutor(store, prompts, settings)
        assisted = mode == "assisted"
        self.surfacer = Surfacer(store, prompts, settings.memory, lambda: self.deps.vocabulary) if assisted else None
        self.capturer = FactCapture(self.deps, self.context) if assisted else None
        self.last_stats = TurnStats()
        # The terminal captures facts while the user reads and types; piped mode and tests wait for it.
        self.capture_in_background = False
        self._capture_thread: threading.Thread | None = None
        self._capture_events: list[AgentEvent] = []

    # The shared pieces, read through the one AgentDeps that holds them.
    @property
    def store(self) -> AgentStore:
        return self.deps.store

    @property
    def prompts(self) -> PromptLibrary:
        return self.deps.prompts

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @property
    def functions(self) -> list[str]:
        return self.deps.functions

    @property
    def persona(self) -> Persona:
        return self.deps.persona

    @persona.setter
    def persona(self, persona: Persona) -> None:
        self.deps.persona = persona
        self.context.invalidate_system()

    @property
    def stream_replies(self) -> bool:
        return self.generator.stream_replies

    @stream_replies.setter
    def stream_replies(self, value: bool) -> None:
        self.generator.stream_replies = value

    # --- public API ---------------------------------------------------------------------------
    def greet(self, emit: EventSink) -> None:
        """A new agent's first message: the persona's own, or a generated one (one try, no loop)."""
        if self.store.get_state(StateKey.GREETED) or self.store.recall.count() > 0:
            return
        persona = self.context.persona()
        greetings = [g for g in [persona.first_message, *persona.alternate_greetings] if g]
        text = random.choice(greetings) if greetings and self.settings.agent.first_message == "persona" else None
        call: FunctionCall | None = None
        if text:
            call = FunctionCall("send_message", {"message": text}, "")
        else:
            stats = TurnStats()
            note = ChatMessage(role="user", content=self.prompts.render("first_message.j2", persona=persona))
            attempt = self.generator.generate(stats, [note], emit, allowed=["send_message"], last_user=None)
            call = attempt.call if attempt and attempt.call and attempt.call.function == "send_message" else None
        with self.store.transaction():
            if call is not None:
                self.store.recall.add("assistant", call.arguments["message"], kind=MessageKind.ASSISTANT_CALL, turn_id=0,
                                      function_name="send_message", function_args=call.arguments,
                                      inner_thoughts=call.inner_thoughts)
            self.store.set_state(StateKey.GREETED, True)
        if call is not None:
            emit(AgentEvent("assistant_message", call.arguments["message"], {"name": self.persona.name}))

    def send(self, text: str, emit: EventSink, stop: threading.Event | None = None) -> TurnStats:
        """Handle one user message: store it, then step until the model replies or a bound is hit;
        then capture what it stated (memory mode assisted). `stop`, once set, ends the turn before
        its reply with TurnCancelled (what it stored stays: the caller undoes it)."""
        self.settle(emit)
        turn_id = self.store.recall.last_turn_id() + 1
        with self.store.transaction():
            message = self.store.recall.add("user", text, kind=MessageKind.USER, turn_id=turn_id)
        stats = self._run_turn(turn_id, text, emit, stop=stop)
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
    def _surface(self, user_text: str, emit: EventSink, stats: TurnStats) -> tuple[list[ChatMessage], tuple[str, ...]]:
        """The recalled-memory line for the prompt, and the remembered values the message asks for."""
        if self.surfacer is None:
            return [], ()
        started = time.perf_counter()
        try:
            memories = self.surfacer.surface(user_text, self.persona.name)
        except Exception as exc:  # surfacing is a help, never a reason for a turn to fail
            log.warning("surfacing failed (%s); replying without recalled memories", exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            memories = []
        stats.surface_seconds = time.perf_counter() - started
        stats.recalled = len(memories)
        if not memories:
            return [], ()
        shown = [memory.to_json_obj() for memory in memories]
        emit(AgentEvent("recalled", " · ".join(memory.text for memory in memories), {"memories": shown}))
        # Joined to the user's message in the prompt (context.with_recalled); a system turn where it
        # stands alone, since the user did not say it.
        text = self.prompts.render("recalled.j2", memories=shown, persona_name=self.persona.name).strip()
        return [ChatMessage(role="system", content=text)], self.surfacer.asked_values(user_text, memories, self.persona.name)

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
            captured += self.capturer.capture_promises(self.store.recall.of_turn(message.turn_id))
        except StorageError as exc:  # a full or read-only disk: the turn, or the next write, says so in one line
            log.info("capture failed (%s); nothing was stored from this message", exc)
            return
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

    def retry(self, emit: EventSink, note: str | None = None, sampling: SamplerPreset | None = None,
              stop: threading.Event | None = None) -> TurnStats | None:
        """Regenerate the reply to the last user message (its side effects, captured facts included,
        are undone first). The reply being replaced counts as the last one said: the new one must not
        repeat it (a swipe that gives the same words back is no regeneration)."""
        self.settle(emit)
        last = self._last_user_message()
        if last is None:
            emit(AgentEvent("notice", "nothing to retry yet"))
            return None
        discarded = tuple(reply for message in self.store.recall.of_turn(last.turn_id) if (reply := message.reply))
        undo_turn(self.store, last.turn_id, keep_user_message=True)
        self.context.invalidate_system()
        stats = self._run_turn(last.turn_id, last.content, emit, extra_note=note, sampling=sampling,
                               discarded=discarded, stop=stop)
        self._after_reply(last, stats, emit)
        return stats

    def rethink(self, emit: EventSink) -> TurnStats | None:
        """Like retry, but asks the model to reconsider and samples more freely."""
        note = self.prompts.render("rethink.j2")
        return self.retry(emit, note=note, sampling=loosened(self.settings.preset(), 1))

    def undo(self) -> str | None:
        """Remove the last exchange (user message, replies, memory edits); returns the user text."""
        self.settle()
        last = self._last_user_message()
        if last is None:
            return None
        undo_turn(self.store, last.turn_id, keep_user_message=False)
        self.context.invalidate_system()
        return last.content

    def undo_reply(self) -> None:
        """Remove what the last turn did after its user message (replies, memory edits), keeping it."""
        last = self._last_user_message()
        if last is not None:
            undo_turn(self.store, last.turn_id, keep_user_message=True)
            self.context.invalidate_system()

    # --- the loop -----------------------------------------------------------------------------
    def _last_user_message(self) -> StoredMessage | None:
        recent = self.store.recall.recent(1, kinds=[MessageKind.USER])
        return recent[0] if recent else None

    def _run_turn(self, turn_id: int, user_text: str, emit: EventSink, extra_note: str | None = None,
                  sampling: SamplerPreset | None = None, discarded: tuple[str, ...] = (),
                  stop: threading.Event | None = None) -> TurnStats:
        stats = TurnStats()
        self.last_stats = stats
        started = time.perf_counter()
        recalled, asked = self._surface(user_text, emit, stats)
        try:
            self._steps(turn_id, user_text, emit, stats, extra_note, sampling, recalled, asked, discarded, stop)
        finally:
            stats.reply_seconds = time.perf_counter() - started
        return stats

    def _steps(self, turn_id: int, user_text: str, emit: EventSink, stats: TurnStats, extra_note: str | None,
               sampling: SamplerPreset | None, recalled: list[ChatMessage], asked: tuple[str, ...],
               discarded: tuple[str, ...], stop: threading.Event | None) -> None:
        max_steps = self.settings.agent.max_steps
        first_step_extra = [ChatMessage(role="user", content=extra_note)] if extra_note else []
        while stats.steps < max_steps:
            stats.steps += 1
            emit(AgentEvent("status", f"step {stats.steps}", {"step": stats.steps}))
            # The last step allowed must be a reply: a user message always gets one.
            last_chance = stats.steps == max_steps and not stats.replied
            attempt = self.generator.generate(stats, first_step_extra, emit,
                                              allowed=["send_message"] if last_chance else None,
                                              last_user=user_text, sampling=sampling, recalled=recalled, asked=asked,
                                              discarded=discarded, stop=stop)
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
                kind=MessageKind.ASSISTANT_CALL, turn_id=turn_id, function_name=call.function,
                function_args=call.arguments, inner_thoughts=call.inner_thoughts,
            )
            if execution.result_text is not None:
                self.store.recall.add("function", execution.result_text, kind=MessageKind.FUNCTION_RESULT, turn_id=turn_id,
                                      function_name=call.function, function_args={"ok": execution.ok, **execution.record})
            if call.function == "send_message":
                stats.replied = True
            heartbeat = self._heartbeat_reason(call, stats)
            if heartbeat:
                self.store.recall.add("user", "", kind=MessageKind.HEARTBEAT, turn_id=turn_id, function_args={"reason": heartbeat})
        if execution.memory_changed:
            self.context.invalidate_system()
        if call.function == "send_message":
            emit(AgentEvent("assistant_message", call.arguments["message"],
                            {"name": self.persona.name, "streamed": streamed, "prompt_tokens": stats.prompt_tokens,
                             "completion_tokens": stats.completion_tokens}))
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

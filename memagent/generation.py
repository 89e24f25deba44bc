"""One usable call from the model, within bounds: build the prompt, call the model (streaming the
reply when asked), parse and repair with a corrective note, and regenerate junk (empty, a system-note
tag, a loop, a parrot, a repeat, a copy of a text the system wrote) with changed sampling — and a
corrective note where `[agent] regenerate = note`. Failed attempts and notes are never stored."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

from .agent_deps import AgentDeps
from .config import SamplerPreset
from .context import ContextWindow
from .conversation import ChatMessage, FunctionCall
from .errors import TurnCancelled
from .events import AgentEvent, EventSink, TurnStats
from .functions.grammar import call_gbnf
from .functions.schemas import call_json_schema
from .junk import (
    JUNK_KINDS,
    RULE_BY_KIND,
    JunkKind,
    Reply,
    ReplyContext,
    judge,
    normalise_text,
    recalled_wording,
    tidy,
)
from .llm.base import GenerationRequest, RecallNudge, RepeatGuard
from .memory.kinds import MessageKind
from .memory.records import StoredMessage
from .parsing import CallError, parse_call
from .streaming import MessageStreamer
from .summarizer import Summarizer

log = logging.getLogger(__name__)
# A reply that copies any of the persona's last this many replies is a repeat: a user notices a line
# said twice an hour apart as much as two in a row. Comparing is cheap (exact match first, difflib
# only between long texts).
RECENT_REPLIES = 300
# A reply that copies one of the user's last this many lines, in view or not, is a parrot: a small
# model may answer a question with an earlier line of the user's, even one summarised out of view.
EARLIER_USER_LINES = 50
GUARDED_REPLIES = 2  # the repeat guard steers a reply away from this many of the last replies
CORRECTION_CHARS = 600  # of a failed attempt shown back to the model with its corrective note
CLICHES_FILE = "cliches.txt"  # per language, editable: assistant phrases a character never says

@dataclass
class Attempt:
    call: FunctionCall | None
    raw: str
    error: CallError | None = None  # the parser's structured error when call is None
    streamed: bool = False  # the message was shown piece by piece while it was generated


class ReplyGenerator:
    def __init__(self, deps: AgentDeps, context: ContextWindow, summarizer: Summarizer) -> None:
        self.deps = deps
        self.context = context
        self.summarizer = summarizer
        self.stream_replies = False  # emit assistant_delta events while a reply is generated

    def generate(
        self, stats: TurnStats, extra: list[ChatMessage], emit: EventSink, *, allowed: list[str] | None,
        last_user: str | None, sampling: SamplerPreset | None = None, recalled: list[ChatMessage] | None = None,
        asked: tuple[str, ...] = (), discarded: tuple[str, ...] = (), stop: threading.Event | None = None,
    ) -> Attempt | None:
        """Call the model until it yields a valid, non-degenerate call, within the configured bounds.
        `asked`: remembered values the user's message asks for, which the reply is steered towards;
        a reply that says none of them is generated once more with the push made insistent (where the
        backend steers decoding), and kept only if that one says a value and is not junk.
        `discarded`: the replies this turn is regenerating (a /retry, a swipe), the latest said: a
        reply repeating one is junk, and the repeat guard words around them.
        `stop`, once set, raises TurnCancelled at the next token or model call."""
        recalled = recalled or []
        nudge = RecallNudge(values=asked) if asked else None
        attempt = self._generate(stats, extra, emit, allowed=allowed, last_user=last_user, sampling=sampling,
                                 recalled=recalled, nudge=nudge, discarded=discarded, stop=stop)
        if nudge is None or not self.deps.backend.steers_decoding or _says_a_value(attempt, asked) is not False:
            return attempt
        assert attempt is not None  # _says_a_value is False only for a send_message
        log.info("the reply said none of the values asked for: generating it once more, insisting")
        stats.recall_retries += 1
        _retract(attempt, emit)
        again = self._generate(stats, extra, emit, allowed=allowed, last_user=last_user, sampling=sampling,
                               recalled=recalled, nudge=replace(nudge, insist=True), discarded=discarded,
                               degenerate_retries=0, stop=stop)
        if _says_a_value(again, asked):
            return again
        if again is not None:
            _retract(again, emit)
        return attempt

    def _generate(
        self, stats: TurnStats, extra: list[ChatMessage], emit: EventSink, *, allowed: list[str] | None,
        last_user: str | None, sampling: SamplerPreset | None, recalled: list[ChatMessage], nudge: RecallNudge | None,
        discarded: tuple[str, ...], degenerate_retries: int | None = None, stop: threading.Event | None = None,
    ) -> Attempt | None:
        corrections: list[ChatMessage] = []
        settings = self.deps.settings
        sampling = sampling or settings.preset()
        parse_left = settings.agent.parse_retries
        degenerate_left = settings.agent.degenerate_retries if degenerate_retries is None else degenerate_retries
        recent = self._recent_replies() + list(discarded)
        flawed: list[tuple[int, Attempt, JunkKind]] = []
        rejected: list[str] = []  # this turn's junk messages: a regeneration must not say them again
        while True:
            guard = self._repeat_guard(recent, rejected, last_user, recalled)
            attempt = self._call_model(stats, extra + corrections, sampling, emit, allowed, recalled, guard, nudge,
                                       stop)
            if attempt.call is None:
                _retract(attempt, emit)
                if parse_left <= 0:
                    return _least_flawed(flawed)
                parse_left -= 1
                stats.parse_retries += 1
                note = self.deps.prompts.render("parse_error.j2", error=attempt.error)
                corrections = _correction(attempt.raw, note)
                continue
            if _tidy_message(attempt.call, self.deps.prompts.word_list(CLICHES_FILE)):
                _retract(attempt, emit)  # shown as it streamed: shown again as it is kept
            kind = self._junk_kind(attempt.call, last_user, recent, corrections, recalled,
                                   nudge.values if nudge else ())
            if kind is None:
                return attempt
            stats.degenerate_kinds.append(kind)
            rejected.append(str(attempt.call.arguments.get("message", "")))
            stats.rejected.append(rejected[-1])
            flawed.append((RULE_BY_KIND[kind].severity, attempt, kind))
            if degenerate_left <= 0:
                chosen = _least_flawed(flawed)
                if chosen is not attempt:
                    _retract(attempt, emit)
                return chosen
            _retract(attempt, emit)
            degenerate_left -= 1
            stats.degenerate_retries += 1
            corrections = (_correction(attempt.raw, self.deps.prompts.render("degenerate.j2", kind=kind))
                           if settings.agent.regenerate == "note" else [])
            sampling = loosened(sampling, stats.degenerate_retries)

    def _junk_kind(self, call: FunctionCall, last_user: str | None, recent: list[str], corrections: list[ChatMessage],
                   recalled: list[ChatMessage], asked: tuple[str, ...] = ()) -> JunkKind | None:
        """Why `call` is not a usable reply (the junk policy's kind), or None."""
        if call.function != "send_message":
            return None
        in_view = self.deps.store.recall.in_context()
        # Every corrective note, not only this attempt's: a small model may answer a later turn with an
        # earlier note's words.
        notes = list(dict.fromkeys([c.content for c in corrections[-1:]] + self._corrective_notes()))
        context = ReplyContext(
            last_user=last_user, recent_replies=recent, earlier_user_lines=self._earlier_user_lines(in_view),
            cliches=self.deps.prompts.word_list(CLICHES_FILE), system_texts=self._system_texts(recalled, in_view),
            notes=notes, recalled=[m.content for m in recalled], asked=asked,
            recalled_wording=recalled_wording(lambda memories: self.deps.prompts.render(
                "recalled.j2", memories=memories, persona_name=self.context.persona().name)),
            language=self.deps.prompts.language, function_names=self.deps.functions)
        message = call.arguments.get("message")
        return judge(Reply(message if isinstance(message, str) else "", call.inner_thoughts or ""), context)

    def _earlier_user_lines(self, in_view: list[StoredMessage]) -> list[str]:
        """The user's lines before the newest one: those in view and the last EARLIER_USER_LINES."""
        recent = self.deps.store.recall.recent(EARLIER_USER_LINES + 1, kinds=[MessageKind.USER])
        newest = recent[-1].id if recent else None
        lines = [m.content for m in in_view if m.kind == MessageKind.USER and m.id != newest]
        return list(dict.fromkeys(lines + [m.content for m in recent if m.id != newest]))

    def _repeat_guard(self, recent: list[str], rejected: list[str], last_user: str | None,
                      recalled: list[ChatMessage]) -> RepeatGuard | None:
        """The last replies and this turn's rejected ones, to be worded differently; the user's lines
        in view, this turn's recalled memories and core memory hold the words a reply may repeat —
        the facts it is asked for, the user's and the persona's own."""
        mode = self.deps.settings.agent.repeat_guard
        if mode == "off" or (mode == "retry" and not rejected):
            return None
        avoid = recent[-GUARDED_REPLIES:] + rejected
        if not avoid:
            return None
        keep = [m.content for m in self.deps.store.recall.in_context() if m.kind == MessageKind.USER]
        keep += [last_user or "", *(m.content for m in recalled)]
        keep += [block.value for block in self.deps.store.core.list()]
        return RepeatGuard(avoid=tuple(avoid), keep=tuple(keep))

    def _corrective_notes(self) -> list[str]:
        """degenerate.j2 rendered for every kind of junk: texts no reply may quote."""
        return [self.deps.prompts.render("degenerate.j2", kind=kind) for kind in JUNK_KINDS]

    def _recent_replies(self) -> list[str]:
        return self.deps.store.recall.recent_replies(RECENT_REPLIES)

    def _system_texts(self, recalled: list[ChatMessage], in_view: list[StoredMessage]) -> list[str]:
        """Texts the system wrote into the prompt, which a reply must not copy: example replies (persona
        example lines, the templates' example calls), the system prompt itself, alerts in the history,
        this turn's recalled memories (a reply that only copies one of them is not a reply)."""
        system = self.context.system()
        texts = [example.char for example in self.context.persona().examples]
        texts += [*system.example_replies, system.text, *(m.content for m in recalled)]
        texts += [m.content for m in in_view if m.kind == MessageKind.SYSTEM_ALERT]
        return texts

    def _call_model(self, stats: TurnStats, extra: list[ChatMessage], sampling: SamplerPreset, emit: EventSink,
                    allowed: list[str] | None, recalled: list[ChatMessage], guard: RepeatGuard | None,
                    nudge: RecallNudge | None, stop: threading.Event | None) -> Attempt:
        def summarised(count: int, summary: str) -> None:
            emit(AgentEvent("notice", f"summarised {count} older messages to make room",
                            {"reason": "summary", "summary": summary}))

        built = self.context.build(extra, on_summary=summarised, recalled=recalled)
        # In mode assisted the system captures what matters; asking a small model to save memories
        # before a summary only gives it a text to copy.
        if self.deps.settings.memory.mode != "assisted" and self.summarizer.needs_warning(built) and not extra:
            self.summarizer.store_pressure_alert(built)
            built = self.context.build(extra, recalled=recalled)
        wrapper = self.deps.wrapper
        names = allowed or self.deps.functions
        constrained = wrapper.constrained and not wrapper.prefill
        streamer = MessageStreamer(lambda piece: emit(AgentEvent("assistant_delta", piece))) if self.stream_replies else None

        def on_text(piece: str) -> None:
            if stop is not None and stop.is_set():
                raise TurnCancelled
            if streamer is not None:
                streamer.feed(piece)

        if stop is not None and stop.is_set():
            raise TurnCancelled
        request = GenerationRequest(
            prompt=built.prompt, messages=built.messages, on_text=on_text if streamer or stop else None,
            schema=call_json_schema(names) if constrained else None,
            grammar=call_gbnf(names) if constrained else None,
            stop=wrapper.stop, sampling=sampling, max_tokens=self.deps.settings.llm.max_tokens, repeat_guard=guard,
            recall_nudge=nudge, cancelled=stop.is_set if stop is not None else None,
        )
        completion = self.deps.backend.generate(request)
        stats.llm_calls += 1
        stats.prompt_tokens += completion.prompt_tokens or built.tokens
        stats.evaluated_tokens += completion.evaluated_tokens or 0
        stats.cached_tokens += completion.cached_tokens or 0
        stats.completion_tokens += completion.completion_tokens or 0
        stats.context_used = built.used_fraction
        stats.calls.append((completion.prompt_tokens or built.tokens, completion.evaluated_tokens))
        outcome = parse_call(completion.text, prefill=wrapper.prefill, allowed=allowed)
        error = outcome.error
        if outcome.call is None and completion.finish_reason == "length":
            # A rambling model ran into max_tokens: ask for brevity rather than for valid JSON.
            error = CallError(kind="truncated", allowed_functions=list(allowed or self.deps.functions))
        return Attempt(call=outcome.call, raw=wrapper.prefill + completion.text, error=error,
                       streamed=bool(streamer and streamer.shown))


def _says_a_value(attempt: Attempt | None, values: tuple[str, ...]) -> bool | None:
    """Whether a send_message reply says one of `values` (width- and case-insensitively); None when
    there is no such reply to judge."""
    if attempt is None or attempt.call is None or attempt.call.function != "send_message":
        return None
    message = normalise_text(str(attempt.call.arguments.get("message", "")))
    return any(normalise_text(value) in message for value in values if normalise_text(value))


def _tidy_message(call: FunctionCall, cliches: list[str]) -> bool:
    """Trims what is not the reply off a send_message (junk.tidy). Returns whether it changed."""
    message = call.arguments.get("message") if call.function == "send_message" else None
    if not isinstance(message, str):
        return False
    tidied = tidy(message, cliches)
    call.arguments["message"] = tidied
    return tidied != message


def _retract(attempt: Attempt, emit: EventSink) -> None:
    """A reply shown while it was generated is not the one kept: tell the front end."""
    if attempt.streamed:
        attempt.streamed = False
        emit(AgentEvent("retract"))


def _correction(raw: str, note: str) -> list[ChatMessage]:
    """The failed attempt (its beginning is enough to see the mistake) and the note about it."""
    shown = raw.strip()[:CORRECTION_CHARS] or " "
    return [ChatMessage(role="assistant", content=shown), ChatMessage(role="user", content=note)]


def _least_flawed(flawed: list[tuple[int, Attempt, JunkKind]]) -> Attempt | None:
    """The least harmful showable flawed attempt (earliest among equals), or None if there is none.
    Inner thoughts that merely repeat the message are dropped rather than stored."""
    usable = [entry for entry in flawed if RULE_BY_KIND[entry[2]].showable]
    if not usable:
        return None
    _, attempt, kind = min(usable, key=lambda entry: entry[0])
    log.info("keeping a flawed reply (%s) after the regenerations ran out", kind)
    if kind == "thoughts_equal_message" and attempt.call is not None:
        attempt.call.inner_thoughts = ""
    return attempt


def loosened(sampling: SamplerPreset, attempt: int) -> SamplerPreset:
    """Changed sampling for a regeneration: warmer, more repetition-averse, a new seed."""
    temperature = max(sampling.temperature or 0.0, 0.6) + 0.2 * attempt
    return sampling.merged(
        temperature=min(temperature, 1.3),
        top_k=max(sampling.top_k or 0, 40),
        top_p=max(sampling.top_p or 0.0, 0.95) if sampling.top_p is not None else 0.95,
        repeat_penalty=(sampling.repeat_penalty or 1.0) + 0.1 * attempt,
        seed=(sampling.seed or 0) + 7919 * attempt,
    )

"""The agents a server holds: opened on first use (each under its agent lock, so a `memagent chat` on
it is refused with a clear message), one turn per agent at a time, and turns of different agents
queued on the one model they share.

On PostgreSQL several servers (workers) share the agents: each turn opens its agent under the
agent's advisory lock and closes it after, so a turn always starts from what the last worker
stored, and two workers never run one agent's turn at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import Settings
from ..errors import AgentBusyError, MemagentError, NotFoundError, TurnCancelled
from ..events import AgentEvent, TurnStats
from ..llm.base import GenerationRequest, LLMBackend
from ..memory.kinds import MessageKind
from ..memory.store import AgentStore
from ..paths import Paths
from ..runtime import AgentSession
from ..turns import undo_turn
from .errors import ApiError
from .reconcile import IncomingMessage, StoredTail, TurnPlan, plan_turn

TASK_MAX_TOKENS = 256  # a title, a few tags or follow-up questions


class AgentBusy(MemagentError):
    """The agent's previous turn is still running after the wait."""


@dataclass
class TurnOutcome:
    plan: TurnPlan
    replies: list[str] = field(default_factory=list)
    events: list[AgentEvent] = field(default_factory=list)
    stats: TurnStats | None = None
    answered_before: dict[str, Any] | None = None  # an Idempotency-Key's first answer: no turn was run

    @property
    def notices(self) -> list[AgentEvent]:
        return [e for e in self.events if e.type == "notice"]


class AgentPool:
    def __init__(self, paths: Paths, settings: Settings, backend: LLMBackend, turn_wait: float = 120.0) -> None:
        self.paths = paths
        self.settings = settings
        self.backend = backend
        self.turn_wait = turn_wait
        self._sessions: dict[str, AgentSession] = {}
        self._readers: dict[str, AgentStore] = {}  # PostgreSQL: for memory reads, outside turns
        self._turn_locks: dict[str, threading.Lock] = {}
        self.shared_database = bool(settings.storage.database_url)
        self._model_lock = threading.Lock()  # one model: turns of different agents queue on it
        self._lock = threading.Lock()
        self._closed = False

    def names(self) -> list[str]:
        return AgentStore.list_agents(self.paths, self.settings)

    def _known(self, name: str) -> None:
        if self._closed:
            raise MemagentError("the server is shutting down")
        if name not in self.names():  # the listed agents only: a model id is never used as a path
            raise NotFoundError(f"no agent named {name!r}; GET /v1/models lists the agents, "
                                f"`memagent agents create {name}` makes one")
        self._turn_locks.setdefault(name, threading.Lock())

    def check(self, name: str) -> None:
        """Refuse a request for agent `name` before it starts: NotFoundError, or AgentBusyError when
        a chat holds it (files only: on PostgreSQL a turn waits for the agent's lock instead)."""
        if self.shared_database:
            with self._lock:
                self._known(name)
        else:
            self.session(name)

    def session(self, name: str) -> AgentSession:
        """The open session of agent `name` (NotFoundError, or AgentBusyError when a chat holds it)."""
        with self._lock:
            if name not in self._sessions:
                self._known(name)
                self._sessions[name] = AgentSession(self.paths, self.settings, name, create=False, progress=False,
                                                    backend=self.backend)
            return self._sessions[name]

    def store(self, name: str) -> AgentStore:
        """Agent `name`'s memory, for reading."""
        if not self.shared_database:
            return self.session(name).store
        with self._lock:
            self._known(name)
            if name not in self._readers:
                self._readers[name] = AgentStore.open(self.paths, self.settings, name)
            return self._readers[name]

    def _turn_session(self, name: str) -> AgentSession:
        """The session a turn runs in: the server's own, or (PostgreSQL) one opened for this turn,
        under the agent's advisory lock, waiting up to turn_wait for another worker's turn. The
        caller has checked the name."""
        if not self.shared_database:
            return self.session(name)
        try:
            return AgentSession(self.paths, self.settings, name, create=False, progress=False, backend=self.backend,
                                lock_wait=self.turn_wait)
        except AgentBusyError:
            raise AgentBusy(f"agent {name!r} is still answering an earlier message; try again shortly") from None

    def run_turn(self, name: str, messages: list[IncomingMessage], on_event: Callable[[AgentEvent], None],
                 stop: threading.Event | None = None, key: str | None = None,
                 answer_of: Callable[[TurnOutcome], dict[str, Any]] | None = None) -> TurnOutcome:
        """One turn of agent `name` for a request's messages, blocking; events go to `on_event` as they
        happen (the reply is known before the capture after it has run). `stop` set before the reply
        (the client left) cancels the turn — at the next token — and undoes what it stored:
        TurnCancelled. `key` (an Idempotency-Key): a request answered before, by any worker, gets
        that answer (`answer_of` makes it from the outcome, kept before the agent is let go); one
        whose worker stopped mid-turn finishes that turn instead of storing its message twice."""
        stop = stop or threading.Event()
        self.check(name)
        lock = self._turn_locks[name]
        if not lock.acquire(timeout=self.turn_wait):
            raise AgentBusy(f"agent {name!r} is still answering an earlier message; try again shortly")
        session: AgentSession | None = None
        try:
            session = self._turn_session(name)
            with self._model_lock:
                if stop.is_set():
                    raise TurnCancelled
                agent = session.agent()
                plan = plan_turn(messages, self._stored_tail(session.store), agent.deps.vocabulary.statements)
                turns_before = session.store.recall.last_turn_id()
                if key is not None:
                    known = session.store.requests.get(key)
                    if known is not None and known.answer is not None:
                        return TurnOutcome(plan, answered_before=known.answer)
                    if known is not None and plan.action == "new":
                        plan = self._resume(session.store, known.turns_before, plan)
                    elif known is None:
                        session.store.requests.forget_older_than(self.settings.serve.idempotency_seconds)
                        session.store.requests.started(key, turns_before)
                outcome = TurnOutcome(plan)

                def emit(event: AgentEvent) -> None:
                    if stop.is_set() and not outcome.replies:
                        raise TurnCancelled
                    outcome.events.append(event)
                    if event.type == "assistant_message":
                        outcome.replies.append(event.text)
                    on_event(event)

                try:
                    outcome.stats = (agent.retry(emit, stop=stop) if plan.action == "retry"
                                     else agent.send(plan.text, emit, stop=stop))
                except TurnCancelled:
                    # As /undo would: a new turn goes whole; a regenerate keeps the message it regenerates.
                    if plan.action == "retry":
                        agent.undo_reply()
                    elif session.store.recall.last_turn_id() > turns_before:  # its message was stored
                        agent.undo()
                    if key is not None:
                        session.store.requests.forget(key)
                    raise
                if not plan.keep:
                    agent.undo()  # a connection test: answered in character, nothing kept
                if key is not None and answer_of is not None:
                    with suppress(ApiError):  # no reply (a 502): the key stays unanswered, so the
                        session.store.requests.answered(key, answer_of(outcome))  # retry regenerates
                return outcome
        finally:
            if session is not None and self.shared_database:
                session.close()
            lock.release()

    def run_task(self, name: str, messages: list[IncomingMessage]) -> str:
        """A UI's background task (a chat title, tags) answered by the model alone: no persona, no
        memory, nothing stored."""
        self.check(name)  # the model id must still name an agent
        request = GenerationRequest(messages=[{"role": m.role, "content": m.text} for m in messages
                                              if m.role in ("system", "user", "assistant")],
                                    max_tokens=TASK_MAX_TOKENS)
        with self._model_lock:
            return self.backend.generate(request).text.strip()

    @staticmethod
    def _resume(store: AgentStore, turns_before: int, plan: TurnPlan) -> TurnPlan:
        """A request whose worker stopped mid-turn (its key has no answer): when that worker stored
        the user's message, the turn is finished rather than started again — as a regenerate when it
        is still the last turn, else taken back (it was never answered) and run anew at the end."""
        last = store.recall.last_turn_id()
        for turn_id in range(turns_before + 1, last + 1):
            said = [m for m in store.recall.of_turn(turn_id) if m.kind == MessageKind.USER]
            if said and said[0].content == plan.text:
                if turn_id == last:
                    return replace(plan, action="retry")
                undo_turn(store, turn_id, keep_user_message=False)
                break
        return plan

    @staticmethod
    def _stored_tail(store: AgentStore) -> StoredTail:
        """The agent's last user message, the reply it got and the reply before it."""
        users = store.recall.recent(2, kinds=[MessageKind.USER])
        if not users:
            return StoredTail()

        def reply_to(turn_id: int) -> str | None:
            replies = [m.reply for m in store.recall.of_turn(turn_id) if m.reply is not None]
            return "\n\n".join(replies) if replies else None

        return StoredTail(users[-1].content, reply_to(users[-1].turn_id),
                          reply_to(users[0].turn_id) if len(users) == 2 else None)

    def close(self) -> int:
        """Wait for running turns, then close every session (releasing the agent locks); returns how many."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.items())
            readers = list(self._readers.values())
        for reader in readers:
            reader.close()
        for name, session in sessions:
            with self._turn_locks[name]:
                session.close()
        self.backend.close()
        return len(sessions)

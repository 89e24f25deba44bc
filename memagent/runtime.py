"""Opening an agent for chatting: lock, store, persona, prompts, wrapper and (lazily) the model."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from filelock import FileLock, Timeout

from .config import DEFAULT_HUMANS, Settings
from .errors import AgentBusyError, MemagentError
from .llm.base import Completion, GenerationRequest, LLMBackend
from .paths import Paths
from .personas import load_human, load_persona
from .prompts import PromptLibrary
from .wrappers import load_wrapper

if TYPE_CHECKING:
    from .agent import Agent

DEFAULT_AGENT = "default"


class AgentLock:
    """One process per agent. The OS drops the lock when its holder dies (even by kill -9)."""

    def __init__(self, agent_dir: Path, name: str) -> None:
        self.name = name
        self.path = agent_dir / "agent.lock"
        try:
            agent_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(exc) from None
        self._lock = FileLock(str(self.path))

    def _unwritable(self, exc: OSError) -> MemagentError:
        return MemagentError(f"cannot lock agent {self.name!r}: {self.path.parent} is not writable "
                             f"({exc.strerror or exc}); check the disk and its permissions")

    def acquire(self, wait: float = 0.0) -> None:
        try:
            self._lock.acquire(timeout=wait)
        except Timeout:
            raise AgentBusyError(
                f"agent {self.name!r} is in use by another memagent process; close that chat first"
            ) from None
        except OSError as exc:  # a read-only or vanished folder
            raise self._unwritable(exc) from None

    def release(self) -> None:
        self._lock.release()


class TurnLock(Protocol):
    def acquire(self, wait: float = 0.0) -> None: ...

    def release(self) -> None: ...


def agent_lock(paths: Paths, settings: Settings, name: str) -> TurnLock:
    """The agent's lock: a file beside its SQLite database, or an advisory lock in PostgreSQL that
    every worker on that database sees."""
    url = settings.storage.database_url
    if url:
        from .memory.postgres import AdvisoryLock

        return AdvisoryLock(url, name)
    return AgentLock(paths.agent_dir(name), name)


class LazyBackend(LLMBackend):
    """Stands in for the backend until it is first used, so work that needs no model never waits."""

    def __init__(self, session: AgentSession) -> None:
        self._session = session

    @property
    def _real(self) -> LLMBackend:
        return self._session.backend()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._real.name

    @property
    def context_length(self) -> int:
        return self._real.context_length

    @property
    def exact_tokens(self) -> bool:
        return self._real.exact_tokens

    @property
    def steers_decoding(self) -> bool:
        return self._real.steers_decoding

    def generate(self, request: GenerationRequest) -> Completion:
        return self._real.generate(request)

    def count_tokens(self, text: str) -> int:
        return self._real.count_tokens(text)

    def describe(self) -> str:
        return self._real.describe()


class AgentSession:
    """Everything one chat needs. The backend loads in the background so the prompt shows at once."""

    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        name: str,
        *,
        persona: str | None = None,
        human: str | None = None,
        create: bool = True,
        progress: bool = True,
        backend: LLMBackend | None = None,
        lock_wait: float = 0.0,
    ) -> None:
        """`backend`: a model shared with other sessions (memagent serve); it is not closed here.
        `lock_wait`: seconds to wait for the agent's lock before AgentBusyError."""
        from .memory.store import AgentStore, check_agent_name

        check_agent_name(name)
        self.paths = paths
        self.settings = settings
        self.name = name
        self.progress = progress
        self.lock = agent_lock(paths, settings, name)
        self.lock.acquire(lock_wait)
        try:
            self.created = not AgentStore.exists(paths, settings, name)
            if self.created and not create:
                AgentStore.require(paths, settings, name)
            if self.created:
                from .creation import create_agent

                self.store, self.persona, self.human = create_agent(paths, settings, name, persona=persona, human=human)
            else:
                self.store = AgentStore.open(paths, settings, name)
                self.persona = load_persona(paths, persona or self.store.info.persona or settings.agent.persona)
                fallback = settings.agent.human or DEFAULT_HUMANS[self.store.info.language]
                self.human = load_human(paths, human or self.store.info.human or fallback)
            self.language = self.store.info.language
            self.prompts = PromptLibrary(paths, self.language)
            self.wrapper = load_wrapper(paths, settings.llm.wrapper)
        except BaseException:
            self.lock.release()
            raise
        self._backend: LLMBackend | None = backend
        self._owns_backend = backend is None
        self._backend_error: BaseException | None = None
        self._loader: threading.Thread | None = None
        self._agent: Agent | None = None
        self.stream_replies = False
        self.capture_in_background = False

    # --- the model, loaded once, possibly in the background -----------------------------------
    def start_loading(self) -> None:
        if self._loader is None and self._backend is None:
            self._loader = threading.Thread(target=self._load_backend, name="load-model", daemon=True)
            self._loader.start()

    def _load_backend(self) -> None:
        from .llm.factory import make_backend

        try:
            self._backend = make_backend(self.settings, self.paths, progress=self.progress)
        except BaseException as exc:  # handed to the thread that needs the backend
            self._backend_error = exc

    @property
    def backend_ready(self) -> bool:
        return self._backend is not None

    def backend(self) -> LLMBackend:
        if self._backend is None:
            if self._loader is None:
                self._load_backend()
            else:
                self._loader.join()
            if self._backend_error is not None:
                error, self._backend_error, self._loader = self._backend_error, None, None
                raise error
        assert self._backend is not None
        return self._backend

    def agent(self) -> Agent:
        if self._agent is None:
            from .agent import Agent

            self._agent = Agent(self.store, LazyBackend(self), self.wrapper, self.prompts, self.settings,
                                self.persona, self.human)
            self._agent.stream_replies = self.stream_replies
            self._agent.capture_in_background = self.capture_in_background
        return self._agent

    @property
    def has_agent(self) -> bool:
        return self._agent is not None

    def close(self) -> None:
        if self._agent is not None:
            self._agent.settle()  # a capture still running finishes before the store closes
        if self._loader is not None:
            self._loader.join()
        if self._backend is not None and self._owns_backend:
            self._backend.close()
        self.store.close()
        self.lock.release()

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_agent_name() -> str:
    return os.environ.get("MEMAGENT_AGENT", DEFAULT_AGENT)

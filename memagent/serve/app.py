"""The OpenAI-compatible HTTP front end: /v1/models (one model id per agent), /v1/chat/completions
(streamed or not), and read-only memory endpoints for tools. Errors are OpenAI-shaped:
`{"error": {"message", "type", "code"}}` with the matching status.

Replies are checked before they are shown (junk is never shown), so a streamed reply arrives once it
has passed: the stream opens at once with the assistant role, keeps the connection alive while the
model works, then sends the reply in pieces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import ServeSettings
from ..errors import AgentBusyError, LLMError, MemagentError, NotFoundError, TurnCancelled
from ..events import AgentEvent
from ..memory.errors import QueryError
from ..summarizer import ContextOverflow
from .door import Door, DoorMiddleware
from .errors import ApiError
from .pool import AgentBusy, AgentPool, TurnOutcome
from .reconcile import ChatRequest, ReconcileError, conversation_of, is_background_task

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 1.0
DISCONNECT_POLL_SECONDS = 0.5
STREAM_PIECE_CHARS = 24
RETRY_AFTER_SECONDS = 2


def api_error(exc: BaseException) -> ApiError:
    """The HTTP answer for an expected failure of a turn."""
    if isinstance(exc, ApiError):
        return exc
    busy_headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc), "invalid_request_error", "model_not_found")
    if isinstance(exc, AgentBusy):
        return ApiError(409, str(exc), "agent_busy", "agent_busy", busy_headers)
    if isinstance(exc, AgentBusyError):
        return ApiError(409, f"{exc} (the server cannot open it meanwhile)", "agent_busy", "agent_in_use", busy_headers)
    if isinstance(exc, ReconcileError | ContextOverflow | QueryError):
        return ApiError(400, str(exc), "invalid_request_error", "invalid_messages")
    if isinstance(exc, LLMError):
        down = "cannot connect" in str(exc) or "did not answer" in str(exc)
        return ApiError(503 if down else 502, str(exc), "model_unavailable" if down else "model_error",
                        "model_unavailable" if down else "model_error", busy_headers if down else None)
    if isinstance(exc, MemagentError):
        return ApiError(500, str(exc), "server_error", "memagent_error")
    log.exception("unexpected failure in a turn", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", "server_error", "internal_error")


@dataclass
class Remembered:
    """A finished answer kept for an Idempotency-Key."""

    created: float
    body: dict[str, Any]


class Turns:
    """Runs turns in worker threads and hands their outcome to the event loop as soon as the reply is
    known; the capture after it goes on in the thread (the agent's lock is held until it is done)."""

    def __init__(self, pool: AgentPool, idempotency_seconds: int, max_waiting: int) -> None:
        self.pool = pool
        self.idempotency_seconds = idempotency_seconds
        self.max_waiting = max_waiting
        self._remembered: dict[str, Remembered] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._threads: set[threading.Thread] = set()
        self._admitted = 0  # chat requests admitted and not finished: a bounded queue, not a thread each
        self._admitted_lock = threading.Lock()

    def admit(self) -> None:
        """Count a chat request in, or refuse it when the queue is full."""
        with self._admitted_lock:
            if self._admitted >= self.max_waiting:
                raise ApiError(503, f"the server already has {self._admitted} messages waiting for the model; "
                               "try again shortly", "server_busy", "queue_full",
                               {"Retry-After": str(RETRY_AFTER_SECONDS)})
            self._admitted += 1

    def leave(self) -> None:
        with self._admitted_lock:
            self._admitted -= 1

    async def answer(self, request: ChatRequest, idempotency_key: str | None,
                     stop: threading.Event | None = None) -> dict[str, Any]:
        """The completion body for an admitted `request` (an Idempotency-Key seen before returns the
        first answer). It leaves the queue when its turn has ended, capture included. `stop` set
        before the reply (the client left) cancels the turn and undoes it."""
        key = f"{request.model}\x00{idempotency_key}" if idempotency_key else None
        if key is not None:
            self._forget_old()
            if key in self._remembered:
                self.leave()
                return self._remembered[key].body
            if key in self._pending:
                self.leave()
                return await asyncio.shield(self._pending[key])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if key is not None:
            self._pending[key] = future
        try:
            body = await self._run(request, stop or threading.Event(), idempotency_key)
            if key is not None:
                self._remembered[key] = Remembered(time.monotonic(), body)
            future.set_result(body)
            return body
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            if key is not None:
                self._pending.pop(key, None)

    async def _run(self, request: ChatRequest, stop: threading.Event, key: str | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[TurnOutcome | _Partial] = loop.create_future()

        def settle(value: TurnOutcome | _Partial | BaseException) -> None:
            if ready.done():  # the first of: the reply, the no-reply notice, the end of the turn
                return
            if isinstance(value, BaseException):
                ready.set_exception(value)
            else:
                ready.set_result(value)

        # The answer is made once, from the first reply, on the turn's thread: what the client gets
        # is what an Idempotency-Key keeps (pool.run_turn stores it before letting the agent go).
        answer: dict[str, Any] = {}

        def on_event(event: AgentEvent) -> None:
            if event.type == "assistant_message" or (event.type == "notice" and event.data.get("reason") in
                                                      ("no_usable_reply", "invalid_output", "step_cap")):
                partial = _Partial(request.model, event)
                if event.type == "assistant_message" and not answer:
                    answer.update(completion_body(request.model, partial))
                _post(loop, settle, partial)

        def answer_of(outcome: TurnOutcome) -> dict[str, Any]:
            return dict(answer) if answer else completion_body(request.model, outcome)

        def work() -> None:
            try:
                outcome = self.pool.run_turn(request.model, request.messages, on_event, stop, key, answer_of)
                _post(loop, settle, outcome)
            except TurnCancelled:  # nobody is waiting for it any more
                _post(loop, settle, ApiError(499, "the client closed the connection; the turn was cancelled and "
                                             "undone", "request_cancelled", "client_closed"))
            except BaseException as exc:  # noqa: BLE001 - handed to the request
                _post(loop, settle, exc)
            finally:
                self._threads.discard(threading.current_thread())
                self.leave()

        thread = threading.Thread(target=work, name=f"turn-{request.model}", daemon=True)
        self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            self._threads.discard(thread)
            self.leave()
            raise
        first = await ready
        if isinstance(first, TurnOutcome) and first.answered_before is not None:
            return first.answered_before
        return dict(answer) if answer else completion_body(request.model, first)

    async def background(self, request: ChatRequest) -> dict[str, Any]:
        """The completion body for an admitted background task of a UI (nothing is stored)."""
        try:
            text = await asyncio.to_thread(self.pool.run_task, request.model, request.messages)
        finally:
            self.leave()
        event = AgentEvent("assistant_message", text)
        return completion_body(request.model, _Partial(request.model, event))

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self.idempotency_seconds
        for key in [k for k, v in self._remembered.items() if v.created < horizon]:
            del self._remembered[key]

    def join(self) -> None:
        for thread in list(self._threads):
            thread.join()


def _outcome_taken(task: asyncio.Task[dict[str, Any]]) -> None:
    if not task.cancelled():
        task.exception()


def _post(loop: asyncio.AbstractEventLoop, settle: Callable[[Any], None], value: object) -> None:
    """Hand a turn's result to the event loop; after shutdown there is nobody left to tell."""
    try:
        loop.call_soon_threadsafe(settle, value)
    except RuntimeError:
        log.debug("a turn finished after the server's event loop closed")


@dataclass
class _Partial:
    """What is known when the reply event arrives: enough to answer before the capture has run."""

    model: str
    event: AgentEvent


# What a chat UI shows when a turn ends without a reply: its own words, no terminal commands.
NO_REPLY_TEXT = {
    "no_usable_reply": "the model gave no usable reply this time (empty, a repeat or debris); nothing was stored "
                       "— press Regenerate to ask again",
    "invalid_output": "the model could not produce a valid reply; nothing was changed — press Regenerate, or "
                      "rephrase your message",
    "step_cap": "the agent stopped after its step limit ([agent] max_steps) without a reply — press Regenerate",
}


def completion_body(model: str, outcome: TurnOutcome | _Partial) -> dict[str, Any]:
    events = outcome.events if isinstance(outcome, TurnOutcome) else [outcome.event]
    replies = [e for e in events if e.type == "assistant_message"]
    if not replies:
        notice = next((e for e in events if e.type == "notice"), None)
        reason = str(notice.data.get("reason", "")) if notice else ""
        message = NO_REPLY_TEXT.get(reason, "the model gave no reply — press Regenerate to ask again")
        raise ApiError(502, message, "model_error", reason or "no_usable_reply")
    prompt_tokens = int(replies[-1].data.get("prompt_tokens", 0))
    completion_tokens = int(replies[-1].data.get("completion_tokens", 0))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "\n\n".join(e.text for e in replies)},
                     "finish_reason": "stop"}],
        # The turn's model calls so far (a chain of calls counts each prompt).
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _chunk(body: dict[str, Any], delta: dict[str, str], finish: str | None = None) -> str:
    chunk = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"],
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


async def stream_answer(answer: asyncio.Task[dict[str, Any]], model: str, stop: threading.Event) -> AsyncIterator[str]:
    """SSE: the role at once, keep-alive comments while the turn runs, then the reply in pieces. A
    client that leaves before the reply (the stream is closed under us) stops the turn."""
    opening = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}
    try:
        yield _chunk(opening, {"role": "assistant", "content": ""})
        while not answer.done():
            try:
                await asyncio.wait_for(asyncio.shield(answer), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
            except Exception:  # noqa: BLE001 - the turn failed: reported below, from the task itself
                break
    finally:
        if not answer.done():
            stop.set()
            # Nobody reads the cancelled turn's outcome now: take it, so asyncio logs no stray traceback.
            answer.add_done_callback(_outcome_taken)
    try:
        body = answer.result()
    except Exception as exc:  # noqa: BLE001 - after the headers, errors travel in the stream
        yield f"data: {json.dumps(api_error(exc).body(), ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
        return
    body = {**body, "id": opening["id"], "created": opening["created"]}
    text = body["choices"][0]["message"]["content"]
    for start in range(0, len(text), STREAM_PIECE_CHARS):
        yield _chunk(body, {"content": text[start:start + STREAM_PIECE_CHARS]})
    yield _chunk(body, {}, "stop")
    yield "data: [DONE]\n\n"


def create_app(pool: AgentPool, serve: ServeSettings) -> FastAPI:
    turns = Turns(pool, serve.idempotency_seconds, serve.max_waiting_turns)
    door = Door.of(serve.keys(), serve.hosts(), serve.max_body_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Shutdown (SIGTERM, Ctrl-C): running turns finish, then every agent is closed and unlocked.
        await asyncio.to_thread(turns.join)
        closed = await asyncio.to_thread(pool.close)
        print(f"memagent serve: stopped; {closed} agent(s) closed", file=sys.stderr, flush=True)

    app = FastAPI(title="memagent", lifespan=lifespan, docs_url=None, redoc_url=None)

    app.add_middleware(DoorMiddleware, door=door)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.url.path}; the API is under /v1 (GET /v1/models, POST /v1/chat/completions)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, message, "invalid_request_error", code).response()

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def on_bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return ApiError(400, f"invalid request body: {where or 'body'}: {first.get('msg')}",
                        "invalid_request_error", "invalid_body").response()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = await asyncio.to_thread(pool.names)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "memagent"}
                                           for name in names]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        body = bytearray()
        async for piece in request.stream():  # a body sent without Content-Length is capped too
            body += piece
            if len(body) > door.max_body_bytes:
                raise door.too_large()
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not JSON", "invalid_request_error", "invalid_json") from None
        try:
            chat = ChatRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ApiError(400, f"invalid request body: {where}: {first['msg']}", "invalid_request_error",
                           "invalid_body") from None
        try:  # what cannot become a turn, and an unknown or unavailable agent, are refused before any stream
            conversation_of(chat.messages)
            await asyncio.to_thread(pool.check, chat.model)
        except (MemagentError, ReconcileError) as exc:
            raise api_error(exc) from None
        turns.admit()
        key = request.headers.get("idempotency-key")
        stop = threading.Event()
        if is_background_task(chat.messages):
            task = asyncio.create_task(turns.background(chat))
        else:
            task = asyncio.create_task(turns.answer(chat, key, stop))
        if chat.stream:
            return StreamingResponse(stream_answer(task, chat.model, stop), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        while not task.done():  # a client that leaves before the reply stops the turn
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if not task.done() and await request.is_disconnected():
                stop.set()
        try:
            return JSONResponse(task.result())
        except Exception as exc:  # noqa: BLE001 - every failure of a turn becomes an OpenAI-shaped error
            return api_error(exc).response()

    @app.get("/v1/agents/{name}/memory")
    async def memory(name: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            store = pool.store(name)
            return {"agent": name, "blocks": [{"label": b.label, "value": b.value, "limit": b.limit}
                                              for b in store.core.list()],
                    "facts": [f.to_json_obj() for f in store.facts.current()], "stats": store.stats()}
        try:
            return await asyncio.to_thread(read)
        except MemagentError as exc:
            raise api_error(exc) from None

    @app.get("/v1/agents/{name}/memory/search")
    async def search(name: str, query: str, kind: str = "archival", limit: int = 5, literal: bool = False) -> dict[str, Any]:
        if kind not in ("archival", "recall"):
            raise ApiError(400, "kind must be archival or recall", "invalid_request_error", "invalid_kind")
        if literal and kind != "recall":
            raise ApiError(400, "literal=true searches the conversation: use it with kind=recall",
                           "invalid_request_error", "invalid_literal")
        limit = max(1, min(limit, 50))

        def find() -> dict[str, Any]:
            store = pool.store(name)
            if kind == "archival":
                page = store.archival.search(query, page_size=limit)
            else:
                page = store.recall.search(query, page_size=limit, literal=literal)
            return {"agent": name, "kind": kind, "query": query, "total": page.total,
                    "hits": [hit.to_json_obj() for hit in page.hits]}
        try:
            return await asyncio.to_thread(find)
        except MemagentError as exc:
            raise api_error(exc) from None

    return app

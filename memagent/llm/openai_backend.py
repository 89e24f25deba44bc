"""Any OpenAI-compatible server (LM Studio, llama.cpp, llama-cpp-python, TabbyAPI, vLLM, Ollama,
KoboldCpp) through the official `openai` SDK, shaped per server by its profile."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import openai

from ..config import LLMSettings
from ..errors import LLMError
from .base import Completion, GenerationRequest, LLMBackend, estimate_tokens
from .profiles import ServerProfile, server_profiles
from .server import ServerInfo, auth_headers, http_error_line, probe_server, server_root

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 4096


def translate_error(exc: Exception, base_url: str, timeout: float) -> LLMError:
    """One clear line for every way a request can fail."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(f"{base_url} did not answer within {timeout:g}s; the model may be too slow — raise [llm] timeout")
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(f"cannot connect to {base_url}; is the server running and is [llm] base_url right?")
    if isinstance(exc, openai.APIStatusError):
        body = exc.response.text if exc.response is not None else ""
        return LLMError(http_error_line(exc.status_code, base_url, body))
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, TypeError, AttributeError, IndexError)):
        return LLMError(f"{base_url} returned a reply that is not an OpenAI-compatible completion; check [llm] base_url and [llm] server")
    return LLMError(f"request to {base_url} failed ({type(exc).__name__}: {exc})")


class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(self, settings: LLMSettings, info: ServerInfo | None = None) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._api_key = settings.api_key.get_secret_value()
        self.info = info or probe_server(self.base_url, self._api_key, min(settings.timeout, 15.0))
        kind = settings.server if settings.server != "auto" else (self.info.kind or "generic")
        self.profile: ServerProfile = server_profiles()[kind]
        self.model = settings.model or (self.info.models[0] if self.info.models else "")
        if not self.model:
            raise LLMError(f"{self.base_url} lists no models; load a model in the server or set [llm] model")
        if settings.model and self.info.models and settings.model not in self.info.models:
            log.info("model %s is not in the server's list %s; sending it anyway", settings.model, self.info.models)
        self._context = settings.context_length or self.info.context_length or DEFAULT_CONTEXT
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self._api_key or "no-key",
            timeout=settings.timeout,
            max_retries=settings.retries,
        )
        self._token_cache: dict[str, int] = {}
        self._stream = settings.stream
        self._tokenizer_ok = self.profile.tokenize_path is not None

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def exact_tokens(self) -> bool:
        return self._tokenizer_ok

    def describe(self) -> str:
        return f"{self.profile.kind} server at {self.base_url}, model {self.model} (context {self._context})"

    def constraint_fields(self, schema: dict[str, Any] | None, mode: str, grammar: str | None = None) -> dict[str, Any]:
        if schema is None:
            return {}
        fields = self.profile.constraint(schema, mode, grammar)  # type: ignore[arg-type]
        if fields is None:
            log.debug("server profile %s has no %s-mode constraint; relying on repair", self.profile.kind, mode)
        return fields or {}

    def generate(self, request: GenerationRequest) -> Completion:
        mode = "raw" if request.prompt is not None else "chat"
        standard, extra = self.profile.sampler_body(request.sampling)
        constraint = self.constraint_fields(request.schema, mode, request.grammar)
        extra |= constraint
        params: dict[str, Any] = standard | {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "stream": self._stream,
        }
        if request.stop:
            params["stop"] = request.stop
        if extra:
            params["extra_body"] = extra
        started = time.perf_counter()
        try:
            if mode == "raw":
                response = self.client.completions.create(prompt=request.prompt, **params)
            else:
                # plain role/content dicts: what the SDK's message TypedDicts describe
                response = self.client.chat.completions.create(messages=request.messages or [], **params)  # type: ignore[arg-type]
            if params["stream"]:
                try:
                    completion = self._read_stream(response, request, mode)
                except openai.APITimeoutError:
                    raise
                except openai.APIConnectionError:
                    raise LLMError(
                        f"the connection to {self.base_url} broke off in the middle of a reply; the server may have "
                        "crashed or been stopped — check it (and its log) and try again"
                    ) from None
                if completion is None:
                    # Some servers ignore stream=true and answer with one JSON body; ask again unstreamed.
                    log.info("%s sent no stream chunks; streaming is off for this session", self.base_url)
                    self._stream = False
                    return self.generate(request)
            else:
                completion = self._read_whole(response, request, mode)
        except LLMError:
            raise
        except Exception as exc:  # every SDK/network/shape failure becomes one line
            raise translate_error(exc, self.base_url, self.settings.timeout) from None
        completion.constrained = bool(constraint)
        completion.seconds = time.perf_counter() - started
        return completion

    @staticmethod
    def _choice_text(choice: Any, mode: str, streaming: bool) -> str:
        if mode == "raw":
            return choice.text or ""
        holder = choice.delta if streaming else choice.message
        return (holder.content if holder is not None else None) or ""

    def _read_whole(self, response: Any, request: GenerationRequest, mode: str) -> Completion:
        if isinstance(response, (str, bytes)) or not getattr(response, "choices", None):
            raise LLMError(f"{self.base_url} returned no completion choices; check [llm] base_url and the server log")
        choice = response.choices[0]
        text = self._choice_text(choice, mode, streaming=False)
        if request.on_text and text:
            request.on_text(text)
        completion = Completion(text=text, finish_reason=choice.finish_reason)
        usage = getattr(response, "usage", None)
        if usage is not None:
            completion.prompt_tokens = usage.prompt_tokens
            completion.completion_tokens = usage.completion_tokens
        self._read_timings(getattr(response, "model_extra", None) or {}, completion)
        return completion

    def _read_stream(self, stream: Any, request: GenerationRequest, mode: str) -> Completion | None:
        """The streamed completion, or None when the server sent no chunk at all."""
        parts: list[str] = []
        chunks = 0
        finish = None
        extras: dict[str, Any] = {}
        usage = None
        for chunk in stream:
            if isinstance(chunk, (str, bytes)):
                raise LLMError(f"{self.base_url} streamed something that is not an OpenAI-compatible chunk")
            chunks += 1
            extras |= getattr(chunk, "model_extra", None) or {}
            usage = getattr(chunk, "usage", None) or usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = self._choice_text(choice, mode, streaming=True)
            if delta:
                parts.append(delta)
                if request.on_text:
                    request.on_text(delta)
            finish = choice.finish_reason or finish
        if chunks == 0:
            return None
        completion = Completion(text="".join(parts), finish_reason=finish, completion_tokens=len(parts))
        if usage is not None:
            completion.prompt_tokens = usage.prompt_tokens
            completion.completion_tokens = usage.completion_tokens
        self._read_timings(extras, completion)
        return completion

    @staticmethod
    def _read_timings(extras: dict[str, Any], completion: Completion) -> None:
        """llama-server reports how many prompt tokens came from its cache and how many it evaluated."""
        timings = extras.get("timings")
        if isinstance(timings, dict) and "prompt_n" in timings:
            completion.evaluated_tokens = int(timings["prompt_n"])
            completion.cached_tokens = int(timings.get("cache_n", 0))
            completion.prompt_tokens = completion.evaluated_tokens + completion.cached_tokens

    def count_tokens(self, text: str) -> int:
        if text in self._token_cache:
            return self._token_cache[text]
        count = self._server_count(text) if self._tokenizer_ok else None
        if count is None:
            count = estimate_tokens(text)
        if len(self._token_cache) > 4096:
            self._token_cache.clear()
        self._token_cache[text] = count
        return count

    def _server_count(self, text: str) -> int | None:
        profile = self.profile
        assert profile.tokenize_path and profile.tokenize_body and profile.tokenize_count
        url = server_root(self.base_url) + profile.tokenize_path
        try:
            response = httpx.post(url, json=profile.tokenize_body(text), headers=auth_headers(self._api_key),
                                  timeout=min(self.settings.timeout, 10.0))
            response.raise_for_status()
            return profile.tokenize_count(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.info("token counting via %s failed (%s); using an estimate from now on", url, exc)
            self._tokenizer_ok = False
            return None

    def close(self) -> None:
        self.client.close()

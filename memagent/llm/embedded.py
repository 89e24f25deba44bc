"""The embedded backend: llama.cpp in-process through llama-cpp-python.

Decoding is always constrained: a raw prompt gets a GBNF grammar built from the call schema, a chat
request gets llama-cpp-python's `response_format` with the schema. The model instance keeps its KV
cache between calls, so a prompt that extends the previous one only evaluates the new tokens.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import LLMSettings, SamplerPreset
from ..errors import LLMError, TurnCancelled
from .base import Completion, GenerationRequest, LLMBackend, RepeatGuard
from .recall_nudge import RecallNudgeProcessor
from .repeat_guard import RepeatGuardProcessor, closing_quote_tokens

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 4096


@lru_cache(maxsize=16)
def _grammar_from_gbnf(gbnf: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


@lru_cache(maxsize=8)
def _grammar_from_schema(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


class _NoRedirect:
    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self) -> _NoRedirect:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_LLAMA_LOG = logging.getLogger("memagent.llama_cpp")
_log_callback: Any = None


def _quiet_llama_cpp() -> None:
    """Keep llama.cpp off the terminal without touching file descriptors.

    llama-cpp-python silences loading by pointing fds 1 and 2 at /dev/null. That is process-wide:
    while the model loads in the background, the chat prompt drawn by the main thread would vanish.
    Instead its fd redirection is disabled and llama.cpp's log lines go to our debug log."""
    global _log_callback
    import ctypes

    import llama_cpp
    import llama_cpp._internals
    import llama_cpp.llama

    llama_cpp.llama.suppress_stdout_stderr = _NoRedirect  # type: ignore[misc, assignment]
    llama_cpp._internals.suppress_stdout_stderr = _NoRedirect  # type: ignore[misc, assignment]
    if _log_callback is None:
        @llama_cpp.llama_log_callback
        def _to_debug_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            _LLAMA_LOG.debug(text.decode("utf-8", errors="replace").rstrip())

        _log_callback = _to_debug_log  # referenced for the life of the process: C keeps the pointer
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def sampler_kwargs(sampling: SamplerPreset) -> dict[str, Any]:
    """Our preset fields → llama-cpp-python keyword arguments."""
    names = {
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "typical_p": "typical_p",
        "repeat_penalty": "repeat_penalty",
        "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty",
        "mirostat": "mirostat_mode",
        "mirostat_tau": "mirostat_tau",
        "mirostat_eta": "mirostat_eta",
        "seed": "seed",
    }
    values = sampling.model_dump(exclude_none=True)
    dropped = set(values) - set(names)
    if dropped:
        log.debug("embedded backend ignores sampler fields: %s", ", ".join(sorted(dropped)))
    return {names[key]: value for key, value in values.items() if key in names}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class EmbeddedBackend(LLMBackend):
    name = "embedded"

    def __init__(self, model_path: Path, settings: LLMSettings) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMError(f"llama-cpp-python is not installed ({exc}); run `make install`") from None
        _quiet_llama_cpp()
        self.model_path = model_path
        self._n_ctx = settings.context_length or DEFAULT_CONTEXT
        threads = settings.threads or max(1, os.cpu_count() or 1)
        try:
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=self._n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=settings.batch_size,
                n_gpu_layers=settings.gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMError(f"llama.cpp could not load {model_path} ({exc}); check that it is a valid GGUF model") from None
        self._closing_quotes: list[int] | None = None
        self._cancelled: Callable[[], bool] | None = None  # the running request's, while it runs
        self._abort = self._stop_between_steps()

    def _stop_between_steps(self) -> object:
        """llama.cpp asks between the steps of every decode, the prompt's included, whether to stop: a
        turn cancelled while a long prompt is read (seconds on a CPU) stops there, not at the first
        token. The ctypes callback is returned to be kept alive as long as the model."""
        from llama_cpp import ggml_abort_callback, llama_set_abort_callback

        context = getattr(getattr(self._llm, "_ctx", None), "ctx", None)
        if context is None:
            log.debug("llama-cpp-python has no context to set an abort callback on")
            return None
        callback = ggml_abort_callback(lambda _data: self._cancelled is not None and self._cancelled())
        llama_set_abort_callback(context, callback, None)
        return callback

    @property
    def context_length(self) -> int:
        return self._n_ctx

    @property
    def steers_decoding(self) -> bool:
        return True

    def describe(self) -> str:
        return f"embedded llama.cpp: {self.model_path.name} (context {self._n_ctx})"

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _repeat_guard(self, guard: RepeatGuard) -> RepeatGuardProcessor:
        if self._closing_quotes is None:  # one pass over the vocabulary, the first time it is needed
            self._closing_quotes = closing_quote_tokens(self._llm.n_vocab(), self._detokenize)
        return RepeatGuardProcessor(guard, self.tokenize, self._detokenize, self._closing_quotes)

    def _detokenize(self, tokens: list[int]) -> bytes:
        return self._llm.detokenize(tokens)

    def _cached_prefix(self, prompt: str) -> tuple[int, int]:
        """(prompt tokens, tokens llama-cpp-python will reuse from its KV cache)."""
        tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        previous = list(self._llm.input_ids[: self._llm.n_tokens])
        reused = _common_prefix(previous, tokens)
        # llama-cpp-python always re-evaluates at least the last prompt token.
        return len(tokens), min(reused, max(0, len(tokens) - 1))

    def generate(self, request: GenerationRequest) -> Completion:
        started = time.perf_counter()
        kwargs = sampler_kwargs(request.sampling) | {"max_tokens": request.max_tokens, "stream": True}
        if request.stop:
            kwargs["stop"] = request.stop
        guard = self._repeat_guard(request.repeat_guard) if request.repeat_guard else None
        nudge = (RecallNudgeProcessor(request.recall_nudge, self.tokenize, self._detokenize)
                 if request.recall_nudge else None)
        if guard is not None or nudge is not None:
            from llama_cpp import LogitsProcessorList

            # The nudge after the guard: a value asked for wins over the push away from a repeat.
            kwargs["logits_processor"] = LogitsProcessorList([p for p in (guard, nudge) if p is not None])
        prompt_tokens = cached = None
        self._cancelled = request.cancelled
        try:
            if request.prompt is not None:
                prompt_tokens, cached = self._cached_prefix(request.prompt)
                if prompt_tokens + 16 > self._n_ctx:
                    raise LLMError(
                        f"the prompt ({prompt_tokens} tokens) does not fit the context window ({self._n_ctx}); "
                        "raise [llm] context_length"
                    )
                if request.grammar is not None:
                    kwargs["grammar"] = _grammar_from_gbnf(request.grammar)
                elif request.schema is not None:
                    kwargs["grammar"] = _grammar_from_schema(json.dumps(request.schema, sort_keys=False))
                completion_stream = self._llm.create_completion(request.prompt, **kwargs)
                text, finish, count = self._drain(completion_stream, request, chat=False)
            else:
                if request.schema is not None:
                    kwargs["response_format"] = {"type": "json_object", "schema": request.schema}
                # our messages are plain role/content dicts, which is what llama.cpp's TypedDicts describe
                chat_stream = self._llm.create_chat_completion(request.messages or [], **kwargs)  # type: ignore[arg-type]
                text, finish, count = self._drain(chat_stream, request, chat=True)
        except LLMError:
            raise
        except (ValueError, RuntimeError) as exc:
            if request.cancelled is not None and request.cancelled():
                raise TurnCancelled from None  # llama.cpp stopped the decode when asked to
            raise LLMError(f"the embedded model failed to generate ({exc})") from None
        finally:
            self._cancelled = None
        if guard is not None and guard.pushed:
            log.debug("repeat guard pushed down %d tokens", guard.pushed)
        if nudge is not None and nudge.pushed:
            log.debug("recall nudge pushed up %d tokens", nudge.pushed)
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=count,
            cached_tokens=cached,
            evaluated_tokens=(prompt_tokens - cached) if prompt_tokens is not None and cached is not None else None,
            constrained=request.schema is not None or request.grammar is not None,
            seconds=time.perf_counter() - started,
        )

    @staticmethod
    def _drain(stream: Any, request: GenerationRequest, chat: bool) -> tuple[str, str | None, int]:
        parts: list[str] = []
        finish = None
        count = 0
        for chunk in stream:
            choice = chunk["choices"][0]
            delta = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if delta:
                parts.append(delta)
                count += 1
                if request.on_text:
                    request.on_text(delta)
            finish = choice.get("finish_reason") or finish
        return "".join(parts), finish, count

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            del self._llm

"""A scripted LLM for deterministic loop tests: it answers with the texts it is given, in order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from memagent.llm.base import Completion, GenerationRequest, LLMBackend, estimate_tokens


class Truncated(str):
    """A reply that ran into max_tokens (finish_reason "length")."""


Reply = str | dict[str, Any] | Callable[[GenerationRequest], str]


def call(function: str, inner: str = "", **params: Any) -> dict[str, Any]:
    return {"inner_thoughts": inner, "function": function, "params": params}


def say(message: str, inner: str = "thinking") -> dict[str, Any]:
    return call("send_message", inner, message=message)


class ScriptedLLM(LLMBackend):
    name = "scripted"

    def __init__(self, replies: list[Reply] | None = None, context_length: int = 8192, repeat_last: bool = False) -> None:
        self.replies = list(replies or [])
        self.requests: list[GenerationRequest] = []
        self._context = context_length
        self.repeat_last = repeat_last

    @property
    def context_length(self) -> int:
        return self._context

    steers = False  # set True to act as a backend that applies recall_nudge / repeat_guard

    @property
    def steers_decoding(self) -> bool:
        return self.steers

    def generate(self, request: GenerationRequest) -> Completion:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError("the scripted LLM ran out of replies")
        reply = self.replies[0] if (self.repeat_last and len(self.replies) == 1) else self.replies.pop(0)
        if callable(reply):
            text = reply(request)
        elif isinstance(reply, dict):
            text = json.dumps(reply, ensure_ascii=False)
        else:
            text = reply
        if request.on_text:
            request.on_text(text)
        finish = "length" if isinstance(reply, Truncated) else "stop"
        return Completion(text=text, prompt_tokens=self.count_tokens(request.prompt or ""), completion_tokens=len(text),
                          finish_reason=finish)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    @property
    def prompts(self) -> list[str]:
        return [r.prompt or json.dumps(r.messages, ensure_ascii=False) for r in self.requests]

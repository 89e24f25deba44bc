"""Model output text -> one validated FunctionCall, or a structured CallError. Never raises.

Pipeline: clean (leaked special tokens, reasoning blocks, run-on turns) -> extract JSON values
(tool-call tags, markdown fences, prose around, several objects) -> decode (json, then json-repair)
-> normalise the shapes local models really emit -> validate with the function's pydantic model.

The error is data, not prose: every word the model reads comes from a prompt template.
"""

from __future__ import annotations

import json
from typing import Any

from memagent.conversation import FunctionCall
from memagent.functions.registry import function_registry
from memagent.functions.schemas import function_names

from .cleaning import _clean
from .extraction import _extract_values, _flatten, _pythonic_call
from .limits import MAX_PARSE_CHARS
from .outcome import CallError, ParseOutcome, _error, _Rejected
from .shape import THOUGHT_KEYS, _build_call, _choose_bare_message, _choose_named_call, _first_value


def parse_call(text: str, prefill: str = "", allowed: list[str] | None = None) -> ParseOutcome:
    """Parse one function call from model output. `prefill` is what the prompt already put in the
    assistant turn (it is prepended); `allowed` limits the functions accepted (default: all)."""
    raw = ""
    allowed_names = function_names()
    try:
        raw = f"{prefill or ''}{text or ''}"
        allowed_names = _allowed_names(allowed)
        if not (prefill and text):
            return _parse_raw(raw, allowed_names)
        return _parse_with_prefill(raw, str(text), allowed_names)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises" (RecursionError included)
        error = _error("no_json", allowed_names, problem=f"output could not be parsed ({type(exc).__name__})")
        return ParseOutcome(error=error, notes=[f"parser failure: {type(exc).__name__}"], repaired=True, raw=raw)


def _parse_with_prefill(raw: str, text: str, allowed: list[str]) -> ParseOutcome:
    """Prefill + text normally; but some models restart the object the prefill opened, so when
    the text itself opens an object it is tried alone first."""
    restarts = text.lstrip().startswith(("{", "```", "<")) and raw.lstrip().startswith("{")
    first, second = (text, raw) if restarts else (raw, text)
    chosen = _parse_raw(first, allowed)
    if chosen.call is None:
        fallback = _parse_raw(second, allowed)
        chosen = fallback if fallback.call is not None else chosen
    if chosen.raw == text:
        chosen.notes.insert(0, "ignored the prefill: the output repeats it")
        chosen.repaired = True
    chosen.raw = raw
    return chosen


def _allowed_names(allowed: list[str] | None) -> list[str]:
    if allowed is None:
        return function_names()
    registry = function_registry()
    return [name for name in allowed if name in registry]


def _parse_raw(raw: str, allowed: list[str]) -> ParseOutcome:
    notes: list[str] = []
    plain = _plain_json_object(raw)
    call: FunctionCall | None = None
    error: CallError | None = None
    try:
        call = _parse_to_call(raw, plain, allowed, notes)
    except _Rejected as rejected:
        error = rejected.error
    notes = list(dict.fromkeys(notes))
    return ParseOutcome(call=call, error=error, notes=notes, repaired=plain is None or bool(notes), raw=raw)


def _plain_json_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except Exception:  # noqa: BLE001 - any failure simply means "not plain JSON"
        return None
    return value if isinstance(value, dict) else None


def _parse_to_call(raw: str, plain: dict[str, Any] | None, allowed: list[str], notes: list[str]) -> FunctionCall:
    text = ""
    if plain is not None:
        # Valid JSON as a whole: nothing to clean (a "</s>" inside a message is the message's own).
        top_level: list[Any] = [plain]
    else:
        text = _clean(raw[:MAX_PARSE_CHARS], notes)
        if len(raw) > MAX_PARSE_CHARS:
            notes.append(f"output cut to {MAX_PARSE_CHARS} characters")
        if not text.strip():
            raise _Rejected(_error("empty", allowed, problem="the output is empty"))
        top_level = _extract_values(text, notes)
    dicts = list(_flatten(top_level))
    candidate = _choose_named_call(dicts, notes) or _pythonic_call(text, notes) or _choose_bare_message(dicts, notes)
    if candidate is not None:
        return _build_call(candidate, allowed, notes)
    if any(_first_value(item, THOUGHT_KEYS) is not None for item in dicts):
        raise _Rejected(_error("unknown_function", allowed, problem="the function name is missing"))
    raise _Rejected(_error("no_json", allowed, problem="no JSON function call found in the output"))


__all__ = ["CallError", "ParseOutcome", "parse_call"]

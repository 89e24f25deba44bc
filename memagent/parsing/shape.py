"""(d) Normalising the call shapes local models really emit, resolving the function name, and
validating the params with the function's model."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from memagent.conversation import FunctionCall
from memagent.functions.registry import function_registry

from .extraction import _loads_plain, _repair
from .limits import EXTRA_NOTE_CHARS
from .names import _canonical_name_text, _is_bare_message, _known_function_name, _name_key
from .outcome import _as_text, _error, _Rejected

# --- (d) shape normalisation ----------------------------------------------------------------------

PARAM_KEYS = ("params", "parameters", "arguments", "args", "action_input", "tool_input", "input", "kwargs")
THOUGHT_KEYS = ("inner_thoughts", "inner_monologue", "inner_thought", "thoughts", "thought", "thinking")
# Keys that wrap a call in some APIs and carry nothing for us.
ENVELOPE_KEYS = ("type", "id", "index", "call_id")



@dataclass
class _RawCall:
    """A call-like object taken apart, before the name is resolved and params validated."""

    name: str | None
    params: Any
    inner_thoughts: Any
    leftovers: dict[str, Any]






def _choose_named_call(dicts: list[dict[str, Any]], notes: list[str]) -> dict[str, Any] | None:
    """The first object that names a function; later ones are noted, never run."""
    named = [item for item in dicts if _name_key(item) is not None]
    for extra in named[1:]:
        notes.append(f"ignored an extra object: {_short_json(extra)}")
    return named[0] if named else None


def _choose_bare_message(dicts: list[dict[str, Any]], notes: list[str]) -> dict[str, Any] | None:
    bare = next((item for item in dicts if _is_bare_message(item)), None)
    if bare is not None:
        notes.append('treated a bare {"message": ...} object as send_message')
    return bare


def _short_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except Exception:  # noqa: BLE001 - only for a note
        text = repr(value)
    return text if len(text) <= EXTRA_NOTE_CHARS else text[:EXTRA_NOTE_CHARS] + "..."


def _split_call(obj: dict[str, Any], notes: list[str]) -> _RawCall:
    key = _name_key(obj)
    if key is None:  # a bare {"message": ...}
        leftovers = {k: v for k, v in obj.items() if k not in THOUGHT_KEYS}
        return _RawCall("send_message", leftovers, _thoughts(obj, notes), {})
    outer = {k: v for k, v in obj.items() if k != key}
    target = obj[key]
    if isinstance(target, dict):
        notes.append("unwrapped a nested function object")
        inner_key = _name_key(target)
        name = target[inner_key] if inner_key else None
        params = _first_value(target, PARAM_KEYS)
        if params is None:
            params = _first_value(outer, PARAM_KEYS)
    else:
        name = target
        if key != "function":
            notes.append(f'read the function name from "{key}"')
        params = _first_value(outer, PARAM_KEYS)
        param_key = next((k for k in PARAM_KEYS if k in outer), None)
        if param_key not in (None, "params"):
            notes.append(f'read params from "{param_key}"')
    leftovers = {k: v for k, v in outer.items() if k not in PARAM_KEYS and k not in THOUGHT_KEYS and k not in ENVELOPE_KEYS}
    return _RawCall(name, params, _thoughts(obj, notes), leftovers)


def _thoughts(obj: dict[str, Any], notes: list[str]) -> Any:
    key = next((k for k in THOUGHT_KEYS if obj.get(k) is not None), None)
    if key is not None and key != "inner_thoughts":
        notes.append(f'read inner_thoughts from "{key}"')
    return obj[key] if key is not None else None


def _first_value(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in obj and obj[key] is not None:
            return obj[key]
    return None






def _resolve_name(raw_name: Any, allowed: list[str], notes: list[str]) -> str:
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise _Rejected(_error("unknown_function", allowed, problem="the function name is missing"))
    candidate = _known_function_name(raw_name)
    if candidate is None:
        raise _Rejected(_error("unknown_function", allowed, function=raw_name, problem="no such function"))
    if candidate not in allowed:
        raise _Rejected(_error("unknown_function", allowed, function=candidate, problem="function not available now"))
    if candidate != raw_name:
        notes.append(f"read function name {raw_name!r} as {candidate!r}")
    return candidate


def _decode_params(params: Any, notes: list[str]) -> Any:
    """Params given as a JSON string (OpenAI `arguments`) are decoded; missing params are {}."""
    if params is None:
        return {}
    if isinstance(params, str):
        notes.append("decoded params given as a JSON string")
        decoded = _loads_plain(params)
        if decoded is None:
            decoded = _repair(params)
        return decoded if decoded not in (None, "") else params
    if isinstance(params, list) and len(params) == 1 and isinstance(params[0], dict):
        notes.append("unwrapped params given as a one-element list")
        return params[0]
    if isinstance(params, dict) and isinstance(params.get("properties"), dict) and set(params) <= {"type", "properties", "required"}:
        # The model imitated a JSON schema: {"type": "object", "properties": {...values...}}
        notes.append('unwrapped params from "properties"')
        return params["properties"]
    return params


def _build_call(obj: dict[str, Any], allowed: list[str], notes: list[str]) -> FunctionCall:
    raw_call = _split_call(obj, notes)
    name = _resolve_name(raw_call.name, allowed, notes)
    params = _decode_params(raw_call.params, notes)
    if not isinstance(params, dict):
        raise _Rejected(_error("invalid_arguments", allowed, function=name, problem="params must be a JSON object"))
    params = dict(params)
    thoughts = raw_call.inner_thoughts
    nested_thoughts = _pop_thoughts(params)
    if thoughts is None and nested_thoughts is not None:
        notes.append("moved inner_thoughts out of params")
        thoughts = nested_thoughts
    _merge_flat_params(name, params, raw_call.leftovers, notes)
    arguments = _validate(name, _tidy_params(name, params, notes), allowed, notes)
    if thoughts is None:
        notes.append("inner_thoughts missing")
    return FunctionCall(function=name, arguments=arguments, inner_thoughts=_as_text(thoughts))


def _pop_thoughts(params: dict[str, Any]) -> Any:
    found = None
    for key in THOUGHT_KEYS:
        if key in params:
            value = params.pop(key)
            found = value if found is None else found
    return found


def _merge_flat_params(name: str, params: dict[str, Any], leftovers: dict[str, Any], notes: list[str]) -> None:
    """Top-level keys that are this function's params (`{"function": ..., "message": ...}`)."""
    function = function_registry()[name]
    known = set(function.param_names) | set(function.aliases)
    moved = [key for key in leftovers if key in known and key not in params]
    for key in moved:
        params[key] = leftovers[key]
    if moved:
        notes.append(f"read params given at top level: {', '.join(moved)}")


def _tidy_params(name: str, params: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    model_fields = function_registry().params_model(name).model_fields
    tidy: dict[str, Any] = {}
    for key, value in params.items():
        field_name = _field_name(name, key, model_fields)
        if field_name is None:
            notes.append(f"dropped unknown param {key!r}")
            continue
        if field_name != key:
            if field_name in params or field_name in tidy:
                notes.append(f"dropped duplicate param {key!r}")
                continue
            notes.append(f"read param {key!r} as {field_name!r}")
        if value is None:
            notes.append(f"dropped null param {field_name!r}")
            continue
        tidy[field_name] = _tidy_scalar(value, model_fields[field_name].annotation)
    return tidy


def _field_name(function: str, key: Any, model_fields: dict[str, Any]) -> str | None:
    if not isinstance(key, str):
        return None
    if key in model_fields:
        return key
    normalised = _canonical_name_text(key)
    if normalised in model_fields:
        return normalised
    alias = function_registry()[function].aliases.get(normalised)
    return alias if alias in model_fields else None


def _tidy_scalar(value: Any, annotation: Any) -> Any:
    """Strings for bool/int fields: NFKC (full-width digits) and stripped; pydantic's lax mode
    then accepts "true", "False", "1", "60"."""
    if isinstance(value, str) and annotation in (bool, int):
        return unicodedata.normalize("NFKC", value).strip()
    return value


def _validate(name: str, params: dict[str, Any], allowed: list[str], notes: list[str]) -> dict[str, Any]:
    try:
        model = function_registry().params_model(name).model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = ".".join(str(part) for part in first.get("loc", ())) or None
        problem = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise _Rejected(_error("invalid_arguments", allowed, function=name, field=field_name, problem=problem)) from None
    arguments = model.model_dump()
    coerced = [key for key, value in params.items() if arguments.get(key) != value or type(arguments.get(key)) is not type(value)]
    if coerced:
        notes.append(f"coerced param types: {', '.join(coerced)}")
    return arguments

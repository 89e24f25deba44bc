"""Model output text -> one validated FunctionCall, or a structured CallError. Never raises.

Pipeline: clean (leaked special tokens, reasoning blocks, run-on turns) -> extract JSON values
(tool-call tags, markdown fences, prose around, several objects) -> decode (json, then json-repair)
-> normalise the shapes local models really emit -> validate with the function's pydantic model.

The error is data, not prose: every word the model reads comes from a prompt template.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import json_repair
from pydantic import ValidationError

from memagent.conversation import FunctionCall
from memagent.functions.registry import function_registry
from memagent.functions.schemas import example_call, function_names

ErrorKind = Literal["no_json", "unknown_function", "invalid_arguments", "empty", "truncated"]

# Model output longer than this is cut before parsing; no real call is this long, and the cap
# keeps the repair library's worst cases bounded.
MAX_PARSE_CHARS = 100_000
MAX_OBJECTS = 16
# A call nests 2-5 levels ({"tool_calls": [{"function": {"arguments": {...}}}]}).
MAX_JSON_DEPTH = 32
MAX_NESTING_SEARCH = 6
NAME_MATCH_CUTOFF = 0.85
EXTRA_NOTE_CHARS = 200


@dataclass
class CallError:
    """What was wrong with the model's call, for the parse_error template and for logs."""

    kind: ErrorKind
    function: str | None = None
    field: str | None = None
    problem: str = ""
    example: dict[str, Any] = dataclasses.field(default_factory=dict)
    allowed_functions: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        """One English line for stderr and logs (never shown to the model)."""
        where = self.function or ""
        if self.field:
            where = f"{where}.{self.field}" if where else self.field
        return f"{self.kind}: {where + ': ' if where else ''}{self.problem}"


@dataclass
class ParseOutcome:
    """Exactly one of `call` and `error` is set. `notes` lists each repair or normalisation applied
    (English, for logs); `repaired` is False only when the text was one canonical JSON object."""

    call: FunctionCall | None = None
    error: CallError | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    repaired: bool = False
    raw: str = ""

    @property
    def ok(self) -> bool:
        return self.call is not None


class _Rejected(Exception):
    """Internal: a parse stage found a definite error; carries the CallError out of the pipeline."""

    def __init__(self, error: CallError) -> None:
        super().__init__(error.problem)
        self.error = error


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


# --- (a) cleaning -------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_ROLE_START = re.compile(
    r"<\|im_start\|>[ \t]*(?:assistant|user|system|function|tool)?"
    r"|<\|start_header_id\|>[^<]*<\|end_header_id\|>"
    r"|<start_of_turn>[ \t]*(?:model|user)?"
    r"|<\|START_OF_TURN_TOKEN\|>(?:<\|(?:CHATBOT|USER|SYSTEM)_TOKEN\|>)?"
    r"|<\|(?:user|assistant|system)\|>"
    r"|\[INST\]",
    re.IGNORECASE,
)
_TURN_END = re.compile(
    r"<\|im_end\|>|<\|eot_id\|>|<\|eom_id\|>|<\|END_OF_TURN_TOKEN\|>|<\|endoftext\|>|<\|end_of_text\|>"
    r"|<\|end\|>|</s>|<end_of_turn>|<eos>|\[/INST\]",
    re.IGNORECASE,
)
_RUN_ON = re.compile(
    r"FUNCTION[ _]RETURN|^[ \t]*(?:USER|ASSISTANT|FUNCTION|SYSTEM|Human|User|Assistant)[ \t]*:",
    re.MULTILINE,
)
_LEFTOVER_TOKEN = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?s>|<eos>|<bos>|<end_of_turn>|<start_of_turn>")


def _clean(text: str, notes: list[str]) -> str:
    """Strip reasoning blocks and leaked chat-format tokens; cut a run-on into the next turn."""
    without_thinking = _THINK_BLOCK.sub("", text)
    if without_thinking != text:
        notes.append("removed a reasoning block")
    text = without_thinking
    text = _cut_run_on(text, notes)
    stripped = _LEFTOVER_TOKEN.sub("", _ROLE_START.sub("", text))
    if stripped != text:
        notes.append("removed leaked special tokens")
    return stripped.strip()


def _cut_run_on(text: str, notes: list[str]) -> str:
    """Cut at the first turn boundary that follows the start of the JSON; boundaries before it
    (a leaked `<|im_start|>assistant` header) are only removed later."""
    content_start = text.find("{")
    if content_start < 0:
        return text
    cut_at: int | None = None
    for pattern in (_TURN_END, _ROLE_START, _RUN_ON):
        match = pattern.search(text, content_start)
        if match and (cut_at is None or match.start() < cut_at):
            cut_at = match.start()
    if cut_at is None:
        return text
    if _TURN_END.sub("", text[cut_at:]).strip():
        notes.append("cut run-on text after the call")
    else:
        notes.append("removed leaked special tokens")
    return text[:cut_at]


# --- (b, c) extraction and decoding --------------------------------------------------------------

_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:json5?|javascript|js|python)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def _extract_values(text: str, notes: list[str]) -> list[Any]:
    """Decoded JSON values in order of appearance; marked-up segments (tool-call tags, fences) first."""
    whole = _loads_plain(text)
    if isinstance(whole, (dict, list)):
        return [whole]
    for pattern, label in ((_TOOL_CALL_TAG, "tool_call tags"), (_FENCE, "a markdown fence")):
        segments = [match.group(1) for match in pattern.finditer(text)]
        values = [value for segment in segments for value in _decode_segment(segment, notes)]
        if any(_is_call_like(item) for item in _flatten(values)):
            notes.append(f"took the call from {label}")
            return values
    values = _decode_segment(text, notes)
    if values and _has_prose_around(text):
        notes.append("ignored prose around the JSON")
    return values


def _has_prose_around(text: str) -> bool:
    """Whether anything but whitespace lies outside the JSON values of `text`."""
    position = 0
    for start, end in _value_spans(text):
        if text[position:start].strip():
            return True
        position = len(text) if end is None else end
    return bool(text[position:].strip())


def _value_spans(text: str) -> Iterator[tuple[int, int | None]]:
    """(start, end) of each top-level JSON value; end is None for the last one when it never closes
    (truncated output, or quotes left unescaped), which then runs to the end of the text.
    Values nested deeper than any call are skipped: they cannot be one, and repairing them is slow."""
    position = _value_start(text, 0)
    for _ in range(MAX_OBJECTS):
        if position is None:
            return
        end, deepest = _scan_value(text, position)
        if deepest <= MAX_JSON_DEPTH:
            yield position, end
        if end is None:
            return
        position = _value_start(text, end)


def _decode_segment(segment: str, notes: list[str]) -> list[Any]:
    """All JSON values in a piece of text, each balanced object decoded on its own so that a second
    object (or prose) never corrupts the first."""
    whole = _loads_plain(segment.strip())
    if isinstance(whole, (dict, list)):
        return [whole]
    values: list[Any] = []
    for start, end in _value_spans(segment):
        values.extend(_repair_values(segment[start:end], notes))
    return values


def _value_start(text: str, start: int) -> int | None:
    """Index of the next `{`, or of a `[` that directly opens a list of objects (Command-R)."""
    brace = text.find("{", start)
    if brace < 0:
        return None
    bracket = text.rfind("[", start, brace)
    if bracket >= 0 and not text[bracket + 1 : brace].strip():
        return bracket
    return brace


def _scan_value(text: str, start: int) -> tuple[int | None, int]:
    """(end index, exclusive, or None when it never closes; deepest nesting seen) of the object or
    array opening at `start`, honouring JSON strings."""
    depth = 0
    deepest = 0
    in_string = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1, deepest
    return None, deepest


def _loads_plain(text: str) -> Any:
    try:
        return json.loads(text)
    except Exception:  # noqa: BLE001 - RecursionError on deep nesting is a plain failure too
        return None


def _repair_values(text: str, notes: list[str]) -> list[Any]:
    value = _loads_plain(text)
    if value is None:
        value = _repair(text)
        if isinstance(value, (dict, list)) and value:
            notes.append("repaired broken JSON")
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, (dict, list))]
    return []


def _repair(text: str) -> Any:
    try:
        return json_repair.loads(text)
    except Exception:  # noqa: BLE001 - an unrepairable fragment is just skipped
        return None


def _flatten(values: list[Any], depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every dict, in order; lists are opened and dicts that are not calls are searched inside
    (`{"tool_calls": [...]}`, `{"function_call": {...}}`)."""
    if depth > MAX_NESTING_SEARCH:
        return
    for value in values:
        if isinstance(value, list):
            yield from _flatten(value, depth + 1)
        elif isinstance(value, dict):
            yield value
            if not _is_call_like(value):
                yield from _flatten([item for item in value.values() if isinstance(item, (dict, list))], depth + 1)


_PYTHONIC_NAME = re.compile(r"([A-Za-z_][\w.\-]*)\s*\(")
PYTHONIC_MAX_CHARS = 4_000
PYTHONIC_MAX_TRIES = 32
_BARE_LITERALS = {"true": True, "false": False, "null": None, "none": None}


def _pythonic_call(text: str, notes: list[str]) -> dict[str, Any] | None:
    """`send_message(message="...")` or `[core_memory_append({"label": ...})]` (Llama 3.2-style
    pythonic tool calls), read with `ast` (never evaluated) into the canonical shape."""
    for match in _PYTHONIC_NAME.finditer(text):
        if _known_function_name(match.group(1)) is None:
            continue
        arguments = _pythonic_arguments(text[match.end() - 1 : match.end() - 1 + PYTHONIC_MAX_CHARS])
        if arguments is not None:
            notes.append("read a Python-style function call")
            return {"function": match.group(1), "params": arguments}
    return None


def _pythonic_arguments(call_text: str) -> dict[str, Any] | None:
    """Arguments of the call whose "(" opens `call_text`: keywords, or one positional dict."""
    closes = [index for index, char in enumerate(call_text) if char == ")"][:PYTHONIC_MAX_TRIES]
    for close in closes:
        try:
            node = ast.parse("f" + call_text[: close + 1], mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if not isinstance(node, ast.Call):
            continue
        try:
            if node.keywords and not node.args:
                return {keyword.arg: _literal(keyword.value) for keyword in node.keywords if keyword.arg}
            if len(node.args) == 1 and not node.keywords:
                value = _literal(node.args[0])
                return value if isinstance(value, dict) else None
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return None
        return None
    return None


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Name) and node.id.lower() in _BARE_LITERALS:
        return _BARE_LITERALS[node.id.lower()]
    if isinstance(node, ast.Dict):
        return {_literal(key): _literal(value) for key, value in zip(node.keys, node.values) if key is not None}
    return ast.literal_eval(node)


# --- (d) shape normalisation ----------------------------------------------------------------------

NAME_KEYS = ("function", "name", "tool_name", "function_name", "tool", "action")
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


def _is_call_like(value: Any) -> bool:
    return isinstance(value, dict) and (_name_key(value) is not None or _is_bare_message(value))


def _name_key(obj: dict[str, Any]) -> str | None:
    for key in NAME_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return key
        if key == "function" and isinstance(value, dict) and _name_key(value) is not None:
            return key
    return None


def _is_bare_message(obj: dict[str, Any]) -> bool:
    # {"status": ..., "message": ...} is an echoed function result, not a reply.
    return isinstance(obj.get("message"), str) and "status" not in obj


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


def _canonical_name_text(name: str) -> str:
    text = unicodedata.normalize("NFKC", name).strip().strip("\"'`")
    text = re.sub(r"\(.*\)\s*$", "", text)  # send_message() / send_message(...)
    text = text.rsplit(".", 1)[-1]  # functions.send_message
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)  # sendMessage
    return re.sub(r"[\s\-]+", "_", text).lower()


def _known_function_name(raw_name: str) -> str | None:
    """The function `raw_name` means, allowing case, separators, prefixes and small typos."""
    candidate = _canonical_name_text(raw_name)
    names = function_names()
    if candidate in names:
        return candidate
    close = difflib.get_close_matches(candidate, names, n=1, cutoff=NAME_MATCH_CUTOFF)
    return close[0] if close else None


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


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except Exception:  # noqa: BLE001
        return str(value)


def _error(
    kind: ErrorKind,
    allowed: list[str],
    *,
    function: str | None = None,
    field: str | None = None,
    problem: str,
) -> CallError:
    example_name = function if function in function_registry() and function in allowed else _default_example(allowed)
    return CallError(
        kind=kind,
        function=function,
        field=field,
        problem=problem,
        example=example_call(example_name),
        allowed_functions=list(allowed),
    )


def _default_example(allowed: list[str]) -> str:
    if "send_message" in allowed or not allowed:
        return "send_message"
    return allowed[0]

"""(b, c) Extracting JSON values from cleaned text (tool-call tags, fences, prose around, several
objects) and decoding them (json, then json-repair; Python-style calls)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

import json_repair

from .limits import MAX_JSON_DEPTH, MAX_NESTING_SEARCH, MAX_OBJECTS
from .names import _is_call_like, _known_function_name

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

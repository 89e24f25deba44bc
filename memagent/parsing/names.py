"""Recognising a call and its function name in whatever shape a model wrote it."""

from __future__ import annotations

import difflib
import re
import unicodedata
from typing import Any

from memagent.functions.schemas import function_names

from .limits import NAME_MATCH_CUTOFF

NAME_KEYS = ("function", "name", "tool_name", "function_name", "tool", "action")


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


def _is_bare_message(obj: dict[str, Any]) -> bool:
    # {"status": ..., "message": ...} is an echoed function result, not a reply.
    return isinstance(obj.get("message"), str) and "status" not in obj

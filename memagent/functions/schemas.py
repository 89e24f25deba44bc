"""Parameter models for the agent functions, and the one JSON schema for "one call of any of them".

The schema is what constrained decoding enforces (json_schema for servers, GBNF for llama.cpp), so
it stays free of descriptions (docs live in prompt templates) and of JSON-schema features that
llama.cpp's converter rejects.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

CALL_KEYS = ("inner_thoughts", "function", "params")
MAX_THOUGHT_CHARS = 240
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE_RE = re.compile(_DATE_PATTERN)


class FunctionParams(BaseModel):
    """Base for every function's params: unknown keys are errors here (the parser drops them first)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class SendMessage(FunctionParams):
    message: Annotated[str, Field(min_length=1)]

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class CoreMemoryAppend(FunctionParams):
    label: str
    content: str
    request_heartbeat: bool = False


class CoreMemoryReplace(FunctionParams):
    label: str
    old_content: str
    new_content: str
    request_heartbeat: bool = False


class ConversationSearch(FunctionParams):
    query: str
    page: Annotated[int, Field(ge=0)] = 0
    request_heartbeat: bool = False


class ConversationSearchDate(FunctionParams):
    start_date: Annotated[str, Field(pattern=_DATE_PATTERN)]
    end_date: Annotated[str, Field(pattern=_DATE_PATTERN)]
    page: Annotated[int, Field(ge=0)] = 0
    request_heartbeat: bool = False

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _calendar_date(cls, value: Any) -> Any:
        # Runs before the pattern check so the model reads one message for every bad date.
        if not isinstance(value, str) or not _DATE_RE.match(value.strip()):
            raise ValueError("must be YYYY-MM-DD")
        try:
            date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be a real calendar date in YYYY-MM-DD") from None
        return value.strip()


class ArchivalMemoryInsert(FunctionParams):
    content: str
    request_heartbeat: bool = False


class ArchivalMemorySearch(FunctionParams):
    query: str
    page: Annotated[int, Field(ge=0)] = 0
    request_heartbeat: bool = False


class PauseHeartbeats(FunctionParams):
    minutes: Annotated[int, Field(ge=1, le=360)]


FUNCTIONS: dict[str, type[FunctionParams]] = {
    "send_message": SendMessage,
    "core_memory_append": CoreMemoryAppend,
    "core_memory_replace": CoreMemoryReplace,
    "conversation_search": ConversationSearch,
    "conversation_search_date": ConversationSearchDate,
    "archival_memory_insert": ArchivalMemoryInsert,
    "archival_memory_search": ArchivalMemorySearch,
    "pause_heartbeats": PauseHeartbeats,
}
FUNCTION_NAMES: list[str] = list(FUNCTIONS)

# Language-neutral example params: templates render them (and may translate the "..." slots).
EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "send_message": {"message": "..."},
    "core_memory_append": {"label": "human", "content": "...", "request_heartbeat": False},
    "core_memory_replace": {"label": "human", "old_content": "...", "new_content": "...", "request_heartbeat": False},
    "conversation_search": {"query": "...", "page": 0, "request_heartbeat": True},
    "conversation_search_date": {
        "start_date": "2024-01-01",
        "end_date": "2024-01-31",
        "page": 0,
        "request_heartbeat": True,
    },
    "archival_memory_insert": {"content": "...", "request_heartbeat": False},
    "archival_memory_search": {"query": "...", "page": 0, "request_heartbeat": True},
    "pause_heartbeats": {"minutes": 60},
}


def example_call(name: str) -> dict[str, Any]:
    """One correct call of `name` in the canonical wire shape (inner_thoughts, function, params)."""
    return {"inner_thoughts": "...", "function": name, "params": copy.deepcopy(EXAMPLE_PARAMS[name])}


def _selected(names: list[str] | None) -> list[str]:
    if names is None:
        return list(FUNCTION_NAMES)
    unknown = [name for name in names if name not in FUNCTIONS]
    if unknown or not names:
        raise ValueError(f"unknown or empty function list: {unknown or names}")
    return list(names)


def params_json_schema(name: str) -> dict[str, Any]:
    """The object schema of one function's params, every property required.

    Small models follow a grammar far better when it spells out every key (request_heartbeat
    included) than when keys are optional, so defaults become required in the constraint.
    """
    source = FUNCTIONS[name].model_json_schema()
    properties: dict[str, Any] = {}
    for key, prop in source["properties"].items():
        properties[key] = _plain_property(prop)
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_KEPT_PROPERTY_KEYS = ("type", "minimum", "maximum", "pattern", "minLength")


def _plain_property(prop: dict[str, Any]) -> dict[str, Any]:
    """Keep only plain constraint keywords (no titles, defaults or descriptions). llama-cpp-python's
    converter ignores integer bounds; grammar.py puts them into the GBNF itself."""
    return {key: prop[key] for key in _KEPT_PROPERTY_KEYS if key in prop}


def call_json_schema(names: list[str] | None = None) -> dict[str, Any]:
    """ONE schema for "one call of any of these functions", keys in the order inner_thoughts,
    function, params. Raises ValueError for an unknown name."""
    variants = [
        {
            "type": "object",
            "properties": {
                # Bounded, so a small model that loops in its thoughts (「猫の喜びは大いです。猫は…」)
                # must close them and still write a call within max_tokens.
                "inner_thoughts": {"type": "string", "maxLength": MAX_THOUGHT_CHARS},
                "function": {"type": "string", "const": name},
                "params": params_json_schema(name),
            },
            "required": list(CALL_KEYS),
            "additionalProperties": False,
        }
        for name in _selected(names)
    ]
    if len(variants) == 1:
        return variants[0]
    return {"anyOf": variants}

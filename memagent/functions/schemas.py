"""The one JSON schema for "one call of any of the agent functions", derived from the registry.

The schema is what constrained decoding enforces (json_schema for servers, GBNF for llama.cpp), so
it stays free of descriptions (docs live in prompt templates) and of JSON-schema features that
llama.cpp's converter rejects.
"""

from __future__ import annotations

import copy
from typing import Any

from memagent.functions.registry import function_registry

CALL_KEYS = ("inner_thoughts", "function", "params")
MAX_THOUGHT_CHARS = 240


def function_names() -> list[str]:
    """Every registered agent function, built-ins first."""
    return function_registry().names()


def example_call(name: str) -> dict[str, Any]:
    """One correct call of `name` in the canonical wire shape (inner_thoughts, function, params)."""
    return {"inner_thoughts": "...", "function": name, "params": copy.deepcopy(dict(function_registry()[name].example))}


def _selected(names: list[str] | None) -> list[str]:
    registry = function_registry()
    if names is None:
        return registry.names()
    unknown = [name for name in names if name not in registry]
    if unknown or not names:
        raise ValueError(f"unknown or empty function list: {unknown or names}")
    return list(names)


def params_json_schema(name: str) -> dict[str, Any]:
    """The object schema of one function's params, every property required.

    Small models follow a grammar far better when it spells out every key (request_heartbeat
    included) than when keys are optional, so defaults become required in the constraint.
    """
    source = function_registry().params_model(name).model_json_schema()
    properties: dict[str, Any] = {}
    for key, prop in source["properties"].items():
        properties[key] = _plain_property(prop)
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_KEPT_PROPERTY_KEYS = ("type", "enum", "const", "minimum", "maximum", "pattern", "minLength", "maxLength")


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

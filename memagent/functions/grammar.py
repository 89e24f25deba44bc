"""GBNF for llama.cpp, generated from the same call schema as the JSON-schema constraint.

llama-cpp-python's converter ignores `minimum`/`maximum` on integers, so a constrained model could
still write `"minutes": 480` or `"page": -1`. The converter subclass below turns integer bounds into
digit-range rules, so every constrained call also passes pydantic validation.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from memagent import plugins
from memagent.functions.schemas import call_json_schema

# An open-ended integer never needs more digits than this in a call.
MAX_OPEN_INTEGER_DIGITS = 6


def call_gbnf(names: list[str] | None = None) -> str:
    """The call schema as GBNF (root rule `root`), for llama.cpp's `grammar` parameter."""
    return _call_gbnf(tuple(names) if names is not None else None, plugins.generation())


@lru_cache(maxsize=32)
def _call_gbnf(names: tuple[str, ...] | None, generation: int) -> str:
    """`generation` keys the cache: a plugin registered later may change what `None` means."""
    schema = call_json_schema(list(names) if names is not None else None)
    return schema_to_gbnf(schema)


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, SchemaConverter  # heavy import, load lazily

    class BoundedIntegerConverter(SchemaConverter):
        def visit(self, schema: dict[str, Any], name: str) -> str:
            if schema.get("type") == "integer" and ("minimum" in schema or "maximum" in schema):
                rule = integer_range_rule(schema.get("minimum"), schema.get("maximum"))
                if rule is not None:
                    return self._add_rule(name or "root", f"{rule} space")
            if schema.get("type") == "string" and "maxLength" in schema and "pattern" not in schema:
                # llama.cpp's `x{m,n}` instead of the converter's n nested optionals, which make a
                # grammar of hundreds of rules for a bound of a few hundred characters.
                char = self._add_primitive("char", PRIMITIVE_RULES["char"])
                bounds = f"{{{schema.get('minLength', 0)},{schema['maxLength']}}}"
                return self._add_rule(name or "root", f'"\\"" {char}{bounds} "\\"" space')
            return super().visit(schema, name)

    converter = BoundedIntegerConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
    converter.visit(resolved, "")
    return converter.format_grammar()


def integer_range_rule(minimum: int | None, maximum: int | None) -> str | None:
    """A GBNF expression matching exactly the decimal integers in [minimum, maximum] (no leading
    zeros); None for ranges this does not handle (negative numbers)."""
    if minimum is None or minimum < 0 or (maximum is not None and maximum < minimum):
        return None
    if maximum is None:
        maximum = 10**MAX_OPEN_INTEGER_DIGITS - 1
    alternatives = []
    for digits in range(len(str(minimum)), len(str(maximum)) + 1):
        low = max(minimum, 10 ** (digits - 1) if digits > 1 else 0)
        high = min(maximum, 10**digits - 1)
        alternatives.append(_same_length_range(str(low), str(high)))
    return "(" + " | ".join(alternatives) + ")"


def _same_length_range(low: str, high: str) -> str:
    """GBNF for the numbers low..high, both written with the same number of digits."""
    if low == high:
        return f'"{low}"'
    if len(low) == 1:
        return _digit_class(int(low), int(high))
    if low[0] == high[0]:
        return f'"{low[0]}" {_same_length_range(low[1:], high[1:])}'
    rest = len(low) - 1
    low_is_round = low[1:] == "0" * rest  # e.g. 100: its whole first-digit block is in range
    high_is_round = high[1:] == "9" * rest  # e.g. 399
    parts = []
    if not low_is_round:
        parts.append(f'"{low[0]}" {_same_length_range(low[1:], "9" * rest)}')
    first = int(low[0]) if low_is_round else int(low[0]) + 1
    last = int(high[0]) if high_is_round else int(high[0]) - 1
    if first <= last:
        parts.append(_digit_class(first, last) + " [0-9]" * rest)
    if not high_is_round:
        parts.append(f'"{high[0]}" {_same_length_range("0" * rest, high[1:])}')
    return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"


def _digit_class(first: int, last: int) -> str:
    return f'"{first}"' if first == last else f"[{first}-{last}]"

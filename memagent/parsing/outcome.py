"""What parsing returns: a call, or a structured CallError (data, not prose: the words the model reads come from a template)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from memagent.conversation import FunctionCall
from memagent.functions.registry import function_registry
from memagent.functions.schemas import example_call

ErrorKind = Literal["no_json", "unknown_function", "invalid_arguments", "empty", "truncated"]


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

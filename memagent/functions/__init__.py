"""The agent functions: parameter models and the call schema used for constrained decoding."""

from memagent.functions.grammar import call_gbnf
from memagent.functions.schemas import (
    EXAMPLE_PARAMS,
    FUNCTION_NAMES,
    FUNCTIONS,
    FunctionParams,
    call_json_schema,
    example_call,
    params_json_schema,
)

__all__ = [
    "EXAMPLE_PARAMS",
    "FUNCTION_NAMES",
    "FUNCTIONS",
    "FunctionParams",
    "call_gbnf",
    "call_json_schema",
    "example_call",
    "params_json_schema",
]

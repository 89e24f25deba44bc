"""The agent functions: one definition each (base.AgentFunction), the registry that collects them
from plugins, and the call schema and grammar derived from it."""

from memagent.functions.base import AgentFunction, Execution, FunctionContext, FunctionParams
from memagent.functions.grammar import call_gbnf
from memagent.functions.registry import FunctionRegistry, function_registry
from memagent.functions.schemas import call_json_schema, example_call, function_names, params_json_schema

__all__ = [
    "AgentFunction",
    "Execution",
    "FunctionContext",
    "FunctionParams",
    "FunctionRegistry",
    "call_gbnf",
    "call_json_schema",
    "example_call",
    "function_names",
    "function_registry",
    "params_json_schema",
]

"""The table of agent functions, collected from the `register_functions` hook (built-ins first)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from memagent import plugins
from memagent.functions.base import AgentFunction, FunctionParams


class FunctionRegistry:
    def __init__(self, functions: list[AgentFunction]) -> None:
        self._functions: dict[str, AgentFunction] = {}
        for function in functions:
            if function.name in self._functions:
                raise plugins.PluginError(f"agent function {function.name!r} is registered twice; "
                                          "uninstall one of the plugins that define it")
            self._functions[function.name] = function

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[AgentFunction]:
        return iter(self._functions.values())

    def __getitem__(self, name: str) -> AgentFunction:
        return self._functions[name]

    def get(self, name: str | None) -> AgentFunction | None:
        return self._functions.get(name or "")

    def names(self) -> list[str]:
        return list(self._functions)

    def params_model(self, name: str) -> type[FunctionParams]:
        return self._functions[name].params


_lock = threading.Lock()
_cached: tuple[int, FunctionRegistry] | None = None


def function_registry() -> FunctionRegistry:
    """Every registered agent function, in registration order (built-ins first)."""
    global _cached
    with _lock:
        generation = plugins.generation()
        if _cached is None or _cached[0] != generation:
            _cached = (generation, FunctionRegistry(plugins.collect("register_functions", AgentFunction)))
        return _cached[1]

"""Extension by registration (pluggy, the way simonw/llm does it).

A plugin is any installed package with an entry point in the `memagent` group whose module has
functions marked `@memagent.hookimpl`:

    [project.entry-points.memagent]
    dice = "memagent_dice"

The built-ins register through the same hooks. docs/extending.md shows each kind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import pluggy

from memagent.errors import MemagentError

if TYPE_CHECKING:
    import click

    from memagent.functions.base import AgentFunction
    from memagent.llm.factory import BackendSpec
    from memagent.llm.profiles import ServerProfile
    from memagent.memory.embeddings import EmbedderSpec

T = TypeVar("T")

PROJECT = "memagent"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The modules whose hooks define memagent's own functions, commands, profiles, backends and embedders.
BUILTIN_PLUGINS = (
    "memagent.functions.builtin",
    "memagent.cli.builtin_commands",
    "memagent.llm.profiles",
    "memagent.llm.factory",
    "memagent.memory.embeddings",
)


class MemagentSpec:
    """The hooks a plugin may implement."""

    @hookspec
    def register_functions(self, register: Callable[[AgentFunction], None]) -> None:
        """Add agent functions: call `register(AgentFunction(...))` for each."""

    @hookspec
    def register_commands(self, cli: click.Group) -> None:
        """Add commands or command groups to the `memagent` CLI (`@cli.command()`)."""

    @hookspec
    def register_server_profiles(self, register: Callable[[ServerProfile], None]) -> None:
        """Add OpenAI-compatible server profiles (`[llm] server = <kind>`): how the server takes a
        JSON-schema constraint, its sampler field names, its tokenize endpoint."""

    @hookspec
    def register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        """Add LLM backends (`[llm] backend = <name>`): a factory from the settings to an LLMBackend."""

    @hookspec
    def register_embedders(self, register: Callable[[EmbedderSpec], None]) -> None:
        """Add text embedders (`[memory] embedding = <name>`): a factory from the settings to an Embedder."""


_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
# Bumped on every registration change, so derived tables (the function registry) know to rebuild.
_generation = 0


def plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager: built-ins plus every installed `memagent` entry point."""
    global _manager
    with _lock:
        if _manager is None:
            import importlib

            manager = pluggy.PluginManager(PROJECT)
            manager.add_hookspecs(MemagentSpec)
            for name in BUILTIN_PLUGINS:
                manager.register(importlib.import_module(name), name=name)
            manager.load_setuptools_entrypoints(PROJECT)
            _manager = manager
        return _manager


def generation() -> int:
    return _generation


class PluginError(MemagentError):
    """A plugin registered something memagent cannot use."""


def collect(hook_name: str, kind: type[T]) -> list[T]:
    """Everything registered through the `register_*` hook `hook_name`, in registration order (the
    built-ins first; a plain hook call would run the newest registration first)."""
    collected: list[T] = []
    for impl in getattr(plugin_manager().hook, hook_name).get_hookimpls():
        def register(item: object, _plugin: str = impl.plugin_name) -> None:
            if not isinstance(item, kind):
                raise PluginError(f"plugin {_plugin!r} registered a {type(item).__name__} through {hook_name}; "
                                  f"it takes {kind.__name__} objects — fix or uninstall the plugin")
            collected.append(item)

        impl.function(register=register)
    return collected


def register_plugin(module: ModuleType | object, name: str | None = None) -> None:
    """Register a plugin object at run time (tests, embedding applications)."""
    global _generation
    plugin_manager().register(module, name=name)
    _generation += 1


def unregister_plugin(module: ModuleType | object) -> None:
    global _generation
    plugin_manager().unregister(module)
    _generation += 1


def reload_plugins() -> None:
    """Forget the manager: the next use discovers installed entry points again (after an install)."""
    global _manager, _generation
    with _lock:
        _manager = None
    _generation += 1


def plugin_names() -> list[str]:
    """Installed plugin packages as "name version", for `doctor`."""
    return sorted({f"{dist.project_name} {dist.version}" for _, dist in plugin_manager().list_plugin_distinfo()})

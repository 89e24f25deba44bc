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
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from memagent.functions.base import AgentFunction

PROJECT = "memagent"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The modules whose hooks define memagent's own agent functions and commands.
BUILTIN_PLUGINS = (
    "memagent.functions.builtin",
    "memagent.cli.builtin_commands",
)


class MemagentSpec:
    """The hooks a plugin may implement."""

    @hookspec
    def register_functions(self, register: Callable[[AgentFunction], None]) -> None:
        """Add agent functions: call `register(AgentFunction(...))` for each."""

    @hookspec
    def register_commands(self, cli: click.Group) -> None:
        """Add commands or command groups to the `memagent` CLI (`@cli.command()`)."""


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

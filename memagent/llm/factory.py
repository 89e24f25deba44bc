"""Choose and build the backend the settings ask for; backends are registered through the
`register_backends` hook (the built-ins too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import plugins
from ..config import Settings
from ..errors import ConfigError
from ..paths import Paths
from ..plugins import hookimpl
from .base import LLMBackend


@dataclass(frozen=True)
class BackendSpec:
    """One `[llm] backend` choice: `make(settings, paths, progress)` builds it."""

    name: str
    make: Callable[[Settings, Paths, bool], LLMBackend]


def _openai(settings: Settings, paths: Paths, progress: bool) -> LLMBackend:
    from .openai_backend import OpenAIBackend

    if not settings.llm.base_url:
        raise ConfigError("llm.backend = 'openai' needs llm.base_url (e.g. http://127.0.0.1:8080/v1)")
    return OpenAIBackend(settings.llm)


def _embedded(settings: Settings, paths: Paths, progress: bool) -> LLMBackend:
    from .embedded import EmbeddedBackend
    from .weights import PACKAGED_MODELS, model_cache_dir, resolve_model_path

    model = resolve_model_path(settings.llm.model_path, model_cache_dir(settings.llm.model_cache), progress,
                               PACKAGED_MODELS[settings.llm.embedded_model])
    return EmbeddedBackend(model, settings.llm)


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    register(BackendSpec("embedded", _embedded))
    register(BackendSpec("openai", _openai))


def backends() -> dict[str, BackendSpec]:
    return {spec.name: spec for spec in plugins.collect("register_backends", BackendSpec)}


def make_backend(settings: Settings, paths: Paths, progress: bool = True) -> LLMBackend:
    """`[llm] backend`; with `auto`, a server when `[llm] base_url` is set, else the embedded model."""
    name = settings.llm.backend
    if name == "auto":
        name = "openai" if settings.llm.base_url else "embedded"
    return backends()[name].make(settings, paths, progress)

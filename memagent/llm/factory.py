"""Choose and build the backend the settings ask for."""

from __future__ import annotations

from ..config import Settings
from ..paths import Paths
from .base import LLMBackend


def make_backend(settings: Settings, paths: Paths, progress: bool = True) -> LLMBackend:
    if settings.llm.uses_server:
        from .openai_backend import OpenAIBackend

        if not settings.llm.base_url:
            from ..errors import ConfigError

            raise ConfigError("llm.backend = 'openai' needs llm.base_url (e.g. http://127.0.0.1:8080/v1)")
        return OpenAIBackend(settings.llm)
    from .embedded import EmbeddedBackend
    from .weights import resolve_model_path

    return EmbeddedBackend(resolve_model_path(settings.llm.model_path, paths.cache_dir, progress), settings.llm)

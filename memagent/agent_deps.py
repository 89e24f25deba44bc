"""What the pieces of one agent share: its store, model, wrapper, templates, settings, persona, human
and the functions it may call. Created once by the Agent; the loop, the reply generator, the prompt
assembly and the summarizer all read it, so each of these is held in exactly one place."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from .config import Settings
from .fact_vocabulary import FactVocabulary, load_vocabulary
from .llm.base import LLMBackend
from .personas import Human, Persona
from .prompts import PromptLibrary
from .wrappers import Wrapper

if TYPE_CHECKING:
    from .memory.store import AgentStore


@dataclass
class AgentDeps:
    store: AgentStore
    backend: LLMBackend
    wrapper: Wrapper
    prompts: PromptLibrary
    settings: Settings
    persona: Persona
    human: Human
    functions: list[str]  # offered to the model: every registered one, or fewer with [memory] mode = off

    @cached_property
    def vocabulary(self) -> FactVocabulary:
        """facts.toml of the agent's language, loaded on first use (memory mode "assisted" only)."""
        return load_vocabulary(self.prompts)

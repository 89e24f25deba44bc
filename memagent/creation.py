"""The one way an agent comes into being: `memagent chat` on a new name, `memagent agents create`,
`persona import --agent` and `memory import --create` all go through `create_agent`."""

from __future__ import annotations

from .config import DEFAULT_HUMANS, Settings
from .memory.store import AgentStore
from .paths import Paths
from .personas import Human, Persona, load_human, load_persona


def create_agent(
    paths: Paths, settings: Settings, name: str, *, persona: str | None = None, human: str | None = None,
    language: str | None = None, lorebook: bool = True,
) -> tuple[AgentStore, Persona, Human]:
    """Create agent `name` from persona and human profiles (the configured ones when not given) and
    load the persona's lorebook, if it came from a character card, into its archival memory (not with
    `lorebook=False`: an import brings its own passages).

    A persona longer than `memory.core_limit` still makes an agent: its block grows to fit
    (AgentStore.create). Returns the open store, the persona and the human."""
    persona_profile = load_persona(paths, persona or settings.agent.persona)
    language = language or persona_profile.language or settings.agent.language
    human_profile = load_human(paths, human or settings.agent.human or DEFAULT_HUMANS[language])
    store = AgentStore.create(
        paths, settings, name, persona=persona_profile.text, human=human_profile.text,
        persona_name=persona_profile.key, human_name=human_profile.key, language=language,
    )
    try:
        if lorebook:
            _load_card_lorebook(store, persona_profile)
    except BaseException:
        store.close()
        raise
    return store, persona_profile, human_profile


def _load_card_lorebook(store: AgentStore, persona: Persona) -> None:
    from .cards import load_lorebook, lorebook_passages, stored_card

    card = stored_card(persona)
    passages = lorebook_passages(card, persona) if card else []
    if passages:
        load_lorebook(store, persona.key, passages)

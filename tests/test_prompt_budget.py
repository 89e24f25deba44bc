"""The system prompt must leave room to talk in a 2048-token window (embedded model's tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memagent.functions import function_names
from memagent.paths import Paths
from memagent.personas import load_human, load_persona
from memagent.prompts import PromptLibrary, core_from

# language → (persona, human, token budget for the whole system prompt)
BUDGETS = {"ja": ("sakura", "default", 900), "en": ("sam", "default-en", 800)}


@pytest.fixture(scope="module")
def count_tokens(default_model_path: Path):
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(model_path=str(default_model_path), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False))


@pytest.mark.parametrize("language", sorted(BUDGETS))
def test_system_prompt_fits_budget(language: str, paths: Paths, count_tokens) -> None:
    persona_name, human_name, budget = BUDGETS[language]
    persona, human = load_persona(paths, persona_name), load_human(paths, human_name)
    system = PromptLibrary(paths, language).render_system(
        persona=persona, human=human, core=core_from(persona, human, 2000), recall_count=1234,
        archival_count=56, summary=None, functions=function_names(), now="2025-01-02 21:03",
    )
    tokens = count_tokens(system.text)
    parts = {name: count_tokens(text) for name, text in system.parts.items()}
    assert tokens <= budget, f"{language} system prompt is {tokens} tokens (budget {budget}); parts: {parts}"

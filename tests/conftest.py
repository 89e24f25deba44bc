"""Shared fixtures. Every test runs with its own MEMAGENT_HOME so nothing touches the user's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memagent.paths import Paths, resolve_paths

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MEMAGENT_HOME; environment overrides from the developer's shell are removed."""
    for var in list(os.environ):
        if var.startswith("MEMAGENT_"):
            monkeypatch.delenv(var, raising=False)
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("MEMAGENT_HOME", str(root))
    return root


@pytest.fixture
def paths(home: Path) -> Paths:
    return resolve_paths(home)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Where the embedded model is assembled once for the whole test run (shared across runs)."""
    return resolve_paths(None).cache_dir


@pytest.fixture(scope="session")
def default_model_path(model_cache: Path) -> Path:
    from memagent.llm.weights import ensure_default_model

    return ensure_default_model(model_cache, progress=False)

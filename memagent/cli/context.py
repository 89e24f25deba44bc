"""Shared state for CLI commands: paths and settings, loaded once and lazily."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import click

from ..config import Settings, load_settings
from ..paths import Paths, resolve_paths


@dataclass
class AppContext:
    home: str | None = None
    config_path: str | None = None
    verbose: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        logging.basicConfig(
            level=logging.DEBUG if self.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )

    @cached_property
    def paths(self) -> Paths:
        return resolve_paths(self.home)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.paths, self.config_path, overrides=self.overrides)


pass_app = click.make_pass_decorator(AppContext)

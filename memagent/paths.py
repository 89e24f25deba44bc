"""Where memagent keeps things.

`MEMAGENT_HOME` (or `--home`) puts config, agent data, caches and the user's overrides of
prompts/personas/humans/wrappers under one folder. Without it the platform's user dirs are used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "memagent"
# Folders a user can shadow or extend, with the same names as the packaged folders.
RESOURCE_KINDS = ("prompts", "personas", "humans", "wrappers")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.ini"

    @property
    def agents_dir(self) -> Path:
        return self.data_dir / "agents"

    def agent_dir(self, name: str) -> Path:
        return self.agents_dir / name

    def user_resource_dir(self, kind: str) -> Path:
        return self.config_dir / kind

    def history_file(self, agent: str) -> Path:
        return self.agent_dir(agent) / "input_history"


def resolve_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    home = home or os.environ.get("MEMAGENT_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(config_dir=root, data_dir=root / "data", cache_dir=root / "cache")
    return Paths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
        cache_dir=Path(platformdirs.user_cache_dir(APP_NAME)),
    )


def packaged_resource_dir(kind: str) -> Path:
    return PACKAGE_ROOT / kind

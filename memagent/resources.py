"""User-editable resources: prompts/, personas/, humans/, wrappers/.

A file in the user's folder (`$MEMAGENT_HOME/<kind>/…`) shadows the packaged file with the same
relative path, and new files there are added to the packaged set.
"""

from __future__ import annotations

from pathlib import Path

from .paths import RESOURCE_KINDS, Paths, packaged_resource_dir


def resource_dirs(paths: Paths, kind: str) -> list[Path]:
    """Search order for one kind: user folder first, then the packaged folder."""
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"unknown resource kind {kind!r}")
    return [paths.user_resource_dir(kind), packaged_resource_dir(kind)]


def find_resource(paths: Paths, kind: str, relative: str) -> Path | None:
    for folder in resource_dirs(paths, kind):
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def list_resources(paths: Paths, kind: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Name (file stem) → file, user files shadowing packaged ones; sorted by name."""
    found: dict[str, Path] = {}
    for folder in reversed(resource_dirs(paths, kind)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and path.suffix in suffixes and not path.name.startswith((".", "_")):
                found[path.stem] = path
    return dict(sorted(found.items()))


def is_user_file(paths: Paths, kind: str, path: Path) -> bool:
    return paths.user_resource_dir(kind) in path.parents

"""`memagent persona …` and `memagent human …`: list, show, new, edit, delete profile files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import MemagentError, NotFoundError
from ..paths import Paths
from ..personas import (
    KEY_PATTERN,
    ProfileError,
    load_human_file,
    load_persona_file,
    new_profile_text,
)
from ..resources import find_resource, is_user_file, list_resources
from .context import AppContext, pass_app


@dataclass(frozen=True)
class ProfileKind:
    kind: str  # resource folder: personas | humans
    noun: str  # persona | human
    load_file: Callable[[Path], object]

    def list(self, paths: Paths) -> dict[str, Path]:
        return list_resources(paths, self.kind, (".md",))

    def find(self, paths: Paths, key: str) -> Path:
        self.check_key(key)
        path = find_resource(paths, self.kind, f"{key}.md")
        if path is None:
            known = ", ".join(self.list(paths)) or "(none)"
            raise NotFoundError(f"no {self.noun} named {key!r}; known: {known}")
        return path

    def check_key(self, key: str) -> None:
        if not KEY_PATTERN.match(key) or key.startswith("_"):
            raise MemagentError(
                f"{self.noun} name {key!r} is not valid; use letters, digits, '-' or '_' (not first), e.g. my-{self.noun}"
            )

    def user_path(self, paths: Paths, key: str) -> Path:
        return paths.user_resource_dir(self.kind) / f"{key}.md"


PERSONA = ProfileKind("personas", "persona", load_persona_file)
HUMAN = ProfileKind("humans", "human", load_human_file)


def _source(paths: Paths, profile: ProfileKind, path: Path) -> str:
    return "user" if is_user_file(paths, profile.kind, path) else "packaged"


def _edit_and_validate(profile: ProfileKind, path: Path) -> None:
    """Open the file in $EDITOR, then validate it; a bad file stays on disk for the next edit."""
    click.edit(filename=str(path))
    try:
        profile.load_file(path)
    except ProfileError as exc:
        raise ProfileError(f"{exc} — fix it with `memagent {profile.noun} edit {path.stem}`") from None
    click.echo(f"saved {path}")


def _make_group(profile: ProfileKind) -> click.Group:
    noun = profile.noun

    @click.group(name=noun, help=f"List, show, create, edit and delete {profile.kind} ({profile.kind}/*.md).")
    def group() -> None:
        pass

    @group.command("list")
    @pass_app
    def list_cmd(app: AppContext) -> None:
        """List every profile: name, source (packaged/user), language, description."""
        rows = []
        for key, path in profile.list(app.paths).items():
            try:
                item = profile.load_file(path)
                language = getattr(item, "language", None) or "-"
                about = f"{getattr(item, 'name', key)} — {getattr(item, 'description', '')}".rstrip(" —")
            except ProfileError as exc:
                language, about = "-", f"INVALID: {exc}"
            rows.append((key, _source(app.paths, profile, path), language, about))
        if not rows:
            click.echo(f"no {profile.kind} found; create one with `memagent {noun} new NAME`")
            return
        width = max(len(r[0]) for r in rows)
        for key, source, language, about in rows:
            click.echo(f"{key:<{width}}  {source:<8}  {language:<2}  {about}")

    @group.command("show")
    @click.argument("name")
    @click.option("--path", "path_only", is_flag=True, help="Print only the file's path.")
    @pass_app
    def show_cmd(app: AppContext, name: str, path_only: bool) -> None:
        """Print the profile file."""
        path = profile.find(app.paths, name)
        if path_only:
            click.echo(str(path))
            return
        click.echo(path.read_text(encoding="utf-8"), nl=False)

    @group.command("new")
    @click.argument("name")
    @click.option("--language", type=click.Choice(["ja", "en"]), help="Language of the starting template (default: agent.language).")
    @click.option("--no-edit", is_flag=True, help="Only write the template; do not open $EDITOR.")
    @pass_app
    def new_cmd(app: AppContext, name: str, language: str | None, no_edit: bool) -> None:
        """Create NAME from a template in your folder and open it in $EDITOR."""
        profile.check_key(name)
        existing = find_resource(app.paths, profile.kind, f"{name}.md")
        if existing is not None:
            raise MemagentError(f"{noun} {name!r} already exists ({existing}); use `memagent {noun} edit {name}`")
        target = profile.user_path(app.paths, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(new_profile_text(app.paths, profile.kind, name, language or app.settings.agent.language), encoding="utf-8")
        if no_edit:
            click.echo(f"wrote {target}; edit it, then check it with `memagent {noun} show {name}`")
            return
        _edit_and_validate(profile, target)

    @group.command("edit")
    @click.argument("name")
    @pass_app
    def edit_cmd(app: AppContext, name: str) -> None:
        """Open NAME in $EDITOR (a packaged one is first copied into your folder)."""
        path = profile.find(app.paths, name)
        if not is_user_file(app.paths, profile.kind, path):
            target = profile.user_path(app.paths, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            click.echo(f"copied the packaged {noun} to {target}; your copy is used from now on")
            path = target
        _edit_and_validate(profile, path)

    @group.command("delete")
    @click.argument("name")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @pass_app
    def delete_cmd(app: AppContext, name: str, yes: bool) -> None:
        """Delete your file NAME (packaged profiles cannot be deleted)."""
        path = profile.find(app.paths, name)
        if not is_user_file(app.paths, profile.kind, path):
            raise MemagentError(
                f"{noun} {name!r} is packaged with memagent and cannot be deleted; "
                f"`memagent {noun} edit {name}` makes your own copy instead"
            )
        if not yes and not click.confirm(f"delete {path}?", default=False):
            raise click.exceptions.Abort()
        path.unlink()
        packaged = find_resource(app.paths, profile.kind, f"{name}.md")
        note = f"; the packaged {noun} {name!r} is used again" if packaged else ""
        click.echo(f"deleted {path}{note}")

    return group


def register(cli: click.Group) -> None:
    for profile in (PERSONA, HUMAN):
        cli.add_command(_make_group(profile))

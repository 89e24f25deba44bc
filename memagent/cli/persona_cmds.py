"""`memagent persona …` and `memagent human …`: list, show, new, edit, delete profile files;
`memagent persona import|export|lorebook` for character cards (see memagent/cards/)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from ..errors import MemagentError, NotFoundError
from ..files import atomic_write
from ..paths import Paths
from ..personas import (
    KEY_PATTERN,
    Persona,
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
        text = new_profile_text(app.paths, profile.kind, name, language or app.settings.agent.language)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, text.encode("utf-8"))
        except OSError as exc:
            raise MemagentError(f"cannot write {target} ({exc.strerror}); make {target.parent} writable or set "
                                "MEMAGENT_HOME to a writable folder") from None
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
        if profile is PERSONA:
            from ..cards import PersonaFiles

            for sidecar in PersonaFiles.beside(path).sidecars():
                sidecar.unlink(missing_ok=True)
        packaged = find_resource(app.paths, profile.kind, f"{name}.md")
        note = f"; the packaged {noun} {name!r} is used again" if packaged else ""
        click.echo(f"deleted {path}{note}")

    return group


def _add_card_commands(group: click.Group) -> None:
    @group.command("import")
    @click.argument("file", type=click.Path(path_type=Path))
    @click.option("--name", "key", help="Save as this persona name (file name); default: from the card's name.")
    @click.option("--agent", "agent_name",
                  help="Also load the card's lorebook into this agent's archival memory "
                       "(the agent is created with this persona if it does not exist).")
    @click.option("--force", is_flag=True, help="Replace an existing persona of the same name.")
    @pass_app
    def import_cmd(app: AppContext, file: Path, key: str | None, agent_name: str | None, force: bool) -> None:
        """Import a character card (V1/V2/V3, .png or .json) as a persona."""
        from ..cards import import_card

        imported = import_card(app.paths, file, key, force=force)
        persona = imported.persona
        verb = "replaced" if imported.replaced else "imported"
        click.echo(f"{verb} persona {persona.key} ({persona.name}, {persona.language}) → {imported.files.persona}")
        _warn_if_over_core_limit(app, persona)
        if agent_name:
            _load_into_agent(app, agent_name, persona, imported.lorebook)
        elif imported.lorebook:
            click.echo(f"the card's lorebook has {len(imported.lorebook)} entries; load them into an agent's archival "
                       f"memory with `memagent persona lorebook {persona.key} --agent NAME`")

    @group.command("export")
    @click.argument("name")
    @click.option("--format", "fmt", type=click.Choice(["png", "json"]), default="png", show_default=True,
                  help="png: a picture with `chara` (V2) and `ccv3` (V3) chunks; json: the card JSON.")
    @click.option("--spec", type=click.Choice(["v2", "v3"]),
                  help="JSON card version (default: the imported card's, v2 for a persona that never was a card).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                  help="File to write (default: NAME.png or NAME.json here; '-' for stdout).")
    @pass_app
    def export_cmd(app: AppContext, name: str, fmt: Literal["png", "json"], spec: Literal["v2", "v3"] | None,
                   output: Path | None) -> None:
        """Export persona NAME as a character card, with your edits and everything the card had."""
        from ..cards import V2, V3, Spec, export_card
        from ..personas import load_persona

        PERSONA.check_key(name)
        specs: dict[str, Spec] = {"v2": V2, "v3": V3}
        content = export_card(load_persona(app.paths, name), fmt, None if spec is None else specs[spec])
        if str(output) == "-":
            sys.stdout.buffer.write(content)
            sys.stdout.buffer.flush()
            return
        target = output or Path(f"{name}.{fmt}")
        try:
            target.write_bytes(content)
        except OSError as exc:
            raise MemagentError(f"{target}: cannot write ({exc.strerror})") from None
        click.echo(f"wrote {target}")

    @group.command("lorebook")
    @click.argument("name")
    @click.option("--agent", "agent_name", required=True, help="Agent whose archival memory gets the entries.")
    @pass_app
    def lorebook_cmd(app: AppContext, name: str, agent_name: str) -> None:
        """Load persona NAME's lorebook (from its card) into an agent's archival memory."""
        from ..cards import lorebook_passages, stored_card
        from ..personas import load_persona

        PERSONA.check_key(name)
        persona = load_persona(app.paths, name)
        card = stored_card(persona)
        passages = lorebook_passages(card, persona) if card else []
        if not passages:
            raise MemagentError(f"persona {name!r} has no lorebook entries (only a card with a `character_book` "
                                "brings them; import one with `memagent persona import FILE`)")
        _load_into_agent(app, agent_name, persona, passages)


def _warn_if_over_core_limit(app: AppContext, persona: Persona) -> None:
    limit = app.settings.memory.core_limit
    if len(persona.text) > limit:
        click.echo(f"note: the persona text is {len(persona.text)} characters, over memory.core_limit ({limit}); "
                   "new agents get a bigger persona block to fit it. It takes room in every prompt: "
                   f"consider shortening it with `memagent persona edit {persona.key}`", err=True)


def _load_into_agent(app: AppContext, agent_name: str, persona: Persona, passages: list[str]) -> None:
    """Load lorebook passages into `agent_name`, first creating the agent with `persona` if needed."""
    from ..cards import load_lorebook
    from ..memory.store import AgentStore, check_agent_name
    from .memory_cmds import open_agent, show_progress

    check_agent_name(agent_name)
    if not AgentStore.exists(app.paths, app.settings, agent_name):
        _create_agent(app, agent_name, persona)
        click.echo(f"created agent {agent_name} with persona {persona.key}")
    with open_agent(app, agent_name, write=True) as store:
        store.archival.progress = show_progress()
        count = load_lorebook(store, persona.key, passages)
    click.echo(f"loaded {count} lorebook entries into the archival memory of agent {agent_name}")


def _create_agent(app: AppContext, agent_name: str, persona: Persona) -> None:
    from ..creation import create_agent

    store, _, _ = create_agent(app.paths, app.settings, agent_name, persona=persona.key)
    store.close()


def register(cli: click.Group) -> None:
    for profile in (PERSONA, HUMAN):
        group = _make_group(profile)
        if profile is PERSONA:
            _add_card_commands(group)
            group.help = f"{group.help} Import and export character cards (V2/V3, PNG or JSON)."
        cli.add_command(group)

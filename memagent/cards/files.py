"""Cards in the user's personas folder: import (persona + sidecars), export, and lorebooks into archival memory."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..files import atomic_write
from ..paths import Paths
from ..personas import KEY_PATTERN, Persona, ProfileError, load_persona_file, persona_file_text
from ..resources import find_resource
from .convert import card_from_persona, lorebook_passages, persona_from_card
from .spec import CardError, Spec, as_spec, card_json, card_png, normalize_card, parse_card_json, read_card

if TYPE_CHECKING:
    from ..memory.store import AgentStore

LOREBOOK_SOURCE = "card:{key}"  # archival `source` of the passages loaded from persona `key`'s lorebook


@dataclass(frozen=True)
class PersonaFiles:
    persona: Path
    card: Path
    image: Path

    @classmethod
    def beside(cls, persona_path: Path) -> PersonaFiles:
        key = persona_path.stem
        return cls(persona_path, persona_path.with_name(f"{key}.card.json"), persona_path.with_name(f"{key}.card.png"))

    def sidecars(self) -> tuple[Path, Path]:
        return self.card, self.image


@dataclass(frozen=True)
class ImportedCard:
    persona: Persona
    files: PersonaFiles
    card: dict[str, Any]
    lorebook: list[str]
    replaced: bool


def key_for(name: str) -> str:
    """A persona key (file name) from a character name: `Hatsune Miku` → `hatsune-miku`, `さくら` stays."""
    slug = re.sub(r"[^\w-]+", "-", unicodedata.normalize("NFKC", name).lower()).strip("-_")
    return slug[:40].strip("-_") or "character"


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key) or key.startswith("_"):
        raise CardError(f"persona name {key!r} is not valid; use letters, digits, '-' or '_' (not first), "
                        "e.g. --name my-character")
    return key


def import_card(paths: Paths, file: Path, key: str | None = None, *, force: bool = False) -> ImportedCard:
    """Read `file` and write the persona and its sidecars into the user's personas folder."""
    loaded = read_card(file)
    key = check_key(key or key_for(loaded.data.name))
    existing = find_resource(paths, "personas", f"{key}.md")
    if existing is not None and not force:
        raise CardError(f"persona {key!r} already exists ({existing}); pass --force to replace it "
                        "or --name to import under another name")
    persona = persona_from_card(loaded.card, key, str(file))
    files = PersonaFiles.beside(paths.user_resource_dir("personas") / f"{key}.md")
    files.persona.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(files.card, card_json(loaded.card).encode("utf-8"))
    if loaded.image is not None:
        atomic_write(files.image, loaded.image)
    else:
        files.image.unlink(missing_ok=True)  # a picture left from an earlier import is not this card's
    comment = (f"Imported from {file.name} by `memagent persona import`; the card itself is in {files.card.name}.\n"
               f"Edit freely: `memagent persona export {key}` writes your changes back into the card.")
    atomic_write(files.persona, persona_file_text(persona, comment).encode("utf-8"))
    try:
        persona = load_persona_file(files.persona)
    except ProfileError as exc:
        raise CardError(f"{file}: the persona made from this card does not load ({exc})") from None
    return ImportedCard(persona, files, loaded.card, lorebook_passages(loaded.card, persona), existing is not None)


def stored_card(persona: Persona) -> dict[str, Any] | None:
    """The card kept beside a persona that came from one, or None."""
    if persona.source is None:
        return None
    path = PersonaFiles.beside(persona.source).card
    if not path.is_file():
        return None
    return normalize_card(parse_card_json(path.read_bytes(), str(path)), str(path))


def stored_image(persona: Persona) -> bytes | None:
    if persona.source is None:
        return None
    path = PersonaFiles.beside(persona.source).image
    return path.read_bytes() if path.is_file() else None


def export_card(persona: Persona, fmt: Literal["png", "json"], spec: Spec | None = None) -> bytes:
    """The persona as a card file: JSON (the stored card's spec unless `spec` says, V2 for a persona
    that never was a card) or PNG with both `chara` and `ccv3` chunks."""
    card = card_from_persona(persona, stored_card(persona))
    if fmt == "png":
        return card_png(card, stored_image(persona))
    return (card_json(as_spec(card, spec or card["spec"])) + "\n").encode("utf-8")


# --- lorebook → archival memory -----------------------------------------------------------------
def load_lorebook(store: AgentStore, persona_key: str, passages: list[str]) -> int:
    """Put `passages` into the agent's archival memory, replacing those loaded before for this persona."""
    return store.archival.replace_source(LOREBOOK_SOURCE.format(key=persona_key), passages)


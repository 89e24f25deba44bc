"""Personas and human profiles: Markdown files with YAML front matter.

    ---
    name: さくら
    language: ja
    first_message: いらっしゃいませ！
    rules:
      - 敬語は使わない
    examples:
      - user: 今日は寒いね
        char: ほんとにね！あったかいココアいれよっか？
    ---
    The body is the persona's core memory text.

The file name (without .md) is the key used in config (`agent.persona = sakura`); `name` is the
character's name as the model and the user see it. Every validation problem becomes one line:
file, field, what is wrong, how to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import frontmatter
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import MemagentError, NotFoundError
from .files import read_text
from .paths import Paths
from .resources import find_resource, list_resources

SUFFIXES = (".md",)
# A key becomes a file name: letters (any script), digits, '-' and '_' only.
KEY_PATTERN = re.compile(r"^[\w-]+$")


class ProfileError(MemagentError):
    """A persona or human file is malformed."""


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    char: str = Field(min_length=1)


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    name: str = Field(min_length=1)
    language: Literal["ja", "en"] | None = None
    text: str = ""
    source: Path | None = None


# A card's placeholder for the human (`{{user}}`, `<USER>`): kept in the persona, filled at prompt
# time with what the character calls the user (addressing_user).
USER_PLACEHOLDER = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)
USER_PLACEHOLDER_TEXT = "{{user}}"


def fill_user(text: str, user_name: str) -> str:
    return USER_PLACEHOLDER.sub(lambda _: user_name, text)


class Persona(_Profile):
    first_message: str | None = None
    examples: list[Example] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    color: str | None = None
    description: str = ""
    # Fields a character card brings (see cards/); the preamble renders the ones the model needs.
    personality: str = ""
    scenario: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = Field(default_factory=list)
    creator_notes: str = ""
    tags: list[str] = Field(default_factory=list)

    def addressing_user(self, user_name: str) -> Persona:
        """This persona as the model reads it: `{{user}}` replaced with `user_name` in every text."""
        def fill(value: Any) -> Any:
            if isinstance(value, str):
                return fill_user(value, user_name)
            if isinstance(value, list):
                return [fill(item) for item in value]
            if isinstance(value, Example):
                return Example(user=fill(value.user), char=fill(value.char))
            return value

        texts = ("text", "first_message", "examples", "rules", "personality", "scenario", "system_prompt",
                 "post_history_instructions", "alternate_greetings")
        return self.model_copy(update={field: fill(getattr(self, field)) for field in texts})


class Human(_Profile):
    description: str = ""


# What to tell the user for each front-matter field when its value is wrong.
FIELD_HINTS: dict[str, str] = {
    "name": "write `name: ...` with the name the model and the user see",
    "language": "write `language: ja` or `language: en`",
    "first_message": "write `first_message: ...` as one line of text (quote it if it contains ':')",
    "examples": "write each example as `- user: ...` with `char: ...` on the next line, indented",
    "rules": "write each rule on its own line as `- ...`",
    "color": "write a prompt-toolkit color name such as `ansimagenta` or `#ff88aa`",
    "description": "write `description: ...` as one line of text",
    "personality": "write `personality: ...` as text (a YAML `|` block for several lines)",
    "scenario": "write `scenario: ...` as text (a YAML `|` block for several lines)",
    "system_prompt": "write `system_prompt: ...` as text (a YAML `|` block for several lines)",
    "post_history_instructions": "write `post_history_instructions: ...` as text",
    "alternate_greetings": "write each greeting on its own line as `- ...`",
    "creator_notes": "write `creator_notes: ...` as text",
    "tags": "write each tag on its own line as `- ...`",
}


def _front_matter_fields(model: type[_Profile]) -> list[str]:
    return [name for name in model.model_fields if name not in ("key", "text", "source")]


def _describe_validation(exc: ValidationError, model: type[_Profile]) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else "?"
    if err["type"] == "extra_forbidden":
        known = ", ".join(_front_matter_fields(model))
        return f"unknown front matter key `{field}`; known keys: {known}"
    where = field + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    hint = FIELD_HINTS.get(field, "fix the value")
    if err["type"] == "missing":
        if field == "name":
            return "front matter is missing `name`; add `name: ...` between the --- lines"
        return f"`{where}` is missing; {hint}"
    if err["type"] in ("string_too_short",):
        return f"`{where}` is empty; {hint}"
    if err["type"] == "literal_error":
        return f"`{where}` = {err.get('input')!r} is not allowed; {hint}"
    if err["type"] in ("list_type", "model_type", "dict_type", "string_type"):
        return f"`{where}` has the wrong type ({err['msg'].lower()}); {hint}"
    return f"`{where}`: {err['msg']}; {hint}"


def _read(path: Path) -> frontmatter.Post:
    raw = read_text(path, ProfileError)
    if not raw.lstrip("\ufeff").startswith("---"):
        raise ProfileError(
            f"{path}: no front matter; start the file with a `---` line, then `name: ...`, then another `---` line"
        )
    try:
        return frontmatter.loads(raw.lstrip("\ufeff"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # The YAML starts on the file's second line (after the opening ---); marks are 0-based.
        line = f"line {mark.line + 2}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(
            f"{path}: {line}front matter is not valid YAML ({problem}); check the indentation "
            f"and put quotes around values that contain ':' or start with a symbol"
        ) from None


def _parse(path: Path, model: type[_Profile]) -> _Profile:
    post = _read(path)
    metadata: dict[str, Any] = dict(post.metadata)
    for reserved in ("key", "text", "source"):
        if reserved in metadata:
            raise ProfileError(f"{path}: `{reserved}` cannot be set in the front matter; remove that line")
    try:
        profile = model.model_validate({**metadata, "key": path.stem, "text": post.content.strip(), "source": path})
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_describe_validation(exc, model)}") from None
    if isinstance(profile, Persona) and not profile.text:
        raise ProfileError(
            f"{path}: the persona text is empty; describe the character below the closing --- line"
        )
    return profile


def load_persona_file(path: Path) -> Persona:
    return _parse(path, Persona)  # type: ignore[return-value]


def load_human_file(path: Path) -> Human:
    return _parse(path, Human)  # type: ignore[return-value]


def _load(paths: Paths, kind: str, key: str, model: type[_Profile]) -> _Profile:
    noun = kind[:-1]
    if not KEY_PATTERN.match(key):
        raise ProfileError(f"{noun} name {key!r} is not valid; use letters, digits, '-' or '_'")
    path = find_resource(paths, kind, f"{key}.md")
    if path is None:
        known = ", ".join(list_resources(paths, kind, SUFFIXES)) or "(none)"
        raise NotFoundError(
            f"no {noun} named {key!r}; known: {known} (create one with `memagent {noun} new {key}`)"
        )
    return _parse(path, model)


def load_persona(paths: Paths, name: str) -> Persona:
    return _load(paths, "personas", name, Persona)  # type: ignore[return-value]


def load_human(paths: Paths, name: str) -> Human:
    return _load(paths, "humans", name, Human)  # type: ignore[return-value]


def list_personas(paths: Paths) -> dict[str, Path]:
    """Key → file for every persona (user files shadow packaged ones), sorted by key."""
    return list_resources(paths, "personas", SUFFIXES)


def list_humans(paths: Paths) -> dict[str, Path]:
    return list_resources(paths, "humans", SUFFIXES)


# Front matter keys in the order a person reads them; anything else follows.
FILE_ORDER = ("name", "language", "description", "color", "first_message", "alternate_greetings", "personality",
              "scenario", "system_prompt", "post_history_instructions", "rules", "examples", "tags", "creator_notes")


class _FrontMatterDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so an imported card stays readable and editable."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted scalar when a block cannot hold the string exactly.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_FrontMatterDumper.add_representer(str, _represent_text)


def persona_file_text(persona: Persona, comment: str = "") -> str:
    """The Markdown file for `persona`: front matter with every non-empty field, then the text.

    `comment` (one or more lines) goes at the top of the front matter as YAML comments.
    """
    fields = persona.model_dump(mode="json", exclude={"key", "text", "source"}, exclude_defaults=True)
    ordered = {key: fields.pop(key) for key in FILE_ORDER if key in fields} | fields
    front = yaml.dump(ordered, Dumper=_FrontMatterDumper, allow_unicode=True, sort_keys=False, width=1_000_000)
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return f"---\n{header}{front}---\n{persona.text.strip()}\n"


def new_profile_text(paths: Paths, kind: str, key: str, language: str) -> str:
    """The starting text for `memagent persona|human new`: `<kind>/_template.<lang>.md`, user copy first."""
    template = find_resource(paths, kind, f"_template.{language}.md") or find_resource(paths, kind, "_template.en.md")
    if template is None:
        return f"---\nname: {key}\n---\n"
    return template.read_text(encoding="utf-8").replace("{{ key }}", key)


__all__ = [
    "Example",
    "Human",
    "Persona",
    "ProfileError",
    "list_humans",
    "list_personas",
    "load_human",
    "load_human_file",
    "load_persona",
    "load_persona_file",
    "new_profile_text",
    "persona_file_text",
]

"""Card ↔ persona: what import makes of a card, and the card export writes back from a persona."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from ..personas import USER_PLACEHOLDER_TEXT, Example, Persona
from .spec import CardData, CardError, describe_validation_error, upgrade_v1

USER_WORDS = {"ja": "ユーザー", "en": "User"}  # `{{user}}` in lorebook passages


_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(bot|user)>", re.IGNORECASE)
_ORIGINAL = re.compile(r"\{\{\s*original\s*\}\}", re.IGNORECASE)
_KANA = re.compile(r"[\u3040-\u30ff]")
_START = re.compile(r"^\s*<start>\s*$", re.IGNORECASE)
_USER_SPEAKER = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)


@dataclass(frozen=True)
class Macros:
    char: str
    user: str

    def fill(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            who = (match.group(1) or match.group(2)).lower()
            return self.char if who in ("char", "bot") else self.user

        return _MACRO.sub(replace, text).strip()


def detect_language(data: CardData) -> Literal["ja", "en"]:
    """Japanese when the card's main text has kana (kanji alone could be Chinese)."""
    sample = " ".join((data.name, data.description, data.personality, data.scenario, data.first_mes))
    return "ja" if _KANA.search(sample) else "en"


def parse_examples(mes_example: str, char_name: str, macros: Macros) -> list[Example]:
    """`<START>` blocks of `{{user}}: …` / `{{char}}: …` lines → (user, char) pairs.

    A line without a speaker continues the previous line; a character line with no user line before
    it (a monologue) has no pair and is left out.
    """
    speaker = re.compile(rf"^\s*(\{{\{{\s*user\s*\}}\}}|<user>|\{{\{{\s*char\s*\}}\}}|<bot>|{re.escape(char_name)})\s*:\s?(.*)$",
                         re.IGNORECASE)
    examples: list[Example] = []
    for block in _blocks(mes_example):
        turns: list[tuple[str, str]] = []  # (who, text)
        for line in block:
            match = speaker.match(line)
            if match:
                who = "user" if _USER_SPEAKER.fullmatch(match.group(1)) else "char"
                if turns and turns[-1][0] == who:
                    turns[-1] = (who, turns[-1][1] + "\n" + match.group(2))
                else:
                    turns.append((who, match.group(2)))
            elif turns:
                turns[-1] = (turns[-1][0], turns[-1][1] + "\n" + line)
        examples.extend(_pairs(turns, macros))
    return examples


def _blocks(mes_example: str) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in mes_example.splitlines():
        if _START.match(line):
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [block for block in blocks if any(line.strip() for line in block)]


def _pairs(turns: list[tuple[str, str]], macros: Macros) -> list[Example]:
    pairs = []
    for (first, user_text), (second, char_text) in zip(turns, turns[1:]):
        user, char = macros.fill(user_text), macros.fill(char_text)
        if first == "user" and second == "char" and user and char:
            pairs.append(Example(user=user, char=char))
    return pairs


def format_examples(examples: list[Example]) -> str:
    return "\n".join(f"<START>\n{{{{user}}}}: {e.user}\n{{{{char}}}}: {e.char}" for e in examples)


def _one_line(text: str, width: int = 80) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= width else first[:width - 1] + "…"


def _memagent_extension(data: CardData) -> dict[str, Any]:
    extension = data.extensions.get("memagent")
    return extension if isinstance(extension, dict) else {}


def persona_from_card(card: dict[str, Any], key: str, where: str = "the card") -> Persona:
    """The persona import makes of `card` (deterministic: export compares against it)."""
    data = CardData.model_validate(card["data"])
    extension = _memagent_extension(data)
    name = data.name.strip()
    language = extension.get("language") or detect_language(data)
    macros = Macros(char=name, user=USER_PLACEHOLDER_TEXT)
    personality = macros.fill(data.personality)
    fields: dict[str, Any] = {
        "key": key,
        "name": name,
        "language": language,
        "text": macros.fill(data.description) or personality or name,
        "description": extension.get("description", _one_line(personality or macros.fill(data.creator_notes))),
        "first_message": macros.fill(data.first_mes) or None,
        "alternate_greetings": [g for g in (macros.fill(g) for g in data.alternate_greetings) if g],
        "personality": personality,
        "scenario": macros.fill(data.scenario),
        "system_prompt": macros.fill(_ORIGINAL.sub("", data.system_prompt)),
        "post_history_instructions": macros.fill(_ORIGINAL.sub("", data.post_history_instructions)),
        "examples": parse_examples(data.mes_example, name, macros),
        "creator_notes": data.creator_notes.strip(),
        "tags": [tag.strip() for tag in data.tags if tag.strip()],
        **{field: extension[field] for field in ("rules", "color") if field in extension},
    }
    try:
        return Persona.model_validate(fields)
    except ValidationError as exc:
        # Only the memagent extension can hold values a persona refuses.
        raise CardError(f"{where}: `data.extensions.memagent`: {describe_validation_error(exc)}") from None


def lorebook_passages(card: dict[str, Any], persona: Persona) -> list[str]:
    """One archival passage per enabled lorebook entry: `[key, key] content`, placeholders filled."""
    book = CardData.model_validate(card["data"]).character_book
    if book is None:
        return []
    macros = Macros(char=persona.name, user=USER_WORDS.get(persona.language or "en", USER_WORDS["en"]))
    passages = []
    for entry in book.entries:
        content = macros.fill(entry.content)
        if not entry.enabled or not content:
            continue
        # Regex keys read as noise in a passage; plain keys help full-text search find the entry.
        keys = [] if entry.use_regex else [k.strip() for k in entry.keys if k.strip()]
        passages.append(f"[{', '.join(keys)}] {content}" if keys else content)
    return passages


# Persona field → how export writes it into `data` when the user changed it.
def _set(field: str) -> Callable[[dict[str, Any], Any], None]:
    return lambda data, value: data.__setitem__(field, value)


def _set_extension(field: str) -> Callable[[dict[str, Any], Any], None]:
    def write(data: dict[str, Any], value: Any) -> None:
        current = data.get("extensions")
        extensions: dict[str, Any] = current if isinstance(current, dict) else {}
        data["extensions"] = extensions
        if not isinstance(extensions.get("memagent"), dict):
            extensions["memagent"] = {}
        extensions["memagent"][field] = value

    return write


CARD_WRITERS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "name": _set("name"),
    "text": _set("description"),
    "personality": _set("personality"),
    "scenario": _set("scenario"),
    "first_message": lambda data, value: data.__setitem__("first_mes", value or ""),
    "alternate_greetings": _set("alternate_greetings"),
    "examples": lambda data, value: data.__setitem__("mes_example", format_examples([Example(**e) for e in value])),
    "system_prompt": _set("system_prompt"),
    "post_history_instructions": _set("post_history_instructions"),
    "creator_notes": _set("creator_notes"),
    "tags": _set("tags"),
    **{field: _set_extension(field) for field in ("language", "description", "rules", "color")},
}


def card_from_persona(persona: Persona, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The stored card (or an empty V2 card) with the persona's edits written in."""
    card = copy.deepcopy(stored) if stored is not None else upgrade_v1({"name": persona.name})
    imported = persona_from_card(card, persona.key)
    current = persona.model_dump(mode="json")
    before = imported.model_dump(mode="json")
    for field, write in CARD_WRITERS.items():
        if current[field] != before[field]:
            write(card["data"], current[field])
    return card

"""Character cards (V1, V2 `chara_card_v2`, V3 `chara_card_v3`) in and out of memagent personas.

A card arrives as JSON or as a PNG whose tEXt chunk `chara` (V2) or `ccv3` (V3) holds base64 of the
UTF-8 JSON; `ccv3` wins when both are there. Import writes three files to the user's personas folder:

    <key>.md          the persona (Markdown + front matter), what memagent reads and the user edits
    <key>.card.json   the card exactly as it came (a V1 card upgraded to the V2 shape)
    <key>.card.png    the card's picture without its card chunks (PNG cards only)

Export starts from `<key>.card.json`, so unknown fields and `extensions` survive untouched, and writes
back only the fields whose value in the persona file differs from what import made of the card (the
user's edits). memagent-only fields (language, rules, color, description) go to
`data.extensions.memagent`. A persona that never came from a card is exported from an empty card.

Placeholders: `{{char}}`/`<BOT>` become the character's name; `{{user}}`/`<USER>` stay in the persona
as `{{user}}`, because a persona is shared by every agent: each agent fills it at prompt time with
what the character calls its user (the name they gave, else the human profile's name — see
ContextWindow.user_name). Lorebook passages are stored text, so there `{{user}}` becomes a neutral
word for the human — 「ユーザー」 in Japanese cards, "User" in English ones.

Lorebook (`character_book`) entries become archival passages of an agent (`persona import --agent`,
`persona lorebook`), not keyword-triggered prompt inserts, because:
- archival search is hybrid (trigram full text + embeddings), so an entry is found by its keys (kept
  at the start of the passage) and also by paraphrases and Japanese text without spaces, which
  literal key matching misses;
- the system prompt stays small and unchanged between turns: small local models have 2k–8k token
  windows that a lorebook easily fills, and a stable prefix lets the server reuse its KV cache;
- the agent can already search, add to and correct archival memory, so world facts join the memory
  it manages instead of being a second mechanism the model cannot see or edit.
The price is that the model must search for lore. The entries stay in `<key>.card.json`, so they can
be loaded into any number of agents; reloading replaces the passages loaded before for that persona.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import re
import struct
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import MemagentError
from .files import atomic_write
from .paths import Paths
from .personas import (
    KEY_PATTERN,
    USER_PLACEHOLDER_TEXT,
    Example,
    Persona,
    ProfileError,
    load_persona_file,
    persona_file_text,
)
from .resources import find_resource

if TYPE_CHECKING:
    from .memory.store import AgentStore

MAX_CARD_BYTES = 20 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
V2: Final = "chara_card_v2"
V3: Final = "chara_card_v3"
SPEC_VERSIONS = {V2: "2.0", V3: "3.0"}
CARD_CHUNKS = ("ccv3", "chara")  # in order of preference
TEXT_CHUNK_TYPES = (b"tEXt", b"zTXt", b"iTXt")
# Fields V3 added to `data`; a V2 copy of a V3 card leaves them out (the ccv3 chunk keeps them).
V3_ONLY_FIELDS = ("nickname", "creator_notes_multilingual", "source", "group_only_greetings", "creation_date",
                  "modification_date", "assets")
USER_WORDS = {"ja": "ユーザー", "en": "User"}  # `{{user}}` in lorebook passages
LOREBOOK_SOURCE = "card:{key}"  # archival `source` of the passages loaded from persona `key`'s lorebook
PLACEHOLDER_SIZE = (256, 384)
PLACEHOLDER_COLOR = (232, 224, 240)

Spec = Literal["chara_card_v2", "chara_card_v3"]


class CardError(MemagentError):
    """A card file that cannot be read, or a persona that cannot be made from it."""


# --- validation (the raw JSON is what is kept; these only check it) ---------------------------
def _none_as(empty: Any) -> Callable[[Any], Any]:
    return lambda value: empty if value is None else value


# Many card editors write null for fields left empty.
Text = Annotated[str, BeforeValidator(_none_as(""))]
TextList = Annotated[list[str], BeforeValidator(_none_as([]))]


class BookEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    keys: TextList = Field(default_factory=list)
    content: Text = ""
    enabled: bool = True
    use_regex: bool = False


class CharacterBook(BaseModel):
    model_config = ConfigDict(extra="allow")

    entries: list[BookEntry] = Field(default_factory=list)


class CardData(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: Text = ""
    personality: Text = ""
    scenario: Text = ""
    first_mes: Text = ""
    mes_example: Text = ""
    creator_notes: Text = ""
    system_prompt: Text = ""
    post_history_instructions: Text = ""
    alternate_greetings: TextList = Field(default_factory=list)
    tags: TextList = Field(default_factory=list)
    extensions: Annotated[dict[str, Any], BeforeValidator(_none_as({}))] = Field(default_factory=dict)
    character_book: CharacterBook | None = None


class Card(BaseModel):
    model_config = ConfigDict(extra="allow")

    spec: Spec
    data: CardData


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"`{where}`: {error['msg'].lower()}"


# --- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedCard:
    card: dict[str, Any]  # the whole card JSON, V2 or V3 shape
    image: bytes | None  # the PNG without its card chunks, for a PNG card
    source: Path

    @property
    def data(self) -> CardData:
        return CardData.model_validate(self.card["data"])

    @property
    def spec(self) -> Spec:
        return self.card["spec"]


def read_card(path: Path) -> LoadedCard:
    """Read a card from a JSON or PNG file; every problem is one CardError line naming the file."""
    blob = _read_limited(path)
    if blob.startswith(PNG_SIGNATURE):
        chunks = read_png_chunks(blob, path)
        raw = _card_from_png(chunks, path)
        return LoadedCard(normalize_card(raw, str(path)), _png_bytes(_without_card_chunks(chunks)), path)
    if blob.startswith(ZIP_SIGNATURE):
        raise CardError(f"{path}: CHARX (zip) cards are not supported; export the card as PNG or JSON and import that")
    return LoadedCard(normalize_card(parse_card_json(blob, str(path)), str(path)), None, path)


def _read_limited(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise CardError(f"{path}: the file is {size / 2**20:.1f} MB; cards over {MAX_CARD_BYTES // 2**20} MB "
                            "are refused (a real card is far smaller; check that this is the right file)")
        return path.read_bytes()
    except IsADirectoryError:
        raise CardError(f"{path}: is a folder; give the card's .png or .json file") from None
    except FileNotFoundError:
        raise CardError(f"{path}: no such file") from None
    except OSError as exc:
        raise CardError(f"{path}: cannot read ({exc.strerror})") from None


def parse_card_json(blob: bytes, where: str) -> dict[str, Any]:
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CardError(f"{where}: not UTF-8 text, so not a card JSON; give a .json or .png card") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"{where}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                        "give a .json or .png card") from None
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(type(value), "a number")
        raise CardError(f"{where}: not a character card (the JSON is {kind}, not an object with the card's fields)")
    return value


def normalize_card(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The card in V2 or V3 shape (a V1 card becomes V2), checked; unknown fields are kept as they are."""
    spec = raw.get("spec")
    if spec is None:
        if "data" in raw:
            raise CardError(f'{where}: the card has `data` but no `spec`; expected "spec": "{V2}" or "{V3}"')
        if "name" not in raw:
            raise CardError(f"{where}: not a character card (no `spec`, and no `name` for a V1 card)")
        raw = _upgrade_v1(raw)
    elif spec not in (V2, V3):
        raise CardError(f"{where}: unknown card spec {spec!r}; memagent reads {V2}, {V3} and V1 cards (no spec)")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise CardError(f"{where}: `data` is missing or not an object, so this {spec} card has no character")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise CardError(f"{where}: the card has no character name (`data.name` is missing or empty); "
                        "set one in a card editor and export it again")
    try:
        Card.model_validate(raw)
    except ValidationError as exc:
        raise CardError(f"{where}: {_describe(exc)}; fix the card in a card editor and export it again") from None
    return raw


def _upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    data = {"name": raw["name"], "description": "", "personality": "", "scenario": "", "first_mes": "", "mes_example": "",
            "creator_notes": "", "system_prompt": "", "post_history_instructions": "", "alternate_greetings": [],
            "tags": [], "creator": "", "character_version": "", "extensions": {}, **raw}
    return {"spec": V2, "spec_version": SPEC_VERSIONS[V2], "data": data}


# --- PNG chunks ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PngChunk:
    type: bytes
    data: bytes

    def to_bytes(self) -> bytes:
        crc = zlib.crc32(self.type + self.data)
        return struct.pack(">I", len(self.data)) + self.type + self.data + struct.pack(">I", crc)


def read_png_chunks(blob: bytes, where: Path | str) -> list[PngChunk]:
    """Every chunk up to IEND, each checked against its CRC."""
    if not blob.startswith(PNG_SIGNATURE):
        raise CardError(f"{where}: not a PNG file")
    chunks: list[PngChunk] = []
    position = len(PNG_SIGNATURE)
    while True:
        header_end = position + 8
        if header_end > len(blob):
            raise _truncated(where, position)
        length, kind = struct.unpack(">I4s", blob[position:header_end])
        end = header_end + length + 4
        if end > len(blob):
            raise _truncated(where, position)
        chunk = PngChunk(kind, blob[header_end:header_end + length])
        (crc,) = struct.unpack(">I", blob[end - 4:end])
        if zlib.crc32(chunk.type + chunk.data) != crc:
            name = kind.decode("latin-1", "replace")
            raise CardError(f"{where}: the PNG is damaged (bad checksum in its {name!r} chunk); get the card again")
        chunks.append(chunk)
        if kind == b"IEND":
            return chunks
        position = end


def _truncated(where: Path | str, position: int) -> CardError:
    return CardError(f"{where}: the PNG is truncated (it ends inside the chunk at byte {position}); "
                     "download or export the card again")


def _png_bytes(chunks: list[PngChunk]) -> bytes:
    return PNG_SIGNATURE + b"".join(chunk.to_bytes() for chunk in chunks)


def _text_chunk(chunk: PngChunk, where: Path | str) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk; None for other chunks."""
    if chunk.type not in TEXT_CHUNK_TYPES:
        return None
    keyword, _, rest = chunk.data.partition(b"\0")
    name = keyword.decode("latin-1")
    try:
        if chunk.type == b"tEXt":
            return name, rest.decode("latin-1")
        if chunk.type == b"zTXt":
            return name, _inflate(rest[1:]).decode("latin-1")
        compressed, rest = rest[:1] == b"\1", rest[2:]
        _language, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return name, (_inflate(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        raise CardError(f"{where}: the PNG's {name!r} text chunk cannot be decoded; get the card again") from None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_CARD_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


def _is_card_chunk(chunk: PngChunk) -> bool:
    return chunk.type in TEXT_CHUNK_TYPES and chunk.data.partition(b"\0")[0].decode("latin-1").lower() in CARD_CHUNKS


def _without_card_chunks(chunks: list[PngChunk]) -> list[PngChunk]:
    return [chunk for chunk in chunks if not _is_card_chunk(chunk)]


def _card_from_png(chunks: list[PngChunk], where: Path) -> dict[str, Any]:
    texts: dict[str, str] = {}
    for chunk in chunks:
        found = _text_chunk(chunk, where) if _is_card_chunk(chunk) else None
        if found:
            texts.setdefault(found[0].lower(), found[1])
    for keyword in CARD_CHUNKS:
        if keyword in texts:
            return _decode_card_text(texts[keyword], f"{where} (`{keyword}` chunk)")
    raise CardError(f"{where}: this PNG holds no character card (no `chara` or `ccv3` text chunk); "
                    "it may be a plain picture — export the card again from the app that made it")


def _decode_card_text(text: str, where: str) -> dict[str, Any]:
    stripped = "".join(text.split())
    if stripped.startswith("{"):  # a few old tools stored the JSON itself
        return parse_card_json(text.encode("utf-8"), where)
    try:
        blob = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"{where}: not valid base64, so the card data is damaged; export the card again") from None
    return parse_card_json(blob, where)


def card_png(card: dict[str, Any], image: bytes | None) -> bytes:
    """A PNG of `image` (or a plain placeholder) carrying the card as `chara` (V2) and `ccv3` (V3)."""
    chunks = _without_card_chunks(read_png_chunks(image or placeholder_png(), "the persona's picture"))
    texts = [_card_text_chunk("chara", as_spec(card, V2)), _card_text_chunk("ccv3", as_spec(card, V3))]
    return _png_bytes(chunks[:-1] + texts + chunks[-1:])


def _card_text_chunk(keyword: str, card: dict[str, Any]) -> PngChunk:
    encoded = base64.b64encode(card_json(card).encode("utf-8"))
    return PngChunk(b"tEXt", keyword.encode("latin-1") + b"\0" + encoded)


def placeholder_png() -> bytes:
    from PIL import Image  # only export without a picture needs Pillow

    buffer = io.BytesIO()
    Image.new("RGB", PLACEHOLDER_SIZE, PLACEHOLDER_COLOR).save(buffer, format="PNG")
    return buffer.getvalue()


# --- card ↔ persona -----------------------------------------------------------------------------
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
        raise CardError(f"{where}: `data.extensions.memagent`: {_describe(exc)}") from None


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
    card = copy.deepcopy(stored) if stored is not None else _upgrade_v1({"name": persona.name})
    imported = persona_from_card(card, persona.key)
    current = persona.model_dump(mode="json")
    before = imported.model_dump(mode="json")
    for field, write in CARD_WRITERS.items():
        if current[field] != before[field]:
            write(card["data"], current[field])
    return card


def as_spec(card: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """`card` as a V2 or V3 card; the same card when it already is one."""
    if card["spec"] == spec:
        return card
    data = copy.deepcopy(card["data"])
    entries = [e for e in (data.get("character_book") or {}).get("entries") or [] if isinstance(e, dict)]
    if spec == V2:
        for field in V3_ONLY_FIELDS:
            data.pop(field, None)
        for entry in entries:  # V2 has no regex keys; false is its behaviour, and V2 → V3 → V2 stays equal
            if entry.get("use_regex") is False:
                del entry["use_regex"]
    else:
        data.setdefault("group_only_greetings", [])
        for entry in entries:
            entry.setdefault("use_regex", False)
    rest = {k: v for k, v in card.items() if k not in ("spec", "spec_version", "data")}
    return {"spec": spec, "spec_version": SPEC_VERSIONS[spec], "data": data, **rest}


def card_json(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False, indent=2)


# --- files in the personas folder ----------------------------------------------------------------
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


__all__ = [
    "CardError",
    "ImportedCard",
    "LoadedCard",
    "PersonaFiles",
    "as_spec",
    "card_from_persona",
    "card_png",
    "export_card",
    "import_card",
    "load_lorebook",
    "lorebook_passages",
    "persona_from_card",
    "read_card",
    "read_png_chunks",
]

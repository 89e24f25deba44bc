"""The card format: V1, V2 `chara_card_v2` and V3 `chara_card_v3` JSON, alone or inside a PNG.

Only checked here, never rebuilt: the raw JSON is what is kept, so unknown fields and `extensions`
survive an import/export round trip.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import MemagentError
from . import png
from .png import PngChunk, PngError

MAX_CARD_BYTES = 20 * 1024 * 1024
ZIP_SIGNATURE = b"PK\x03\x04"
V2: Final = "chara_card_v2"
V3: Final = "chara_card_v3"
SPEC_VERSIONS = {V2: "2.0", V3: "3.0"}
CARD_CHUNKS = ("ccv3", "chara")  # in order of preference
# Fields V3 added to `data`; a V2 copy of a V3 card leaves them out (the ccv3 chunk keeps them).
V3_ONLY_FIELDS = ("nickname", "creator_notes_multilingual", "source", "group_only_greetings", "creation_date",
                  "modification_date", "assets")

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


def describe_validation_error(exc: ValidationError) -> str:
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
    if blob.startswith(png.SIGNATURE):
        chunks = read_png_chunks(blob, path)
        raw = _card_from_png(chunks, path)
        return LoadedCard(normalize_card(raw, str(path)), png.png_bytes(without_card_chunks(chunks)), path)
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
        raw = upgrade_v1(raw)
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
        raise CardError(f"{where}: {describe_validation_error(exc)}; fix the card in a card editor and export it again") from None
    return raw


def upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    data = {"name": raw["name"], "description": "", "personality": "", "scenario": "", "first_mes": "", "mes_example": "",
            "creator_notes": "", "system_prompt": "", "post_history_instructions": "", "alternate_greetings": [],
            "tags": [], "creator": "", "character_version": "", "extensions": {}, **raw}
    return {"spec": V2, "spec_version": SPEC_VERSIONS[V2], "data": data}



# --- cards inside PNGs ------------------------------------------------------------------------------
def read_png_chunks(blob: bytes, where: Path | str) -> list[PngChunk]:
    try:
        return png.read_chunks(blob)
    except PngError as exc:
        raise CardError(f"{where}: {exc}") from None


def _is_card_chunk(chunk: PngChunk) -> bool:
    return (chunk.keyword or "").lower() in CARD_CHUNKS


def without_card_chunks(chunks: list[PngChunk]) -> list[PngChunk]:
    return [chunk for chunk in chunks if not _is_card_chunk(chunk)]


def _card_from_png(chunks: list[PngChunk], where: Path) -> dict[str, Any]:
    texts: dict[str, str] = {}
    for chunk in filter(_is_card_chunk, chunks):
        try:
            text = png.chunk_text(chunk, MAX_CARD_BYTES)
        except PngError as exc:
            raise CardError(f"{where}: {exc}") from None
        texts.setdefault((chunk.keyword or "").lower(), text)
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
    chunks = without_card_chunks(read_png_chunks(image or png.placeholder_png(), "the persona's picture"))
    texts = [_card_text_chunk("chara", as_spec(card, V2)), _card_text_chunk("ccv3", as_spec(card, V3))]
    return png.png_bytes(chunks[:-1] + texts + chunks[-1:])


def _card_text_chunk(keyword: str, card: dict[str, Any]) -> PngChunk:
    return png.text_chunk(keyword, base64.b64encode(card_json(card).encode("utf-8")))


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


"""The PNG chunk codec character cards need: read every chunk, find text chunks, write chunks back.

Hand-written on purpose: a card's picture must come back byte for byte with only its card chunks
swapped, and image libraries (Pillow included) re-encode the image data and drop or reorder the
ancillary chunks they do not know. Reading text chunks by hand also lets us bound decompression
(a zTXt/iTXt bomb) and name the damaged chunk in the error.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNK_TYPES = (b"tEXt", b"zTXt", b"iTXt")
PLACEHOLDER_SIZE = (256, 384)
PLACEHOLDER_COLOR = (232, 224, 240)


class PngError(ValueError):
    """A PNG that cannot be read; the message says what is wrong (the caller names the file)."""


@dataclass(frozen=True)
class PngChunk:
    type: bytes
    data: bytes

    def to_bytes(self) -> bytes:
        crc = zlib.crc32(self.type + self.data)
        return struct.pack(">I", len(self.data)) + self.type + self.data + struct.pack(">I", crc)

    @property
    def keyword(self) -> str | None:
        """The keyword of a tEXt, zTXt or iTXt chunk; None for other chunks."""
        if self.type not in TEXT_CHUNK_TYPES:
            return None
        return self.data.partition(b"\0")[0].decode("latin-1")


def read_chunks(blob: bytes) -> list[PngChunk]:
    """Every chunk up to IEND, each checked against its CRC."""
    if not blob.startswith(SIGNATURE):
        raise PngError("not a PNG file")
    chunks: list[PngChunk] = []
    position = len(SIGNATURE)
    while True:
        header_end = position + 8
        if header_end > len(blob):
            raise _truncated(position)
        length, kind = struct.unpack(">I4s", blob[position:header_end])
        end = header_end + length + 4
        if end > len(blob):
            raise _truncated(position)
        chunk = PngChunk(kind, blob[header_end:header_end + length])
        (crc,) = struct.unpack(">I", blob[end - 4:end])
        if zlib.crc32(chunk.type + chunk.data) != crc:
            name = kind.decode("latin-1", "replace")
            raise PngError(f"the PNG is damaged (bad checksum in its {name!r} chunk); get the card again")
        chunks.append(chunk)
        if kind == b"IEND":
            return chunks
        position = end


def _truncated(position: int) -> PngError:
    return PngError(f"the PNG is truncated (it ends inside the chunk at byte {position}); download or export the card again")


def png_bytes(chunks: list[PngChunk]) -> bytes:
    return SIGNATURE + b"".join(chunk.to_bytes() for chunk in chunks)


def chunk_text(chunk: PngChunk, max_bytes: int) -> str:
    """The text of a tEXt, zTXt or iTXt chunk, inflating at most `max_bytes`."""
    _keyword, _, rest = chunk.data.partition(b"\0")
    try:
        if chunk.type == b"tEXt":
            return rest.decode("latin-1")
        if chunk.type == b"zTXt":
            return _inflate(rest[1:], max_bytes).decode("latin-1")
        compressed, rest = rest[:1] == b"\1", rest[2:]
        _language, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return (_inflate(text, max_bytes) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        raise PngError(f"the PNG's {chunk.keyword!r} text chunk cannot be decoded; get the card again") from None


def _inflate(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, max_bytes)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


def text_chunk(keyword: str, text: bytes) -> PngChunk:
    """An uncompressed tEXt chunk (`text` must be Latin-1, e.g. base64)."""
    return PngChunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text)


def placeholder_png() -> bytes:
    from PIL import Image  # only export without a picture needs Pillow

    buffer = io.BytesIO()
    Image.new("RGB", PLACEHOLDER_SIZE, PLACEHOLDER_COLOR).save(buffer, format="PNG")
    return buffer.getvalue()

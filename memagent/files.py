"""Reading a user's text file with one clear error line, and writing a file so that a crash (or a
full disk) never leaves it half-written: a temporary file beside it, flushed to disk, then renamed
over it (atomic on POSIX and Windows), and the folder synced so the rename survives a power cut."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Literal, overload

from .errors import MemagentError


def read_text(path: Path, error: Callable[[str], MemagentError] = MemagentError, what: str = "the file") -> str:
    """The file's text (UTF-8). An undecodable or unreadable file raises `error` with one line saying
    what to do."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; save {what} as UTF-8") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc}); check the file and its permissions") from None


@overload
@contextlib.contextmanager
def atomic_writer(path: Path, mode: Literal["w"] = "w") -> Iterator[IO[str]]: ...
@overload
@contextlib.contextmanager
def atomic_writer(path: Path, mode: Literal["wb"]) -> Iterator[IO[bytes]]: ...
@contextlib.contextmanager
def atomic_writer(path: Path, mode: Literal["w", "wb"] = "w") -> Iterator[IO[str]] | Iterator[IO[bytes]]:
    """Write `path` through a temporary file that replaces it only when the block ends without an
    exception; otherwise `path` is untouched and the temporary file removed."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open(mode, encoding="utf-8" if mode == "w" else None) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def atomic_write(path: Path, content: bytes) -> None:
    with atomic_writer(path, "wb") as out:
        out.write(content)


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable enough
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

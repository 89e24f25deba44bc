"""Reading import files: JSONL conversations and passages, validated line by line before anything
is stored, so a bad line means nothing is imported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import MemagentError
from .archival import NewPassage
from .dates import local_timezone
from .models import utc_now
from .recall import KIND_FOR_ROLE, NewMessage

EXPORT_FORMAT = "memagent-export"


class ImportFileError(MemagentError):
    """A file that cannot be imported; the message names file:line and what is wrong."""


def parse_time(value: Any, where: str) -> datetime:
    if value is None:
        return utc_now()
    if not isinstance(value, str):
        raise ImportFileError(f"{where}: `time` must be an ISO 8601 string like 2024-05-01T09:30:00+09:00")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ImportFileError(f"{where}: `time` {value!r} is not ISO 8601 (e.g. 2024-05-01T09:30:00+09:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=local_timezone())


def _external_id(record: dict[str, Any], where: str) -> Any:
    value = record.get("id")
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ImportFileError(f"{where}: `id` must be a string or a number")
    return value


def _text_field(record: dict[str, Any], key: str, where: str, allow_empty: bool) -> str:
    if key not in record:
        raise ImportFileError(f"{where}: missing `{key}`")
    value = record[key]
    if not isinstance(value, str):
        raise ImportFileError(f"{where}: `{key}` must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ImportFileError(f"{where}: `{key}` is empty")
    return value


def _records(path: Path, progress: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    from tqdm import tqdm

    try:
        handle = path.open(encoding="utf-8-sig")  # a BOM (Windows editors) is not part of line 1
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read ({exc.strerror})") from None
    with handle, tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=not progress,
                      leave=False) as bar:
        try:
            for number, line in enumerate(handle, start=1):
                bar.update(len(line.encode("utf-8")))
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ImportFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(record, dict):
                    raise ImportFileError(f"{where}: each line must be a JSON object")
                yield where, record
        except UnicodeDecodeError:
            raise ImportFileError(f"{path}: not UTF-8 text; save the file as UTF-8") from None


def read_messages(path: Path, first_turn_id: int, progress: bool = False) -> list[NewMessage]:
    """JSONL lines `{"role", "content", "time"?, "id"?}`; imported messages are history, not context."""
    messages: list[NewMessage] = []
    for where, record in _records(path, progress):
        role = record.get("role")
        if role not in KIND_FOR_ROLE:
            hint = "; passages ({\"text\": …}) are imported with --archival" if "text" in record and "role" not in record else ""
            raise ImportFileError(f"{where}: `role` must be one of {', '.join(KIND_FOR_ROLE)}, not {role!r}{hint}")
        messages.append(NewMessage(
            role=role, content=_text_field(record, "content", where, allow_empty=True),
            kind=KIND_FOR_ROLE[role], turn_id=first_turn_id + len(messages),
            time=parse_time(record.get("time"), where), in_context=False,
            external_id=_external_id(record, where),
        ))
    return messages


def read_passages(path: Path, progress: bool = False) -> list[NewPassage]:
    """JSONL lines `{"text", "time"?, "id"?, "source"?}`."""
    passages: list[NewPassage] = []
    for where, record in _records(path, progress):
        source = record.get("source", "import")
        if not isinstance(source, str):
            raise ImportFileError(f"{where}: `source` must be a string")
        passages.append(NewPassage(
            text=_text_field(record, "text", where, allow_empty=False), time=parse_time(record.get("time"), where),
            source=source, external_id=_external_id(record, where),
        ))
    return passages


def read_export(path: Path) -> dict[str, Any] | None:
    """The parsed export file, or None when `path` is not one (e.g. it is JSONL)."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            first_line = handle.readline()
            try:
                first = json.loads(first_line)
            except json.JSONDecodeError:
                first = None
            else:  # a complete object on line 1: JSONL, or an export written on one line
                return first if isinstance(first, dict) and first.get("format") == EXPORT_FORMAT else None
            if not first_line.lstrip().startswith("{"):
                return None
            handle.seek(0)
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read ({exc.strerror})") from None
    return data if isinstance(data, dict) and data.get("format") == EXPORT_FORMAT else None

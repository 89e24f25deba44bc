"""Date-range parsing for `conversation_search_date`: what the model or user types → UTC bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from .errors import QueryError

DateLike = datetime | date | str


def local_timezone() -> tzinfo:
    return datetime.now().astimezone().tzinfo or UTC


def _parse(value: DateLike, field: str) -> datetime | date:
    if isinstance(value, (datetime, date)):
        return value
    text = value.strip().replace("/", "-")
    try:
        if len(text) <= 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError("bad_date", f"{field} date {value!r} is not a date; use YYYY-MM-DD") from None


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def utc_range(start: DateLike, end: DateLike, tz: tzinfo | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC. A bare date means the whole day in `tz` (default: this machine's zone),
    so start=end=2024-05-01 covers that day; a datetime end is inclusive."""
    tz = tz or local_timezone()
    first, last = _parse(start, "start"), _parse(end, "end")
    if isinstance(first, datetime):
        lower = _aware(first, tz)
    else:
        lower = datetime.combine(first, time.min, tz)
    if isinstance(last, datetime):
        upper = _aware(last, tz) + timedelta(microseconds=1)
    else:
        upper = datetime.combine(last + timedelta(days=1), time.min, tz)
    if upper <= lower:
        raise QueryError("bad_range", f"end {end} is before start {start}; give the earlier date first")
    return lower.astimezone(UTC), upper.astimezone(UTC)

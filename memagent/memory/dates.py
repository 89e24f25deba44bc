"""Date-range parsing for `conversation_search_date`: what the model or user types → UTC bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


# --- days named in a question ------------------------------------------------------------------
# Hand-written on purpose: dateparser.search_dates costs tens of ms per call (this runs on every
# search) and reads plain numbers ("3 cats", "at 5") as dates. These are the forms people type.
_MONTHS = {name: n for n, names in enumerate(
    [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
     ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
     ("december", "dec")], start=1) for name in names}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY_PATTERNS = [
    re.compile(r"(?<!\d)(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"),
    re.compile(r"(?:(?P<y>\d{4})\s*年\s*)?(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"),
    re.compile(rf"\b(?P<mn>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}}))?", re.IGNORECASE),
    re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mn>{_MONTH})\b\.?(?:,?\s+(?P<y>\d{{4}}))?", re.IGNORECASE),
]
_RELATIVE = {"today": 0, "tonight": 0, "yesterday": 1, "今日": 0, "今夜": 0, "昨日": 1, "きのう": 1, "昨夜": 1,
             "一昨日": 2, "おととい": 2}
_RELATIVE_PATTERN = re.compile(r"\b(?:today|tonight|yesterday)\b|今日|今夜|昨日|きのう|昨夜|一昨日|おととい", re.IGNORECASE)


@dataclass(frozen=True)
class NamedDay:
    """A day named in text; `year` None when it was not said ("March 9", 「3月9日」)."""

    year: int | None
    month: int
    day: int

    def in_year(self, year: int) -> date | None:
        try:
            return date(self.year or year, self.month, self.day)
        except ValueError:  # 2月30日
            return None


def days_named_in(text: str, today: date | None = None) -> list[NamedDay]:
    """The calendar days `text` names, in order: dates in the usual Japanese and English forms, and
    today / yesterday (「昨日」) counted from `today` (default: today here)."""
    found: list[tuple[int, NamedDay]] = []
    for pattern in _DAY_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groupdict()
            month = _MONTHS[groups["mn"].lower()] if groups.get("mn") else int(groups["m"])
            year = int(groups["y"]) if groups.get("y") else None
            day = NamedDay(year, month, int(groups["d"]))
            if 1 <= month <= 12 and day.in_year(year or 2000) is not None:
                found.append((match.start(), day))
    base = today or datetime.now(local_timezone()).date()
    for match in _RELATIVE_PATTERN.finditer(text):
        moment = base - timedelta(days=_RELATIVE[match.group(0).lower()])
        found.append((match.start(), NamedDay(moment.year, moment.month, moment.day)))
    unique: list[NamedDay] = []
    for _, day in sorted(found, key=lambda item: item[0]):
        if day not in unique:
            unique.append(day)
    return unique

"""Business-hours arithmetic (pure): a team's week of blocks in its time zone, holidays, pauses, and iCal holidays."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_core.sla.errors import InvalidCalendar, InvalidHolidayFile

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
# How far add_business_minutes looks before deciding a calendar has (almost) no business time at all.
SEARCH_LIMIT_DAYS = 3 * 366

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Block:
    """Working time on one weekday (0 = Monday) in local wall-clock time; an end at or before the start means the
    block runs past midnight into the next day (a night shift 22:00-06:00)."""

    weekday: int
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """A team's business hours. A minute is business time when its local wall-clock time lies in a block of that
    weekday (or in the after-midnight part of the previous day's night block) and its local date is no holiday."""

    time_zone: str
    blocks: tuple[Block, ...]
    holidays: frozenset[date] = field(default_factory=frozenset)

    @property
    def zone(self) -> tzinfo:
        return _zone(self.time_zone)


ALWAYS_OPEN = BusinessCalendar("UTC", tuple(Block(d, time(0), time(0)) for d in range(7)))


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCalendar(f"{name!r} is not a known time zone.", field="time_zone") from None


def make_calendar(
    *, time_zone: str, blocks: Iterable[tuple[int, str, str]], holidays: Iterable[date] = ()
) -> BusinessCalendar:
    """Build a calendar from (weekday, "HH:MM", "HH:MM") rows, checking each value."""
    _zone(time_zone)
    checked: list[Block] = []
    for weekday, start, end in blocks:
        if not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise InvalidCalendar(f"Weekday {weekday!r} must be 0 (Monday) to 6 (Sunday).", field="blocks")
        checked.append(Block(weekday, _clock_time(start), _clock_time(end)))
    return BusinessCalendar(time_zone, tuple(checked), frozenset(holidays))


def _clock_time(value: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
    if match is None or int(match[1]) > 24 or int(match[2]) > 59 or (int(match[1]) == 24 and int(match[2]) > 0):
        raise InvalidCalendar(f"{value!r} is not a time of day (HH:MM).", field="blocks")
    hours, minutes = int(match[1]), int(match[2])
    return time(0) if hours == 24 else time(hours, minutes)


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _local_midnight(zone: tzinfo, day: date) -> datetime:
    """The first instant whose local date is `day` (a midnight skipped by a DST jump starts the day later)."""
    naive = datetime.combine(day, time(0))
    guess = naive.replace(tzinfo=zone).astimezone(UTC)
    if guess.astimezone(zone).date() == day:
        # on an ambiguous midnight fold=0 is the earlier instant; look one offset earlier to be sure
        earlier = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
        return min(guess, earlier)
    return _first_instant_after_gap(zone, guess - timedelta(hours=3), guess + timedelta(hours=3), day)


def _first_instant_after_gap(zone: tzinfo, low: datetime, high: datetime, day: date) -> datetime:
    # binary search to the second for the first instant whose local date is `day`
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).date() >= day:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _transition(zone: tzinfo, low: datetime, high: datetime) -> datetime:
    """The instant in (low, high] where the UTC offset changes (exactly one change is assumed in the range)."""
    before = _offset(zone, low)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _offset(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _day_pieces(calendar: BusinessCalendar, day: date) -> list[tuple[timedelta, timedelta]]:
    """The wall-clock pieces of `day` that are business time, as offsets from local midnight."""
    if day in calendar.holidays:
        return []
    weekday = day.weekday()
    previous = (weekday - 1) % 7
    pieces: list[tuple[timedelta, timedelta]] = []
    for block in calendar.blocks:
        start = timedelta(hours=block.start.hour, minutes=block.start.minute)
        end = timedelta(hours=block.end.hour, minutes=block.end.minute)
        if block.weekday == weekday:
            pieces.append((start, DAY if block.crosses_midnight else end))
        if block.crosses_midnight and block.weekday == previous and end > timedelta(0):
            pieces.append((timedelta(0), end))
    return pieces


@lru_cache(maxsize=65536)
def day_intervals(calendar: BusinessCalendar, day: date) -> tuple[Interval, ...]:
    """The business time of one local date as sorted, disjoint UTC intervals (exact across DST changes)."""
    pieces = _day_pieces(calendar, day)
    if not pieces:
        return ()
    zone = calendar.zone
    day_start = _local_midnight(zone, day)
    day_end = _local_midnight(zone, day + DAY)
    # the day in segments of constant UTC offset (a DST change splits it in two)
    segments: list[tuple[datetime, datetime, timedelta]] = []
    if _offset(zone, day_start) == _offset(zone, day_end - timedelta(seconds=1)):
        segments.append((day_start, day_end, _offset(zone, day_start)))
    else:
        change = _transition(zone, day_start, day_end - timedelta(seconds=1))
        segments.append((day_start, change, _offset(zone, day_start)))
        segments.append((change, day_end, _offset(zone, change)))
    wall_midnight = datetime.combine(day, time(0), tzinfo=UTC)
    found: list[Interval] = []
    for seg_start, seg_end, offset in segments:
        for start, end in pieces:
            # within a segment, wall time = UTC + offset
            low = max(seg_start, wall_midnight + start - offset)
            high = min(seg_end, wall_midnight + end - offset)
            if low < high:
                found.append((low, high))
    return tuple(_merge(found))


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _subtract(intervals: Iterable[Interval], pauses: Sequence[Interval]) -> Iterator[Interval]:
    """Each interval minus the (sorted, merged) pauses."""
    for start, end in intervals:
        cursor = start
        for pause_start, pause_end in pauses:
            if pause_end <= cursor or pause_start >= end:
                continue
            if pause_start > cursor:
                yield (cursor, pause_start)
            cursor = max(cursor, pause_end)
            if cursor >= end:
                break
        if cursor < end:
            yield (cursor, end)


def _aware(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return instant.astimezone(UTC)


def _normalised_pauses(pauses: Iterable[tuple[datetime, datetime | None]], far: datetime) -> list[Interval]:
    return _merge((_aware(a, "pause start"), _aware(b, "pause end") if b is not None else far) for a, b in pauses)


def business_intervals(
    calendar: BusinessCalendar,
    start: datetime,
    end: datetime,
    pauses: Iterable[tuple[datetime, datetime | None]] = (),
) -> Iterator[Interval]:
    """The business time in [start, end) outside the pauses, as UTC intervals in order."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        return
    stops = _normalised_pauses(pauses, end)
    zone = calendar.zone
    day = start.astimezone(zone).date() - DAY  # a night block of the day before may reach into `start`
    last = end.astimezone(zone).date()
    while day <= last:
        clipped = [(max(a, start), min(b, end)) for a, b in day_intervals(calendar, day) if b > start and a < end]
        yield from _subtract(clipped, stops)
        day += DAY


def business_minutes_between(
    calendar: BusinessCalendar,
    start: datetime,
    end: datetime,
    pauses: Iterable[tuple[datetime, datetime | None]] = (),
) -> float:
    """Business minutes from `start` to `end` (0 when end is not after start), not counting the pauses."""
    total = sum(((b - a) for a, b in business_intervals(calendar, start, end, pauses)), timedelta(0))
    return total / MINUTE


def add_business_minutes(
    calendar: BusinessCalendar,
    start: datetime,
    minutes: float,
    pauses: Iterable[tuple[datetime, datetime | None]] = (),
) -> datetime:
    """The instant at which `minutes` business minutes have passed since `start` (pauses not counting)."""
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    start = _aware(start, "start")
    remaining = timedelta(minutes=minutes)
    if remaining == timedelta(0):
        return start
    stops = _normalised_pauses(pauses, start + timedelta(days=SEARCH_LIMIT_DAYS + 2))
    zone = calendar.zone
    day = start.astimezone(zone).date() - DAY
    for _ in range(SEARCH_LIMIT_DAYS):
        clipped = [(max(a, start), b) for a, b in day_intervals(calendar, day) if b > start]
        for low, high in _subtract(clipped, stops):
            if high - low >= remaining:
                return low + remaining
            remaining -= high - low
        day += DAY
    raise InvalidCalendar("This calendar has too little business time to reach the target.", field="blocks")


def parse_ical_holidays(content: str | bytes) -> list[date]:
    """All-day dates of every VEVENT in an iCal file (DTEND exclusive, as RFC 5545 says); a bad file raises
    InvalidHolidayFile naming the line."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidHolidayFile("The holiday file is not UTF-8 text.", field="file") from None
    lines: list[str] = []
    for raw in content.splitlines():
        if raw[:1] in (" ", "\t") and lines:  # folded line (RFC 5545 3.1)
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw.rstrip("\r"))
    if not lines or lines[0].strip().upper() != "BEGIN:VCALENDAR":
        raise InvalidHolidayFile("The holiday file is not an iCal calendar (no BEGIN:VCALENDAR).", field="file")
    days: list[date] = []
    event: dict[str, tuple[int, str, str]] | None = None
    for number, line in enumerate(lines, start=1):
        name_part, sep, value = line.partition(":")
        if not sep:
            raise InvalidHolidayFile(f"Line {number} of the holiday file has no ':'.", field="file")
        name, *params = name_part.upper().split(";")
        if name == "BEGIN" and value.strip().upper() == "VEVENT":
            event = {}
        elif name == "END" and value.strip().upper() == "VEVENT":
            if event is None:
                raise InvalidHolidayFile(f"Line {number}: END:VEVENT without BEGIN:VEVENT.", field="file")
            days.extend(_event_days(event, number))
            event = None
        elif event is not None and name in ("DTSTART", "DTEND"):
            event[name] = (number, ";".join(params), value.strip())
    if event is not None:
        raise InvalidHolidayFile("The holiday file ends inside a VEVENT (no END:VEVENT).", field="file")
    return sorted(set(days))


def _ical_date(number: int, params: str, value: str) -> date:
    if "VALUE=DATE-TIME" in params or not re.fullmatch(r"\d{8}", value):
        raise InvalidHolidayFile(
            f"Line {number}: {value!r} is not an all-day date (YYYYMMDD); only all-day holidays are imported.",
            field="file",
        )
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise InvalidHolidayFile(f"Line {number}: {value!r} is not a real date.", field="file") from None


def _event_days(event: dict[str, tuple[int, str, str]], end_line: int) -> list[date]:
    if "DTSTART" not in event:
        raise InvalidHolidayFile(f"The event ending on line {end_line} has no DTSTART.", field="file")
    first = _ical_date(*event["DTSTART"])
    stop = _ical_date(*event["DTEND"]) if "DTEND" in event else first + DAY
    if stop <= first:
        raise InvalidHolidayFile(f"The event ending on line {end_line} ends before it starts.", field="file")
    if (stop - first).days > 366:
        raise InvalidHolidayFile(f"The event ending on line {end_line} is longer than a year.", field="file")
    return [first + timedelta(days=i) for i in range((stop - first).days)]

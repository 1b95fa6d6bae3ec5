"""Business-hours arithmetic against a brute-force minute-by-minute reference (hypothesis), and iCal holidays."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_core.sla.calendar import (
    Block,
    BusinessCalendar,
    add_business_minutes,
    business_minutes_between,
    make_calendar,
    parse_ical_holidays,
)
from crm_core.sla.errors import InvalidCalendar, InvalidHolidayFile

MINUTE = timedelta(minutes=1)
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC")
# DST changes both ways in both hemispheres (2026): Berlin 29 Mar / 25 Oct, New York 8 Mar / 1 Nov,
# Sydney 5 Apr / 4 Oct; a start near one of them puts the change inside most spans.
DST_DAYS = (
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 3, 8, 6, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, tzinfo=UTC),
)
EXAMPLES = {"between": 0, "add": 0}


@pytest.fixture(scope="module", autouse=True)
def _count_examples() -> Iterator[None]:
    yield
    print(f"hypothesis examples run: between={EXAMPLES['between']} add={EXAMPLES['add']}")


def reference_is_business(calendar: BusinessCalendar, minute: datetime) -> bool:
    """The definition, checked one minute at a time on the local wall clock."""
    local = minute.astimezone(ZoneInfo(calendar.time_zone))
    if local.date() in calendar.holidays:
        return False
    clock = local.time().replace(tzinfo=None)
    weekday = local.weekday()
    for block in calendar.blocks:
        crosses = block.end <= block.start
        if block.weekday == weekday and clock >= block.start and (crosses or clock < block.end):
            return True
        if crosses and block.weekday == (weekday - 1) % 7 and clock < block.end:
            return True
    return False


def reference_minutes(
    calendar: BusinessCalendar, start: datetime, end: datetime, pauses: Sequence[tuple[datetime, datetime]]
) -> int:
    count = 0
    minute = start
    while minute < end:
        if reference_is_business(calendar, minute) and not any(a <= minute < b for a, b in pauses):
            count += 1
        minute += MINUTE
    return count


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    zone = draw(st.sampled_from(ZONES))
    blocks = []
    for _ in range(draw(st.integers(2, 7))):
        start = draw(st.integers(0, 95)) * 15
        length = draw(st.integers(8, 60)) * 15  # 2 to 15 hours; past 24:00 it crosses midnight
        end = (start + length) % 1440
        blocks.append(Block(draw(st.integers(0, 6)), time(start // 60, start % 60), time(end // 60, end % 60)))
    holidays = draw(st.frozensets(st.dates(date(2026, 2, 20), date(2026, 12, 10)), max_size=8))
    return BusinessCalendar(zone, tuple(blocks), holidays)


@st.composite
def starts(draw: st.DrawFn) -> datetime:
    return draw(st.sampled_from(DST_DAYS)) + draw(st.integers(-3 * 1440, 2 * 1440)) * MINUTE


spans = st.one_of(st.integers(0, 4 * 1440), st.integers(4 * 1440, 8 * 7 * 1440))


@settings(max_examples=45, deadline=None)
@given(calendar=calendars(), start=starts(), span=spans, data=st.data())
def test_business_minutes_between_matches_the_minute_by_minute_reference(
    calendar: BusinessCalendar, start: datetime, span: int, data: st.DataObject
) -> None:
    EXAMPLES["between"] += 1
    end = start + span * MINUTE
    pauses: list[tuple[datetime, datetime]] = []
    for _ in range(data.draw(st.integers(0, 3))):
        pause_start = start + data.draw(st.integers(0, max(span, 1))) * MINUTE
        pauses.append((pause_start, pause_start + data.draw(st.integers(1, 3 * 1440)) * MINUTE))
    assert business_minutes_between(calendar, start, end, pauses) == reference_minutes(calendar, start, end, pauses)


@settings(max_examples=40, deadline=None)
@given(calendar=calendars(), start=starts(), minutes=st.integers(1, 1500), paused=st.integers(0, 2 * 1440))
def test_add_business_minutes_lands_at_the_end_of_the_nth_business_minute(
    calendar: BusinessCalendar, start: datetime, minutes: int, paused: int
) -> None:
    EXAMPLES["add"] += 1
    pauses = [(start + 60 * MINUTE, start + (60 + paused) * MINUTE)] if paused else []
    due = add_business_minutes(calendar, start, minutes, pauses)
    assert reference_minutes(calendar, start, due, pauses) == minutes
    # the last minute before `due` counted: nothing later would do
    last = due - MINUTE
    assert reference_is_business(calendar, last) and not any(a <= last < b for a, b in pauses)
    assert business_minutes_between(calendar, start, due, pauses) == minutes


BERLIN_OFFICE = make_calendar(
    time_zone="Europe/Berlin",
    blocks=[(d, "09:00", "12:00") for d in range(5)] + [(d, "13:00", "17:00") for d in range(5)],
    holidays=[date(2026, 12, 25)],
)


def test_a_lunch_break_and_a_weekend_are_skipped() -> None:
    friday_1630 = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)  # 16:30 in Berlin
    due = add_business_minutes(BERLIN_OFFICE, friday_1630, 3 * 60 + 30)
    # 30 minutes on Friday, then Monday 09:00-12:00 = 3 h
    assert due == datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # 12:00 Berlin, the end of the morning block
    assert business_minutes_between(BERLIN_OFFICE, friday_1630, due) == 210


def test_a_holiday_has_no_business_time() -> None:
    christmas = datetime(2026, 12, 25, 8, tzinfo=UTC)
    assert business_minutes_between(BERLIN_OFFICE, christmas, christmas + timedelta(hours=10)) == 0


def test_a_night_shift_across_the_spring_change_is_one_hour_shorter() -> None:
    night = make_calendar(time_zone="Europe/Berlin", blocks=[(5, "22:00", "06:00")])  # Saturday night
    saturday = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert business_minutes_between(night, saturday, saturday + timedelta(days=1)) == 7 * 60
    autumn = datetime(2026, 10, 24, 12, tzinfo=UTC)
    assert business_minutes_between(night, autumn, autumn + timedelta(days=1)) == 9 * 60


def test_bad_calendar_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidCalendar, match="time zone"):
        make_calendar(time_zone="Mars/Olympus", blocks=[])
    with pytest.raises(InvalidCalendar, match="HH:MM"):
        make_calendar(time_zone="UTC", blocks=[(0, "9am", "17:00")])
    with pytest.raises(InvalidCalendar, match="Weekday"):
        make_calendar(time_zone="UTC", blocks=[(7, "09:00", "17:00")])
    with pytest.raises(InvalidCalendar, match="too little business time"):
        add_business_minutes(make_calendar(time_zone="UTC", blocks=[]), datetime(2026, 1, 1, tzinfo=UTC), 5)


ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
    "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:New Year\r\nDTSTART;VALUE=DATE:2027\r\n 0101\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def test_ical_holidays_are_imported_with_exclusive_end_and_folded_lines() -> None:
    assert parse_ical_holidays(ICS.encode()) == [date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello", "no BEGIN:VCALENDAR"),
        ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T090000Z\nEND:VEVENT\nEND:VCALENDAR", "all-day"),
        ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR", "no DTSTART"),
        ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260231\nEND:VEVENT\nEND:VCALENDAR", "not a real date"),
        ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\n", "ends inside a VEVENT"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_bad_holiday_file_gets_a_clear_error(content: str | bytes, message: str) -> None:
    with pytest.raises(InvalidHolidayFile, match=message):
        parse_ical_holidays(content)

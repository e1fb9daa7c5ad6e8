"""Periods of the privacy unit (user, period): UTC days, ISO weeks or calendar months. Pure.

A period is named by its first day (``period_start``). It *closes* ``close_after_hours`` after its
end: sessions of the period that arrive later are not in its closed release.
"""

from __future__ import annotations

import datetime as dt

from lakehouse.config import Period

UTC = dt.UTC


def utc(moment: dt.datetime) -> dt.datetime:
    """`moment` as an aware UTC datetime; a naive one is taken as UTC, as everywhere in the
    lakehouse (``datetime.astimezone`` would take it as the process's local time)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period_start(moment: dt.datetime | dt.date, period: Period) -> dt.date:
    """The first day of the period holding `moment` (a naive datetime is taken as UTC)."""
    if isinstance(moment, dt.datetime):
        moment = utc(moment).date()
    if period == Period.DAY:
        return moment
    if period == Period.WEEK:
        return moment - dt.timedelta(days=moment.weekday())
    if period == Period.MONTH:
        return moment.replace(day=1)
    raise ValueError(f"period {period!r} has no start")


def next_start(start: dt.date, period: Period) -> dt.date:
    if period == Period.DAY:
        return start + dt.timedelta(days=1)
    if period == Period.WEEK:
        return start + dt.timedelta(days=7)
    if period == Period.MONTH:
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    raise ValueError(f"period {period!r} has no next")


def bounds(start: dt.date, period: Period) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the period as UTC datetimes."""
    end = next_start(start, period)
    return (dt.datetime(start.year, start.month, start.day, tzinfo=UTC),
            dt.datetime(end.year, end.month, end.day, tzinfo=UTC))


def closes_at(start: dt.date, period: Period, close_after_hours: int) -> dt.datetime:
    return bounds(start, period)[1] + dt.timedelta(hours=close_after_hours)


def starts_between(first: dt.date, last: dt.date, period: Period) -> list[dt.date]:
    """Every period start from `first` to `last`, both included (empty if last < first)."""
    out, start = [], period_start(first, period)
    while start <= last:
        out.append(start)
        start = next_start(start, period)
    return out


def last_closed(now: dt.datetime, period: Period, close_after_hours: int) -> dt.date:
    """The latest period that has closed at `now`."""
    start = period_start(now - dt.timedelta(hours=close_after_hours), period)
    # the period holding (now - close_after) has not ended yet: the one before it is the last closed
    return period_start(start - dt.timedelta(days=1), period)


def open_periods(now: dt.datetime, period: Period, close_after_hours: int) -> list[dt.date]:
    """Periods that have begun but not closed at `now`, oldest first (one, or two just after a
    period ends: the ended one is still open for close_after_hours)."""
    return starts_between(next_start(last_closed(now, period, close_after_hours), period),
                          period_start(now, period), period)


def describe(period: Period) -> str:
    return {Period.DAY: "UTC day", Period.WEEK: "ISO week (UTC, Monday to Sunday)", Period.MONTH: "UTC month",
            Period.NONE: "lifetime of the lakehouse"}[period]

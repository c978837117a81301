"""Time, in one place: the store keeps naive UTC, people read the province's local time.

Every `*_utc` value in the store and in the frames passed between modules is a naive UTC
timestamp; every value shown to a person, and every calendar question (which local day,
which opening hour, which festival day) is in the zone of `Settings.timezone`. The
functions below are the only conversions between the two. `tz` is `settings.tz` (a
`ZoneInfo`) or the zone's name (`settings.timezone`).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar, overload
from zoneinfo import ZoneInfo

import pandas as pd

from visitorflow.settings import get_settings

Zone = ZoneInfo | str
_Scalar = TypeVar("_Scalar", datetime, pd.Timestamp)


def zone(tz: Zone) -> ZoneInfo:
    """The `ZoneInfo` of a zone given by name or already as one."""
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def utc_now() -> datetime:
    """Now as naive UTC, the store's convention: the simulated clock's time when the
    settings set one (`clock`), else the wall clock's."""
    simulated = _simulated_clock()
    if simulated is None:
        return datetime.now(UTC).replace(tzinfo=None)
    start_utc, anchor_unix, speed = simulated
    return start_utc + timedelta(seconds=(time.time() - anchor_unix) * speed)


def clock_speed() -> float:
    """Simulated seconds per wall second (1 on the wall clock)."""
    simulated = _simulated_clock()
    return 1.0 if simulated is None else simulated[2]


def wall_seconds_until(moment_utc: datetime) -> float:
    """Wall-clock seconds until `moment_utc` (naive UTC) on the clock in force; negative
    once it has passed. What a loop sleeps to wake at a simulated time."""
    return (moment_utc - utc_now()).total_seconds() / clock_speed()


def simulated_clock_env(start_utc: datetime, speed: float,
                        anchor_unix: float | None = None) -> dict[str, str]:
    """The environment that puts child processes on one simulated clock: `start_utc` at
    wall moment `anchor_unix` (default: now), running `speed` times the wall clock."""
    anchor = time.time() if anchor_unix is None else anchor_unix
    return {"VISITORFLOW_CLOCK__START_UTC": start_utc.isoformat(),
            "VISITORFLOW_CLOCK__ANCHOR_UNIX": repr(anchor),
            "VISITORFLOW_CLOCK__SPEED": repr(float(speed))}


def _simulated_clock() -> tuple[datetime, float, float] | None:
    clock = get_settings().clock
    if clock.start_utc is None or clock.anchor_unix is None:
        return None
    start = utc_naive(clock.start_utc) if clock.start_utc.tzinfo else clock.start_utc
    return start, clock.anchor_unix, clock.speed


def _shift(values, source: ZoneInfo, target: ZoneInfo):  # Series, Timestamp or datetime
    """Naive times read in `source` as naive times in `target`: a Series element-wise, a
    Timestamp or datetime as its own type."""
    if isinstance(values, pd.Series):
        moved = pd.to_datetime(values).dt.tz_localize(source.key).dt.tz_convert(target.key)
        return moved.dt.tz_localize(None)
    if isinstance(values, pd.Timestamp):
        return values.tz_localize(source.key).tz_convert(target.key).tz_localize(None)
    return values.replace(tzinfo=source).astimezone(target).replace(tzinfo=None)


_UTC = ZoneInfo("UTC")


@overload
def to_local(utc: pd.Series, tz: Zone) -> pd.Series: ...
@overload
def to_local(utc: _Scalar, tz: Zone) -> _Scalar: ...
def to_local(utc, tz):
    """Naive UTC to naive local time: a Series element-wise, a scalar as its own type."""
    return _shift(utc, _UTC, zone(tz))


@overload
def to_utc(local: pd.Series, tz: Zone) -> pd.Series: ...
@overload
def to_utc(local: _Scalar, tz: Zone) -> _Scalar: ...
def to_utc(local, tz):
    """Naive local time to naive UTC: a Series element-wise, a scalar as its own type."""
    return _shift(local, zone(tz), _UTC)


def to_local_aware(utc: datetime, tz: Zone) -> datetime:
    """Naive UTC to an aware local datetime, for texts that carry their offset (ISO 8601
    with +07:00, as the public feed gives it)."""
    return utc.replace(tzinfo=UTC).astimezone(zone(tz))


def utc_naive(moment: _Scalar) -> _Scalar:
    """An aware moment (a payload's time with its offset, a caller's aware now) as naive
    UTC, the store's convention."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def local_date(utc: datetime, tz: Zone) -> date:
    """The local calendar day a naive-UTC moment falls on."""
    return to_local(utc, tz).date()


def local_day_start_utc(now_utc: datetime, tz: Zone) -> datetime:
    """Local midnight of the day containing `now_utc`, as naive UTC."""
    midnight = datetime.combine(local_date(now_utc, tz), datetime.min.time())
    return to_utc(midnight, tz)


def local_day_range_utc(first: date, last: date, tz: Zone) -> tuple[datetime, datetime]:
    """Local days first..last (inclusive) as a half-open naive-UTC range [start, end)."""
    start = datetime.combine(first, datetime.min.time())
    end = datetime.combine(last + timedelta(days=1), datetime.min.time())
    return to_utc(start, tz), to_utc(end, tz)

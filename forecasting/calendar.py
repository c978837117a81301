"""The calendar of each site: Vietnam's national holidays plus the Lạng Sơn festivals that
concern the site (data/festivals.yaml: `sites: []` means province-wide), with windows, and
the lunar-calendar seasons of data/lunar_seasons.yaml that concern the site's kind (the
spring pilgrimage season, the days before Tết, the 1st and 15th at temples).

`site_calendar` returns a `SiteCalendar`: the holidays in Prophet's format (holiday, ds,
lower_window, upper_window) and, built in the same pass that names them, the days the models
treat apart (festival days, event peak days, lunar-season days, days off, holiday windows).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import holidays as holiday_calendars
import pandas as pd
import vnlunar
from pydantic import BaseModel, ConfigDict, Field

from visitorflow.festivals import (
    VIETNAM_UTC_OFFSET_H,
    festival_days,
    load_festivals,
    load_rules,
    national_holidays,
)

SEASONS_PATH = Path(__file__).resolve().parent.parent / "data" / "lunar_seasons.yaml"


class LunarSeason(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    months: tuple[int, ...] = ()  # empty: every lunar month
    first_day: int = Field(ge=1, le=30)
    last_day: int = Field(ge=1, le=30)
    kinds: tuple[str, ...] = ()  # empty: every site
    # Public days off for everyone (the Tết holiday): the weekday does not shape the crowd.
    days_off: bool = False
    basis: str


@lru_cache(maxsize=4)
def load_seasons(path: Path = SEASONS_PATH) -> tuple[LunarSeason, ...]:
    """The lunar seasons of data/lunar_seasons.yaml; a clear error when the file is unusable."""
    return load_rules(path, "seasons", LunarSeason, "lunar seasons file")


@lru_cache(maxsize=16)
def lunar_calendar(year: int) -> pd.DataFrame:
    """Every solar day of `year` with its Vietnamese lunar day and month: date, lunar_day,
    lunar_month."""
    rows = []
    day = date(year, 1, 1)
    while day.year == year:
        lunar = vnlunar.convert_solar_to_lunar(day.day, day.month, day.year,
                                               VIETNAM_UTC_OFFSET_H)
        rows.append((day, lunar["day"], lunar["month"]))
        day += timedelta(days=1)
    return pd.DataFrame(rows, columns=["date", "lunar_day", "lunar_month"])


def season_days(kind: str | None, years: Iterable[int]) -> pd.DataFrame:
    """The days of the lunar seasons concerning a site of `kind` (None: the province-wide
    seasons only): season_id, date."""
    calendar = pd.concat([lunar_calendar(y) for y in sorted(set(years))], ignore_index=True)
    frames = []
    for season in load_seasons():
        if season.kinds and kind not in season.kinds:
            continue
        hit = calendar["lunar_day"].between(season.first_day, season.last_day)
        if season.months:
            hit &= calendar["lunar_month"].isin(season.months)
        frames.append(pd.DataFrame({"season_id": season.id, "date": calendar.loc[hit, "date"]}))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["season_id", "date"]))


def site_festival_days(site_id: str, years: Iterable[int]) -> pd.DataFrame:
    """The festival days (visitorflow.festivals.festival_days rows) that concern a site."""
    days = festival_days(list(years))
    if days.empty:
        return days
    concerns = days["sites"].map(lambda sites: len(sites) == 0 or site_id in sites)
    return days[concerns].reset_index(drop=True)


# Prophet's holidays frame (`prior_scale` added where a name has its own prior).
HOLIDAY_COLUMNS = ["holiday", "ds", "lower_window", "upper_window"]


@dataclass(frozen=True, eq=False)
class SiteCalendar:
    """One site's calendar as the models take it, built once by `site_calendar`.

    `holidays` is the Prophet holidays frame (holiday, ds, lower_window, upper_window); the
    other fields say what its rows mean, so no model reads meaning back out of the names.
    Days are local midnights."""

    holidays: pd.DataFrame
    # Days of the Lạng Sơn festivals concerning the site (province-wide ones included).
    festival_days: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))
    # The peak days of the site's own festivals (not the province-wide Tết, Hùng Kings), per
    # peak `<festival>_peak_<lunar day>`, sorted by that name: each gets a daily profile.
    event_peak_days: Mapping[str, pd.DatetimeIndex] = field(default_factory=dict)
    # The peaks of `event_peak_days` whose festival has `peak_events` (scheduled events:
    # processions), taken out of the weekly cycle.
    scheduled_peaks: frozenset[str] = frozenset()
    # Days of the lunar seasons concerning the site's kind.
    season_days: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))
    # Days of the festivals and lunar seasons marked `days_off` (the Tết holiday).
    days_off: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))
    # Every day a holiday effect reaches: the holidays' days and their windows, sorted.
    window_days: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))


# National days off share one effect: every national holiday's day also carries the name
# DAY_OFF (its window on the edges of each stretch of consecutive days off), and each
# holiday's own name learns only how it differs from it, under the prior scale
# DAY_OFF_DEVIATION_PRIOR. Why: a holiday's own effect is learnt from its one or two
# occurrences in the models' windows, so one day's noise became next year's forecast (the
# simulator's Hùng Kings day at Tân Thanh: counted 15 % under its expectation in 2025, forecast
# 21 % under it in 2026). Prophet's priors are on its scaled y (log1p counts divided by their
# maximum, 5-10), so 0.01 lets a holiday differ by about 5-10 % on its own; with 0.2 the
# shared effect changed nothing (bench/results.md, "National days off pooled").
DAY_OFF = "day_off"
DAY_OFF_DEVIATION_PRIOR = 0.01


def pool_days_off(
    holidays: pd.DataFrame, days_off: Iterable[date], deviations: Iterable[str], prefix: str,
    before_days: int, after_days: int,
) -> pd.DataFrame:
    """`holidays` (Prophet's format) with the shared `<prefix>DAY_OFF` rows on the `days_off`
    (windows on the edges of each stretch of consecutive days) and a `prior_scale` column:
    DAY_OFF_DEVIATION_PRIOR for the holiday names in `deviations`, NaN (Prophet's default)
    for the others."""
    days = sorted({pd.Timestamp(d).normalize() for d in days_off})
    rows = []
    for i, day in enumerate(days):
        starts = i == 0 or (day - days[i - 1]).days > 1
        ends = i == len(days) - 1 or (days[i + 1] - day).days > 1
        rows.append({"holiday": prefix + DAY_OFF, "ds": day,
                     "lower_window": -before_days if starts else 0,
                     "upper_window": after_days if ends else 0})
    shared = pd.DataFrame(rows, columns=HOLIDAY_COLUMNS)
    own = holidays.assign(prior_scale=holidays["holiday"].isin(set(deviations)).map(
        {True: DAY_OFF_DEVIATION_PRIOR, False: float("nan")}))
    return pd.concat([own, shared.assign(prior_scale=float("nan"))], ignore_index=True)


def plain_calendar(holidays: pd.DataFrame) -> SiteCalendar:
    """A calendar of plain holidays (another country's, for a CSV of counts): no festivals,
    peaks, lunar seasons or days off, only the holidays and their windows."""
    return SiteCalendar(holidays=holidays, window_days=holiday_window_days(holidays))


def site_calendar(
    site_id: str, years: Iterable[int], before_days: int, after_days: int,
    kind: str | None = None,
) -> SiteCalendar:
    """One site's calendar. Its Prophet holidays: one name per national holiday and per
    festival, a separate peak-day name for the peak days the sources name (`peak_holiday`),
    and one name per lunar season concerning the site's `kind` (`lunar_<season>`, no window);
    and `vn_day_off` on every national holiday, whose effect the national holidays' own names
    (and a province-wide festival held on days off only) deviate from (`pool_days_off`).

    Windows sit on the edges only (the first day reaches `before_days` back, the last day
    `after_days` forward): every row of a multi-day festival carrying both windows would make
    Prophet's offset features overlap inside the festival and blur the effects."""
    years = sorted(set(years))
    rows: list[dict] = []
    fest_days: set[date] = set()
    peaks: dict[str, set[date]] = {}
    scheduled: set[str] = set()
    off: set[date] = set()
    season: set[date] = set()
    festivals_by_id = {f.id: f for f in load_festivals()}
    national = national_holidays(years)
    for name, group in national.groupby("name"):
        for day in group["date"]:
            rows.append(_row(f"vn_{holiday_slug(str(name))}", day, before_days, after_days))
    festivals = site_festival_days(site_id, years)
    if not festivals.empty:
        festivals = festivals.assign(year=festivals["date"].map(lambda d: d.year))
        for (fest_id, _), group in festivals.groupby(["festival_id", "year"]):
            festival = festivals_by_id[fest_id]
            dates = sorted(group["date"])
            fest_days.update(dates)
            if festival.days_off:
                off.update(dates)
            for day in dates:
                rows.append({
                    "holiday": f"fest_{fest_id}", "ds": pd.Timestamp(day),
                    "lower_window": -before_days if day == dates[0] else 0,
                    "upper_window": after_days if day == dates[-1] else 0,
                })
            for row in group[group["is_peak"]].sort_values("date").itertuples():
                rows.append(_row(peak_holiday(fest_id, row.lunar_day, row.sites), row.date,
                                 0, 0))
                if row.sites:  # the site's own festival: an event peak of its own
                    peak = f"{fest_id}_peak_{row.lunar_day}"
                    peaks.setdefault(peak, set()).add(row.date)
                    if festival.peak_events:
                        scheduled.add(peak)
    days_off_seasons = {s.id for s in load_seasons() if s.days_off}
    for row in season_days(kind, years).itertuples():
        rows.append(_row(f"lunar_{row.season_id}", row.date, 0, 0))
        season.add(row.date)
        if row.season_id in days_off_seasons:
            off.add(row.date)
    frame = pd.DataFrame(rows, columns=HOLIDAY_COLUMNS)
    national_days = set(national["date"])
    # A province-wide festival held on national days off only (Hùng Kings) is one of them.
    on_days_off = {f"fest_{fest_id}" for fest_id, group in festivals.groupby("festival_id")
                   if not group["sites"].iloc[0] and set(group["date"]) <= national_days
                   } if not festivals.empty else set()
    deviations = {name for name in frame["holiday"]
                  if name.startswith("vn_") or name.split("_peak")[0] in on_days_off}
    frame = pool_days_off(frame, national_days, deviations, "vn_", before_days, after_days)
    frame["ds"] = pd.to_datetime(frame["ds"])
    frame = frame.sort_values(["ds", "holiday"]).reset_index(drop=True)
    return SiteCalendar(
        holidays=frame,
        festival_days=_days(fest_days),
        event_peak_days={name: _days(peaks[name]) for name in sorted(peaks)},
        scheduled_peaks=frozenset(scheduled),
        season_days=_days(season),
        days_off=_days(off),
        window_days=holiday_window_days(frame),
    )


def holiday_windows(holidays: pd.DataFrame) -> Iterator[tuple[str, int, pd.Timestamp]]:
    """(holiday, offset, local day) for every day of every holiday's window."""
    for row in holidays.itertuples(index=False):
        start = pd.Timestamp(row.ds).normalize()
        for offset in range(int(row.lower_window), int(row.upper_window) + 1):
            yield row.holiday, offset, start + pd.Timedelta(days=offset)


def holiday_offsets(holidays: pd.DataFrame | None) -> pd.Series:
    """Every local day a holiday effect reaches → its offset in days from the nearest holiday
    day: 0 on a holiday's own day (every day of a festival or lunar season), −2 two days before
    one, +1 the day after (a tie goes to the day after the earlier holiday). What the lag
    models learn holidays from (`forecasting.baselines.lag_features`): one flag on every window
    day told LightGBM that the eve of a day off is one, and cost it 0.01–0.03 of naive on six of
    nine real series (bench/results.md, "The lag models' holiday feature")."""
    nearest: dict[pd.Timestamp, int] = {}
    if holidays is None:
        return pd.Series(nearest, dtype=float)
    for _, offset, day in holiday_windows(holidays):
        best = nearest.get(day)
        if best is None or (abs(offset), -offset) < (abs(best), -best):
            nearest[day] = offset
    return pd.Series(nearest, dtype=float).sort_index()


def holiday_window_days(holidays: pd.DataFrame | None) -> pd.DatetimeIndex:
    """Every local day a holiday effect reaches: the holidays' days and their windows."""
    return pd.DatetimeIndex(holiday_offsets(holidays).index)


def _days(days: Iterable[date]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(sorted(pd.Timestamp(d).normalize() for d in days))


def peak_holiday(festival_id: str, lunar_day: int, sites: tuple[str, ...]) -> str:
    """The holiday name of a festival's peak day. A site's own festival gets one name per
    peak day, `fest_<id>_peak_<lunar day>`: its peak days hold different events (Kỳ Cùng's
    22nd a procession at the temples, its 27th the procession and the firecracker scramble at
    Kỳ Lừa), and one shared effect would forecast the average of the two. A province-wide
    festival's peak days (Tết 2–5) are one stretch of the same crowd: `fest_<id>_peak`."""
    return f"fest_{festival_id}_peak_{lunar_day}" if sites else f"fest_{festival_id}_peak"


def festival_labels(site_id: str, days: Iterable[date]) -> dict[date, str]:
    """Local day → comma-separated festival / national-holiday ids concerning the site."""
    days = list(days)
    if not days:
        return {}
    years = sorted({d.year for d in days})
    labels: dict[date, list[str]] = {}
    for row in site_festival_days(site_id, years).itertuples():
        labels.setdefault(row.date, []).append(row.festival_id)
    for row in national_holidays(years).itertuples():
        labels.setdefault(row.date, []).append(f"vn_{holiday_slug(row.name)}")
    wanted = set(days)
    return {d: ",".join(dict.fromkeys(ids)) for d, ids in labels.items() if d in wanted}


def _row(name: str, day: date, before: int, after: int) -> dict:
    return {"holiday": name, "ds": pd.Timestamp(day), "lower_window": -before,
            "upper_window": after}


def region_holidays(region: str, years: Iterable[int]) -> dict[date, str]:
    """The public holidays (day → name) of `region` in `years`: an ISO 3166 country code, with
    a subdivision after a hyphen for its own holidays too ("NZ-AUK": New Zealand's and
    Auckland's, whose Anniversary Day empties the city's offices; "AU-VIC": Melbourne Cup
    Day). A code the holidays library does not know is a ValueError that says so."""
    country, _, subdiv = region.strip().upper().partition("-")
    try:
        days = holiday_calendars.country_holidays(country, subdiv=subdiv or None,
                                                  years=list(years))
    except NotImplementedError as exc:  # what the library raises for an unknown code
        raise ValueError(f"no holiday calendar for {region!r} ({exc}): give an ISO 3166 "
                         "country code, with a subdivision after a hyphen if its holidays "
                         "count (VN, NZ-AUK, AU-VIC)") from exc
    return dict(days.items())


def holiday_slug(text: str) -> str:
    """A holiday name as a column-safe id (Prophet makes a regressor column per name)."""
    kept = "".join(c.lower() if c.isalnum() else "_" for c in text)
    return "_".join(part for part in kept.split("_") if part)[:60]

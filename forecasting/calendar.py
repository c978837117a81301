"""Holidays for Prophet per site: Vietnam's national holidays plus the Lạng Sơn festivals that
concern the site (data/festivals.yaml: `sites: []` means province-wide), with windows, and
the lunar-calendar seasons of data/lunar_seasons.yaml that concern the site's kind (the
spring pilgrimage season, the days before Tết, the 1st and 15th at temples).

A DataFrame out in Prophet's holidays format: holiday, ds, lower_window, upper_window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import pandas as pd
import vnlunar
from pydantic import BaseModel, ConfigDict, Field

from visitorflow.festivals import (
    VIETNAM_UTC_OFFSET_H,
    festival_days,
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


def site_holidays(
    site_id: str, years: Iterable[int], before_days: int, after_days: int,
    kind: str | None = None,
) -> pd.DataFrame:
    """Prophet holidays for one site: one name per national holiday and per festival, a
    separate peak-day name for the peak days the sources name (`peak_holiday`), and one name per
    lunar season concerning the site's `kind` (`lunar_<season>`, no window).

    Windows sit on the edges only (the first day reaches `before_days` back, the last day
    `after_days` forward): every row of a multi-day festival carrying both windows would make
    Prophet's offset features overlap inside the festival and blur the effects."""
    years = sorted(set(years))
    rows: list[dict] = []
    national = national_holidays(years)
    for name, group in national.groupby("name"):
        for day in group["date"]:
            rows.append(_row(f"vn_{holiday_slug(str(name))}", day, before_days, after_days))
    festivals = site_festival_days(site_id, years)
    if not festivals.empty:
        festivals = festivals.assign(year=festivals["date"].map(lambda d: d.year))
        for (fest_id, _), group in festivals.groupby(["festival_id", "year"]):
            dates = sorted(group["date"])
            for day in dates:
                rows.append({
                    "holiday": f"fest_{fest_id}", "ds": pd.Timestamp(day),
                    "lower_window": -before_days if day == dates[0] else 0,
                    "upper_window": after_days if day == dates[-1] else 0,
                })
            for row in group[group["is_peak"]].sort_values("date").itertuples():
                rows.append(_row(peak_holiday(fest_id, row.lunar_day, row.sites), row.date,
                                 0, 0))
    for row in season_days(kind, years).itertuples():
        rows.append(_row(f"lunar_{row.season_id}", row.date, 0, 0))
    frame = pd.DataFrame(rows, columns=["holiday", "ds", "lower_window", "upper_window"])
    frame["ds"] = pd.to_datetime(frame["ds"])
    return frame.sort_values(["ds", "holiday"]).reset_index(drop=True)


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


def holiday_slug(text: str) -> str:
    """A holiday name as a column-safe id (Prophet makes a regressor column per name)."""
    kept = "".join(c.lower() if c.isalnum() else "_" for c in text)
    return "_".join(part for part in kept.split("_") if part)[:60]

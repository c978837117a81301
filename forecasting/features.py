"""What the Prophet models see besides the counts: opening hours, daily-profile groups, the
conditions of the conditional seasonalities, holiday regressors and the cold regressor.

Everything here is a pure function of a site (the catalogue), a `SiteCalendar` and the
local hours `ds`; the models (`forecasting/models.py`) add the columns to the frames they fit
and forecast, so a fit and its forecast always compute their features the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from forecasting.calendar import HOLIDAY_COLUMNS, SiteCalendar, holiday_windows
from visitorflow.catalogue import WEEKDAYS, Site

SUNDAY = 6  # pandas day_of_week
HOLIDAY_REGRESSOR = "holiday__"


# -- opening hours ------------------------------------------------------------------------------

def open_table(site: Site) -> np.ndarray:
    """7 × 24 booleans: is the site open at any time in (weekday, hour)? An hour counts as open
    when the site is open at its start or its last minute (Chi Lăng closes at 17:30)."""
    monday = datetime(2024, 1, 1)  # a Monday
    table = np.zeros((7, 24), dtype=bool)
    for wd in range(7):
        for hour in range(24):
            start = monday + timedelta(days=wd, hours=hour)
            table[wd, hour] = site.is_open(start) or site.is_open(start + timedelta(minutes=59))
    return table


def open_mask(site: Site, ds: pd.Series) -> np.ndarray:
    """Whether each local hour start in `ds` is an open hour of the site."""
    return table_mask(open_table(site), ds)


def table_mask(table: np.ndarray, ds: pd.Series) -> np.ndarray:
    """A 7 × 24 (weekday, hour) table looked up for each local hour start in `ds`."""
    ds = pd.to_datetime(ds)
    return table[ds.dt.day_of_week.to_numpy(), ds.dt.hour.to_numpy()]


def profile_groups(site: Site) -> dict[str, tuple[int, ...]]:
    """Days (0 = Monday) that share a daily profile: weekdays apart from weekend days, and
    within each, days with other opening hours apart (Kỳ Lừa's night market opens Friday and
    Saturday evenings only: one curve for every weekday would have to draw a night peak that
    Monday to Thursday never open for; measured, the fit then took 20 s instead of 3)."""
    table = open_table(site)
    groups: dict[tuple[bool, bytes], list[int]] = {}
    for wd in range(7):
        groups.setdefault((wd >= 5, table[wd].tobytes()), []).append(wd)
    named: dict[str, tuple[int, ...]] = {}
    for (weekend, _), days in groups.items():
        base = "daily_weekend" if weekend else "daily_weekday"
        alone = sum(1 for w, _ in groups if w == weekend) == 1
        named[base if alone else f"{base}_{'_'.join(WEEKDAYS[d] for d in days)}"] = tuple(days)
    return named


def extra_hours(site: Site) -> np.ndarray:
    """7 × 24 booleans: hours open on some days of the week only (Kỳ Lừa's Friday and Saturday
    night market), apart from the hours open every day the site opens at that hour."""
    table = open_table(site)
    return table & ~table[table.any(axis=1)].all(axis=0)


# -- holidays and conditions ------------------------------------------------------------------

def holiday_regressor(holiday: str, offset: int) -> str:
    """The regressor column of `holiday`'s day shifted by `offset` days."""
    return f"{HOLIDAY_REGRESSOR}{holiday}_{'p' if offset >= 0 else 'm'}{abs(offset)}"


def regressor_holiday(column: str) -> str:
    """The holiday a `holiday_regressor` column belongs to."""
    return column.removeprefix(HOLIDAY_REGRESSOR).rsplit("_", 1)[0]


def holiday_features(ds: pd.Series, holidays: pd.DataFrame, where: np.ndarray) -> pd.DataFrame:
    """Prophet's holiday features as regressor columns (`holiday__<name>_p<k>` / `_m<k>`: 1 on
    the holiday's day shifted by k days within its window), 0 outside `where`."""
    day = pd.to_datetime(ds).dt.normalize().to_numpy()
    columns: dict[str, np.ndarray] = {}
    for holiday, offset, on in holiday_windows(holidays):
        name = holiday_regressor(holiday, offset)
        hit = (day == on.to_datetime64()) & where
        columns[name] = columns[name] | hit if name in columns else hit
    return pd.DataFrame({name: hit.astype(float) for name, hit in columns.items()},
                        index=ds.index)


def _on_days(ds: pd.Series, days: pd.DatetimeIndex) -> np.ndarray:
    return ds.dt.normalize().isin(days).to_numpy()


def with_features(
    df: pd.DataFrame, cold_threshold_c: float,
    groups: dict[str, tuple[int, ...]] | None = None,
    calendar: SiteCalendar | None = None,
    extra: np.ndarray | None = None,
) -> pd.DataFrame:
    """`df` (ds: local hour starts or days, plus optional temp_c) with the models' feature
    columns: `is_ordinary_day` (the weekly cycle's condition), `is_<group>` per daily-profile
    group (`profile_groups`), and with groups (the hourly model) `is_festival` and
    `is_<festival>_peak_<lunar day>` per event peak; with `extra` hours (a night market) the
    holiday regressors (`holiday_features`), `festival_extra_hour` and `season_extra_hour`;
    with temp_c, `cold_c` (degrees below `cold_threshold_c`)."""
    if calendar is None:
        calendar = SiteCalendar(holidays=pd.DataFrame(columns=HOLIDAY_COLUMNS))
    out = df.copy()
    ds = pd.to_datetime(out["ds"])
    day = ds.dt.day_of_week.to_numpy()
    has_extra = bool(groups) and extra is not None and extra.any()
    extra_now = extra[day, ds.dt.hour.to_numpy()] if has_extra else np.zeros(len(out), bool)
    peaks = calendar.event_peak_days
    # Days that are not ordinary weekdays, so that neither the weekly cycle nor the weekday
    # profiles scale them (on the log scale they would): a peak day with scheduled events
    # (festivals.yaml `peak_events`: the procession draws its crowd whatever the weekday; last
    # year's Monday procession was forecast ×2 on this year's Sunday), and the days off of
    # the Tết holiday (`days_off`: the whole country is off; last year's Saturday of Tết lent
    # its weekend profile to this year's Friday). A day off is drawn with Sunday's profile,
    # its level set by the holiday effects. Hours open on some weekdays only (a night market)
    # keep their weekday's profile.
    day_off = _on_days(ds, calendar.days_off)
    not_ordinary = day_off.copy()
    for name, days in peaks.items():
        if name in calendar.scheduled_peaks:
            not_ordinary |= _on_days(ds, days)
    ordinary = ~not_ordinary | extra_now
    out["is_ordinary_day"] = ordinary
    for name, days in (groups or {}).items():
        as_sunday = day_off & ~extra_now if SUNDAY in days else False
        out[f"is_{name}"] = (np.isin(day, days) & ordinary) | as_sunday
    festival_day = _on_days(ds, calendar.festival_days)
    if groups:
        # A festival day has its own shape (a noon procession, not an evening market): a
        # holiday effect alone would scale every hour of the day alike. Hours open on some
        # weekdays only (a night market) keep their weekday's shape (below).
        out["is_festival"] = festival_day & ~extra_now
        # Its peak days have events of their own on top (a procession at noon).
        for name, days in peaks.items():
            out[f"is_{name}"] = _on_days(ds, days) & ~extra_now
    if has_extra:
        # A holiday scales the day's usual crowd, not a night market that draws its own
        # (Kỳ Lừa): Prophet's holiday effects would multiply every hour of the day, and a Tết
        # day learnt on market-less evenings drew 11.8 k on a 4.2 k market evening. So the
        # holidays enter as regressors that are 0 on the market hours, and those hours get
        # one offset of their own on festival days.
        if len(calendar.holidays):
            out = pd.concat([out, holiday_features(ds, calendar.holidays, ~extra_now)],
                            axis=1).copy()
        out["festival_extra_hour"] = (festival_day & extra_now).astype(float)
        # The same for the lunar seasons (the spring pilgrimage scales the day, not the market).
        out["season_extra_hour"] = (_on_days(ds, calendar.season_days) & extra_now).astype(
            float)
    if "temp_c" in out:
        # Degrees below the frost threshold: Mẫu Sơn's rush follows frost, not mild cold.
        out["cold_c"] = np.clip(cold_threshold_c - out["temp_c"].to_numpy(float), 0, None)
    return out

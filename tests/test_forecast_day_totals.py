"""On holiday days the hourly forecast's day total is the daily model's: the daily model sees
`daily_history_days` (two or three occurrences of each festival), the hourly model
`hourly_history_days` (one, whose random size it would repeat). Real Prophet fits for the
end-to-end part."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import holiday_window_days, site_calendar
from forecasting.features import open_mask
from forecasting.models import (
    fit_and_forecast,
    holiday_day_totals,
    quiet_cmdstan,
    scale_to_day_totals,
)
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
SITE = CATALOGUE.site("tam_thanh")  # open 07:00-18:00 every day
CALENDAR = site_calendar(SITE.id, range(2023, 2028), 2, 1, SITE.kind)
HOLIDAYS = CALENDAR.holidays


def test_day_totals_set_the_median_of_whole_days_only() -> None:
    ds = pd.Series(pd.date_range("2026-02-16 12:00", periods=60, freq="h"))  # Mon 12:00 on
    is_open = open_mask(SITE, ds)
    rng = np.random.default_rng(1)
    samples = np.where(is_open[:, None], rng.gamma(4.0, 25.0, (len(ds), 200)), 0.0)
    before = samples.copy()
    totals = pd.Series([9_999.0, 3_000.0], index=pd.to_datetime(["2026-02-16", "2026-02-17"]))
    scale_to_day_totals(samples, ds, is_open, SITE, totals)
    monday, tuesday, wednesday = ((ds.dt.day == d).to_numpy() for d in (16, 17, 18))
    # Monday starts mid-day in the grid: half its open hours cannot carry its whole total.
    assert np.array_equal(samples[monday], before[monday])
    assert np.median(samples[tuesday], axis=1).sum() == pytest.approx(3_000.0)
    # One factor for the whole day: the hour shape and the spread of the samples are kept.
    ratio = samples[tuesday & is_open] / before[tuesday & is_open]
    assert np.allclose(ratio, ratio.flat[0])
    assert np.array_equal(samples[wednesday], before[wednesday])  # no total given
    assert (samples[~is_open] == 0).all()


def test_holiday_days_include_the_windows_and_nothing_else() -> None:
    two = pd.DataFrame({"holiday": ["fest_a", "vn_b"],
                        "ds": pd.to_datetime(["2026-03-10", "2026-05-01"]),
                        "lower_window": [-2, 0], "upper_window": [1, 0]})
    assert list(holiday_window_days(two)) == list(pd.to_datetime(
        ["2026-03-08", "2026-03-09", "2026-03-10", "2026-03-11", "2026-05-01"]))
    days = CALENDAR.window_days
    assert days.equals(holiday_window_days(HOLIDAYS))
    # Tết 2026 is 17 Feb; its window reaches 2 days before (the lunar seasons cover more).
    assert pd.Timestamp("2026-02-15") in days and pd.Timestamp("2026-02-17") in days
    daily = pd.DataFrame({"ds": pd.date_range("2026-02-10", "2026-02-20"), "arrivals": 5.0})
    totals = holiday_day_totals(daily, SITE, CALENDAR)
    assert totals is not None
    assert set(totals.index) == set(daily["ds"]) & set(days)
    # A night-market site: the day total mixes two crowds only the hourly model separates.
    ky_lua = CATALOGUE.site("ky_lua")
    assert holiday_day_totals(daily, ky_lua, site_calendar("ky_lua", [2026], 2, 1)) is None


TET_SIZE = {2024: 3.0, 2025: 6.0}  # this year's Tết draw is twice last year's, by chance
START = datetime(2026, 2, 15)  # two days before Tết 2026


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    ds = pd.Series(pd.date_range("2023-11-01", START, freq="h", inclusive="left"))
    day = ds.dt.normalize()
    factor = np.ones(len(ds))
    for year, size in TET_SIZE.items():
        tet = HOLIDAYS[(HOLIDAYS["holiday"] == "fest_tet") & (HOLIDAYS["ds"].dt.year == year)]
        factor[day.isin(tet["ds"]).to_numpy()] = size
    return counted_hours(SITE, ds, 60.0 * factor, seed=7)


def _tet_day_totals(history: pd.DataFrame, from_daily: bool) -> tuple[float, float]:
    quiet_cmdstan()
    # The hourly medians carry the day total; the busy hours' lean toward the crowd comes on
    # top of them (test_forecast_candidates), so it is left out here.
    settings = ForecastSettings(samples=200, holiday_totals_from_daily=from_daily, crowd_lean=0)
    hourly, daily = fit_and_forecast(history, SITE, settings, CALENDAR, START, 7 * 24, 7)
    tet_day = pd.Timestamp("2026-02-18")  # the second day of Tết
    hourly_total = hourly.loc[hourly["ds"].dt.normalize() == tet_day, "arrivals"].sum()
    return float(hourly_total), float(daily.set_index("ds").loc[tet_day, "arrivals"])


def test_a_festival_day_total_comes_from_the_model_that_saw_every_occurrence(
    history: pd.DataFrame,
) -> None:
    ordinary_day = 60.0 * 11  # 11 open hours
    hourly_alone, daily_alone = _tet_day_totals(history, from_daily=False)
    hourly_total, daily_total = _tet_day_totals(history, from_daily=True)
    # The hourly model's 400 days hold Tết 2025 only (×6); the daily model's both (×3, ×6).
    assert hourly_alone > 5.0 * ordinary_day
    assert daily_total < 0.85 * hourly_alone
    # With the setting on, the hourly forecast carries the daily model's day total.
    assert hourly_total == pytest.approx(daily_total, rel=1e-6)
    assert daily_total == pytest.approx(daily_alone, rel=0.05)

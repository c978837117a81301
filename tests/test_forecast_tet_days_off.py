"""The Tết holiday in the hourly model, with a real Prophet fit: its days are days off for
everyone, so the weekday does not shape them. Last year's Tết peak ran Thursday–Sunday, this
year's runs Wednesday–Saturday; a site three times busier at weekends must still forecast this
year's Friday of Tết like last year's Saturday of Tết, not like an ordinary Friday."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import SiteCalendar, site_calendar
from forecasting.models import (
    fit_daily,
    fit_hourly,
    forecast_daily,
    forecast_hourly,
    quiet_cmdstan,
)
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.festivals import lunar_to_solar
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
SETTINGS = ForecastSettings(samples=100)
SITE = CATALOGUE.site("nhat_thanh")  # a cave with weekday and weekend profiles
TET_RATE = 100.0  # people/hour on every day of the Tết holiday, whatever the weekday


def _history(start: str, end: str, calendar: SiteCalendar, seed: int = 11) -> pd.DataFrame:
    ds = pd.Series(pd.date_range(start, end, freq="h", inclusive="left"))
    weekend = ds.dt.day_of_week.to_numpy() >= 5
    rate = np.where(weekend, 60.0, 20.0)
    rate = np.where(ds.dt.normalize().isin(calendar.days_off), TET_RATE, rate)
    return counted_hours(SITE, ds, rate, seed)


@pytest.fixture(scope="module")
def forecast() -> pd.DataFrame:
    quiet_cmdstan()
    calendar = site_calendar(SITE.id, range(2024, 2028), 2, 1, SITE.kind)
    history = _history("2025-01-06", "2026-02-15", calendar)
    model = fit_hourly(history, SITE, SETTINGS, calendar)
    out = forecast_hourly(model, datetime(2026, 2, 15), 12 * 24)
    return out.set_index("ds")


def test_the_tet_holiday_is_the_days_off_of_the_calendars() -> None:
    off = set(site_calendar(SITE.id, [2026], 2, 1, SITE.kind).days_off.date)
    # Lunar 12/26 to 1/8: the pre-Tết days, Tết 1–5 and its tail (data/*.yaml `days_off`).
    assert lunar_to_solar(1, 1, 2026) in off
    assert lunar_to_solar(5, 1, 2026) in off
    assert lunar_to_solar(8, 1, 2026) in off
    assert lunar_to_solar(9, 1, 2026) not in off


def test_a_weekday_of_tet_is_forecast_like_a_day_off(forecast: pd.DataFrame) -> None:
    # Tết 2026 is Tuesday 17 February; days 2–5 are Wednesday 18 to Saturday 21. In 2025 the
    # same days were Thursday 30 January to Sunday 2 February.
    assert lunar_to_solar(4, 1, 2026) == datetime(2026, 2, 20).date()
    open_hours = forecast[forecast["is_open"]]
    for day in ("2026-02-18", "2026-02-19", "2026-02-20", "2026-02-21"):
        mean = open_hours.loc[day, "arrivals"].mean()
        assert mean == pytest.approx(TET_RATE, rel=0.25), day
    # An ordinary weekday after the holiday keeps its weekday level.
    assert open_hours.loc["2026-02-26", "arrivals"].mean() == pytest.approx(20, rel=0.35)


def test_the_daily_model_forecasts_the_days_off_alike() -> None:
    # Three years of days (the daily model's window): 200 people on weekdays, 600 at weekends,
    # 1,000 on every day of the Tết holiday.
    quiet_cmdstan()
    calendar = site_calendar(SITE.id, range(2022, 2028), 2, 1, SITE.kind)
    ds = pd.Series(pd.date_range("2023-02-01", "2026-02-15", freq="D", inclusive="left"))
    level = np.where(ds.dt.day_of_week.to_numpy() >= 5, 600.0, 200.0)
    level = np.where(ds.isin(calendar.days_off), 1000.0, level)
    daily = pd.DataFrame({"ds": ds,
                          "arrivals": np.random.default_rng(3).poisson(level).astype(float)})
    model = fit_daily(daily, SETTINGS, calendar)
    out = forecast_daily(model, datetime(2026, 2, 15), 14).set_index("ds")
    for day in ("2026-02-18", "2026-02-19", "2026-02-20", "2026-02-21"):
        assert out.loc[day, "arrivals"] == pytest.approx(1000, rel=0.2), day
    assert out.loc["2026-02-26", "arrivals"] == pytest.approx(200, rel=0.35)

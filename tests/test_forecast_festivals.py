"""Festival days in the hourly model, with a real Prophet fit: a festival scales Kỳ Lừa's day
but not its night market, and a peak day's noon procession is drawn at noon."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import site_holidays
from forecasting.models import extra_hours, fit_hourly, forecast_hourly, open_mask, quiet_cmdstan
from visitorflow.catalogue import load_catalogue
from visitorflow.festivals import festival_days, lunar_to_solar
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
SETTINGS = ForecastSettings(samples=100)


def _ky_lua_history(start: str, end: str, seed: int = 5) -> pd.DataFrame:
    """Kỳ Lừa's hours: a daytime market (~100/h), a Friday/Saturday night market (~800/h)
    that festivals leave alone, festival days ×3 by day, and 2,000 people at noon on the
    Kỳ Cùng festival's peak days (the procession)."""
    site = CATALOGUE.site("ky_lua")
    ds = pd.Series(pd.date_range(start, end, freq="h", inclusive="left"))
    fest = festival_days(range(ds.min().year, ds.max().year + 1))
    mine = fest[fest["sites"].map(lambda s: not s or "ky_lua" in s)]
    fest_days = pd.to_datetime(mine["date"]).unique()
    peaks = pd.to_datetime(mine.loc[mine["is_peak"] & (mine["festival_id"] == "ky_cung_ta_phu"),
                                    "date"]).unique()
    day = ds.dt.normalize()
    night = extra_hours(site)[ds.dt.day_of_week, ds.dt.hour]
    rate = np.where(night, 800.0, 100.0)
    rate = np.where(day.isin(fest_days) & ~night, rate * 3, rate)
    rate = np.where(day.isin(peaks) & (ds.dt.hour == 12), rate + 2000, rate)
    rate = np.where(open_mask(site, ds), rate, 0.0)
    counts = np.random.default_rng(seed).poisson(rate)
    return pd.DataFrame({"ds": ds, "arrivals": counts.astype(float)})


@pytest.fixture(scope="module")
def forecast() -> pd.DataFrame:
    quiet_cmdstan()
    site = CATALOGUE.site("ky_lua")
    origin = datetime(2026, 3, 8)  # two days before Kỳ Cùng 22/1 (10 March 2026)
    history = _ky_lua_history("2025-01-06", "2026-03-08")
    holidays = site_holidays(site.id, range(2024, 2028), 2, 1, site.kind)
    model = fit_hourly(history, site, SETTINGS, holidays)
    assert "daily_festival_peak" in model.seasonalities
    assert "festival_extra_hour" in model.extra_regressors
    out = forecast_hourly(model, site, origin, 8 * 24, SETTINGS)
    return out.set_index("ds")


def test_a_festival_scales_the_day_but_not_the_night_market(forecast: pd.DataFrame) -> None:
    # Friday 13 and Saturday 14 March 2026 are Kỳ Cùng days (25–26/1 lunar).
    assert lunar_to_solar(25, 1, 2026) == datetime(2026, 3, 13).date()
    night = forecast.loc["2026-03-13 18:00":"2026-03-13 23:00", "arrivals"].mean()
    day = forecast.loc["2026-03-13 08:00":"2026-03-13 16:00", "arrivals"].mean()
    assert night == pytest.approx(800, rel=0.35)
    assert day == pytest.approx(300, rel=0.35)


def test_the_procession_is_forecast_at_noon_on_the_peak_day(forecast: pd.DataFrame) -> None:
    noon = forecast.loc["2026-03-10 12:00", "arrivals"]
    morning = forecast.loc["2026-03-10 09:00", "arrivals"]
    assert noon > 3 * morning
    assert noon == pytest.approx(2300, rel=0.5)

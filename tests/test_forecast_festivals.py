"""Festival days in the hourly model, with a real Prophet fit: a festival scales Kỳ Lừa's day
but not its night market, a peak day's noon procession is drawn at noon, and each peak day
keeps its own size (the 27th's firecracker scramble is not averaged with the 22nd)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import site_calendar
from forecasting.features import extra_hours
from forecasting.models import fit_hourly, forecast_hourly, quiet_cmdstan
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.festivals import festival_days, lunar_to_solar
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
SETTINGS = ForecastSettings(samples=100)


def _ky_lua_history(start: str, end: str, seed: int = 5) -> pd.DataFrame:
    """Kỳ Lừa's hours: a daytime market (~100/h, ~200/h at weekends), a Friday/Saturday night
    market (~800/h) that festivals leave alone, festival days ×3 by day, 2,000 people at noon on the
    Kỳ Cùng festival's opening peak day (22nd, the procession) and 6,000 on its closing one
    (27th, the procession and the firecracker scramble)."""
    site = CATALOGUE.site("ky_lua")
    ds = pd.Series(pd.date_range(start, end, freq="h", inclusive="left"))
    fest = festival_days(range(ds.min().year, ds.max().year + 1))
    mine = fest[fest["sites"].map(lambda s: not s or "ky_lua" in s)]
    fest_days = pd.to_datetime(mine["date"]).unique()
    kc = mine[mine["is_peak"] & (mine["festival_id"] == "ky_cung_ta_phu")]
    opening = pd.to_datetime(kc.loc[kc["lunar_day"] == 22, "date"]).unique()
    scramble = pd.to_datetime(kc.loc[kc["lunar_day"] == 27, "date"]).unique()
    day = ds.dt.normalize()
    night = extra_hours(site)[ds.dt.day_of_week, ds.dt.hour]
    weekend = ds.dt.day_of_week.to_numpy() >= 5
    rate = np.where(night, 800.0, np.where(weekend, 200.0, 100.0))
    rate = np.where(day.isin(fest_days) & ~night, rate * 3, rate)
    rate = np.where(day.isin(opening) & (ds.dt.hour == 12), rate + 2000, rate)
    rate = np.where(day.isin(scramble) & (ds.dt.hour == 12), rate + 6000, rate)
    return counted_hours(site, ds, rate, seed)


@pytest.fixture(scope="module")
def forecast() -> pd.DataFrame:
    quiet_cmdstan()
    site = CATALOGUE.site("ky_lua")
    origin = datetime(2026, 3, 8)  # two days before Kỳ Cùng 22/1 (10 March 2026)
    history = _ky_lua_history("2025-01-06", "2026-03-08")
    calendar = site_calendar(site.id, range(2024, 2028), 2, 1, site.kind)
    fitted = fit_hourly(history, site, SETTINGS, calendar)
    assert fitted.peak_profiles == ("ky_cung_ta_phu_peak_22", "ky_cung_ta_phu_peak_27")
    assert {"daily_ky_cung_ta_phu_peak_22", "daily_ky_cung_ta_phu_peak_27"} <= set(
        fitted.model.seasonalities)
    assert "festival_extra_hour" in fitted.regressors
    out = forecast_hourly(fitted, origin, 8 * 24)
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


def test_each_peak_day_keeps_its_own_crowd(forecast: pd.DataFrame) -> None:
    # 15 March 2026 is lunar 1/27: the scramble's 6,000 on top of the day, not the mean of
    # the two peak days (~4,000) that one shared peak effect would forecast, and not doubled
    # because this year's 27th is a Sunday and last year's (24 Feb 2025) a Monday: the crowd
    # comes for the event (festivals.yaml `peak_events`), the weekend doubles only the market.
    assert lunar_to_solar(27, 1, 2026) == datetime(2026, 3, 15).date()
    assert datetime(2026, 3, 15).weekday() == 6 and lunar_to_solar(27, 1, 2025).weekday() == 0
    scramble = forecast.loc["2026-03-15 12:00", "arrivals"]
    opening = forecast.loc["2026-03-10 12:00", "arrivals"]
    assert scramble == pytest.approx(6600, rel=0.25)
    assert opening == pytest.approx(2300, rel=0.35)

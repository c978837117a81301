"""Kỳ Lừa's Friday and Saturday night market draws its own crowd, whatever the festival, with
a real Prophet fit: the holiday effects scale the day's crowd, not the market's hours. Before,
the Tết peak's effect, learnt in 2024 when its days (Sunday–Wednesday) had no market, also
multiplied the 2025 Tết market evenings (11.8 k forecast, 4.2 k counted on 31 Jan 2025 in the
simulated backtest)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import site_calendar
from forecasting.features import HOLIDAY_REGRESSOR, extra_hours, with_features
from forecasting.models import fit_hourly, forecast_hourly, quiet_cmdstan
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
SETTINGS = ForecastSettings(samples=100)
SITE = CATALOGUE.site("ky_lua")
DAY_RATE = 100.0  # people/hour by day on an ordinary day
MARKET_RATE = 700.0  # people/hour on every market evening, festival or not
TET_PEAK, OTHER_HOLIDAY = 4.0, 1.5  # multipliers of the day's crowd: Tết days 2–5, the rest


def _market_hour(ds: pd.Series) -> np.ndarray:
    return extra_hours(SITE)[ds.dt.day_of_week.to_numpy(), ds.dt.hour.to_numpy()]


@pytest.fixture(scope="module")
def forecast() -> pd.DataFrame:
    quiet_cmdstan()
    calendar = site_calendar(SITE.id, range(2024, 2028), 2, 1, SITE.kind)
    holidays = calendar.holidays
    ds = pd.Series(pd.date_range("2024-01-08", "2025-01-27", freq="h", inclusive="left"))
    day = ds.dt.normalize()
    holiday = day.isin(calendar.festival_days) | day.isin(calendar.days_off)
    tet_peak = day.isin(holidays.loc[holidays["holiday"] == "fest_tet_peak", "ds"])
    factor = np.where(tet_peak, TET_PEAK, np.where(holiday, OTHER_HOLIDAY, 1.0))
    rate = np.where(_market_hour(ds), MARKET_RATE, DAY_RATE * factor)
    history = counted_hours(SITE, ds, rate, seed=5)
    model = fit_hourly(history, SITE, SETTINGS, calendar)
    out = forecast_hourly(model, datetime(2025, 1, 27), 10 * 24)
    return out[out["is_open"]].set_index("ds")


def test_the_holidays_are_silent_on_the_market_hours() -> None:
    calendar = site_calendar(SITE.id, [2026], 2, 1, SITE.kind)
    # Friday 20 February 2026 is the 4th day of Tết.
    ds = pd.Series(pd.to_datetime(["2026-02-20 14:00", "2026-02-20 20:00"]))
    features = with_features(pd.DataFrame({"ds": ds}), 0.0, {"all": tuple(range(7))},
                             calendar, extra_hours(SITE))
    on = features.filter(like=HOLIDAY_REGRESSOR)
    assert on.iloc[0].sum() >= 1  # by day, the Tết holiday is on
    assert on.iloc[1].sum() == 0  # on the market's hours it is not
    assert features["festival_extra_hour"].tolist() == [0.0, 1.0]


def test_a_tet_market_evening_is_forecast_like_any_market_evening(
    forecast: pd.DataFrame,
) -> None:
    # Tết 2025: days 3 and 4 are Friday 31 January and Saturday 1 February, market evenings.
    # In 2024 Tết's peak days ran Sunday–Wednesday: no market evening to learn from.
    hours = forecast.index.to_series()
    for day in ("2025-01-31", "2025-02-01"):
        on_day = forecast[hours.dt.normalize() == day]
        market = _market_hour(on_day.index.to_series())
        assert on_day.loc[market, "arrivals"].mean() == pytest.approx(MARKET_RATE, rel=0.25), day
        assert on_day.loc[~market, "arrivals"].mean() == pytest.approx(
            TET_PEAK * DAY_RATE, rel=0.25), day

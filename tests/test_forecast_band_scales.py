"""The band's calibration follows the model a forecast actually used: a site whose LightGBM
cannot train (too little history) is forecast by Prophet, with the scale the backtest
measured on Prophet's band, not the one measured on the model asked for. Real Prophet fits."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import site_calendar
from forecasting.candidates import PREFERRED_MODEL
from forecasting.models import fit_and_forecast, quiet_cmdstan
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

SITE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml").site("tam_thanh")
START = datetime(2026, 3, 16)
# Thirteen days of counts: a weekly lag exists for six of them, under LightGBM's week of rows.
_DS = pd.Series(pd.date_range(START.replace(day=3), START, freq="h", inclusive="left"))
HISTORY = counted_hours(SITE, _DS, 40.0 + 30.0 * np.sin(np.pi * (_DS.dt.hour - 7) / 11), seed=3)


def _forecast(band_scales: dict[str, float]) -> pd.DataFrame:
    quiet_cmdstan()
    settings = ForecastSettings(samples=400)
    hourly, _ = fit_and_forecast(HISTORY, SITE, settings, site_calendar(SITE.id, [2026], 2, 1),
                                 START, 3 * 24, 3, model=PREFERRED_MODEL,
                                 band_scales=band_scales)
    return hourly


def test_the_fallback_to_prophet_takes_prophets_band_scale() -> None:
    plain = _forecast({})
    scaled = _forecast({"prophet": 0.5, PREFERRED_MODEL: 2.0})
    assert plain.attrs == {"model": "prophet", "band_scale": 1.0}
    assert scaled.attrs == {"model": "prophet", "band_scale": 0.5}
    width = {name: (h["arrivals_upper"] - h["arrivals_lower"])[h["is_open"]].median()
             for name, h in (("plain", plain), ("scaled", scaled))}
    # Two fits draw their own samples: the halved band within sampling noise.
    assert width["scaled"] / width["plain"] == pytest.approx(0.5, abs=0.1)

"""How backtests are scored (festival-day peaks, overload calibration, festival folds) and the
lunar seasons the models learn: unit tests on hand-made frames, no Prophet fit."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.backtest import festival_occurrences, festival_origins
from forecasting.calendar import season_days, site_calendar
from forecasting.scoring import festival_peaks, score
from visitorflow.festivals import lunar_to_solar
from visitorflow.settings import ForecastSettings


def _fold(origin: str, days: int, model_by_day: dict[str, float],
          actual_by_day: dict[str, float]) -> pd.DataFrame:
    """An hourly fold open 8:00–17:00 whose day totals are the given ones (else 100/day)."""
    ds = pd.date_range(origin, periods=days * 24, freq="h")
    frame = pd.DataFrame({"ds": ds, "is_open": (ds.hour >= 8) & (ds.hour < 18)})
    day = ds.normalize().strftime("%Y-%m-%d")
    per_hour = frame["is_open"] / 10.0
    frame["model"] = per_hour * day.map(lambda d: model_by_day.get(d, 100.0)).to_numpy()
    frame["actual"] = per_hour * day.map(lambda d: actual_by_day.get(d, 100.0)).to_numpy()
    frame["naive"] = per_hour * 100.0
    frame["origin"] = pd.Timestamp(origin)
    return frame


def test_the_peak_day_is_the_busiest_counted_day_forecast_before_the_festival() -> None:
    occ = pd.DataFrame({"festival_id": "bac_le", "occurrence": 2026,
                        "date": [date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)]})
    # Fold A starts 2 days before the festival; fold B inside it (too late to count); fold C
    # a week before: A is the latest fold that began before the festival.
    fold_a = _fold("2026-03-08", 7, {"2026-03-11": 450.0}, {"2026-03-11": 600.0,
                                                             "2026-03-12": 300.0})
    fold_b = _fold("2026-03-11", 7, {"2026-03-11": 600.0}, {"2026-03-11": 600.0})
    fold_c = _fold("2026-03-01", 14, {"2026-03-11": 100.0}, {"2026-03-11": 600.0})
    scored = pd.concat([fold_a, fold_b, fold_c], ignore_index=True)
    peaks = festival_peaks(scored[scored["is_open"]], occ)
    assert len(peaks) == 1
    peak = peaks.iloc[0]
    assert peak["day"] == pd.Timestamp("2026-03-11")
    assert peak["origin"] == pd.Timestamp("2026-03-08")
    assert peak["peak_err"] == pytest.approx(150 / 600)
    row = score(scored, frozenset(occ["date"]), 3, 168, "x", occ)
    assert row["festival_peak_err"] == pytest.approx(0.25)
    assert row["festival_peaks"] == 1
    # Festival-day totals, per fold and day: the old, broader figure.
    assert 0 < row["festival_day_err"] < row["festival_peak_max_err"] + 1


def test_no_festival_in_the_folds_means_no_peak_error() -> None:
    occ = pd.DataFrame({"festival_id": "bac_le", "occurrence": 2026,
                        "date": [date(2026, 10, 28)]})
    row = score(_fold("2026-03-08", 7, {}, {}), frozenset(), 1, 168, "x", occ)
    assert row["festival_peak_err"] is None and row["festival_peaks"] == 0
    assert row["mae"] == pytest.approx(0.0)


def test_overload_probability_is_scored_by_brier() -> None:
    fold = _fold("2026-03-08", 1, {}, {})
    fold["p_overload"] = np.where(fold["ds"].dt.hour == 12, 0.8, 0.0)
    fold["overloaded"] = fold["ds"].dt.hour.isin([12, 13])
    row = score(fold, frozenset(), 1, 24, "x")
    assert row["overload_hours"] == 2
    # 10 open hours: (0.8 − 1)² at 12:00, (0 − 1)² at 13:00, 0 elsewhere.
    assert row["overload_brier"] == pytest.approx((0.04 + 1.0) / 10)


def test_festival_folds_reach_the_festivals_last_day() -> None:
    history = pd.DataFrame({"ds": pd.date_range("2025-01-01", "2026-12-31", freq="h"),
                            "arrivals": 1.0})
    settings = ForecastSettings()
    origins = festival_origins("den_ky_cung", history, settings)
    start = pd.Timestamp(lunar_to_solar(22, 1, 2026))
    origin = (start - pd.Timedelta(days=2)).to_pydatetime()
    # Kỳ Cùng 22–27/1: two days ahead plus six festival days = 8 days (> the 7-day horizon).
    assert origins[origin] == 8
    assert all(settings.backtest_horizon_days <= d <= settings.hourly_horizon_days
               for d in origins.values())
    occ = festival_occurrences("den_ky_cung", history)
    days = occ[(occ["festival_id"] == "ky_cung_ta_phu") & (occ["occurrence"] == 2026)]
    assert len(days) == 6


def test_lunar_seasons_follow_the_lunar_calendar_and_the_site_kind() -> None:
    temple = season_days("temple", [2026])
    cave = season_days("cave", [2026])
    ram = temple.loc[temple["season_id"] == "ram", "date"].tolist()
    assert lunar_to_solar(15, 1, 2026) in ram and len(ram) >= 12
    assert "ram" not in set(cave["season_id"]) and "mung_mot" not in set(cave["season_id"])
    spring = cave.loc[cave["season_id"] == "spring_season", "date"]
    assert spring.min() == lunar_to_solar(9, 1, 2026)
    assert spring.max() == lunar_to_solar(1, 2, 2026) - pd.Timedelta(days=1)
    temple_calendar = site_calendar("den_ky_cung", [2026], 2, 1, kind="temple")
    holidays = temple_calendar.holidays
    assert {"lunar_ram", "lunar_spring_season", "lunar_pre_tet"} <= set(holidays["holiday"])
    # The calendar carries the season days themselves (the night market's season offset).
    assert set(temple_calendar.season_days.date) == set(
        season_days("temple", [2026])["date"])
    # A caller that does not name the kind still gets the province-wide seasons only.
    plain = site_calendar("den_ky_cung", [2026], 2, 1).holidays
    assert "lunar_ram" not in set(plain["holiday"])
    assert "lunar_spring_season" in set(plain["holiday"])
    assert datetime(2026, 3, 3).date() == lunar_to_solar(15, 1, 2026)

"""The candidate forecasters, the choice among them, the recentred predictive distribution
and the band coverage they are judged by (forecasting/candidates.py, forecasting/scoring.py)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import site_calendar
from forecasting.candidates import MODELS, candidate_forecasts, choose_model, recentre
from forecasting.features import open_mask
from forecasting.scoring import band_coverage, score_models
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")


def _scores(**ratios: float) -> pd.DataFrame:
    return pd.DataFrame({"model": list(ratios), "mae_ratio": list(ratios.values())})


def test_the_model_that_erred_least_is_chosen() -> None:
    assert choose_model(_scores(prophet=0.7, prophet_lgbm=0.6, lgbm=0.65, mean4w=0.8,
                                naive=1.0)) == ("prophet_lgbm", 0.6)


def test_when_every_model_loses_to_naive_the_naive_forecast_is_chosen() -> None:
    assert choose_model(_scores(prophet=1.3, prophet_lgbm=1.1, lgbm=1.2, mean4w=1.02,
                                naive=1.0)) == ("naive", 1.0)


def test_prophet_before_any_backtest_and_on_a_tie() -> None:
    assert choose_model(None) == ("prophet", None)
    assert choose_model(_scores()) == ("prophet", None)
    assert choose_model(_scores(prophet=float("nan"), lgbm=float("nan"))) == ("prophet", None)
    assert choose_model(_scores(lgbm=0.7, prophet=0.7)) == ("prophet", 0.7)
    # A model this code does not know (a newer backtest, an older code) is not chosen.
    assert choose_model(_scores(tft=0.1, mean4w=0.9)) == ("mean4w", 0.9)


def test_recentred_samples_have_the_chosen_median_and_stay_non_negative() -> None:
    rng = np.random.default_rng(1)
    samples = rng.lognormal(np.log([[50.0], [0.3], [8.0]]), 0.4, size=(3, 2001))
    point = np.array([80.0, 2.0, 0.0])
    spread_before = np.quantile(samples[0], 0.9) / np.quantile(samples[0], 0.1)
    recentre(samples, point)
    assert np.median(samples, axis=1) == pytest.approx([80.0, 2.0, 0.0], abs=1e-9)
    assert (samples >= 0).all()
    # Scaled, not shifted, where the median is a crowd: the band keeps its relative width.
    assert np.quantile(samples[0], 0.9) / np.quantile(samples[0], 0.1) == pytest.approx(
        spread_before)


def test_an_80_percent_band_covers_80_percent_of_a_known_distribution() -> None:
    rng = np.random.default_rng(7)
    actual = pd.Series(rng.normal(100.0, 10.0, 200_000))
    z80 = 1.2815515655446004  # the 90 % quantile of the standard normal
    honest = band_coverage(actual, pd.Series(100 - z80 * 10.0, index=actual.index),
                           pd.Series(100 + z80 * 10.0, index=actual.index))
    assert honest == pytest.approx(0.80, abs=0.005)
    # A band half as wide covers about half (the 25 %-75 % quantiles are ±0.674 σ).
    narrow = band_coverage(actual, pd.Series(100 - 6.74, index=actual.index),
                           pd.Series(100 + 6.74, index=actual.index))
    assert narrow == pytest.approx(0.50, abs=0.005)
    # Hours with no count are not scored.
    gaps = actual.copy()
    gaps[: len(gaps) // 2] = np.nan
    assert band_coverage(gaps, gaps * 0 - 1e9, gaps * 0 + 1e9) == 1.0
    assert band_coverage(pd.Series([np.nan]), pd.Series([0.0]), pd.Series([1.0])) is None


def test_the_recentred_band_of_a_known_distribution_covers_80_percent() -> None:
    """Samples from a lognormal around the wrong median, recentred to the right one: their
    10 %-90 % band covers 80 % of counts drawn from the right distribution."""
    rng = np.random.default_rng(3)
    hours, n = 400, 1000
    true_median = rng.uniform(20, 200, hours)
    samples = rng.lognormal(np.log(true_median * 0.6)[:, None], 0.3, size=(hours, n))
    recentre(samples, true_median)
    lower, upper = np.quantile(samples, 0.1, axis=1), np.quantile(samples, 0.9, axis=1)
    draws = rng.lognormal(np.log(true_median)[:, None], 0.3, size=(hours, 200))
    coverage = band_coverage(pd.Series(draws.ravel()),
                             pd.Series(np.repeat(lower, 200)), pd.Series(np.repeat(upper, 200)))
    assert coverage == pytest.approx(0.80, abs=0.01)


def _history(site_id: str, end: datetime, days: int, seed: int = 5) -> pd.DataFrame:
    site = CATALOGUE.site(site_id)
    ds = pd.Series(pd.date_range(pd.Timestamp(end) - pd.Timedelta(days=days), end, freq="h",
                                 inclusive="left"))
    weekly = 1.0 + 0.5 * (ds.dt.day_of_week >= 5)
    daily = np.exp(-0.5 * ((ds.dt.hour - 12) / 3) ** 2)
    return counted_hours(site, ds, (40 * weekly * daily).to_numpy(float), seed)


def test_candidates_keep_prophet_on_festivals_closed_hours_and_after_a_week() -> None:
    site = CATALOGUE.site("tam_thanh")
    # 10 Feb 2026 local: the week ahead holds Tết's eve (16 Feb) and its days off.
    start = datetime(2026, 2, 10)
    calendar = site_calendar("tam_thanh", range(2024, 2028), 2, 1, site.kind)
    history = _history("tam_thanh", start, 400)
    hours = 14 * 24
    prophet = np.full(hours, 123.0)
    out = candidate_forecasts(history, site, calendar, start, hours, prophet)
    assert list(out.columns) == ["ds", *MODELS]
    ds = out["ds"]
    window = ds.dt.normalize().isin(calendar.festival_days.union(calendar.days_off)).to_numpy()
    is_open = open_mask(site, ds)
    first_week = np.arange(hours) < 168
    ordinary = first_week & ~window & is_open
    assert window[first_week].any() and ordinary.any()
    for model in MODELS[1:]:
        values = out[model].to_numpy()
        assert (values[~is_open] == 0).all(), model
        assert (values[window & is_open] == 123.0).all(), model
        assert (values[~first_week & is_open] == 123.0).all(), model
        assert not np.allclose(values[ordinary], 123.0), model
    # The naive candidate repeats the same hour a week before on an ordinary open hour.
    known = history.set_index("ds")["arrivals"]
    hour = ds[ordinary].iloc[3]
    naive = out.set_index("ds").loc[hour, "naive"]
    assert naive == known[hour - pd.Timedelta(days=7)]
    # Prophet + LightGBM is the mean of the two.
    both = out.loc[ordinary, ["prophet_lgbm", "lgbm"]].to_numpy()
    assert both[:, 0] == pytest.approx((both[:, 1] + 123.0) / 2)


def test_a_short_history_leaves_the_learned_candidates_out() -> None:
    site = CATALOGUE.site("tam_thanh")
    start = datetime(2026, 5, 4)
    calendar = site_calendar("tam_thanh", range(2025, 2027), 2, 1, site.kind)
    history = _history("tam_thanh", start, 8)
    out = candidate_forecasts(history, site, calendar, start, 48, np.full(48, 5.0))
    assert "lgbm" not in out and "prophet_lgbm" not in out
    assert {"naive", "mean4w"} <= set(out.columns)
    with pytest.raises(ValueError, match="unknown model"):
        candidate_forecasts(history, site, calendar, start, 48, np.full(48, 5.0), ("tft",))


def test_candidates_are_scored_on_the_same_hours() -> None:
    scored = pd.DataFrame({
        "origin": [1, 1, 1, 2, 2, 2],
        "is_open": [True, True, False, True, True, True],
        "actual": [10.0, 20.0, 0.0, 30.0, np.nan, 50.0],
        "naive": [12.0, 10.0, 0.0, 20.0, 40.0, 40.0],
        "candidate_prophet": [10.0, 18.0, 5.0, 33.0, 40.0, 45.0],
        "candidate_naive": [12.0, 10.0, 0.0, 20.0, 40.0, np.nan],
    })
    table = score_models(scored, busiest_share=0.5).set_index("model")
    # Hours scored: open, counted, naive known, every candidate known: rows 0, 1, 3.
    assert table["open_hours"].tolist() == [3, 3]
    assert table.loc["prophet", "mae"] == pytest.approx((0 + 2 + 3) / 3)
    assert table.loc["prophet", "mae_ratio"] == pytest.approx(5 / (2 + 10 + 10))
    assert table.loc["naive", "mae_ratio"] == pytest.approx(1.0)
    # The busiest half of those hours: 20 and 30 counted.
    assert table.loc["prophet", "busiest_mae_ratio"] == pytest.approx((2 + 3) / (10 + 10))

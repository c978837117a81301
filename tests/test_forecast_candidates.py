"""The candidate forecasters, the choice among them, the recentred predictive distribution
and the band coverage they are judged by (forecasting/candidates.py, forecasting/scoring.py)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import site_calendar
from forecasting.candidates import (
    DEFAULT_PROPHET_SHARE,
    MODELS,
    PROPHET_SHARES,
    SWITCH_MARGIN,
    busier_than_usual,
    candidate_forecasts,
    choose_model,
    lean_to_crowd,
    mix,
    moved_band,
    prophet_share,
    recentre,
    widen,
)
from forecasting.features import open_mask
from forecasting.models import summarise_hourly
from forecasting.scoring import BAND_SCALE_RANGE, band_coverage, band_scale, score_models
from tests.forecast_support import counted_hours
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")


def _scores(**ratios: float) -> pd.DataFrame:
    return pd.DataFrame({"model": list(ratios), "mae_ratio": list(ratios.values())})


def test_the_preferred_blend_is_kept_unless_another_model_erred_clearly_less() -> None:
    # Within the margin: a slightly better model does not displace the preferred one.
    assert choose_model(_scores(prophet=0.7, prophet_lgbm=0.64, lgbm_prophet=0.66, lgbm=0.65,
                                mean4w=0.8, naive=1.0)) == ("lgbm_prophet", 0.66)
    # Clearly better (more than SWITCH_MARGIN less error): it is chosen.
    margin = 1 - SWITCH_MARGIN
    assert choose_model(_scores(prophet=0.66 * margin - 0.01, lgbm_prophet=0.66,
                                naive=1.0)) == ("prophet", pytest.approx(0.66 * margin - 0.01))
    assert choose_model(_scores(prophet=0.66 * margin + 0.01, lgbm_prophet=0.66,
                                naive=1.0)) == ("lgbm_prophet", 0.66)


def test_when_the_preferred_blend_loses_to_naive_the_best_is_chosen() -> None:
    assert choose_model(_scores(prophet=0.98, lgbm_prophet=1.01, naive=1.0)) == (
        "prophet", 0.98)
    assert choose_model(_scores(prophet=1.3, prophet_lgbm=1.1, lgbm_prophet=1.05, lgbm=1.2,
                                mean4w=1.02, naive=1.0)) == ("naive", 1.0)


def test_the_preferred_blend_before_any_backtest_and_the_best_without_it() -> None:
    assert choose_model(None) == ("lgbm_prophet", None)
    assert choose_model(_scores()) == ("lgbm_prophet", None)
    assert choose_model(_scores(prophet=float("nan"), lgbm=float("nan"))) == (
        "lgbm_prophet", None)
    # A backtest without the preferred model (too little history for LightGBM): the best, a
    # tie to the earlier model of MODELS.
    assert choose_model(_scores(mean4w=0.7, prophet=0.7, naive=1.0)) == ("prophet", 0.7)
    # A model this code does not know (a newer backtest, an older code) is not chosen.
    assert choose_model(_scores(tft=0.1, mean4w=0.9)) == ("mean4w", 0.9)


def test_a_band_scale_calibrates_a_band_on_a_known_distribution() -> None:
    rng = np.random.default_rng(11)
    actual = rng.normal(100.0, 10.0, 50_000)
    point = np.full_like(actual, 100.0)
    z = 1.2815516  # the normal's 90 % quantile: ±z σ is the honest 80 % band
    for width, expected in ((z, 1.0), (2 * z, 0.5), (z / 2, 2.0)):
        scale = band_scale(actual, point, point - width * 10, point + width * 10)
        assert scale == pytest.approx(expected, rel=0.02)
        lower, upper = point - scale * width * 10, point + scale * width * 10
        assert band_coverage(pd.Series(actual), pd.Series(lower), pd.Series(upper)) == (
            pytest.approx(0.80, abs=0.005))
    # A band of no width around a wrong point cannot be calibrated: the widest scale.
    assert band_scale(actual[:10], point[:10] + 50, point[:10] + 50, point[:10] + 50) == (
        BAND_SCALE_RANGE[1])
    assert band_scale(np.array([np.nan]), np.array([1.0]), np.array([0.0]),
                      np.array([2.0])) is None


def test_widened_samples_keep_their_median_and_scale_their_band() -> None:
    rng = np.random.default_rng(3)
    samples = rng.normal([[100.0], [2.0]], [[10.0], [3.0]], size=(2, 4001))
    point = np.median(samples, axis=1)
    width = np.quantile(samples[0], 0.9) - np.quantile(samples[0], 0.1)
    widen(samples, point, 0.5)
    assert np.median(samples[0]) == pytest.approx(point[0])
    assert np.quantile(samples[0], 0.9) - np.quantile(samples[0], 0.1) == pytest.approx(
        width / 2)
    assert (samples >= 0).all()
    with pytest.raises(ValueError, match="band scale"):
        widen(samples, point, 0.0)


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


def test_a_band_kept_as_three_quantiles_moves_as_its_samples_would() -> None:
    """A crowd's band is scaled to the new median, a near-empty hour's is shifted and floored
    at 0; the quantiles given are not changed."""
    lower, median, upper = np.array([40.0, 0.2]), np.array([50.0, 0.5]), np.array([70.0, 3.0])
    new_lower, new_upper = moved_band(lower, median, upper, np.array([100.0, 0.1]))
    assert new_lower == pytest.approx([80.0, 0.0])
    assert new_upper == pytest.approx([140.0, 2.6])
    assert median.tolist() == [50.0, 0.5] and lower.tolist() == [40.0, 0.2]


def test_only_the_busier_open_hours_lean_and_only_toward_the_upper_edge() -> None:
    point = np.array([0.0, 10.0, 40.0, 50.0, 60.0, 500.0, np.nan])
    upper = np.array([0.0, 20.0, 60.0, 80.0, 60.0, 900.0, 5.0])
    is_open = np.array([False, True, True, True, True, False, True])
    busy = busier_than_usual(point, is_open)
    # The open hours' median is 45: the hours at 50 and 60 are busier; closed ones never.
    assert busy.tolist() == [False, False, False, True, True, False, False]
    leaned = lean_to_crowd(point, upper, busy, 0.1)
    assert leaned[3] == pytest.approx(53.0)  # a tenth of the way from 50 to 80
    assert leaned[4] == 60.0  # already at its upper edge
    assert np.array_equal(leaned[~busy], point[~busy], equal_nan=True)
    assert np.array_equal(lean_to_crowd(point, upper, busy, 0.0), point, equal_nan=True)
    # Every hour counts as open without opening hours; no known hour, no busy hour.
    assert busier_than_usual(np.array([1.0, 3.0, 2.0])).tolist() == [False, True, True]
    assert not busier_than_usual(np.array([np.nan, np.nan])).any()
    with pytest.raises(ValueError, match="crowd lean"):
        lean_to_crowd(point, upper, busy, 1.5)


def test_a_forecast_leans_toward_the_crowd_where_busy_and_keeps_its_band() -> None:
    """`summarise_hourly`: the busy hours' arrivals move toward their upper edge by
    `crowd_lean` and the median is kept beside them; the bands, occupancy and p_overload are
    the samples' whatever the lean."""
    site = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml").site("tam_thanh")
    ds = pd.Series(pd.date_range("2026-03-16", periods=48, freq="h"))
    is_open = open_mask(site, ds)
    rng = np.random.default_rng(5)
    level = np.where(is_open, 20.0 + 15.0 * np.sin(np.pi * (ds.dt.hour - 7) / 11).clip(0), 0)
    samples = rng.lognormal(np.log(np.maximum(level, 1e-9))[:, None], 0.3, size=(48, 500))
    samples[~is_open] = 0.0
    grid = pd.DataFrame({"ds": ds, "is_open": is_open})
    out = {lean: summarise_hourly(grid, samples, site, ForecastSettings(crowd_lean=lean), 0.5)
           for lean in (0.0, 0.07)}
    median, leaned = out[0.0], out[0.07]
    assert np.allclose(median["arrivals"], np.median(samples, axis=1))
    busy = busier_than_usual(median["arrivals"].to_numpy(), is_open)
    assert 0 < busy.sum() < is_open.sum()
    expected = median["arrivals"] + 0.07 * (median["arrivals_upper"] - median["arrivals"])
    assert np.allclose(leaned["arrivals"][busy], expected[busy])
    assert (leaned["arrivals"][~busy] == median["arrivals"][~busy]).all()
    for column in ("arrivals_median", "arrivals_lower", "arrivals_upper", "occupancy",
                   "occupancy_upper", "p_overload"):
        assert (leaned[column] == median[column]).all()
    assert (leaned["arrivals_median"] == median["arrivals"]).all()


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
    # Prophet + LightGBM is the mean of the two; the preferred blend three parts LightGBM
    # before a backtest has chosen Prophet's share, the backtest's share after.
    both = out.loc[ordinary, ["prophet_lgbm", "lgbm", "lgbm_prophet"]].to_numpy()
    assert both[:, 0] == pytest.approx((both[:, 1] + 123.0) / 2)
    assert both[:, 2] == pytest.approx(0.75 * both[:, 1] + 0.25 * 123.0)
    chosen = candidate_forecasts(history, site, calendar, start, hours, prophet,
                                 ("prophet", "lgbm", "lgbm_prophet"), prophet_share=0.1)
    assert chosen.loc[ordinary, "lgbm_prophet"].to_numpy() == pytest.approx(
        0.9 * both[:, 1] + 0.1 * 123.0)
    assert (chosen.loc[window & is_open, "lgbm_prophet"] == 123.0).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        candidate_forecasts(history, site, calendar, start, hours, prophet, prophet_share=1.5)


def test_the_learned_candidates_tell_a_holiday_from_its_eve(monkeypatch) -> None:
    site = CATALOGUE.site("tam_thanh")
    start = datetime(2025, 8, 28)  # the week ahead holds National Day, 1-2 September 2025
    calendar = site_calendar("tam_thanh", range(2024, 2027), 2, 1, site.kind)
    seen = {}

    def pair(y, origin, hours, holidays, exog=None, band=True):
        seen["holidays"] = holidays
        return pd.DataFrame({"point": np.full(hours, 7.0)})

    monkeypatch.setattr("forecasting.candidates.gradient_boosted_pair", pair)
    out = candidate_forecasts(_history("tam_thanh", start, 30), site, calendar, start, 48,
                              np.full(48, 5.0))
    assert "lgbm" in out
    offsets = seen["holidays"]
    assert offsets[pd.Timestamp("2025-09-01")] == offsets[pd.Timestamp("2025-09-02")] == 0
    assert offsets[pd.Timestamp("2025-08-31")] == -1  # its eve is not taken for it
    assert offsets[pd.Timestamp("2025-08-30")] == -2
    assert pd.Timestamp("2025-08-27") not in offsets.index  # no holiday reaches it


def test_prophets_share_is_the_one_that_erred_least() -> None:
    rng = np.random.default_rng(3)
    lgbm, prophet = rng.uniform(0, 100, 500), rng.uniform(0, 100, 500)
    for share in (0.0, 0.15, 0.5):
        assert prophet_share(mix(lgbm, prophet, share), lgbm, prophet) == share
    # Past the largest share, the largest; the counts nearer Prophet than any share allows.
    assert prophet_share(prophet, lgbm, prophet) == max(PROPHET_SHARES)
    # An unknown hour is left out, not counted as an error; a tie goes to the smaller share.
    actual = mix(lgbm, prophet, 0.3)
    actual[:10] = np.nan
    assert prophet_share(actual, lgbm, prophet) == 0.3
    assert prophet_share(lgbm, lgbm, lgbm) == 0.0
    assert prophet_share(np.array([np.nan]), np.array([1.0]), np.array([2.0])) == (
        DEFAULT_PROPHET_SHARE)


def test_the_preferred_blend_is_scored_at_the_share_that_erred_least() -> None:
    rng = np.random.default_rng(4)
    n = 300
    lgbm, prophet = rng.uniform(10, 100, n), rng.uniform(10, 100, n)
    actual = mix(lgbm, prophet, 0.4) + rng.normal(0, 1, n)
    scored = pd.DataFrame({
        "is_open": True, "actual": actual, "naive": actual + 20.0,
        "candidate_prophet": prophet, "candidate_lgbm": lgbm,
        # As a backtest stores it: made with the share before any backtest.
        "candidate_lgbm_prophet": mix(lgbm, prophet, DEFAULT_PROPHET_SHARE),
    })
    table = score_models(scored).set_index("model")
    assert table.loc["lgbm_prophet", "prophet_share"] == 0.4
    assert table[["prophet_share"]].drop(index="lgbm_prophet").isna().all().all()
    error = np.abs(mix(lgbm, prophet, 0.4) - actual).mean()
    assert table.loc["lgbm_prophet", "mae"] == pytest.approx(error)
    assert table.loc["lgbm_prophet", "mae"] < table.loc["lgbm", "mae"]
    # Without the LightGBM candidate there is no share to choose.
    alone = score_models(scored.drop(columns="candidate_lgbm")).set_index("model")
    assert alone["prophet_share"].isna().all()


def test_a_short_history_leaves_the_learned_candidates_out() -> None:
    site = CATALOGUE.site("tam_thanh")
    start = datetime(2026, 5, 4)
    calendar = site_calendar("tam_thanh", range(2025, 2027), 2, 1, site.kind)
    history = _history("tam_thanh", start, 8)
    out = candidate_forecasts(history, site, calendar, start, 48, np.full(48, 5.0))
    assert not {"lgbm", "prophet_lgbm", "lgbm_prophet"} & set(out.columns)
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
    assert table["band_scale"].isna().all()  # no Prophet band in this frame


def test_each_candidate_gets_the_band_scale_of_prophets_band_moved_to_it() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    actual = rng.normal(100.0, 10.0, n)
    scored = pd.DataFrame({
        "is_open": True, "actual": actual, "naive": actual + rng.normal(0, 20, n),
        # Prophet: the right median, a band twice as wide as an 80 % band.
        "model": 100.0, "model_lower": 100.0 - 25.63, "model_upper": 100.0 + 25.63,
        "candidate_prophet": 100.0,
        # A candidate 10 % low: Prophet's band moved (scaled) to it, then calibrated.
        "candidate_low": 90.0,
    })
    table = score_models(scored).set_index("model")
    assert table.loc["prophet", "band_scale"] == pytest.approx(0.5, rel=0.05)
    band = scored[["model_lower", "model", "model_upper"]].to_numpy(float, copy=True)
    recentre(band, np.full(n, 90.0))
    assert table.loc["low", "band_scale"] == pytest.approx(
        band_scale(actual, np.full(n, 90.0), band[:, 0], band[:, 2]))

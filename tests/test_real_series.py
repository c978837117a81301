"""The real counter series (`data/real/`, `forecasting/real_series.py`), the forecasts to
beat (`forecasting/baselines.py`), the shipped model's replayed choice
(`forecasting/hybrid.py`) and the real benchmark's scoring (`bench/real_series.py`). No
Prophet fit."""

from __future__ import annotations

import hashlib
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.real_series import mase_scale, score_methods
from forecasting.baselines import (
    gradient_boosted,
    gradient_boosted_pair,
    lag_features,
    mean_of_weeks,
    origin_features,
    regular_hours,
    weekly_naive,
)
from forecasting.calendar import holiday_offsets
from forecasting.hybrid import replay_shipped
from forecasting.real_series import DATA_DIR, SERIES, load_series

ORIGIN = pd.Timestamp("2024-03-04")  # a Monday


def _series(days: int = 70, seed: int = 3) -> pd.Series:
    ds = pd.date_range(ORIGIN - pd.Timedelta(days=days - 14), periods=days * 24, freq="h")
    rate = 20 + 80 * np.sin(np.pi * ds.hour / 24) ** 2 * (1 + 0.5 * (ds.day_of_week >= 5))
    return pd.Series(np.random.default_rng(seed).poisson(rate).astype(float), index=ds)


def test_weekly_naive_repeats_last_week_and_falls_back_over_an_outage() -> None:
    y = _series()
    y[(y.index >= ORIGIN - pd.Timedelta(days=7)) & (y.index < ORIGIN - pd.Timedelta(days=5))] \
        = np.nan  # last Monday and Tuesday not counted
    out = weekly_naive(y, ORIGIN, 168)
    week = pd.Timedelta(days=7)
    assert out["point"].iloc[0] == y[ORIGIN - 2 * week]  # two weeks back
    assert out["point"].iloc[72] == y[ORIGIN + pd.Timedelta(hours=72) - week]
    assert (out["lower"] <= out["point"]).all() and (out["upper"] >= out["point"]).all()


def test_mean_of_weeks_averages_the_known_weeks() -> None:
    y = _series()
    out = mean_of_weeks(y, ORIGIN, 24)
    first = [y[ORIGIN - pd.Timedelta(days=7 * k)] for k in (1, 2, 3, 4)]
    assert out["point"].iloc[0] == pytest.approx(np.mean(first))
    y[ORIGIN - pd.Timedelta(days=14)] = np.nan
    again = mean_of_weeks(y, ORIGIN, 24)
    assert again["point"].iloc[0] == pytest.approx(np.mean([first[0], *first[2:]]))


RELATIVE = partial(gradient_boosted, relative=True)
RECENT = partial(gradient_boosted, recent=True)
RELATIVE_RECENT = partial(gradient_boosted, relative=True, recent=True)
LEARNED = [gradient_boosted, RELATIVE, RECENT, RELATIVE_RECENT, gradient_boosted_pair]


@pytest.mark.parametrize("forecaster", [weekly_naive, mean_of_weeks, *LEARNED])
def test_no_forecast_reads_the_future(forecaster) -> None:
    y = _series()
    before = forecaster(y, ORIGIN, 168)
    poisoned = y.copy()
    poisoned[poisoned.index >= ORIGIN] = 1e9
    after = forecaster(poisoned, ORIGIN, 168)
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.parametrize("forecaster", LEARNED)
def test_gradient_boosted_learns_the_weekly_shape(forecaster) -> None:
    y = _series(days=120)
    out = forecaster(y, ORIGIN, 168)
    actual = y.reindex(out["ds"]).to_numpy()
    naive = weekly_naive(y, ORIGIN, 168)["point"].to_numpy()
    assert np.abs(out["point"] - actual).mean() < np.abs(naive - actual).mean()
    assert (out["lower"] <= out["point"]).all() and (out["point"] <= out["upper"]).all()
    covered = ((actual >= out["lower"]) & (actual <= out["upper"])).mean()
    assert 0.5 < covered <= 1.0


def test_the_pair_is_the_mean_of_the_plain_and_the_relative_model() -> None:
    y = _series(days=120)
    plain, relative = RECENT(y, ORIGIN, 168), RELATIVE_RECENT(y, ORIGIN, 168)
    pair = gradient_boosted_pair(y, ORIGIN, 168)
    for column in ("point", "lower", "upper"):
        assert np.allclose(pair[column], (plain[column] + relative[column]) / 2)
    # Two different models, not one twice.
    assert not np.allclose(plain["point"], relative["point"])


def test_origin_features_read_only_what_was_known_at_each_hours_own_origin() -> None:
    y = _series(days=60)
    origin = ORIGIN + pd.Timedelta(hours=5)  # a refit's origin need not be a midnight
    ds = pd.date_range(origin - pd.Timedelta(days=21), periods=28 * 24, freq="h")
    features = origin_features(y, ds, origin)
    week = pd.Timedelta(days=7)
    # The horizon counts from the latest of origin, origin − 1 week, … at or before the hour.
    assert features["horizon"].between(0, 167).all()
    assert features.loc[origin, "horizon"] == 0
    assert features.loc[origin - week, "horizon"] == 0
    assert features.loc[origin - pd.Timedelta(hours=1), "horizon"] == 167
    assert features.loc[origin + pd.Timedelta(hours=30), "horizon"] == 30
    # The same hour of day on the last day before the (own) origin.
    for hours_ahead, days_back in ((3, 1), (23, 1), (24, 2), (30, 2), (100, 5)):
        hour = origin - week + pd.Timedelta(hours=hours_ahead)
        expected = y[hour - pd.Timedelta(days=days_back)]
        assert features.loc[hour, "last_day_same_hour"] == expected
    # Each hour's features are those of a series cut at its own origin: nothing from after it.
    for hour in (origin - week - pd.Timedelta(hours=2), origin - week + pd.Timedelta(hours=40),
                 origin + pd.Timedelta(hours=100)):
        own_origin = hour - pd.Timedelta(hours=features.loc[hour, "horizon"])
        cut = origin_features(y[y.index < own_origin], pd.DatetimeIndex([hour]), origin)
        pd.testing.assert_series_equal(cut.iloc[0], features.loc[hour], check_names=False)
    assert features.loc[origin, "day_mean_origin"] == pytest.approx(
        y[origin - pd.Timedelta(hours=24):origin - pd.Timedelta(hours=1)].mean())


def test_holiday_offsets_count_days_from_the_nearest_holiday_day() -> None:
    holidays = pd.DataFrame({
        "holiday": ["anzac", "fest", "fest", "fest", "a", "b"],
        "ds": pd.to_datetime(["2024-04-25", "2024-05-10", "2024-05-11", "2024-05-12",
                              "2024-06-01", "2024-06-03"]),
        # a festival's window sits on its edges; two holidays two days apart share a day
        "lower_window": [-2, -2, 0, 0, -2, -2], "upper_window": [1, 0, 0, 1, 1, 1]})
    offsets = holiday_offsets(holidays)
    day = {d.strftime("%m-%d"): int(v) for d, v in offsets.items()}
    assert day == {"04-23": -2, "04-24": -1, "04-25": 0, "04-26": 1,
                   "05-08": -2, "05-09": -1, "05-10": 0, "05-11": 0, "05-12": 0, "05-13": 1,
                   "05-30": -2, "05-31": -1, "06-01": 0, "06-02": 1, "06-03": 0, "06-04": 1}
    assert holiday_offsets(None).empty


def test_lag_features_tell_a_holiday_from_its_eve() -> None:
    y = _series()
    ds = pd.date_range(ORIGIN, periods=72, freq="h")
    holiday = pd.DataFrame({"holiday": ["h"], "ds": [ORIGIN + pd.Timedelta(days=1)],
                            "lower_window": [-1], "upper_window": [0]})
    x = lag_features(y, ds, holiday_offsets(holiday))
    assert x["holiday"].tolist() == [0] * 24 + [1] * 24 + [0] * 24
    assert x["holiday_offset"].iloc[::24].tolist()[:2] == [-1, 0]
    assert np.isnan(x["holiday_offset"].iloc[48:]).all()
    # A set of dates is a flag on those dates only, as before.
    plain = lag_features(y, ds, frozenset({(ORIGIN + pd.Timedelta(days=1)).date()}))
    assert plain["holiday"].equals(x["holiday"]) and "holiday_offset" not in plain


def test_bad_input_is_refused_with_a_reason() -> None:
    y = _series()
    with pytest.raises(ValueError, match="1-168 h"):
        weekly_naive(y, ORIGIN, 200)
    with pytest.raises(ValueError, match="hour start"):
        mean_of_weeks(y, ORIGIN + pd.Timedelta(minutes=30), 24)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        weekly_naive(y.reset_index(drop=True), ORIGIN, 24)


def test_regular_hours_fills_holes_and_averages_repeats() -> None:
    index = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 02:00", "2024-01-01 02:00"])
    out = regular_hours(pd.Series([1.0, 2.0, 4.0], index=index))
    assert out.index.tolist() == list(pd.date_range("2024-01-01", periods=3, freq="h"))
    assert np.isnan(out.iloc[1]) and out.iloc[2] == 3.0


def _scored(errors: dict[str, list[float]], half_width: float = 1.0) -> pd.DataFrame:
    """Folds a week apart, 2 hours each; per candidate a constant error per fold, a band of
    ± `half_width`; the naive errs by 10."""
    frames = []
    for k in range(len(next(iter(errors.values())))):
        origin = pd.Timestamp("2024-01-01") + pd.Timedelta(days=7 * k)
        fold = pd.DataFrame({"origin": origin, "ds": [origin, origin + pd.Timedelta(hours=1)],
                             "actual": [100.0, 100.0], "naive": [110.0, 110.0]})
        for name, errs in errors.items():
            fold[name] = 100.0 + errs[k]
            fold[f"{name}_lower"] = fold[name] - half_width
            fold[f"{name}_upper"] = fold[name] + half_width
        frames.append(fold)
    return pd.concat(frames, ignore_index=True)


def test_the_replayed_choice_uses_only_finished_folds_and_the_margin() -> None:
    scored = _scored({"blend": [5, 5, 5, 5, 5], "p": [1, 1, 9, 9, 9], "m": [5, 5, 4.8, 4.8, 4.8]})
    columns = {"lgbm_prophet": "blend", "prophet": "p", "mean4w": "m"}
    out, chosen = replay_shipped(scored, columns, horizon_hours=168, window=2, crowd_lean=0)
    # Fold 0: nothing finished → the preferred blend; folds 1-2: Prophet erred 80 % less so
    # far; fold 3: over folds 1-2, Prophet erred 1 + 9, the blend 5 + 5 → the blend; fold 4:
    # the 4-week mean erred 4 % less than the blend: within the margin, the blend stays.
    assert chosen.tolist() == ["lgbm_prophet", "prophet", "prophet", "lgbm_prophet",
                               "lgbm_prophet"]
    second = out[out["origin"] == scored["origin"].iloc[2]]
    assert (second["shipped"] == second["p"]).all()


def test_the_replayed_blend_takes_prophets_share_from_finished_folds() -> None:
    # LightGBM 10 too high, Prophet 10 too low: half of each would have been exact.
    scored = _scored({"blend": [5, 5, 5], "l": [10, 10, 10], "p": [-10, -10, -10]})
    columns = {"lgbm_prophet": "blend", "lgbm": "l", "prophet": "p"}
    out, chosen = replay_shipped(scored, columns, horizon_hours=168, crowd_lean=0)
    assert chosen.tolist() == ["lgbm_prophet"] * 3
    first = out["origin"] == out["origin"].min()
    assert (out.loc[first, "shipped"] == 105.0).all()  # nothing finished: the stored blend
    assert np.allclose(out.loc[~first, "shipped"], 100.0)  # the mix at a half
    # Prophet's band (± 1 around 90) moved to the mix, then calibrated on the past hours.
    assert (out.loc[~first, "shipped_upper"] > 100.0).all()
    assert (out.loc[~first, "shipped_lower"] < 100.0).all()


def test_the_replayed_band_is_scaled_to_have_covered_80_percent() -> None:
    # Every count 5 off the blend's point, its band ± 10: half as wide would have covered.
    scored = _scored({"blend": [5, 5, 5]}, half_width=10.0)
    out, _ = replay_shipped(scored, {"lgbm_prophet": "blend"}, horizon_hours=168, crowd_lean=0)
    first, later = out[out["origin"] == out["origin"].min()], out[out["origin"] > out[
        "origin"].min()]
    assert (first["shipped_upper"] - first["shipped"] == 10.0).all()  # nothing to learn from
    assert np.allclose(later["shipped_upper"] - later["shipped"], 5.0)
    assert np.allclose(later["shipped"] - later["shipped_lower"], 5.0)


def test_the_replayed_forecast_leans_toward_the_crowd_on_its_busy_hours() -> None:
    scored = _scored({"blend": [5, 5, 5]}, half_width=10.0)
    scored["blend"] += np.tile([0.0, 50.0], 3)  # each fold: a quiet hour, then a busy one
    for column in ("blend_lower", "blend_upper"):
        scored[column] += np.tile([0.0, 50.0], 3)
    median, _ = replay_shipped(scored, {"lgbm_prophet": "blend"}, horizon_hours=168,
                               crowd_lean=0)
    leaned, _ = replay_shipped(scored, {"lgbm_prophet": "blend"}, horizon_hours=168,
                               crowd_lean=0.5)
    busy = np.tile([False, True], 3)
    # Half of the way to the (calibrated) upper edge on the busy hour; the quiet hour and
    # the band as the median had them.
    assert np.allclose(leaned["shipped"][busy], (median["shipped"] + 0.5 * (
        median["shipped_upper"] - median["shipped"]))[busy])
    assert (leaned["shipped"][busy] > median["shipped"][busy]).all()
    assert (leaned["shipped"][~busy] == median["shipped"][~busy]).all()
    for edge in ("shipped_lower", "shipped_upper"):
        assert (leaned[edge] == median[edge]).all()


def test_the_replayed_choice_waits_for_a_fold_to_end() -> None:
    scored = _scored({"blend": [5, 5], "p": [1, 1]})
    _, chosen = replay_shipped(scored, {"lgbm_prophet": "blend", "prophet": "p"},
                               horizon_hours=8 * 24)
    assert chosen.tolist() == ["lgbm_prophet", "lgbm_prophet"]  # an 8-day fold has not ended
    with pytest.raises(ValueError, match="no column"):
        replay_shipped(scored, {"prophet": "missing"}, horizon_hours=168)


def test_scores_per_method() -> None:
    scored = _scored({"naive": [10, 10], "good": [5, 5]})
    scored.loc[1, "actual"] = np.nan  # an unknown hour is not scored
    table = score_methods(scored, ["naive", "good"], frozenset(), scale=10.0).set_index(
        "method")
    assert table.loc["naive", "ratio"] == 1.0 and table.loc["good", "ratio"] == 0.5
    assert table.loc["good", "mase"] == 0.5
    assert table.loc["good", "hours"] == 3
    assert table.loc["naive", "coverage80"] == 0.0
    y = pd.Series(np.tile([1.0, 3.0], 24 * 7 * 3), index=pd.date_range(
        "2024-01-01", periods=24 * 7 * 6, freq="h"))
    assert mase_scale(y, pd.Timestamp("2024-02-05")) == 0.0


def test_every_series_loads_from_the_repository_copy() -> None:
    for series_id in SERIES:
        series = load_series(series_id)
        y = series.y
        assert y.index.is_unique and y.index.is_monotonic_increasing
        assert (y.index.to_series().diff().dropna() == pd.Timedelta(hours=1)).all()
        assert y.notna().sum() > 365 * 24, series_id
        assert (y.dropna() >= 0).all()
        assert series.holidays
    dc = load_series("dc_casual")
    assert dc.exog is not None and dc.exog.notna().all().all()


def test_auckland_night_hours_belong_to_the_next_day() -> None:
    # New Year's midnight crowd at the waterfront: the file lists it under 31 December.
    y = load_series("akl_107_quay").y
    assert y[pd.Timestamp("2024-01-01 00:00")] > 1000
    # … and is more than three times the Saturday night's hour before it (281 people).
    assert y[pd.Timestamp("2024-01-01 00:00")] > 3 * y[pd.Timestamp("2023-12-31 00:00")]


def test_the_data_readme_gives_each_copied_file_its_checksum() -> None:
    readme = (DATA_DIR / "README.md").read_text()
    listed = dict(re.findall(r"`([^`]+\.csv)`[^\n]*?`([0-9a-f]{64})`", readme))
    files = sorted(p.name for p in Path(DATA_DIR).glob("*.csv"))
    assert sorted(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_a_file_from_before_the_preferred_blend_gets_it_from_its_stored_parts() -> None:
    from bench.real_series import _add_preferred

    frame = pd.DataFrame({"prophet": [100.0, 0.5], "prophet_lower": [80.0, 0.0],
                          "prophet_upper": [130.0, 2.0], "shipped_lgbm": [60.0, 1.5]})
    _add_preferred(frame)
    assert frame["shipped_lgbm_prophet"].tolist() == pytest.approx([70.0, 1.25])
    # Prophet's band scaled to the new median (70 / 100), or shifted below one person.
    assert frame.loc[0, ["shipped_lgbm_prophet_lower", "shipped_lgbm_prophet_upper"]].tolist(
        ) == pytest.approx([56.0, 91.0])
    assert frame.loc[1, ["shipped_lgbm_prophet_lower", "shipped_lgbm_prophet_upper"]].tolist(
        ) == pytest.approx([0.75, 2.75])
    before = frame.copy()
    _add_preferred(frame)  # already there: left alone
    pd.testing.assert_frame_equal(frame, before)

"""Backtests on histories with gaps: origins are chosen where the fold was counted, a fold
mostly missing is not scored, and the share of hours scored is reported. No Prophet fit: the
model is replaced by a stand-in that repeats last week."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from forecasting import backtest
from forecasting.backtest import (
    MIN_FOLD_SHARE,
    BacktestTask,
    always_open_site,
    backtest_csv,
    backtest_site,
    choose_origins,
    counted_share,
    scored_share,
)
from forecasting.calendar import plain_calendar
from visitorflow.settings import ForecastSettings

START = pd.Timestamp("2025-01-06")  # a Monday
OUTAGE = (pd.Timestamp("2025-03-20"), pd.Timestamp("2025-04-08"))  # 19 days dark


def _history(days: int = 120, outage: tuple[pd.Timestamp, pd.Timestamp] | None = OUTAGE,
             seed: int = 1) -> pd.DataFrame:
    ds = pd.date_range(START, periods=days * 24, freq="h")
    rate = 50 + 40 * np.sin(np.pi * ds.hour / 24) ** 2 + 20 * (ds.day_of_week >= 5)
    counts = np.random.default_rng(seed).poisson(rate).astype(float)
    frame = pd.DataFrame({"ds": ds, "arrivals": counts})
    if outage is not None:
        dark = (frame["ds"] >= outage[0]) & (frame["ds"] < outage[1])
        frame.loc[dark, "arrivals"] = np.nan
    return frame


def _overlap_share(origin: pd.Timestamp, days: int) -> float:
    fold = pd.date_range(origin, periods=days * 24, freq="h")
    return float(((fold >= OUTAGE[0]) & (fold < OUTAGE[1])).mean())


def test_origins_skip_the_outage_and_keep_the_number_of_folds() -> None:
    history = _history()
    last = START + pd.Timedelta(days=112)
    origins = [pd.Timestamp(o) for o in choose_origins(history, last, 8, 7, 7, 14)]
    assert len(origins) == 8
    for origin in origins:
        # Neither the fold nor the week before it (the naive forecast's source) is mostly dark.
        assert _overlap_share(origin, 7) < 1 - MIN_FOLD_SHARE, origin
        assert _overlap_share(origin - pd.Timedelta(days=7), 7) < 1 - MIN_FOLD_SHARE, origin
        assert not OUTAGE[0] <= origin < OUTAGE[1], f"origin {origin} inside the outage"
    # The weekly grid is kept: the skipped weeks push the oldest folds further back.
    assert all((last - o).days % 7 == 0 for o in origins)
    assert origins[0] < last - pd.Timedelta(days=7 * 7)


def test_without_gaps_the_origins_are_the_last_weeks() -> None:
    history = _history(outage=None)
    last = START + pd.Timedelta(days=112)
    origins = choose_origins(history, last, 4, 7, 7, 14)
    assert [pd.Timestamp(o) for o in origins] == [last - pd.Timedelta(days=7 * k)
                                                  for k in (3, 2, 1, 0)]


def test_too_little_training_history_yields_fewer_folds() -> None:
    history = _history(days=40, outage=None)
    origins = choose_origins(history, START + pd.Timedelta(days=33), 10, 7, 7, 21)
    assert origins and all(pd.Timestamp(o) - START >= pd.Timedelta(days=21) for o in origins)
    assert len(origins) == 2


def test_counted_share_counts_open_hours_only() -> None:
    history = _history(outage=None)
    history.loc[history["ds"].dt.hour < 6, "arrivals"] = np.nan  # nights not counted
    table = np.zeros((7, 24), bool)
    table[:, 8:18] = True
    start = START + pd.Timedelta(days=14)
    assert counted_share(history, start, 168, table) == 1.0
    assert counted_share(history, start, 168) == pytest.approx(18 / 24)
    fold = pd.DataFrame({"is_open": [True, True, True, False],
                         "actual": [1.0, np.nan, 2.0, np.nan], "naive": [1.0, 1.0, np.nan, 0]})
    assert scored_share(fold) == pytest.approx(1 / 3)


def _last_week_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the Prophet fit by 'last week + 1' with a ±10 band: the tests are about which
    hours are scored, not about the model."""

    def fake(history, site, settings, calendar, start_local, hours, *args):
        grid = pd.date_range(start_local, periods=hours, freq="h")
        known = history.set_index("ds")["arrivals"]
        value = known.reindex(grid - pd.Timedelta(days=7)).fillna(0).to_numpy() + 1
        hourly = pd.DataFrame({"ds": grid, "is_open": True, "arrivals": value,
                               "arrivals_lower": value - 10, "arrivals_upper": value + 10,
                               "p_overload": 0.0})
        return hourly, pd.DataFrame()

    monkeypatch.setattr(backtest, "fit_and_forecast", fake)


def test_a_fold_mostly_missing_is_not_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    _last_week_model(monkeypatch)
    history = _history()
    inside = datetime(2025, 3, 24)  # its fold is dark
    before = datetime(2025, 3, 3)
    task = BacktestTask(always_open_site("gap"), ForecastSettings(), history,
                        plain_calendar(pd.DataFrame(columns=["holiday", "ds", "lower_window",
                                                             "upper_window"])),
                        [before, inside], 7, frozenset(), keep_scored=True)
    row = backtest_site(task)
    assert row["folds"] == 1
    assert row["open_hours"] == 168
    assert row["fold_shares"][pd.Timestamp(before)] == 1.0
    assert row["fold_shares"][pd.Timestamp(inside)] < MIN_FOLD_SHARE
    assert "1 fold(s) not scored" in row["message"] and "2025-03-24" in row["message"]
    assert {"model_lower", "model_upper"} <= set(row["scored"].columns)


def test_the_csv_backtest_reports_the_share_scored_per_fold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _last_week_model(monkeypatch)
    # History ends a week after the outage: the default last-weeks origins would sit in it.
    history = _history(days=100).rename(columns={"arrivals": "gate"})
    settings = ForecastSettings(backtest_folds=4)
    shares: dict = {}
    table = backtest_csv(history, settings, "gate", label="gate", fold_shares=shares)
    assert table["message"].isna().all(), table["message"].tolist()
    assert len(shares) == 4 and min(shares.values()) >= MIN_FOLD_SHARE
    for origin in shares:
        assert not OUTAGE[0] <= origin < OUTAGE[1], f"origin {origin} inside the outage"
    assert int(table["folds"].iloc[0]) == 4

"""Forecast runs and backtests end to end on a small synthetic history in a temporary store:
real Prophet fits, real spawn process pools, a real local Dask cluster, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pytest

from forecasting import backtest
from forecasting.backtest import run_backtest
from forecasting.candidates import DEFAULT_PROPHET_SHARE, MODELS, PROPHET_SHARES, choose_model
from forecasting.run import backtest_prophet_share, prepare_tasks, run_forecasts
from forecasting.scoring import BAND_SCALE_RANGE
from tests.synthetic_history import write_synthetic_history
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store

SITES = ["tam_thanh", "mau_son", "den_bac_le"]
# 70 days ending 20 Jan 2027 local: Mẫu Sơn's winter, with cold snaps, is in the history.
END_LOCAL = datetime(2027, 1, 20)
SMALL = {
    "VISITORFLOW_FORECAST__HOURLY_HISTORY_DAYS": "70",
    "VISITORFLOW_FORECAST__DAILY_HISTORY_DAYS": "70",
    "VISITORFLOW_FORECAST__SAMPLES": "100",
    "VISITORFLOW_FORECAST__BACKTEST_FOLDS": "2",
}


@pytest.fixture
def small(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test store holding 70 days of synthetic history for SITES, and settings for small
    fits, exported to the environment so the CLI in a subprocess sees the same."""
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    fresh = get_settings()
    write_synthetic_history(Store.from_settings(fresh), load_catalogue(fresh.catalogue_path),
                            SITES, END_LOCAL, 70, seed=11)
    return fresh


def test_a_run_writes_forecasts_that_the_latest_view_reads(small: Settings) -> None:
    store = Store.from_settings(small)
    report = run_forecasts(small, SITES, processes=2, progress=False)
    assert not report.failed
    # The newest reading ends at local midnight 20 Jan = 17:00 UTC on the 19th.
    assert report.history_end_utc == datetime(2027, 1, 19, 17)
    runs = store.forecast_runs()
    assert runs["run_id"].tolist() == [report.run_id]
    saved = json.loads(runs["settings_json"].iloc[0])
    assert saved["forecast"]["hourly_history_days"] == 70 and saved["overload_share"] == 1.0
    sites = store.forecast_sites(report.run_id).set_index("site_id")
    assert (sites["status"] == "ok").all()
    assert sites.loc["mau_son", "regressors"] == "cold_c"

    hourly = store.latest_forecast()
    assert set(hourly["site_id"]) == set(SITES)
    assert (hourly.groupby("site_id").size() == 14 * 24).all()
    tam = hourly[hourly["site_id"] == "tam_thanh"]
    assert tam["ts_utc"].min() == pd.Timestamp("2027-01-19 17:00")
    local_hour = (tam["ts_utc"] + pd.Timedelta(hours=7)).dt.hour
    # Open 07:00–18:00 local: closed hours forecast empty, open hours not.
    assert (tam.loc[~local_hour.between(7, 17), ["arrivals", "occupancy"]] == 0).all().all()
    assert (tam["is_open"] == local_hour.between(7, 17)).all()
    assert tam.loc[local_hour == 10, "arrivals"].min() > 5
    assert hourly["p_overload"].between(0, 1).all()
    daily = store.latest_forecast(granularity="daily")
    assert (daily.groupby("site_id").size() >= 120).all()
    assert daily["arrivals"].ge(0).all()
    tet = daily[(daily["site_id"] == "tam_thanh") & daily["festival"].fillna("").str.contains(
        "tet")]
    assert len(tet) >= 5

    # A second run of one site with a planner's cold snap: runs are kept, the latest view
    # takes mau_son from the new run and the others from the first.
    ts = pd.date_range("2027-01-19 17:00", periods=14 * 24, freq="h")
    store.write_temperature(pd.DataFrame({"site_id": "mau_son", "ts_utc": ts, "temp_c": -5.0,
                                          "source": "scenario"}))
    second = run_forecasts(small, ["mau_son"], processes=1, progress=False)
    assert len(store.forecast_runs()) == 2
    latest = store.latest_forecast()
    chosen = latest.groupby("site_id")["run_id"].first()
    assert chosen["mau_son"] == second.run_id and chosen["tam_thanh"] == report.run_id
    before = hourly[hourly["site_id"] == "mau_son"]["arrivals"].sum()
    after = latest[latest["site_id"] == "mau_son"]["arrivals"].sum()
    assert after > 1.3 * before


def test_cli_reports_a_failing_site_and_forecasts_the_others(small: Settings) -> None:
    store = Store.from_settings(small)
    # One hour of counts at Đền Kỳ Cùng: too little to fit anything.
    write_synthetic_history(store, load_catalogue(small.catalogue_path), ["den_ky_cung"],
                            datetime(2027, 1, 19, 12), 1, seed=3)
    done = subprocess.run(
        [sys.executable, "-m", "forecasting.run", "--sites", "tam_thanh,den_ky_cung,den_bac_le",
         "--processes", "2"],
        cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "2/3 sites forecast" in done.stdout
    assert "site den_ky_cung: fit failed:" in done.stderr
    assert "usable rows of history" in done.stderr
    # cmdstan's chatter stays out of the console; the progress bar is there.
    assert "Chain [1]" not in done.stdout + done.stderr
    assert "cmdstanpy" not in done.stdout + done.stderr
    assert "plotly" not in done.stdout + done.stderr
    assert "forecast fits: 100%" in done.stderr
    run_id = store.forecast_runs()["run_id"].iloc[0]
    sites = store.forecast_sites(run_id).set_index("site_id")
    assert sites.loc["den_ky_cung", "status"] == "failed"
    assert "usable rows" in sites.loc["den_ky_cung", "message"]
    assert set(store.latest_forecast()["site_id"]) == {"tam_thanh", "den_bac_le"}

    assert subprocess.run([sys.executable, "-m", "forecasting.run", "--help"], cwd=PROJECT_ROOT,
                          capture_output=True, timeout=60).returncode == 0


def test_fits_run_on_a_local_dask_cluster(small: Settings) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        report = run_forecasts(small, ["tam_thanh", "den_bac_le"],
                               scheduler=cluster.scheduler_address, progress=False)
    assert not report.failed
    store = Store.from_settings(small)
    saved = json.loads(store.forecast_runs()["settings_json"].iloc[0])
    assert saved["executor"] == cluster.scheduler_address
    assert set(store.latest_forecast()["site_id"]) == {"tam_thanh", "den_bac_le"}


def test_backtest_beats_weekly_naive_on_the_synthetic_history(small: Settings) -> None:
    table = run_backtest(small, ["tam_thanh", "den_bac_le"], processes=2, progress=False)
    assert table["site_id"].tolist() == ["den_bac_le", "tam_thanh"]
    assert table["message"].isna().all()
    assert (table["folds"] == 2).all() and (table["horizon_h"] == 168).all()
    # Two weeks of open hours: 07:00–18:00 (11 h) and 06:00–18:00 (12 h) a day.
    assert table.set_index("site_id")["open_hours"].to_dict() == {"tam_thanh": 14 * 11,
                                                                   "den_bac_le": 14 * 12}
    assert (table["mae_ratio"] < 1).all(), table
    assert ((table["mae"] - table["mae_ratio"] * table["mae_naive"]).abs() < 1e-9).all()
    stored = Store.from_settings(small).latest_backtest()
    assert stored["site_id"].tolist() == ["den_bac_le", "tam_thanh"]
    assert stored["mae_ratio"].tolist() == pytest.approx(table["mae_ratio"].tolist())
    # Every candidate forecaster was scored on the same folds; Prophet's score is the
    # backtest's own row.
    scores = Store.from_settings(small).latest_model_scores()
    assert set(scores["model"]) == set(MODELS)
    assert (scores.groupby("site_id").size() == len(MODELS)).all()
    # Each with the scale that made its band cover 80 % of the scored hours.
    assert scores["band_scale"].between(*BAND_SCALE_RANGE).all()
    prophet = scores[scores["model"] == "prophet"].set_index("site_id")["mae_ratio"]
    assert prophet.to_dict() == pytest.approx(table.set_index("site_id")["mae_ratio"].to_dict())
    # The preferred blend's row says which share of Prophet erred least; no other row has one.
    preferred = scores["model"] == "lgbm_prophet"
    assert scores.loc[preferred, "prophet_share"].isin(PROPHET_SHARES).all()
    assert scores.loc[~preferred, "prophet_share"].isna().all()
    # The next run uses per site the backtest's choice, and carries its score and its band's
    # calibration for whoever shows the forecast.
    report = run_forecasts(small, ["tam_thanh"], processes=1, progress=False)
    sites = Store.from_settings(small).forecast_sites(report.run_id)
    own = scores[scores["site_id"] == "tam_thanh"].set_index("model")
    chosen, ratio = choose_model(own.reset_index())
    assert sites["model"].tolist() == [chosen]
    assert sites["backtest_mae_ratio"].tolist() == pytest.approx([ratio])
    assert sites["band_scale"].tolist() == pytest.approx([own.loc[chosen, "band_scale"]])
    # and mixes the preferred blend with the share that backtest chose.
    store = Store.from_settings(small)
    [task] = prepare_tasks(store, load_catalogue(small.catalogue_path), small,
                           report.history_end_utc, ["tam_thanh"])
    assert task.prophet_share == own.loc["lgbm_prophet", "prophet_share"]
    # The run records the share it mixed with, for the site page to name.
    skill = store.forecast_skill("tam_thanh")
    expected = (own.loc["lgbm_prophet", "prophet_share"] if chosen == "lgbm_prophet"
                else float("nan"))
    assert sites["prophet_share"].tolist() == pytest.approx([expected], nan_ok=True)
    assert skill["prophet_share"].tolist() == pytest.approx([expected], nan_ok=True)


def test_a_backtest_without_a_share_leaves_the_preferred_blend_a_quarter_prophet() -> None:
    scores = pd.DataFrame({"model": ["prophet", "lgbm_prophet"], "mae_ratio": [0.9, 0.8]})
    assert backtest_prophet_share(scores) == DEFAULT_PROPHET_SHARE  # a backtest from before
    assert backtest_prophet_share(scores.assign(prophet_share=[None, 0.1])) == 0.1
    assert backtest_prophet_share(scores.assign(prophet_share=None)) == DEFAULT_PROPHET_SHARE
    assert backtest_prophet_share(scores.iloc[:1].assign(prophet_share=0.3)) == (
        DEFAULT_PROPHET_SHARE)


def test_a_site_whose_models_lose_to_naive_is_forecast_by_naive_and_says_so(
    small: Settings,
) -> None:
    """The newest backtest says every model erred more than last week's counts at Tam Thanh:
    the run falls back to the weekly naive there, records it, and the forecast of an ordinary
    open hour of the first week is the count of the same hour a week before."""
    store = Store.from_settings(small)
    created = datetime(2027, 1, 20)
    store.write_backtest(pd.DataFrame([{
        "backtest_id": "bt-naive-wins", "created_at_utc": created, "site_id": "tam_thanh",
        "folds": 4, "horizon_h": 168, "open_hours": 300, "mae": 13.0, "mae_naive": 10.0,
        "mae_ratio": 1.3}]).reindex(columns=[
            *backtest.RESULT_COLUMNS, "backtest_id", "created_at_utc", "settings_json"]))
    ratios = {"prophet": 1.3, "prophet_lgbm": 1.1, "lgbm_prophet": 1.08, "lgbm": 1.2,
              "mean4w": 1.05, "naive": 1.0}
    store.write_backtest_models(pd.DataFrame([
        {"backtest_id": "bt-naive-wins", "site_id": "tam_thanh", "model": model, "folds": 4,
         "open_hours": 300, "mae": 10.0 * ratio, "mae_ratio": ratio, "busiest_mae_ratio": ratio,
         "band_scale": 0.7}
        for model, ratio in ratios.items()]))
    # The median itself is read below: no lean toward the crowd on busy hours (tested apart).
    small = small.model_copy(update={"forecast": small.forecast.model_copy(
        update={"crowd_lean": 0.0})})
    report = run_forecasts(small, ["tam_thanh", "den_bac_le"], processes=2, progress=False)
    sites = store.forecast_sites(report.run_id).set_index("site_id")
    assert sites.loc["tam_thanh", "model"] == "naive"
    assert sites.loc["tam_thanh", "backtest_mae_ratio"] == pytest.approx(1.0)
    assert sites.loc["tam_thanh", "band_scale"] == pytest.approx(0.7)
    # A site never backtested gets the preferred blend, its band as Prophet drew it, and
    # says it was not measured.
    assert sites.loc["den_bac_le", "model"] == "lgbm_prophet"
    assert sites.loc["den_bac_le", "band_scale"] == 1.0
    assert pd.isna(sites.loc["den_bac_le", "backtest_mae_ratio"])

    hourly = store.latest_forecast("tam_thanh")
    counted = store.hourly_arrivals(["tam_thanh"], datetime(2027, 1, 1), datetime(2027, 1, 20))
    last_week = counted.set_index("hour_utc")["arrivals"]
    # 21 Jan 2027 10:00 local (03:00 UTC): an ordinary Thursday, open, in the first week.
    hour = pd.Timestamp("2027-01-21 03:00")
    forecast = hourly.set_index("ts_utc").loc[hour, "arrivals"]
    assert forecast == pytest.approx(last_week[hour - pd.Timedelta(days=7)], abs=1e-6)
    # Its band and overload probability still come from samples around that median.
    row = hourly.set_index("ts_utc").loc[hour]
    assert row["arrivals_lower"] <= forecast <= row["arrivals_upper"]
    assert row["arrivals_upper"] > row["arrivals_lower"]


def test_every_backtest_fold_sees_a_whole_history_window_before_its_origin(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold two weeks back trains on as much history as a forecast run at its origin would
    (the daily model's window), not on what is left of the last window: otherwise the
    backtest scores a model that saw fewer festival occurrences than the one shipped."""
    for key, value in {**SMALL, "VISITORFLOW_FORECAST__HOURLY_HISTORY_DAYS": "21",
                       "VISITORFLOW_FORECAST__DAILY_HISTORY_DAYS": "35"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    fresh = get_settings()
    write_synthetic_history(Store.from_settings(fresh), load_catalogue(fresh.catalogue_path),
                            ["tam_thanh"], END_LOCAL, 90, seed=5)
    folds: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    real = backtest.fit_and_forecast

    def recording(history: pd.DataFrame, site, settings, calendar, start_local, *args):
        folds.append((pd.Timestamp(start_local), history["ds"].min()))
        assert (history["ds"] < pd.Timestamp(start_local)).all()  # nothing from the future
        return real(history, site, settings, calendar, start_local, *args)

    monkeypatch.setattr(backtest, "fit_and_forecast", recording)
    table = run_backtest(fresh, ["tam_thanh"], processes=1, progress=False)
    assert table["message"].isna().all(), table
    assert len(folds) == 2
    for origin, first in folds:
        assert origin - first >= pd.Timedelta(days=35), (origin, first)


def test_bring_your_own_csv_is_backtested_hourly_and_daily(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from forecasting.backtest import main

    monkeypatch.setenv("VISITORFLOW_FORECAST__BACKTEST_FOLDS", "4")  # half the default: time
    get_settings.cache_clear()
    from tests.synthetic_history import synthetic_arrivals

    site = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml").site("huu_lien")  # open 24 h
    hourly = synthetic_arrivals(site, datetime(2026, 3, 1), 84, seed=8)
    hourly.rename(columns={"arrivals": "gate_a"}).to_csv(tmp_path / "hourly.csv", index=False)
    daily = synthetic_arrivals(site, datetime(2025, 1, 1), 200, seed=9)
    daily = daily.groupby(daily["ds"].dt.normalize())["arrivals"].sum().reset_index()
    daily.rename(columns={"arrivals": "y"}).to_csv(tmp_path / "daily.csv", index=False)

    assert main(["--csv", str(tmp_path / "hourly.csv"), "--column", "gate_a"]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("gate_a"))
    assert row[1:4] == ["4", "168", str(4 * 168)]  # 4 folds × 168 hours, open around the clock
    assert float(row[6]) < 1  # MAE ratio to weekly naive
    assert main(["--csv", str(tmp_path / "daily.csv"), "--country", "VN"]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines()
               if line.strip().startswith("y "))
    assert row[1:4] == ["4", "168", "28"]  # 4 folds × 7 days
    assert float(row[6]) < 1
    assert main(["--csv", str(tmp_path / "daily.csv"), "--column", "nope"]) == 2
    # A holiday calendar the library does not have is said before any fit, not a traceback.
    capsys.readouterr()
    assert main(["--csv", str(tmp_path / "daily.csv"), "--country", "NZ-XYZ"]) == 2
    assert "no holiday calendar for 'NZ-XYZ'" in capsys.readouterr().err


def _dies_on_two(task: int) -> int:
    if task == 2:
        os._exit(3)  # a worker killed under its fit (out of memory, kill -9)
    return task * 10


def test_a_worker_that_dies_is_reported_not_raised() -> None:
    from forecasting.parallel import map_tasks

    results = list(map_tasks(_dies_on_two, [1, 2, 3], processes=2, progress=False,
                             on_error=lambda task, exc: ("lost", task, type(exc).__name__)))
    assert len(results) == 3
    assert ("lost", 2, "BrokenProcessPool") in results
    # The pool breaks for every fit still in it: those are reported too, never silently lost.
    assert all(r in (10, 30) or r[0] == "lost" for r in results)

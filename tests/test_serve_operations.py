"""The service over days, in accelerated simulated time, with real processes: scheduled
refits, backups, retention and health (orchestration/serve.py, orchestration/schedule.py);
and a killed collector under the service."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from forecasting.candidates import MODELS
from ingest.sim_backfill import backfill
from tests.conftest import Processes, wait_until
from tests.ingest_support import store_rows, stored_rows, truth_rows
from tests.serve_support import child_pids, start_serve
from visitorflow import backup, retention
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import simulated_clock_env, to_local, to_utc
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store

pytestmark = pytest.mark.e2e


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> float | None:
    """The value of one sample line `name` (with its labels) of a /metrics page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


# -- a killed collector under serve -------------------------------------------------------------

def test_killed_collector_is_back_within_5_s_and_loses_nothing(
        serve: tuple, settings: Settings, processes: Processes, tmp_path: Path) -> None:
    proc, run_dir = serve
    store = Store.from_settings(settings)
    truth = tmp_path / "truth.jsonl"
    sim = processes.start(
        "ingest.simulator", "--start", "2026-02-21T08:00+07:00", "--minutes", "600",
        "--speed", "max", "--truth-log", str(truth),
    )
    wait_until(lambda: stored_rows(store) > 1000, 30, "the first readings to be stored")
    old = child_pids(proc)["collector"]
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: child_pids(proc).get("collector", old) != old, 5,
               "serve to start a new collector")
    assert time.monotonic() - killed_at < 5
    assert sim.wait(120) == 0, sim.log_path.read_text()
    expected = truth_rows(truth, settings)
    wait_until(lambda: stored_rows(store) == len(expected), 60,
               f"the new collector to store all {len(expected)} readings")
    assert store_rows(store) == expected  # nothing lost, nothing twice
    # The new collector answers its health check on the same port.
    code, body = get(f"http://127.0.0.1:{settings.collector.health_port}/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"


# -- refits failing: the scheduler's metrics and health say so ------------------------------------

def test_failing_refits_show_in_metrics_health_and_the_store(
        settings: Settings, processes: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.from_settings(settings).initialise()  # a store with no readings: a refit fails
    # 04:50 local at 60× the wall clock: the refit is due 10 s after start (the scheduler's
    # own start-up takes a few of them).
    start = to_utc(datetime(2026, 2, 20, 4, 50), settings.tz)
    for key, value in simulated_clock_env(start, 60).items():
        monkeypatch.setenv(key, value)
    scheduler = processes.start("orchestration.schedule", "--log-dir",
                                str(Path(settings.store.path).parent / "logs"))
    url = f"http://127.0.0.1:{settings.schedule.health_port}"

    def refit_failed() -> bool:
        try:
            return metric(get(f"{url}/metrics")[1],
                          'visitorflow_job_last_ok{job="refit"}') == 0.0
        except OSError:
            return False

    wait_until(refit_failed, 60, "/metrics to report the failed refit")
    code, body = get(f"{url}/healthz")
    health = json.loads(body)
    assert code == 503 and health["status"] == "failing"
    assert "the last refit run failed" in health["problems"]
    assert "no forecast run" in health["problems"]
    runs = Store.from_settings(settings).job_runs("refit")
    assert len(runs) == 1 and not runs["ok"].iloc[0]
    assert "no readings to forecast from" in runs["detail"].iloc[0]
    # Started at 05:00 local on the simulated clock.
    assert to_local(runs["started_at_utc"].iloc[0], settings.tz).hour == 5
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(10) == 0


# -- two simulated nights of serve ---------------------------------------------------------------

SITES = ("tam_thanh", "ky_lua")
HISTORY_DAYS = 33
KEPT_DAYS = 30
# A simulated day in 144 s of wall time: a refit of the two sites (3–10 s of wall time) then
# takes under two simulated hours, so the 26 h bound on the forecast's age is a real test.
SPEED = 600.0
DAY0 = datetime(2026, 3, 2)  # local, the first refit's day; no festival in these days
# The service starts at 22:00 local the evening before: 18 s of wall time before the 01:00
# export, then two nights of every nightly job (export, backup, retention, backtest, refit).
# The backfill ends the day before that evening, so the live simulator never counts an hour
# the backfill counted.
START_LOCAL = DAY0 - timedelta(hours=2)


def small_catalogue(path: Path) -> Path:
    """The catalogue with two sites only, so that a refit takes seconds."""
    raw = yaml.safe_load((PROJECT_ROOT / "data" / "sites.yaml").read_text(encoding="utf-8"))
    raw["sites"] = [s for s in raw["sites"] if s["id"] in SITES]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_two_simulated_nights_refit_back_up_and_age_out_on_schedule(
        settings: Settings, processes: Processes, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "CATALOGUE_PATH": str(small_catalogue(tmp_path / "sites.yaml")),
        "FORECAST__HOURLY_HISTORY_DAYS": "21", "FORECAST__DAILY_HISTORY_DAYS": "28",
        "FORECAST__HOURLY_HORIZON_DAYS": "3", "FORECAST__DAILY_MIN_HORIZON_DAYS": "7",
        "FORECAST__SAMPLES": "50", "FORECAST__PROCESSES": "1",
        "SCHEDULE__READINGS_KEPT_DAYS": str(KEPT_DAYS),
        # Two weekly folds: the history (33 days, 21 of them in the hourly window) holds them.
        "FORECAST__BACKTEST_FOLDS": "2",
    }.items():
        monkeypatch.setenv(f"VISITORFLOW_{key}", value)
    get_settings.cache_clear()
    settings = get_settings()
    tz = settings.tz
    backfill(settings, load_catalogue(settings.catalogue_path),
             (DAY0 - timedelta(days=HISTORY_DAYS)).date(), START_LOCAL.date(), progress=False)
    start = to_utc(START_LOCAL, tz)
    for key, value in simulated_clock_env(start, SPEED).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    store = Store.from_settings(settings)
    serving = start_serve(tmp_path, timeout_s=30)
    proc, run_dir = next(serving)
    try:
        processes.start("ingest.simulator", "--start", start.isoformat() + "+00:00")

        def refits_done() -> int:
            try:
                status = store.job_runs("refit")
            except Exception:
                return 0
            return int(status["ok"].sum())

        wait_until(lambda: refits_done() >= 2, 600, "two scheduled refits")
        scheduler_metrics = get(
            f"http://127.0.0.1:{settings.schedule.health_port}/metrics")[1]
        collector_health = get(f"http://127.0.0.1:{settings.collector.health_port}/healthz")
    finally:
        serving.close()  # SIGTERM to serve, everything it started gone

    # Two refits, at 05:00 local of two days in a row, each a forecast run in the store.
    refits = store.job_runs("refit").sort_values("started_at_utc")
    assert refits["ok"].all(), refits
    local_starts = [to_local(t, tz) for t in refits["started_at_utc"]]
    assert [t.date() for t in local_starts[:2]] == [DAY0.date(),
                                                    (DAY0 + timedelta(days=1)).date()]
    # Within a scheduler tick (1 s of wall time = 10 simulated minutes) of 05:00.
    assert all(t.hour == 5 and t.minute <= 20 for t in local_starts)
    runs = store.forecast_runs(limit=10).sort_values("created_at_utc")
    assert len(runs) >= 2
    created = list(runs["created_at_utc"])
    # The forecast in use is never older than 26 h: between runs and at the end.
    gaps = [b - a for a, b in zip(created, created[1:], strict=False)]
    assert max(gaps) <= pd.Timedelta(hours=26), gaps
    assert metric(scheduler_metrics, 'visitorflow_job_last_ok{job="refit"}') == 1.0
    assert metric(scheduler_metrics, "visitorflow_forecast_age_seconds") < 26 * 3600
    assert collector_health[0] == 200

    # Nightly backups at 02:00 local; the newest restores to identical row counts.
    backups = store.job_runs("backup")
    assert backups["ok"].all() and len(backups) >= 2
    newest = backup.backups(settings.schedule.backup_dir)[-1][1]
    in_backup = backup.table_rows(newest)
    monkeypatch.setenv("VISITORFLOW_STORE__PATH", str(tmp_path / "restored.duckdb"))
    get_settings.cache_clear()
    assert backup.main(["restore", str(newest)]) == 0
    restored = Store(tmp_path / "restored.duckdb")
    assert backup.table_rows(restored.path) == in_backup
    assert restored.schema_version() == store.schema_version()
    # Its readings are all in the live store or the archive (a snapshot, nothing invented).
    live = pd.concat([store.readings(), retention.read_archived(settings.schedule.archive_dir)])
    keys = ["device_id", "seq", "ts_utc"]
    assert len(restored.readings().merge(live[keys], on=keys)) == in_backup["readings"]

    # Retention: the readings older than 30 days moved to Parquet, totals unchanged.
    assert store.job_runs("retention")["ok"].all()
    assert store.oldest_reading_utc() >= retention.cutoff_utc(
        settings, refits["started_at_utc"].iloc[-1].to_pydatetime())
    archived = retention.read_archived(settings.schedule.archive_dir)
    assert len(archived) > 0
    minutes = store.minute_counts(datetime(2000, 1, 1), datetime(2100, 1, 1))
    everything = pd.concat([store.readings(), archived])
    assert everything.duplicated(keys).sum() == 0
    assert int(everything["count_in"].sum()) == int(minutes["count_in"].sum())
    # The nightly backtest at 04:00 scored every candidate forecaster, and the refits after
    # it say per site which one they used.
    backtests = store.job_runs("backtest")
    assert backtests["ok"].all() and len(backtests) >= 2, backtests
    scores = store.latest_model_scores()
    assert set(scores["site_id"]) == set(SITES) and set(scores["model"]) == set(MODELS)
    assert scores["band_scale"].notna().all()
    used = store.forecast_sites(runs["run_id"].iloc[-1])
    assert used["model"].notna().all() and used["backtest_mae_ratio"].notna().all(), used
    assert used["band_scale"].notna().all(), used
    # The daily open-data export ran too.
    assert store.job_runs("export")["ok"].all()
    assert list(settings.schedule.export_dir.glob("*/manifest.json"))

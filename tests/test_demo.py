"""The README's demo command, end to end: history back-filled, broker, collector, live
simulator, forecasts, the backtest, a refit with its per-site choice, and dashboard all
started by `python -m orchestration.demo`, and all stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store, StoreError

from .conftest import free_port, wait_until

pytestmark = pytest.mark.e2e


def test_demo_starts_every_stage_and_stops_cleanly(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One backtest fold (the nightly job's 8 would take minutes): the chain is what is tested.
    monkeypatch.setenv("VISITORFLOW_FORECAST__BACKTEST_FOLDS", "1")
    port = free_port()
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "orchestration.demo", "--dashboard-port", str(port),
         "--history-years", "0.1", "--run-dir", str(tmp_path / "run")],
        cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
    )
    output = tmp_path / "demo.log"
    store = Store.from_settings(settings)
    try:
        wait_until(lambda: b"dashboard: http://localhost" in output.read_bytes(), 120,
                   "the demo to start its services")
        assert demo.poll() is None, output.read_text()
        history_end = store.latest_reading_utc()
        assert history_end is not None  # the back-filled history

        def dashboard_up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(dashboard_up, 60, "the dashboard to answer")

        def live_readings() -> bool:
            try:
                return store.table_counts()["gate_status"] > 0  # counters said online
            except StoreError:
                return False

        wait_until(live_readings, 60, "the live counters to reach the store via MQTT")
        wait_until(lambda: b"forecasts written" in output.read_bytes(), 240,
                   "the background forecast run")
        assert store.forecast_runs(1)["sites_ok"].iloc[0] > 0
        assert store.forecast_skill()["backtest_mae_ratio"].isna().all()  # none backtested yet
        wait_until(lambda: b"forecasts refitted" in output.read_bytes(), 420,
                   "the background backtest and the refit after it")
        assert b"backtest written" in output.read_bytes()
        # The second run took each site's model and skill from the backtest.
        skill = store.forecast_skill()
        assert skill["backtest_mae_ratio"].notna().any(), skill
        assert skill["run_id"].nunique() == 1 and skill["run_id"].iloc[0] == (
            store.forecast_runs(1)["run_id"].iloc[0])
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    text = output.read_text()
    assert demo.returncode == 0, text
    assert "demo stopped" in text
    # Its logs went to the run directory it was given, not the project's run/logs/.
    logs = {path.name for path in (tmp_path / "run" / "logs").iterdir()}
    assert {"collector.log", "simulator.log", "forecast.log", "backtest.log"} <= logs, logs
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(settings.store.path)],
                               capture_output=True, text=True).stdout
    assert leftovers == "", f"processes left running: {leftovers}"

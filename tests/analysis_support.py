"""Helpers for the notebook and export tests: a small store built by the real
pipeline (simulator backfill, forecasting backtest and run), and a collector-like writer
process that measures how long each of its commits waits for the store.

    python -m tests.analysis_support writer STORE SECONDS PERIOD_S   (prints one JSON line)
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.contract import Reading
from visitorflow.settings import ForecastSettings, Settings, load_settings
from visitorflow.store import Store

# Local days the notebook store covers: Tết 2026 (17 Feb) and the Kỳ Cùng–Tả Phủ festival
# (lunar 22–27/1 = 10–15 Mar 2026) with weeks either side for baselines.
HISTORY_FIRST = date(2026, 2, 1)
HISTORY_END = date(2026, 3, 20)  # exclusive
# The forecast run sees history to local midnight of 8 Mar: the festival is in its horizon,
# so the review compares the festival with a forecast made before it.
FORECAST_HISTORY_END_UTC = datetime(2026, 3, 7, 17)
BACKTEST_ORIGIN_LOCAL = datetime(2026, 3, 1)
FESTIVAL_SITES = ["den_ky_cung", "den_ta_phu", "ky_lua"]
# Alerts are evaluated as the collector would have, every ALERT_STEP over the daytime of the
# festival's two procession days (local), and a simulated duty operator acknowledges most of
# them. (Every minute of all six days, as live, would take minutes to build.)
ALERT_WINDOWS_LOCAL = [(datetime(2026, 3, 10, 7), datetime(2026, 3, 10, 19)),
                       (datetime(2026, 3, 15, 7), datetime(2026, 3, 15, 19))]
ALERT_STEP = timedelta(minutes=30)


def notebook_settings() -> Settings:
    """The settings in force (the test's temp store via the environment), with forecasting
    made cheap: fewer predictive samples and one backtest fold."""
    return load_settings(forecast=ForecastSettings(samples=50, backtest_folds=1))


def build_notebook_store(settings: Settings) -> dict[str, float]:
    """Fill the settings' store the way production does: backfill, backtest, forecast run.
    Returns the seconds each step took."""
    from forecasting.backtest import run_backtest
    from forecasting.run import run_forecasts
    from ingest.sim_backfill import backfill

    catalogue = load_catalogue(settings.catalogue_path)
    timings = {}
    started = time.perf_counter()
    backfill(settings, catalogue, HISTORY_FIRST, HISTORY_END, progress=False)
    timings["backfill_s"] = time.perf_counter() - started
    started = time.perf_counter()
    run_backtest(settings, FESTIVAL_SITES, origins=[BACKTEST_ORIGIN_LOCAL], processes=1,
                 progress=False)
    timings["backtest_s"] = time.perf_counter() - started
    started = time.perf_counter()
    report = run_forecasts(settings, FESTIVAL_SITES, processes=1, progress=False,
                           history_end_utc=FORECAST_HISTORY_END_UTC)
    timings["forecast_s"] = time.perf_counter() - started
    if report.failed:
        raise RuntimeError(f"forecast fits failed: {[r.message for r in report.failed]}")
    started = time.perf_counter()
    replay_alerts_with_operator(settings, catalogue)
    timings["alerts_s"] = time.perf_counter() - started
    return timings


def replay_alerts_with_operator(settings: Settings, catalogue: Catalogue, seed: int = 7) -> int:
    """Run the real alert evaluation (visitorflow.alerts.evaluate_alerts) over the festival's
    procession days, as the collector does live, and acknowledge four alerts in five after
    2–40 minutes, as a duty operator would. Returns how many alerts were raised."""
    from visitorflow.alerts import evaluate_alerts

    store = Store.from_settings(settings)
    rng = random.Random(seed)
    offset = timedelta(hours=7)  # Asia/Ho_Chi_Minh has no DST
    steps = [first - offset + i * ALERT_STEP for first, last in ALERT_WINDOWS_LOCAL
             for i in range(int((last - first) / ALERT_STEP))]
    pending: list[tuple[datetime, str]] = []
    raised_total = 0
    for now in steps:
        for ack_at, alert_id in [p for p in pending if p[0] <= now]:
            store.acknowledge_alert(alert_id, "duty-operator", "seen; gate staff informed", ack_at)
            pending.remove((ack_at, alert_id))
        raised, _ = evaluate_alerts(store, catalogue, settings, now)
        # Every fifth alert raised is never acknowledged (the operator missed it).
        pending += [(now + timedelta(minutes=rng.randint(2, 40)), alert_id)
                    for i, alert_id in enumerate(raised["alert_id"], start=raised_total + 1)
                    if i % 5]
        raised_total += len(raised)
    return raised_total


def stop_file(store_path: Path) -> Path:
    """Creating this file stops a running writer after its current batch."""
    return store_path.with_suffix(".stop")


def writer(store_path: Path, seconds: float, period_s: float) -> dict:
    """Behave like the collector: every `period_s` open the store read-write, commit one
    reading per gate, close; until `seconds` pass or the stop file appears. Report how long
    the slowest commit took, lock wait included."""
    settings = load_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    store = Store(store_path, lock_timeout_s=30)
    gates = catalogue.gates()
    base = datetime(2026, 4, 1)
    walls: list[float] = []
    waits: list[float] = []
    deadline = time.monotonic() + seconds
    stop = stop_file(store_path)
    batch = 0
    while time.monotonic() < deadline and not stop.exists():
        ts = base + timedelta(minutes=batch)
        readings = [Reading(s.id, g.id, g.counter_id, batch, ts, 60, 1, 0) for s, g in gates]
        started = time.perf_counter()
        result = store.write_batch(readings, ts)
        walls.append(time.perf_counter() - started)
        waits.append(result.lock_wait_s)
        batch += 1
        time.sleep(period_s)
    return {"batches": batch, "rows": batch * len(gates), "max_wall_s": max(walls),
            "max_lock_wait_s": max(waits), "mean_wall_s": sum(walls) / len(walls)}


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "writer":
        raise SystemExit(__doc__)
    print(json.dumps(writer(Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))),
          flush=True)

"""What the nightly jobs cost the collector: publish → queryable latency at a steady
1,000 messages/s without a job, while backups run back to back, and while retention moves
old readings to Parquet (real Mosquitto, the collector as its own process, the jobs as the
scheduler starts them: `python -m visitorflow.backup create`, `python -m
visitorflow.retention run`).

The store first gets a year of simulated history (bulk back-fill, 15-minute readings), so
the backup copies a store of realistic size and retention has months to move. The
conditions alternate (none, backup, retention, none again); each window publishes for
`--window-s` with its job started at the window's start (backups again as each ends;
retention once, which may outlast the window: its duration is reported).

    .venv/bin/python -m bench.jobs_ingest --window-s 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from bench.ingest_throughput import _rows, _wait, percentile, steady_latencies
from ingest.broker import start_broker
from ingest.sim_backfill import backfill
from tests.conftest import free_port
from tests.ingest_support import native_stream
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import utc_now
from visitorflow.settings import PROJECT_ROOT, get_settings
from visitorflow.store import Store

RATE = 1000.0  # messages per second, as the ingest benchmark's latency run
HISTORY_DAYS = 365
HISTORY_ENDS_DAYS_AGO = 40
# Retention keeps this many days: it moves the oldest ~two months of the year.
RETENTION_KEPT_DAYS = 300


def job_command(job: str) -> list[str]:
    module = {"backup": "visitorflow.backup", "retention": "visitorflow.retention"}[job]
    return [sys.executable, "-m", module, "create" if job == "backup" else "run"]


def run_jobs(condition: str, stop: threading.Event, said: list[str],
             took: list[float]) -> None:
    """The job of `condition` while `stop` is unset: backups back to back, retention once."""
    env = dict(os.environ, VISITORFLOW_SCHEDULE__READINGS_KEPT_DAYS=str(RETENTION_KEPT_DAYS))
    while not stop.is_set():
        started = time.monotonic()
        done = subprocess.run(job_command(condition), cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, check=False)
        took.append(time.monotonic() - started)
        lines = (done.stdout + done.stderr).strip().splitlines()
        said.append(lines[-1][:200] if lines else f"exit {done.returncode}")
        if condition == "retention":
            return


def run_window(condition: str, store: Store, port: int, day: datetime,
               window_s: float) -> dict[str, object]:
    """`window_s` of steady publishing with `condition` (none, backup, retention) running
    from its start."""
    catalogue = load_catalogue(get_settings().catalogue_path)
    messages = native_stream(catalogue, int(RATE * window_s), day)
    said: list[str] = []
    took: list[float] = []
    stop = threading.Event()
    jobs = threading.Thread(target=run_jobs, args=(condition, stop, said, took), daemon=True)
    if condition != "none":
        jobs.start()
    latencies = steady_latencies(store, port, 200, messages, day, day + timedelta(days=2),
                                 RATE)
    stop.set()
    if jobs.is_alive() or condition != "none":
        jobs.join()
    return {"condition": condition, "messages": len(latencies),
            "p50_s": percentile(latencies, 0.5), "p99_s": percentile(latencies, 0.99),
            "max_s": latencies[-1], "job_runs": len(took),
            "job_s": round(sum(took) / len(took), 1) if took else None, "job_said": said}


def snapshot_methods(store_path: Path, work: Path, runs: int = 3) -> dict[str, float]:
    """Median seconds each way of taking a consistent snapshot holds the store (nobody else
    may write meanwhile): a file copy under a read-only connection, EXPORT DATABASE to
    Parquet, and COPY FROM DATABASE into a new DuckDB file."""
    times: dict[str, list[float]] = {"file copy": [], "EXPORT DATABASE (Parquet)": [],
                                     "COPY FROM DATABASE": []}
    for i in range(runs):
        con = duckdb.connect(str(store_path), read_only=True)
        started = time.perf_counter()
        shutil.copyfile(store_path, work / f"copy{i}.duckdb")
        times["file copy"].append(time.perf_counter() - started)
        started = time.perf_counter()
        con.execute(f"EXPORT DATABASE '{work / f'export{i}'}' (FORMAT parquet)")
        times["EXPORT DATABASE (Parquet)"].append(time.perf_counter() - started)
        con.close()
        target = duckdb.connect(str(work / f"copied{i}.duckdb"))
        started = time.perf_counter()
        target.execute(f"ATTACH '{store_path}' AS source (READ_ONLY)")
        target.execute(f"COPY FROM DATABASE source TO copied{i}")
        times["COPY FROM DATABASE"].append(time.perf_counter() - started)
        target.close()
        for leftover in (work / f"copy{i}.duckdb", work / f"copied{i}.duckdb"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(work / f"export{i}", ignore_errors=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--history-days", type=int, default=HISTORY_DAYS,
                        help="days of back-filled history (default a year)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    port = free_port()
    for key, value in {"STORE__PATH": str(work / "store.duckdb"), "MQTT__PORT": str(port),
                       "CONFIG": str(work / "none.toml"),
                       "MQTT__SECRETS_DIR": str(work / "secrets"),
                       "MQTT__TEST_ACCOUNT": "true", "COLLECTOR__HEALTH_PORT": "0",
                       "SCHEDULE__BACKUP_DIR": str(work / "backups"),
                       "SCHEDULE__ARCHIVE_DIR": str(work / "archive")}.items():
        os.environ[f"VISITORFLOW_{key}"] = value
    (work / "none.toml").write_text("", encoding="utf-8")
    get_settings.cache_clear()
    settings = get_settings()
    today = utc_now().date()
    history_end = today - timedelta(days=HISTORY_ENDS_DAYS_AGO)
    print(f"back-filling {args.history_days} days into {work} …", flush=True)
    backfill(settings, load_catalogue(settings.catalogue_path),
             history_end - timedelta(days=args.history_days), history_end, progress=False)
    store = Store.from_settings(settings)
    size_mib = store.path.stat().st_size / 2**20
    readings = _rows(store)
    snapshots = snapshot_methods(store.path, work)
    broker = start_broker(work / "broker", port)
    log = (work / "collector.log").open("wb")
    collector = subprocess.Popen([sys.executable, "-m", "ingest.collector"], cwd=PROJECT_ROOT,
                                 stdout=log, stderr=subprocess.STDOUT)
    results = []
    try:
        _wait(lambda: "connected to" in (work / "collector.log").read_text(), 30,
              "the collector to connect")
        time.sleep(1.0)
        for i, condition in enumerate(("none", "backup", "retention", "none")):
            day = datetime.combine(today - timedelta(days=30 - 3 * i), datetime.min.time())
            result = run_window(condition, store, port, day, args.window_s)
            print(result, flush=True)
            results.append(result)
    finally:
        collector.terminate()
        collector.wait(30)
        broker.terminate()
        broker.wait(10)
        log.close()
    print(f"\nstore {size_mib:.0f} MiB, {readings} readings before the runs; "
          f"{RATE:.0f} msg/s steady")
    print("| snapshot method | store held, s (median of 3) |")
    print("|---|---|")
    for name, seconds in snapshots.items():
        print(f"| {name} | {seconds:.2f} |")
    print("| condition | messages | p50 s | p99 s | max s | job runs | job s (mean) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['condition']} | {r['messages']} | {r['p50_s']:.3f} | {r['p99_s']:.3f} | "
              f"{r['max_s']:.3f} | {r['job_runs']} | {r['job_s']} |")
    for r in results:
        for said in r["job_said"][:2]:
            print(f"  {r['condition']}: {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

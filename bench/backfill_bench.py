"""Backfill speed: the documented command against a fresh temporary store.

Runs `python -m ingest.simulator --mode backfill --years N` as a subprocess with
VISITORFLOW_STORE__PATH pointing at a fresh store under --dir (never data/visitorflow.duckdb)
and VISITORFLOW_SIMULATOR__BACKFILL_INTERVAL_S set, then runs it again over the same days
(the dedup path: nothing may be added). Reports wall time, readings/s, store size on disk,
peak memory, and the row counts.

With --compare N it then measures the two store paths into an empty store against each
other, alternately, N times each in fresh subprocesses over --compare-years: batch by batch
with the keys kept up to date (`backfill(bulk=False)`, the path before the key
decision) and loaded without keys, keys built once (`bulk=True`, the default). Medians and
their ratio: the machine is shared, so only same-run ratios are meaningful.

    .venv/bin/python -m bench.backfill_bench --years 3 --interval-s 60 --dir /tmp/bf
    .venv/bin/python -m bench.backfill_bench --compare 3 --compare-years 1 --years 3
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_once(store: Path, truth: Path, years: float, interval_s: int) -> dict:
    env = dict(os.environ, VISITORFLOW_STORE__PATH=str(store),
               VISITORFLOW_SIMULATOR__BACKFILL_INTERVAL_S=str(interval_s))
    command = [sys.executable, "-m", "ingest.simulator", "--mode", "backfill", "--years",
               str(years), "--no-progress", "--truth-dir", str(truth)]
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if result.returncode:
        raise SystemExit(result.stderr)
    line = next(ln for ln in result.stderr.splitlines() if "readings/s" in ln)
    new = int(re.search(r"\(([\d,]+) new\)", line).group(1).replace(",", ""))
    readings = int(re.search(r"days, ([\d,]+) readings", line).group(1).replace(",", ""))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": wall, "cpu_s": cpu, "readings": readings, "new": new,
            "log": line.split("INFO ")[-1], "peak_rss_mb": peak_mb}


def child(store: Path, years: float, interval_s: int, bulk: bool) -> None:
    """One backfill into a fresh store, in this process; prints wall and CPU seconds."""
    from ingest.sim_backfill import backfill
    from visitorflow.catalogue import load_catalogue
    from visitorflow.settings import Settings

    settings = Settings(store={"path": store})
    end = date.today()
    start = end - timedelta(days=round(365.25 * years))
    cpu = time.process_time()
    stats = backfill(settings, load_catalogue(settings.catalogue_path), start, end,
                     progress=False, interval_s=interval_s, bulk=bulk)
    print(f"RESULT {stats.seconds:.2f} {time.process_time() - cpu:.2f} {stats.readings}")


def compare(workdir: Path, runs: int, years: float, interval_s: int) -> None:
    """Old (bulk=False) and new (bulk=True) path alternately, `runs` times each."""
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for k in range(runs):
        for bulk in (False, True):
            store = workdir / f"compare_{int(bulk)}.duckdb"
            store.unlink(missing_ok=True)
            result = subprocess.run(
                [sys.executable, "-m", "bench.backfill_bench", "--child", str(store),
                 "--years", str(years), "--interval-s", str(interval_s)]
                + ([] if bulk else ["--no-bulk"]),
                cwd=PROJECT_ROOT, capture_output=True, text=True)
            if result.returncode:
                raise SystemExit(result.stderr)
            wall, cpu, readings = result.stdout.split("RESULT ")[1].split()
            times[bulk].append((float(wall), float(cpu)))
            load = os.getloadavg()[0]
            print(f"  run {k + 1} {'keys once ' if bulk else 'keys kept '}: {float(wall):6.1f} s "
                  f"wall, {float(cpu):6.1f} s CPU, {int(readings):,} readings, load {load:.1f}",
                  flush=True)
            store.unlink(missing_ok=True)
    med = {bulk: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
           for bulk, t in times.items()}
    print(f"compare {years} y: keys kept row by row median {med[False][0]:.1f} s wall "
          f"({med[False][1]:.1f} s CPU); keys built once median {med[True][0]:.1f} s wall "
          f"({med[True][1]:.1f} s CPU); wall ratio {med[False][0] / med[True][0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--interval-s", type=int, default=60)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bf"))
    parser.add_argument("--compare", type=int, default=0, metavar="N",
                        help="then compare the old and new store path, N runs "
                             "each (--years 0: only that)")
    parser.add_argument("--compare-years", type=float, default=1)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-bulk", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.years, args.interval_s, bulk=not args.no_bulk)
        return
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    store = args.dir / "visitorflow.duckdb"
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, duckdb {duckdb.__version__}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    if args.years:
        full_run(store, args)
    if args.compare:
        compare(args.dir, args.compare, args.compare_years, args.interval_s)


def full_run(store: Path, args: argparse.Namespace) -> None:
    """The documented command into a fresh store, then again over the same days."""
    first = run_once(store, args.dir / "truth", args.years, args.interval_s)
    size = store.stat().st_size
    load = os.getloadavg()[0]
    again = run_once(store, args.dir / "truth_again", args.years, args.interval_s)
    with duckdb.connect(str(store), read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("readings", "minute_counts", "temperature")}
        keys = con.execute(
            """SELECT table_name, constraint_column_names FROM duckdb_constraints()
            WHERE constraint_type = 'PRIMARY KEY'
              AND table_name IN ('readings', 'minute_counts') ORDER BY table_name"""
        ).fetchall()
        sums = con.execute(
            """SELECT (SELECT sum(count_in) FROM readings), (SELECT sum(count_in)
            FROM minute_counts), (SELECT sum(count_out) FROM readings),
            (SELECT sum(count_out) FROM minute_counts)"""
        ).fetchone()
    print(f"first run : {first['wall_s']:.1f} s wall, {first['cpu_s']:.1f} s CPU (load "
          f"{load:.1f}), "
          f"{first['readings'] / first['wall_s']:,.0f} readings/s (wall), "
          f"peak RSS {first['peak_rss_mb']:,.0f} MB — {first['log']}")
    print(f"store     : {size / 2**30:.2f} GiB, rows {counts}, keys {keys}")
    print(f"re-run    : {again['wall_s']:.1f} s wall, {again['cpu_s']:.1f} s CPU, "
          f"{again['new']:,} new — {again['log']}")
    if again["new"]:
        raise SystemExit("re-run added readings: dedup broken")
    if len(keys) != 2 or sums[0] != sums[1] or sums[2] != sums[3]:
        raise SystemExit(f"keys {keys} or minute counts {sums} do not match the readings")


if __name__ == "__main__":
    main()

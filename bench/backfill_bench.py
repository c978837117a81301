"""Backfill speed (issue 4): the documented command against a fresh temporary store.

Runs `python -m ingest.simulator --mode backfill --years N` as a subprocess with
VISITORFLOW_STORE__PATH pointing at a fresh store under --dir (never data/visitorflow.duckdb)
and VISITORFLOW_SIMULATOR__BACKFILL_INTERVAL_S set, then runs it again over the same days
(the dedup path: nothing may be added). Reports wall time, readings/s, store size on disk,
peak memory, and the row counts.

    .venv/bin/python -m bench.backfill_bench --years 3 --interval-s 60 --dir /tmp/bf
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_once(store: Path, truth: Path, years: float, interval_s: int) -> dict:
    env = dict(os.environ, VISITORFLOW_STORE__PATH=str(store),
               VISITORFLOW_SIMULATOR__BACKFILL_INTERVAL_S=str(interval_s))
    command = [sys.executable, "-m", "ingest.simulator", "--mode", "backfill", "--years",
               str(years), "--no-progress", "--truth-dir", str(truth)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    line = next(ln for ln in result.stderr.splitlines() if "readings/s" in ln)
    new = int(re.search(r"\(([\d,]+) new\)", line).group(1).replace(",", ""))
    readings = int(re.search(r"days, ([\d,]+) readings", line).group(1).replace(",", ""))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": wall, "readings": readings, "new": new, "log": line.split("INFO ")[-1],
            "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--interval-s", type=int, default=60)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bf"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    store = args.dir / "visitorflow.duckdb"
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, duckdb {duckdb.__version__}")
    first = run_once(store, args.dir / "truth", args.years, args.interval_s)
    size = store.stat().st_size
    again = run_once(store, args.dir / "truth_again", args.years, args.interval_s)
    with duckdb.connect(str(store), read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                  for t in ("readings", "minute_counts", "temperature")}
    print(f"first run : {first['wall_s']:.1f} s wall, "
          f"{first['readings'] / first['wall_s']:,.0f} readings/s (wall), "
          f"peak RSS {first['peak_rss_mb']:,.0f} MB — {first['log']}")
    print(f"store     : {size / 2**30:.2f} GiB, rows {counts}")
    print(f"re-run    : {again['wall_s']:.1f} s wall, {again['new']:,} new — {again['log']}")
    if again["new"]:
        raise SystemExit("re-run added readings: dedup broken")


if __name__ == "__main__":
    main()

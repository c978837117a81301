"""Server-side time of the dashboard's live page and site page on a year of minute data for
every site (goal ≤ 300 ms each).

Builds (once, or reuses with --reuse) a store under --dir with `python -m ingest.simulator
--mode backfill --years 1` at 60 s readings (VISITORFLOW_SIMULATOR__BACKFILL_INTERVAL_S=60),
up to local midnight tomorrow so that today is filled, and one forecast run
(`python -m forecasting.run`). Then measures, median of --runs:
- each page's data function (`live.live_snapshot`, `site_detail.site_detail`) with the time
  of every store query it makes (what dominates);
- the whole page in Streamlit's AppTest (app.py + the page, signed in when the dashboard
  has sign-in), with Streamlit's caches cleared before each run: the work of a refresh
  whose cache has expired, which is what every refresh costs the server.

    .venv/bin/python -m bench.dashboard_pages --dir /tmp/bench_dashboard --runs 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb

PROJECT_ROOT = Path(__file__).resolve().parents[1]
APP = PROJECT_ROOT / "dashboard" / "app.py"
BENCH_USER, BENCH_PASSWORD = "bench.viewer", "bench-password-42"
PLUMBING = {"_read", "_reading", "_read_optional"}


def build_store(directory: Path, store: Path) -> None:
    """A year of minute readings for every gate and one forecast run, in a scratch store."""
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VISITORFLOW_STORE__PATH=str(store),
               VISITORFLOW_SIMULATOR__BACKFILL_INTERVAL_S="60")
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    steps = [
        [sys.executable, "-m", "ingest.simulator", "--mode", "backfill", "--years", "1",
         "--end", tomorrow, "--truth-dir", str(directory / "truth")],
        [sys.executable, "-m", "forecasting.run"],
    ]
    for command in steps:
        print("$", " ".join(command[1:]), flush=True)
        started = time.monotonic()
        subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True)
        print(f"  {time.monotonic() - started:.0f} s", flush=True)


def timed_store_class() -> type:
    """A Store that records the time of each query by the Store method that made it, and of
    opening the store."""
    from visitorflow.store import Store

    class TimedStore(Store):
        timings: dict[str, list[float]] = defaultdict(list)

        @contextmanager
        def _connect(self, read_only: bool):  # same as Store._connect
            started = time.perf_counter()
            with super()._connect(read_only) as con:
                self.timings["(open store)"].append(time.perf_counter() - started)
                yield con

        @contextmanager
        def _reading(self):  # same as Store._reading
            # Named after the first caller outside the store's plumbing (and contextlib).
            frame = sys._getframe(1)
            while frame.f_code.co_name in PLUMBING or frame.f_code.co_filename.endswith(
                    "contextlib.py"):
                frame = frame.f_back
            started = time.perf_counter()
            with super()._reading() as con:
                yield con
            self.timings[frame.f_code.co_name].append(time.perf_counter() - started)

    return TimedStore


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(job: Callable[[], object], runs: int, before: Callable[[], object] = lambda: None,
          ) -> tuple[float, float]:
    """Median wall ms and median CPU ms (this process, all threads: DuckDB's and the
    AppTest script thread's) of `runs` calls. CPU time is what the page costs the server;
    wall time also holds the wait for a CPU on a busy machine."""
    wall, cpu = [], []
    for _ in range(runs):
        before()
        started, started_cpu = time.perf_counter(), time.process_time()
        job()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return median_ms(wall), median_ms(cpu)


def measure_functions(runs: int, site_ids: list[str]) -> dict[str, dict[str, float]]:
    """Median ms of each page's data function and of each store query inside it."""
    from visitorflow.catalogue import load_catalogue
    from visitorflow.clock import utc_now
    from visitorflow.live import live_snapshot
    from visitorflow.settings import get_settings
    from visitorflow.site_detail import site_detail

    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    store_class = timed_store_class()
    store = store_class.from_settings(settings)
    jobs: dict[str, Callable[[], object]] = {
        "live": lambda: live_snapshot(store, catalogue, settings, utc_now()),
        **{f"site:{s}": (lambda s=s: site_detail(store, catalogue, settings, s, utc_now()))
           for s in site_ids},
    }
    results = {}
    for name, job in jobs.items():
        job()  # warm the OS file cache and imports
        store_class.timings.clear()
        wall, cpu = timed(job, runs)
        results[name] = {"total": wall, "cpu": cpu,
                         **{q: median_ms(t) for q, t in store_class.timings.items()}}
    return results


def measure_pages(runs: int, site_ids: list[str], users_path: Path) -> dict[str, float]:
    """Median ms of an AppTest run of each page with Streamlit's caches cleared."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from visitorflow.settings import get_settings

    settings = get_settings()
    sign_in = False
    if "auth" in type(settings).model_fields:
        from visitorflow.users import add_user

        if not users_path.exists():
            add_user(users_path, BENCH_USER, "viewer", BENCH_PASSWORD)
        sign_in = True

    at = AppTest.from_file(APP, default_timeout=120).run()
    if sign_in and any(t.key == "sign_in_name" for t in at.text_input):
        at.text_input(key="sign_in_name").input(BENCH_USER)
        at.text_input(key="sign_in_password").input(BENCH_PASSWORD)
        at.button(key="sign_in_submit").click().run()
    pages = {"live": ("views/live.py", None),
             **{f"site:{s}": ("views/site.py", s) for s in site_ids}}
    results = {}
    for name, (path, site_id) in pages.items():
        at.switch_page(path).run()
        if site_id:
            at.selectbox(key="site").set_value(site_id).run()
        if at.exception:
            raise SystemExit(f"{name}: {[e.value for e in at.exception]}")
        cold = timed(at.run, runs, before=st.cache_data.clear)
        cached = timed(at.run, runs)
        results[name] = {"cold": cold, "cached": cached}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_dashboard"))
    parser.add_argument("--reuse", action="store_true",
                        help="use the store already in --dir (build it if missing)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sites", default="tam_thanh,ky_lua,huu_nghi",
                        help="site page: these sites (comma-separated)")
    args = parser.parse_args()
    store = args.dir / "visitorflow.duckdb"
    if not (args.reuse and store.exists()):
        store.unlink(missing_ok=True)
        build_store(args.dir, store)
    # The pages and functions read the scratch store, never data/visitorflow.duckdb.
    os.environ["VISITORFLOW_STORE__PATH"] = str(store)
    os.environ["VISITORFLOW_AUTH__USERS_PATH"] = str(args.dir / "users.json")
    os.environ["VISITORFLOW_AUTH__FAILURE_DELAY_S"] = "0"
    sys.path.insert(0, str(PROJECT_ROOT / "dashboard"))
    site_ids = args.sites.split(",")

    con = duckdb.connect(str(store), read_only=True)
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("readings", "minute_counts", "forecast_hourly", "forecast_daily")}
    con.close()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, duckdb {duckdb.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"store: {store.stat().st_size / 2**30:.2f} GiB, "
          + ", ".join(f"{t} {n:,}" for t, n in rows.items()))

    functions = measure_functions(args.runs, site_ids)
    print(f"\ndata functions, median of {args.runs} (ms wall / CPU; inside, wall):")
    for name, parts in functions.items():
        detail = ", ".join(f"{q} {ms:.0f}" for q, ms in sorted(
            parts.items(), key=lambda kv: -kv[1]) if q not in ("total", "cpu"))
        print(f"  {name:<16} {parts['total']:6.0f} / {parts['cpu']:4.0f}   ({detail})")

    pages = measure_pages(args.runs, site_ids, args.dir / "users.json")
    print(f"\nwhole page in AppTest, median of {args.runs} (ms wall / CPU; cold = caches "
          "cleared):")
    for name, t in pages.items():
        print(f"  {name:<16} cold {t['cold'][0]:6.0f} / {t['cold'][1]:4.0f}   "
              f"cached {t['cached'][0]:6.0f} / {t['cached'][1]:4.0f}")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Forecast benchmark: refit and forecast every site, then backtest against weekly naive.

    .venv/bin/python bench/forecast_bench.py [--days 800] [--store /tmp/forecast_bench.duckdb]

Writes a synthetic history (tests/synthetic_history.py; until the simulator back-fills years of
history) for all catalogue sites into a scratch store, times `run_forecasts` (goal ≤ 60 s on
2 cores) and prints the backtest table (goal: MAE ratio ≤ 0.8 of seasonal naive, festival-day
totals within 20 %). Results are recorded by hand in bench/results.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=800)
    parser.add_argument("--store", type=Path, default=Path("/tmp/forecast_bench.duckdb"))
    parser.add_argument("--sites", help="comma-separated site ids (default: all)")
    parser.add_argument("--no-backtest", action="store_true")
    args = parser.parse_args()
    # Point the settings at the scratch store before anything reads them.
    os.environ["VISITORFLOW_STORE__PATH"] = str(args.store)

    from forecasting.backtest import format_table, run_backtest
    from forecasting.run import run_forecasts
    from tests.synthetic_history import write_synthetic_history
    from visitorflow.catalogue import load_catalogue
    from visitorflow.settings import get_settings
    from visitorflow.store import Store

    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    sites = args.sites.split(",") if args.sites else [s.id for s in catalogue.sites]
    store = Store.from_settings(settings)
    if not args.store.exists():
        started = time.perf_counter()
        write_synthetic_history(store, catalogue, sites, datetime(2026, 11, 21), args.days)
        print(f"history: {len(sites)} sites × {args.days} days in "
              f"{time.perf_counter() - started:.1f} s")
    for processes in (2, 1):
        started = time.perf_counter()
        cpu_before = _cpu_s()
        report = run_forecasts(settings, sites, processes=processes, progress=False)
        fits = sorted(r.fit_s for r in report.results)
        # CPU seconds (this process, its workers and their cmdstan children) show the work
        # apart from what other processes on a shared machine take from the wall time.
        print(f"run {report.run_id}: {len(sites)} sites, {processes} processes, "
              f"wall {time.perf_counter() - started:.1f} s, CPU {_cpu_s() - cpu_before:.1f} s, "
              f"load average {os.getloadavg()[0]:.1f}; per-site fit+forecast "
              f"median {fits[len(fits) // 2]:.1f} s, max {fits[-1]:.1f} s; "
              f"failed {[r.site_id for r in report.failed]}")
    if not args.no_backtest:
        started = time.perf_counter()
        table = run_backtest(settings, sites, festivals=True, processes=2, progress=False)
        print(format_table(table))
        ratio, peak = table["mae_ratio"], table["festival_peak_err"]
        print(f"backtest wall {time.perf_counter() - started:.0f} s; MAE ratio median "
              f"{ratio.median():.2f}, max {ratio.max():.2f}; festival-day total error median "
              f"{peak.median():.0%}, max {peak.max():.0%}")


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()

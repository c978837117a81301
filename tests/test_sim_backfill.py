"""Backfill: history written straight into a real DuckDB store through Store.write_batch
equals the simulator's truth, and equals what the live simulator produces for the same days."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from ingest.sim_backfill import backfill
from ingest.simulator import VisitorModel
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

START, END = date(2026, 3, 9), date(2026, 3, 12)  # around Kỳ Cùng–Tả Phủ 2026 (from 10 Mar)


def test_backfill_matches_truth_and_live(settings: Settings, tmp_path: Path) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    stats = backfill(settings, catalogue, START, END, truth_dir=tmp_path, progress=False,
                     interval_s=900)
    n_gates = len(catalogue.gates())
    assert stats.days == 3
    assert stats.readings == stats.inserted == n_gates * 96 * 3
    store = Store.from_settings(settings)
    readings = store.readings()
    assert len(readings) == stats.readings
    assert (readings.interval_s == 900).all()
    # Seq and totals run on like a real counter's.
    for _, dev in readings.groupby("device_id"):
        assert (dev.seq.diff().dropna() == 1).all()
        assert (dev.in_total == dev.count_in.cumsum()).all()
    # Store minute counts per site and interval == the truth file.
    truth = pd.read_parquet(tmp_path / "site_intervals.parquet")
    first, last = truth.interval_start_utc.min(), truth.interval_start_utc.max()
    minutes = store.minute_counts(first.to_pydatetime(),
                                  last.to_pydatetime() + timedelta(minutes=15))
    stored = minutes.groupby(["site_id", "minute_utc"])[["count_in", "count_out"]].sum()
    expected = truth.set_index(["site_id", "interval_start_utc"])[["arrivals", "departures"]]
    expected.index.names = stored.index.names
    joined = expected.join(stored, how="left").fillna(0)
    assert (joined.arrivals == joined.count_in).all()
    assert (joined.departures == joined.count_out).all()
    assert joined.arrivals.sum() > 10_000
    # The truth's occupancy is arrivals − departures carried on (≥ 0 everywhere).
    assert truth.occupancy.min() >= 0
    # The temperature series is stored with the history.
    temps = store.temperature("mau_son", datetime(2026, 3, 1), datetime(2026, 3, 20),
                              source="simulated")
    assert len(temps) == 72
    # Live mode (minute by minute, same seed) gives the very same counts on those days.
    model = VisitorModel(catalogue, settings, settings.simulator.seed)
    day_start = datetime(2026, 3, 9, 17, 0)  # local midnight of 10 Mar
    live: dict[tuple[str, datetime], int] = {}
    for minute in range(1, 24 * 60 + 1):
        end = day_start + timedelta(minutes=minute)
        for _, r in model.step(end, 60):
            key = (r.device_id, day_start + timedelta(minutes=15 * ((minute - 1) // 15 + 1)))
            live[key] = live.get(key, 0) + r.count_in
    stored_day = readings[(readings.ts_utc > day_start)
                          & (readings.ts_utc <= day_start + timedelta(days=1))]
    assert len(stored_day) == n_gates * 96
    for r in stored_day.itertuples():
        assert live[(r.device_id, r.ts_utc.to_pydatetime())] == r.count_in
    # Run again over overlapping days: only the new day is stored, nothing counted twice.
    again = backfill(settings, catalogue, START + timedelta(days=1), END + timedelta(days=1),
                     progress=False, interval_s=900)
    assert again.inserted == n_gates * 96
    assert store.table_counts()["readings"] == stats.readings + n_gates * 96


def test_backfill_command_line(settings: Settings, tmp_path: Path) -> None:
    """The documented command (`--mode backfill`), in a subprocess against the test store."""
    result = subprocess.run(
        [sys.executable, "-m", "ingest.simulator", "--mode", "backfill", "--start",
         "2025-01-28", "--end", "2025-01-30", "--no-progress", "--truth-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "readings/s" in result.stderr
    assert len(pd.read_parquet(tmp_path / "site_intervals.parquet")) == 17 * 96 * 2
    counts = Store.from_settings(settings).table_counts()
    assert counts["readings"] == len(load_catalogue(settings.catalogue_path).gates()) * 96 * 2
    help_text = subprocess.run(
        [sys.executable, "-m", "ingest.simulator", "--help"], cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=30).stdout
    for word in ("live", "backfill", "--speed", "--truth-dir", "--years"):
        assert word in help_text

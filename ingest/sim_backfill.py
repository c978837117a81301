"""Backfill: years of simulated history written straight into the store, so that forecasts
have something to learn from on first start.

No MQTT and no collector: the readings are built as numpy arrays (no per-row Python objects)
and go to the store's bulk path (`Store.history_writer`), one Arrow table per four weeks of
history. Into an empty store (first start) the batches are loaded without the primary keys,
which are built once at the end (~27 % less CPU than keeping them up to date row by row,
bench/results.md); otherwise each batch goes through `Store.write_history` (readings and
their minute counts in one transaction, readings already stored skipped — the same result as
the collector's `write_batch`). Either way the store ends with the same tables, keys, rows.
The next batch is simulated in a thread while the store inserts the current one. The
collector must not be running: the store takes one writer at a time. The visitor engine is
the live simulator's, with the same seed, so a backfilled day equals the same day simulated
live (summed to the backfill interval). No faults: history is clean.
Running it again over days already stored adds nothing (seq counts intervals since 2000).

Ground truth (`truth_dir`): `site_intervals.parquet` — true arrivals, departures and
occupancy (at the interval's end) per site and backfill interval — written alongside.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ingest.sim_engine import MINUTES_PER_DAY, Engine, profile_model
from visitorflow.catalogue import Catalogue
from visitorflow.settings import Settings
from visitorflow.store import Store

log = logging.getLogger("simulator.backfill")

# Sequence numbers count intervals since this epoch, so a backfill run again over the same
# days writes the same (device, seq, ts) keys and the store ignores them (no double counts).
SEQ_EPOCH = datetime(2000, 1, 1)
DAYS_PER_BATCH = 28  # fewer store opens (each ~35 ms) while a batch stays < 100 MB
RECEIVE_DELAY = timedelta(seconds=2)  # when a real collector would have received it


@dataclass(frozen=True)
class BackfillStats:
    days: int
    readings: int
    inserted: int
    seconds: float
    keys_built: bool = False  # empty store: loaded without keys, keys built once at the end

    @property
    def rows_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        how = "; empty store: keys built once" if self.keys_built else ""
        return (f"{self.days} days, {self.readings:,} readings ({self.inserted:,} new) in "
                f"{self.seconds:.1f} s = {self.rows_per_s:,.0f} readings/s{how}")


@dataclass
class Chunk:
    """A batch of consecutive days: all gates' readings and the sites' truth."""

    first: date
    end: date
    readings: pa.Table
    truth: pd.DataFrame | None


class _Builder:
    """Builds the readings of consecutive days as arrays; carries each counter's totals."""

    def __init__(self, engine: Engine, catalogue: Catalogue, interval_s: int,
                 with_truth: bool, on_day: object = None) -> None:
        self.engine = engine
        self.sites = list(catalogue.sites)
        self.interval_s = interval_s
        self.per = interval_s // 60
        self.n_int = MINUTES_PER_DAY // self.per
        self.with_truth = with_truth
        self.on_day = on_day
        gates = [(site, gate) for site in self.sites for gate in site.gates]
        self.n_gates = len(gates)
        self.totals = np.zeros((2, self.n_gates), dtype=np.int64)  # in, out per gate
        self.devices = pa.array([g.counter_id for _, g in gates], pa.string())
        self.site_ids = pa.array([s.id for s, _ in gates], pa.string())
        self.gate_ids = pa.array([g.id for _, g in gates], pa.string())

    def chunk(self, first: date, end: date) -> Chunk:
        n_days, n_int, per, step = (end - first).days, self.n_int, self.per, self.interval_s
        counts = np.empty((2, n_days, self.n_gates, n_int), dtype=np.int64)  # in/out
        truth = np.empty((3, n_days, len(self.sites), n_int), dtype=np.int64)
        day_starts = np.empty(n_days, dtype="datetime64[us]")
        seq0 = np.empty(n_days, dtype=np.int64)
        for d in range(n_days):
            day = first + timedelta(days=d)
            day_start = self.engine.day_start_utc(day)
            day_starts[d] = np.datetime64(day_start, "us")
            first_end = day_start + timedelta(seconds=step)
            seq0[d] = int((first_end - SEQ_EPOCH).total_seconds()) // step
            g = 0
            for s, site in enumerate(self.sites):
                sd = self.engine.site_day(site, day)
                n = len(site.gates)
                arr = sd.arrivals.reshape(n, n_int, per).sum(axis=2)
                dep = sd.departures.reshape(n, n_int, per).sum(axis=2)
                counts[0, d, g:g + n] = arr
                counts[1, d, g:g + n] = dep
                if self.with_truth:
                    truth[0, d, s] = arr.sum(axis=0)
                    truth[1, d, s] = dep.sum(axis=0)
                    truth[2, d, s] = sd.occupancy[per - 1::per]
                g += n
            if self.on_day is not None:
                self.on_day()
        # Rows: day, gate, interval (as the per-reading loop wrote them).
        offsets = (np.arange(1, n_int + 1, dtype=np.int64) * step * 1_000_000).astype(
            "timedelta64[us]")
        ends = (day_starts[:, None] + offsets[None, :])  # [days, n_int]
        ts = np.broadcast_to(ends[:, None, :], (n_days, self.n_gates, n_int)).ravel()
        seq = np.broadcast_to((seq0[:, None] + np.arange(n_int))[:, None, :],
                              (n_days, self.n_gates, n_int)).ravel()
        # Cumulative totals run on per counter across days and batches.
        flat = counts.transpose(0, 2, 1, 3).reshape(2, self.n_gates, n_days * n_int)
        cum = np.cumsum(flat, axis=2) + self.totals[:, :, None]
        self.totals = cum[:, :, -1].copy()
        cum = cum.reshape(2, self.n_gates, n_days, n_int).transpose(0, 2, 1, 3)
        gate_idx = pa.array(np.broadcast_to(np.arange(self.n_gates, dtype=np.int32)[None, :, None],
                                            (n_days, self.n_gates, n_int)).ravel())
        rows = len(ts)
        readings = pa.table({
            "device_id": self.devices.take(gate_idx),
            "seq": pa.array(seq, pa.int64()),
            "ts_utc": pa.array(ts, pa.timestamp("us")),
            "site_id": self.site_ids.take(gate_idx),
            "gate_id": self.gate_ids.take(gate_idx),
            "interval_s": pa.array(np.full(rows, step, dtype=np.int32)),
            "count_in": pa.array(counts[0].ravel().astype(np.int32)),
            "count_out": pa.array(counts[1].ravel().astype(np.int32)),
            "in_total": pa.array(cum[0].ravel()),
            "out_total": pa.array(cum[1].ravel()),
            "battery_pct": pa.nulls(rows, pa.float64()),
            "received_at_utc": pa.array(ts + np.timedelta64(RECEIVE_DELAY), pa.timestamp("us")),
        })
        frame = None
        if self.with_truth:
            n_sites = len(self.sites)
            starts = np.broadcast_to((ends - np.timedelta64(step, "s"))[:, None, :],
                                     (n_days, n_sites, n_int)).ravel()
            site_idx = np.broadcast_to(np.arange(n_sites)[None, :, None],
                                       (n_days, n_sites, n_int)).ravel()
            frame = pd.DataFrame({
                "site_id": np.asarray([s.id for s in self.sites], dtype=object)[site_idx],
                "interval_start_utc": starts.astype("datetime64[us]"),
                "arrivals": truth[0].ravel().astype("int32"),
                "departures": truth[1].ravel().astype("int32"),
                "occupancy": truth[2].ravel().astype("int32"),
            })
        return Chunk(first, end, readings, frame)


# Peak memory of building the readings and minute-count keys once, per million readings
# (measured: 1 year at 60 s, 12.1 M readings, 3.6 GiB; 3 years, 36 M, 10.5 GiB).
KEY_BUILD_GIB_PER_MILLION = 0.3


def backfill(settings: Settings, catalogue: Catalogue, start: date, end: date,
             truth_dir: Path | None = None, progress: bool = True,
             interval_s: int | None = None, bulk: bool = True) -> BackfillStats:
    """Simulate local dates [start, end) and store one reading per gate and interval.
    `bulk=False` takes the batch-by-batch path even into an empty store (benchmarks); so
    does a backfill whose key build would need more than simulator.backfill_key_memory_gib."""
    interval_s = interval_s or settings.simulator.backfill_interval_s
    if interval_s % 60 or MINUTES_PER_DAY % (interval_s // 60):
        raise ValueError(f"backfill interval {interval_s} s must divide a day in whole minutes")
    seed = settings.simulator.seed
    engine = Engine(catalogue, settings.tz, seed, profile_model(catalogue, settings, seed))
    store = Store.from_settings(settings)
    store.initialise()
    writer = None
    if truth_dir is not None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        truth_path = truth_dir / "site_intervals.parquet"
    n_days = (end - start).days
    expected = n_days * len(catalogue.gates()) * (86400 // interval_s)
    need_gib = expected / 1e6 * KEY_BUILD_GIB_PER_MILLION
    if bulk and need_gib > settings.simulator.backfill_key_memory_gib:
        log.info("building the keys once would need ~%.1f GiB (simulator."
                 "backfill_key_memory_gib = %.1f): keeping them up to date batch by batch "
                 "instead (slower, less memory)", need_gib,
                 settings.simulator.backfill_key_memory_gib)
        bulk = False
    readings_count = inserted = 0
    started = time.monotonic()
    bar = tqdm(total=n_days, unit="day", disable=not progress, desc="backfill")
    keys: list[str] = []  # tables whose key was built (empty store only)
    keys_bar = tqdm(total=2, unit="key", desc="keys", disable=True)

    def on_keys(table: str) -> None:
        # Building a key gives no progress of its own: one step per table, elapsed time shown.
        nonlocal keys_bar
        log.info("building the %s key (%s readings)", table, f"{readings_count:,}")
        if not keys:  # the days are all stored: the second bar replaces the first
            bar.close()
            keys_bar = tqdm(total=2, unit="key", desc="keys", disable=not progress)
        else:
            keys_bar.update(1)
        keys.append(table)
        keys_bar.set_postfix(table=table)
    builder = _Builder(engine, catalogue, interval_s, truth_dir is not None, bar.update)
    batches = []
    day = start
    while day < end:
        batches.append((day, min(day + timedelta(days=DAYS_PER_BATCH), end)))
        day = batches[-1][1]
    try:
        # The weather first (one upsert), so the history session below is the only writer.
        if batches:
            store.write_temperature(engine.model.temperature_frame(start, end))
        # One thread simulates batch k+1 (numpy) while this one stores batch k (DuckDB
        # releases the GIL): the two cores both work. One store connection for the run.
        with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-sim") as pool,
              store.history_writer(on_keys if bulk else None, bulk=bulk) as write_history):
            pending = pool.submit(builder.chunk, *batches[0]) if batches else None
            for k in range(len(batches)):
                chunk = pending.result()
                pending = (pool.submit(builder.chunk, *batches[k + 1])
                           if k + 1 < len(batches) else None)
                inserted += write_history(chunk.readings)
                readings_count += chunk.readings.num_rows
                if chunk.truth is not None:
                    table = pa.Table.from_pandas(chunk.truth, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(truth_path, table.schema, compression="zstd")
                    writer.write_table(table)
                bar.set_postfix(readings=f"{readings_count:,}",
                                per_s=f"{readings_count / (time.monotonic() - started):,.0f}")
        if keys:
            keys_bar.update(1)
    finally:
        bar.close()
        keys_bar.close()
        if writer is not None:
            writer.close()
    return BackfillStats(n_days, readings_count, inserted, time.monotonic() - started,
                         keys_built=bool(keys))

"""The backfill's bulk path (Store.write_history, issue 4) stores exactly what the collector's
write path (Store.write_batch) stores for the same readings, and a re-run adds nothing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from ingest.sim_backfill import RECEIVE_DELAY, _Builder, backfill
from ingest.sim_engine import Engine
from ingest.simulator import profile_model
from visitorflow.catalogue import load_catalogue
from visitorflow.contract import Reading
from visitorflow.settings import Settings
from visitorflow.store import Store

START, END = date(2026, 3, 9), date(2026, 3, 11)
WIDE = (datetime(2020, 1, 1), datetime(2030, 1, 1))


def _readings(table) -> list[Reading]:  # noqa: ANN001
    return [
        Reading(r["site_id"], r["gate_id"], r["device_id"], r["seq"], r["ts_utc"],
                r["interval_s"], r["count_in"], r["count_out"], r["in_total"], r["out_total"],
                r["battery_pct"])
        for r in table.to_pylist()
    ]


def _contents(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    readings = store.readings().sort_values(["device_id", "seq", "ts_utc"], ignore_index=True)
    minutes = store.minute_counts(*WIDE).sort_values(["site_id", "gate_id", "minute_utc"],
                                                     ignore_index=True)
    return readings, minutes


def test_bulk_path_equals_write_batch(settings: Settings, tmp_path: Path) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    seed = settings.simulator.seed
    for interval_s in (60, 900):
        engine = Engine(catalogue, settings.tz, seed, profile_model(catalogue, settings, seed))
        table = _Builder(engine, catalogue, interval_s, with_truth=False).chunk(START, END)
        readings = table.readings
        n_gates = len(catalogue.gates())
        assert readings.num_rows == n_gates * (86_400 // interval_s) * 2
        # Reference: the collector's path, one Reading object per row.
        reference = Store(tmp_path / f"reference_{interval_s}.duckdb")
        reference.initialise()
        as_objects = _readings(readings)
        result = reference.write_batch(as_objects, [r.ts_utc + RECEIVE_DELAY for r in as_objects])
        assert result.inserted == readings.num_rows
        # Bulk path, fresh store: the plain INSERT path.
        bulk = Store(tmp_path / f"bulk_{interval_s}.duckdb")
        bulk.initialise()
        assert bulk.write_history(readings) == readings.num_rows
        ref_readings, ref_minutes = _contents(reference)
        got_readings, got_minutes = _contents(bulk)
        pd.testing.assert_frame_equal(got_readings, ref_readings)
        pd.testing.assert_frame_equal(got_minutes, ref_minutes)
        assert ref_minutes.count_in.sum() > 1_000
        # Again: nothing added, nothing counted twice.
        assert bulk.write_history(readings) == 0
        assert bulk.write_history(readings.to_pandas()) == 0
        got_readings, got_minutes = _contents(bulk)
        pd.testing.assert_frame_equal(got_readings, ref_readings)
        pd.testing.assert_frame_equal(got_minutes, ref_minutes)
        # Overlap: half stored already (through write_batch) → the anti-join and the minute
        # count upsert paths give the same store.
        partial = Store(tmp_path / f"partial_{interval_s}.duckdb")
        partial.initialise()
        half = as_objects[::2]
        partial.write_batch(half, [r.ts_utc + RECEIVE_DELAY for r in half])
        assert partial.write_history(readings) == readings.num_rows - len(half)
        got_readings, got_minutes = _contents(partial)
        pd.testing.assert_frame_equal(got_readings, ref_readings)
        pd.testing.assert_frame_equal(got_minutes, ref_minutes)


def test_backfill_rerun_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    n_gates = len(catalogue.gates())
    first = backfill(settings, catalogue, START, END, truth_dir=tmp_path, progress=False,
                     interval_s=60)
    assert first.readings == first.inserted == n_gates * 1440 * 2
    store = Store.from_settings(settings)
    before = _contents(store)
    again = backfill(settings, catalogue, START, END, progress=False, interval_s=60)
    assert again.readings == first.readings and again.inserted == 0
    after = _contents(store)
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])
    # The truth file and the store agree minute by minute.
    truth = pd.read_parquet(tmp_path / "site_intervals.parquet")
    assert len(truth) == len(catalogue.sites) * 1440 * 2
    stored = before[1].groupby(["site_id", "minute_utc"])[["count_in", "count_out"]].sum()
    expected = truth.set_index(["site_id", "interval_start_utc"])[["arrivals", "departures"]]
    expected.index.names = stored.index.names
    joined = expected.join(stored, how="left").fillna(0)
    assert (joined.arrivals == joined.count_in).all()
    assert (joined.departures == joined.count_out).all()
    # One more day on the end: only that day is new.
    more = backfill(settings, catalogue, START, END + timedelta(days=1), progress=False,
                    interval_s=60)
    assert more.inserted == n_gates * 1440

"""The backfill's bulk paths store exactly what the collector's write path
(Store.write_batch) stores for the same readings: Store.write_history batch by batch, and
Store.history_writer into an empty store (loaded without keys, keys built once at the end).
A re-run adds nothing; a failed key-less load leaves the store as it was; after a backfill
the live collector (real broker) still drops a repeated reading and adds to a stored minute."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ingest.sim_backfill import RECEIVE_DELAY, _Builder, backfill
from ingest.sim_engine import Engine, profile_model
from visitorflow.catalogue import load_catalogue
from visitorflow.contract import Reading
from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError

from .conftest import Processes, wait_until
from .ingest_support import native

START, END = date(2026, 3, 9), date(2026, 3, 11)
WIDE = (datetime(2020, 1, 1), datetime(2030, 1, 1))


def _readings(table) -> list[Reading]:
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


def _schema(store: Store) -> tuple[list, list, list]:
    """Primary keys of readings and minute_counts, tables left by a bulk load, gates' last."""
    con = duckdb.connect(str(store.path), read_only=True)
    try:
        keys = con.execute(
            """SELECT table_name, constraint_column_names FROM duckdb_constraints()
            WHERE constraint_type = 'PRIMARY KEY'
              AND table_name IN ('readings', 'minute_counts') ORDER BY table_name"""
        ).fetchall()
        staging = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'history%'"
        ).fetchall()
        last = con.execute("SELECT * FROM gate_last_reading ORDER BY ALL").fetchall()
    finally:
        con.close()
    return keys, staging, last


KEYS = [("minute_counts", ["site_id", "gate_id", "minute_utc"]),
        ("readings", ["device_id", "seq", "ts_utc"])]


def _days(settings: Settings, interval_s: int, first: date, end: date) -> list:
    """Readings of [first, end) as Arrow tables, one per day (one batch each)."""
    catalogue = load_catalogue(settings.catalogue_path)
    seed = settings.simulator.seed
    engine = Engine(catalogue, settings.tz, seed, profile_model(catalogue, settings, seed))
    builder = _Builder(engine, catalogue, interval_s, with_truth=False)
    return [builder.chunk(first + timedelta(days=d), first + timedelta(days=d + 1)).readings
            for d in range((end - first).days)]


def test_empty_store_loads_without_keys_then_builds_them(settings: Settings,
                                                          tmp_path: Path) -> None:
    days = _days(settings, 60, START, END)
    rows = sum(t.num_rows for t in days)
    reference = Store(tmp_path / "reference.duckdb")
    reference.initialise()
    for table in days:
        objects = _readings(table)
        reference.write_batch(objects, [r.ts_utc + RECEIVE_DELAY for r in objects])
    bulk = Store(tmp_path / "bulk.duckdb")
    bulk.initialise()
    keyed: list[str] = []
    with bulk.history_writer(keyed.append) as write:
        assert [write(t) for t in days] == [t.num_rows for t in days]
        assert bulk_readings_while_loading(bulk) == 0  # staged: not in `readings` yet
    assert keyed == ["readings", "minute_counts"]
    for got, expected in zip(_contents(bulk), _contents(reference), strict=True):
        pd.testing.assert_frame_equal(got, expected)
    assert len(_contents(bulk)[0]) == rows
    keys, staging, last = _schema(bulk)
    assert keys == KEYS and staging == []
    assert last == _schema(reference)[2] and len(last) == len(days[0].column("device_id").unique())
    # The collector's path after it: the keys still drop repeats and merge minutes.
    again = _readings(days[-1])
    result = bulk.write_batch(again, [r.ts_utc + RECEIVE_DELAY for r in again])
    assert (result.inserted, result.duplicates) == (0, len(again))
    first = again[0]
    spare = Reading(first.site_id, first.gate_id, "spare-counter", 1, first.ts_utc, 60, 5, 2)
    assert bulk.write_batch([spare], first.ts_utc).inserted == 1
    minute = bulk.minute_counts(first.ts_utc - timedelta(minutes=1), first.ts_utc,
                                first.site_id)
    row = minute[minute.gate_id == first.gate_id].iloc[0]
    assert (row.count_in, row.count_out) == (first.count_in + 5, first.count_out + 2)
    # A second history run into the now full store takes the batch-by-batch path.
    keyed.clear()
    with bulk.history_writer(keyed.append) as write:
        assert write(days[0]) == 0
    assert keyed == []


def bulk_readings_while_loading(store: Store) -> int:
    """Readings visible in `readings` (same process: DuckDB shares the open database)."""
    con = duckdb.connect(str(store.path))
    try:
        return con.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        con.close()


def test_a_failed_key_less_load_leaves_the_store_as_before(settings: Settings,
                                                           tmp_path: Path) -> None:
    day = _days(settings, 900, START, START + timedelta(days=1))[0]
    store = Store(tmp_path / "failed.duckdb")
    store.initialise()
    # The same readings twice: the key cannot be built; nothing is stored, the error says why.
    with pytest.raises(StoreError, match="readings key .* twice"), \
            store.history_writer() as write:
        write(day)
        write(day)
    assert store.table_counts()["readings"] == store.table_counts()["minute_counts"] == 0
    assert _schema(store) == (KEYS, [], [])
    # An error in the middle of a run (e.g. the simulation failing): the same.
    with pytest.raises(RuntimeError, match="mid-run"), store.history_writer() as write:
        write(day)
        raise RuntimeError("mid-run")
    assert store.table_counts()["readings"] == 0
    assert _schema(store) == (KEYS, [], [])
    # And the next run loads it.
    with store.history_writer() as write:
        write(day)
    assert store.table_counts()["readings"] == day.num_rows
    assert _schema(store)[:2] == (KEYS, [])


@pytest.mark.e2e
def test_backfill_then_live_collector_still_dedupes(settings: Settings, broker: int,
                                                    processes: Processes,
                                                    mosquitto_pub) -> None:
    """A backfill into the empty store, then the real collector on it: a repeated reading of
    the history is dropped, the next one is stored and counted once."""
    catalogue = load_catalogue(settings.catalogue_path)
    stats = backfill(settings, catalogue, START, START + timedelta(days=1), progress=False,
                     interval_s=60)
    assert stats.keys_built and stats.inserted == stats.readings
    store = Store.from_settings(settings)
    last = store.readings(None, None, "tam_thanh")  # the site's readings, all times
    last = last[last.device_id == "lsn-tam_thanh-main"].iloc[-1]
    ts = last.ts_utc.to_pydatetime()
    processes.start("ingest.collector")
    topic = f"{settings.mqtt.topic_prefix}/tam_thanh/main/counts"
    repeat = native(int(last.seq), ts, int(last.count_in), int(last.count_out),
                    in_total=int(last.in_total), out_total=int(last.out_total))
    following = native(int(last.seq) + 1, ts + timedelta(minutes=1), 7, 3,
                       in_total=int(last.in_total) + 7, out_total=int(last.out_total) + 3)

    def stored() -> int:
        try:
            return store.table_counts()["readings"]
        except StoreError:  # the collector holds the store right now
            return -1

    # The collector may subscribe after a publish: the repeat is published until it is seen.
    def sent_and_stored() -> bool:
        mosquitto_pub(topic, repeat)
        mosquitto_pub(topic, following)
        return stored() == stats.readings + 1

    wait_until(sent_and_stored, 30, "the collector to store the reading after the history")
    assert stored() == stats.readings + 1  # the repeat(s) of the history were dropped
    minutes = store.minute_counts(ts - timedelta(minutes=1), ts + timedelta(minutes=1),
                                  "tam_thanh")
    minutes = minutes[minutes.gate_id == "main"].set_index("minute_utc")
    assert minutes.loc[ts, "count_in"] == 7 and minutes.loc[ts, "count_out"] == 3
    assert minutes.loc[ts - timedelta(minutes=1), "count_in"] == last.count_in


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
    assert first.keys_built  # an empty store: loaded without keys, keys built once
    store = Store.from_settings(settings)
    before = _contents(store)
    again = backfill(settings, catalogue, START, END, progress=False, interval_s=60)
    assert again.readings == first.readings and again.inserted == 0
    assert not again.keys_built
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


def test_backfill_over_the_key_memory_budget_keeps_the_keys_up_to_date(
        settings: Settings, tmp_path: Path) -> None:
    """A history whose key build would not fit simulator.backfill_key_memory_gib takes the
    batch-by-batch path (keys kept up to date): same store as the fast path."""
    catalogue = load_catalogue(settings.catalogue_path)
    fast = backfill(settings, catalogue, START, END, progress=False, interval_s=60)
    assert fast.keys_built
    expected = _contents(Store.from_settings(settings))
    small = settings.model_copy(update={
        "store": settings.store.model_copy(update={"path": tmp_path / "small.duckdb"}),
        "simulator": settings.simulator.model_copy(update={"backfill_key_memory_gib": 0.01}),
    })
    slow = backfill(small, catalogue, START, END, progress=False, interval_s=60)
    assert not slow.keys_built and slow.inserted == fast.inserted
    got = _contents(Store.from_settings(small))
    pd.testing.assert_frame_equal(got[0], expected[0])
    pd.testing.assert_frame_equal(got[1], expected[1])

"""The DuckDB store: deduplication, minute counts that late readings correct, occupancy,
quarantine, and the short-lived lock discipline between processes."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from visitorflow.contract import GateStatus, Reading
from visitorflow.store import Quarantined, Store, StoreBusy, StoreMissing

from .conftest import hold_store_lock

T0 = datetime(2026, 2, 18, 3, 0)  # 10:00 in Lạng Sơn
DAY = datetime(2026, 2, 17, 17, 0)  # local midnight in UTC


def reading(seq: int, minute: int, n_in: int, n_out: int, gate: str = "main",
            device: str = "lsn-tam_thanh-main", site: str = "tam_thanh") -> Reading:
    return Reading(site, gate, device, seq, T0 + timedelta(minutes=minute), 60, n_in, n_out)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.duckdb", lock_timeout_s=5)
    s.initialise()
    return s


def test_duplicates_are_stored_once(store: Store) -> None:
    batch = [reading(1, 1, 10, 0), reading(2, 2, 5, 1), reading(1, 1, 10, 0)]
    first = store.write_batch(batch, T0)
    again = store.write_batch(batch[:2], T0)  # a QoS 1 redelivery
    assert (first.inserted, first.duplicates) == (2, 1)
    assert (again.inserted, again.duplicates) == (0, 2)
    assert store.table_counts()["readings"] == 2
    assert store.minute_counts(DAY, T0 + timedelta(hours=1))["count_in"].sum() == 15


def test_seq_restarting_after_a_device_reset_is_not_a_duplicate(store: Store) -> None:
    store.write_batch([reading(0, 1, 3, 0), reading(1, 2, 4, 0)], T0)
    result = store.write_batch([reading(0, 30, 6, 0)], T0)  # rebooted: seq 0 again, new time
    assert result.inserted == 1
    assert store.table_counts()["readings"] == 3


def test_late_reading_corrects_its_minute_and_the_occupancy(store: Store) -> None:
    store.write_batch([reading(5, 10, 20, 2)], T0)
    now = T0 + timedelta(minutes=15)
    assert store.site_counts(DAY, now)["occupancy"].tolist() == [18]
    store.write_batch([reading(4, 9, 7, 0), reading(6, 10, 0, 1, device="other")], T0)
    minutes = store.minute_counts(DAY, now).set_index("minute_utc")
    assert minutes.loc[T0 + timedelta(minutes=8), "count_in"] == 7  # the interval's start
    assert minutes.loc[T0 + timedelta(minutes=9), "count_out"] == 3  # two gates' readings
    counts = store.site_counts(DAY, now).iloc[0]
    assert (counts.arrivals_today, counts.departures_today, counts.occupancy) == (27, 3, 24)


def test_occupancy_is_never_negative(store: Store) -> None:
    store.write_batch([reading(1, 1, 2, 9)], T0)
    assert store.site_counts(DAY, T0 + timedelta(minutes=5))["occupancy"].tolist() == [0]


def test_counts_of_an_earlier_day_do_not_count_today(store: Store) -> None:
    store.write_batch([reading(1, -24 * 60, 50, 0), reading(2, 1, 5, 0)], T0)
    assert store.site_counts(DAY, T0 + timedelta(minutes=5))["arrivals_today"].tolist() == [5]


def test_quarantine_and_gate_status(store: Store) -> None:
    raw = b"\xff{not json"
    store.write_batch([], T0, [Quarantined(T0, "langson/v1/x/y/counts", raw, "not JSON")],
                      [(GateStatus("tam_thanh", "main", "offline"), T0)])
    row = store.quarantine().iloc[0]
    assert bytes(row["payload"]) == raw and row["reason"] == "not JSON"
    health = store.gate_health()
    assert health.loc[0, "status"] == "offline"


def test_reading_a_missing_store_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreMissing, match="collector"):
        Store(tmp_path / "absent.duckdb").readings()


def test_reader_waits_out_a_short_commit(store: Store) -> None:
    store.write_batch([reading(1, 1, 10, 0)], T0)
    holder = hold_store_lock(store.path, 0.6)
    started = time.monotonic()
    assert len(store.readings()) == 1
    assert time.monotonic() - started >= 0.3  # it did wait for the lock, then read
    holder.wait(5)


def test_a_lock_held_too_long_names_the_holder(store: Store) -> None:
    holder = hold_store_lock(store.path, 3)
    impatient = Store(store.path, lock_timeout_s=0.3)
    with pytest.raises(StoreBusy, match=rf"PID {holder.pid}|{holder.pid}"):
        impatient.readings()
    with pytest.raises(StoreBusy):
        impatient.write_batch([reading(1, 1, 1, 0)], T0)
    holder.kill()
    holder.wait(5)


def test_temperature_upsert_and_query(store: Store) -> None:
    import pandas as pd

    frame = pd.DataFrame({"site_id": ["mau_son"] * 2, "ts_utc": [T0, T0 + timedelta(hours=1)],
                          "temp_c": [1.5, -0.5], "source": ["simulated"] * 2})
    store.write_temperature(frame)
    store.write_temperature(frame.assign(temp_c=[2.0, -1.0]))  # corrected values replace
    got = store.temperature("mau_son", T0, T0 + timedelta(days=1))
    assert got["temp_c"].tolist() == [2.0, -1.0]

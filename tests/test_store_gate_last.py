"""Each gate's newest reading kept by the writers (gate_last_reading, what the live and site
pages read every refresh instead of scanning `readings`), and Store.session()."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from visitorflow.contract import Reading
from visitorflow.settings import Settings
from visitorflow.store import SCHEMA_VERSION, Store, StoreError, readings_frame

T0 = datetime(2026, 11, 21, 3, 0)
FULL_SCAN = """SELECT site_id, gate_id, arg_max(device_id, ts_utc) AS device_id,
       max(ts_utc) AS last_reading_utc, arg_max(interval_s, ts_utc) AS interval_s,
       arg_max(battery_pct, ts_utc) AS battery_pct, count(*) AS readings
FROM readings GROUP BY ALL ORDER BY ALL"""


def reading(gate: str, seq: int, minutes: int, battery: float) -> Reading:
    return Reading("tam_thanh", gate, f"lsn-tam_thanh-{gate}", seq, T0 + timedelta(minutes=minutes),
                   60, 3, 1, battery_pct=battery)


def health_columns(store: Store) -> pd.DataFrame:
    cols = ["site_id", "gate_id", "device_id", "last_reading_utc", "interval_s", "battery_pct",
            "readings"]
    health = store.gate_health()
    return health[health["readings"].notna()][cols].reset_index(drop=True)


def full_scan(store: Store) -> pd.DataFrame:
    with duckdb.connect(str(store.path), read_only=True) as con:
        return con.execute(FULL_SCAN).df()


@pytest.fixture
def store(settings: Settings) -> Store:
    store = Store.from_settings(settings)
    store.initialise()
    return store


def test_the_newest_reading_survives_late_and_duplicate_ones(store: Store) -> None:
    store.write_batch([reading("main", 1, 1, 90.0), reading("main", 2, 2, 89.0)], T0)
    # A late reading (older) and a redelivery: neither replaces the newest.
    store.write_batch([reading("main", 0, 0, 95.0), reading("main", 2, 2, 89.0)], T0)
    health = health_columns(store)
    row = health.iloc[0]
    assert row["last_reading_utc"] == T0 + timedelta(minutes=2)
    assert (row["battery_pct"], row["readings"]) == (89.0, 3)
    pd.testing.assert_frame_equal(health, full_scan(store), check_dtype=False)


def test_history_writes_keep_it_too(store: Store) -> None:
    history = readings_frame([reading("main", s, s, 80.0 - s) for s in range(10)]
                             + [reading("side", s, s, 70.0) for s in range(4)], T0)
    store.write_history(history)
    store.write_history(history)  # again: nothing new, nothing counted twice
    store.write_batch([reading("side", 4, 30, 69.0)], T0)
    health = health_columns(store)
    assert list(health["readings"]) == [10, 5]
    pd.testing.assert_frame_equal(health, full_scan(store), check_dtype=False)


def test_a_store_made_before_the_table_is_migrated_and_filled(store: Store) -> None:
    store.write_batch([reading("main", 1, 1, 90.0), reading("side", 1, 5, 50.0)], T0)
    expected = full_scan(store)
    with duckdb.connect(str(store.path)) as con:  # as a store made before the table was
        con.execute("DROP TABLE gate_last_reading")
        con.execute("DELETE FROM schema_info WHERE version > 1")
    with pytest.raises(StoreError, match="start the collector"):
        store.gate_health()  # a reader refuses it instead of failing on a missing table
    assert store.initialise() == list(range(2, SCHEMA_VERSION + 1))  # the collector's start-up
    pd.testing.assert_frame_equal(health_columns(store), expected, check_dtype=False)


def test_a_session_reads_on_one_connection_and_lets_go_after(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_batch([reading("main", 1, 1, 90.0)], T0)
    opened = []
    real = Store._connect

    def counting(self, read_only):
        opened.append(read_only)
        return real(self, read_only)

    monkeypatch.setattr(Store, "_connect", counting)
    with store.session():
        store.gate_health()
        store.site_counts(T0, T0 + timedelta(hours=1))
        store.latest_forecast()
    assert opened == [True]
    # Closed at the end: a writer in this process can open the file again.
    store.write_batch([reading("main", 2, 2, 90.0)], T0)
    assert health_columns(store).iloc[0]["readings"] == 2

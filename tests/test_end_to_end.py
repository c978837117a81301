"""End to end with real components: Mosquitto, the collector and the simulator as
separate processes, the store read by this process while the collector writes it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError

from .conftest import Processes, wait_subscribed, wait_until
from .ingest_support import store_rows, stored_rows, truth_rows

pytestmark = pytest.mark.e2e

def simulate(processes: Processes, truth: Path, minutes: int) -> None:
    sim = processes.start(
        "ingest.simulator", "--start", "2026-02-21T08:00+07:00", "--minutes", str(minutes),
        "--speed", "max", "--truth-log", str(truth),
    )
    assert sim.wait(120) == 0, sim.log_path.read_text()


def test_published_readings_are_stored_exactly(
    settings: Settings, broker: int, processes: Processes, tmp_path: Path
) -> None:
    collector = processes.start("ingest.collector")
    store = Store.from_settings(settings)
    wait_until(lambda: stored_rows(store) == 0, 15, "the collector to create the store")
    wait_subscribed(collector)
    truth = tmp_path / "truth.jsonl"
    simulate(processes, truth, minutes=180)  # 23 gates × 180 intervals
    expected = truth_rows(truth, settings)
    assert len(expected) == 23 * 180
    wait_until(lambda: stored_rows(store) == len(expected), 30, "every reading to be stored")
    assert store_rows(store) == expected
    # Minute counts carry exactly the people of the readings.
    minutes = store.minute_counts(min(r[2] for r in expected).replace(hour=0),
                                  max(r[2] for r in expected))
    assert minutes["count_in"].sum() == sum(r[6] for r in expected)
    assert minutes["count_out"].sum() == sum(r[7] for r in expected)
    assert collector.poll() is None, "collector died"


def test_valid_and_malformed_payloads_from_mosquitto_pub(
    settings: Settings, broker: int, processes: Processes, mosquitto_pub
) -> None:
    collector = processes.start("ingest.collector")
    store = Store.from_settings(settings)
    wait_until(lambda: stored_rows(store) == 0, 15, "the collector to create the store")
    wait_subscribed(collector)
    topic = "langson/v1/tam_thanh/main/counts"
    good = {"device_id": "lsn-tam_thanh-main", "seq": 1, "ts": "2026-02-21T09:01:00+07:00",
            "interval_s": 60, "in": 12, "out": 3, "in_total": 512, "out_total": 400,
            "battery_pct": 87}
    broken = b'{"device_id": "lsn-tam_thanh-main", "seq": 2, "in": 5'
    mosquitto_pub(topic, json.dumps(good))
    mosquitto_pub(topic, broken)
    mosquitto_pub("langson/v1/no_such_site/main/counts", json.dumps(good))
    mosquitto_pub(topic, json.dumps(good))  # a resend: stored once
    mosquitto_pub(topic, json.dumps({**good, "seq": 2, "ts": "2026-02-21T09:02:00+07:00"}))

    def settled() -> bool:
        try:
            counts = store.table_counts()
        except StoreError:
            return False
        return counts["readings"] == 2 and counts["quarantine"] == 2

    wait_until(settled, 20, "2 readings stored and 2 messages quarantined")
    readings = store.readings()
    assert list(readings["seq"]) == [1, 2]
    assert list(readings["count_in"]) == [12, 12]
    quarantine = store.quarantine().sort_values("received_at_utc")
    assert bytes(quarantine["payload"].iloc[0]) == broken
    assert quarantine["topic"].iloc[0] == topic
    assert "not JSON" in quarantine["reason"].iloc[0]
    assert "unknown site" in quarantine["reason"].iloc[1]
    assert collector.poll() is None, "a malformed payload stopped the collector"


def test_killed_collector_loses_nothing_and_stores_nothing_twice(
    settings: Settings, broker: int, processes: Processes, tmp_path: Path
) -> None:
    """The collector acknowledges only committed messages, on a persistent session: kill it
    hard mid-stream and the broker redelivers the rest to its successor."""
    first = processes.start("ingest.collector")
    store = Store.from_settings(settings)
    wait_until(lambda: stored_rows(store) == 0, 15, "the collector to create the store")
    wait_subscribed(first)
    truth = tmp_path / "truth.jsonl"
    sim = processes.start(
        "ingest.simulator", "--start", "2026-02-21T08:00+07:00", "--minutes", "600",
        "--speed", "max", "--truth-log", str(truth),
    )
    wait_until(lambda: stored_rows(store) > 1000, 30, "the first readings to be stored")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert sim.wait(120) == 0, sim.log_path.read_text()
    between = stored_rows(store)
    expected = truth_rows(truth, settings)
    assert 0 < between < len(expected), "the kill should have come mid-stream"
    processes.start("ingest.collector")
    wait_until(lambda: stored_rows(store) == len(expected), 60,
               f"the restarted collector to store all {len(expected)} readings")
    assert store_rows(store) == expected

"""The collector against faults, with real components: a Mosquitto broker, the collector as
its own process, messages from mosquitto_pub and paho, and the store read in between."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.broker import start_broker
from ingest.broker_auth import cli_auth_args
from visitorflow.catalogue import Catalogue
from visitorflow.clock import utc_now
from visitorflow.live import no_data_notices
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store, StoreError

from .conftest import Processes, wait_subscribed, wait_until
from .ingest_support import (
    VS133_EUI,
    WindowPublisher,
    catalogue_with_dev_euis,
    native,
    native_stream,
    ttn_topic,
    ttn_uplink,
)

pytestmark = pytest.mark.e2e

TOPIC = "langson/v1/tam_thanh/main/counts"


@pytest.fixture
def catalogue(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalogue:
    """The project's catalogue with two LoRaWAN counters, used by this process and the
    collector processes it starts."""
    path = tmp_path / "sites.yaml"
    cat = catalogue_with_dev_euis(path)
    monkeypatch.setenv("VISITORFLOW_CATALOGUE_PATH", str(path))
    get_settings.cache_clear()
    return cat


def counts(store: Store) -> dict[str, int]:
    try:
        return store.table_counts()
    except StoreError:  # not created yet, or the collector holds it right now
        return {"readings": -1, "quarantine": -1, "minute_counts": -1, "gate_status": -1}


def start_collector(processes: Processes, store: Store, *args: str):
    proc = processes.start("ingest.collector", *args)
    wait_until(lambda: counts(store)["readings"] >= 0, 15, "the collector to create the store")
    wait_subscribed(proc)
    return proc


def test_every_fault_healed_or_flagged(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes, mosquitto_pub
) -> None:
    store = Store.from_settings(settings)
    collector = start_collector(processes, store)
    t0 = utc_now().replace(second=0, microsecond=0) - timedelta(hours=1)
    # Duplicates: a resend of seq 1.  Out of order: seq 3 before seq 2.  A gap: seq 4 and
    # 5 never arrive; seq 6's totals recover their people.
    m1 = native(1, t0 + timedelta(minutes=1), 10, 2, in_total=110, out_total=52)
    for payload in (m1, m1, native(3, t0 + timedelta(minutes=3), 4, 3, in_total=121,
                                  out_total=56),
                    native(2, t0 + timedelta(minutes=2), 7, 1, in_total=117, out_total=53),
                    native(6, t0 + timedelta(minutes=6), 3, 4, in_total=135, out_total=62)):
        mosquitto_pub(TOPIC, payload)
    # A reading 40 hours late.
    mosquitto_pub("langson/v1/tam_thanh/main/counts",
                  native(1, t0 - timedelta(hours=40), 8, 8, device="lsn-old-counter"))
    # LoRaWAN: frame 0 (no f_cnt field), frame 1, then frame 1 again received later (a retry).
    decoded = {"line_1_period_in": 5, "line_1_period_out": 1, "line_1_total_in": 500,
               "line_1_total_out": 400}
    mosquitto_pub(ttn_topic(), ttn_uplink(VS133_EUI, 0, t0, decoded))
    mosquitto_pub(ttn_topic(), ttn_uplink(VS133_EUI, 1, t0 + timedelta(minutes=10),
                                          {**decoded, "line_1_total_in": 505}))
    mosquitto_pub(ttn_topic(), ttn_uplink(VS133_EUI, 1, t0 + timedelta(minutes=10, seconds=3),
                                          {**decoded, "line_1_total_in": 505}))
    # Garbage, each with its reason.
    good = json.loads(m1)
    garbage = {
        "not JSON": b'{"device_id": "x", "seq": 2, "in": 5',
        "must be an integer": json.dumps({**good, "seq": 9, "in": "5"}),
        "outside 0..100000": json.dumps({**good, "seq": 9, "out": -3}),
        "in the future": native(9, utc_now() + timedelta(hours=2), 1, 1),
        "exceeds 4096": json.dumps({**good, "seq": 9, "pad": "x" * 5000}),
        "unknown dev_eui": ttn_uplink("0000000000000099", 4, t0, decoded),
    }
    for reason, payload in garbage.items():
        topic = ttn_topic() if reason == "unknown dev_eui" else TOPIC
        mosquitto_pub(topic, payload)
    mosquitto_pub("langson/v1/no_such_site/main/counts", m1)

    wait_until(lambda: counts(store)["readings"] == 7 and counts(store)["quarantine"] == 7,
               20, "7 readings stored and 7 messages quarantined")
    readings = store.readings()
    native_seqs = readings[readings["device_id"] == "lsn-tam_thanh-main"]["seq"].tolist()
    assert sorted(native_seqs) == [1, 2, 3, 6]  # duplicate once, out-of-order kept
    assert readings[readings["device_id"] == VS133_EUI]["seq"].tolist() == [0, 1]
    reasons = " | ".join(store.quarantine()["reason"])
    for reason in [*garbage, "unknown site"]:
        assert reason in reasons
    gap = store.reading_gaps().iloc[0]
    assert (gap.after_seq, gap.before_seq, gap.status) == (3, 6, "recovered")
    assert (gap.recovered_in, gap.recovered_out) == (135 - 121 - 3, 62 - 56 - 4)
    minutes = store.minute_counts(t0 - timedelta(days=3), t0 + timedelta(hours=1),
                                  "tam_thanh")
    # 10+7+4+3 reported, 11 recovered, 8 in the late reading; no double count of the resend.
    assert minutes["count_in"].sum() == 10 + 7 + 4 + 3 + 11 + 8
    assert collector.poll() is None, "a fault stopped the collector"


def test_a_counter_whose_last_will_says_offline_shows_no_data_since(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes
) -> None:
    """A real counter connection (mosquitto_pub with a last will) killed hard: the broker
    publishes its will, and the site shows since when there is no data."""
    store = Store.from_settings(settings)
    start_collector(processes, store)
    now = utc_now()
    status = "langson/v1/den_ky_cung/main/status"
    counter = subprocess.Popen(
        [shutil.which("mosquitto_pub") or "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker),
         *cli_auth_args(settings, "lsn-den_ky_cung-main"),  # the counter's own account
         "-q", "1", "-t", "langson/v1/den_ky_cung/main/counts", "-l",
         "--will-topic", status, "--will-payload", "offline", "--will-qos", "1",
         "--will-retain"],
        stdin=subprocess.PIPE,
    )
    assert counter.stdin is not None
    counter.stdin.write(native(1, now, 4, 1, device="lsn-den_ky_cung-main") + b"\n")
    counter.stdin.flush()
    wait_until(lambda: counts(store)["readings"] == 1, 15, "the counter's reading")
    counter.send_signal(signal.SIGKILL)
    counter.wait(5)
    wait_until(lambda: counts(store)["gate_status"] == 1, 15, "the last will to be stored")
    notices = no_data_notices(store, catalogue, settings, now + timedelta(seconds=5), "en")
    row = notices.set_index(["site_id", "gate_id"]).loc[("den_ky_cung", "main")]
    hhmm = (now.replace(second=0, microsecond=0) + timedelta(hours=7)).strftime("%H:%M")
    assert row["reason"] == "offline"
    assert row["message"] == f"No data from Main gate since {hhmm}"


def publish_all(port: int, messages: list[tuple[str, bytes]], window: int = 500,
                per_second: float | None = None) -> None:
    """Publish QoS 1 and wait for every PUBACK; `per_second` paces the stream so that a
    fault injected mid-stream surely lands mid-stream."""
    publisher = WindowPublisher(port, window=window, client_id=f"test-pub-{time.time_ns()}")
    started = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        if per_second and (pause := started + i / per_second - time.monotonic()) > 0:
            time.sleep(pause)
        publisher.publish(topic, payload)
    publisher.close()


def stored_keys(store: Store) -> list[tuple[str, int]]:
    frame = store.readings()
    return sorted(zip(frame["device_id"], frame["seq"].astype(int), strict=True))


def expected_keys(messages: list[tuple[str, bytes]]) -> list[tuple[str, int]]:
    return sorted((json.loads(p)["device_id"], json.loads(p)["seq"]) for _, p in messages)


def test_broker_restart_during_a_stream_loses_nothing(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes,
    tmp_path: Path,
) -> None:
    """Mosquitto stopped and started again (persistence on) while messages flow: every
    reading is stored exactly once."""
    store = Store.from_settings(settings)
    start_collector(processes, store)
    messages = native_stream(catalogue, 20000, utc_now() - timedelta(days=14))
    # ~10 s of messages, so the restart lands mid-stream even on a loaded machine
    publisher = threading.Thread(target=publish_all, args=(broker, messages, 500, 2000))
    publisher.start()
    wait_until(lambda: counts(store)["readings"] > 2000, 30, "the first readings")
    broker_dir = tmp_path / "broker"
    pid = int(subprocess.run(["pgrep", "-f", str(broker_dir / "mosquitto.conf")],
                             capture_output=True, text=True).stdout.split()[0])
    subprocess.run(["kill", "-TERM", str(pid)], check=True)  # saves its persistence file
    between = counts(store)["readings"]
    time.sleep(1)
    restarted = start_broker(broker_dir, broker)
    try:
        assert publisher.is_alive() and between < len(messages), "restart came after the stream"
        publisher.join(120)
        wait_until(lambda: counts(store)["readings"] == len(messages), 90,
                   f"all {len(messages)} readings after the broker restart")
        assert stored_keys(store) == expected_keys(messages)
    finally:
        restarted.terminate()
        restarted.wait(10)


def test_a_reader_holding_the_store_30_s_blocks_but_loses_nothing(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes,
    tmp_path: Path,
) -> None:
    store = Store.from_settings(settings)
    collector = start_collector(processes, store)
    messages = native_stream(catalogue, 3000, utc_now() - timedelta(days=1))
    publish_all(broker, messages[:500])
    wait_until(lambda: counts(store)["readings"] == 500, 30, "the first 500 readings")
    holder = subprocess.Popen(
        [str(Path(__import__("sys").executable)), "-c",
         # Retries its open like every reader: the collector may be mid-commit right now.
         "import duckdb, sys, time\n"
         "for _ in range(200):\n"
         "    try:\n"
         "        con = duckdb.connect(sys.argv[1], read_only=True); break\n"
         "    except duckdb.IOException:\n"
         "        time.sleep(0.05)\n"
         "print('holding', flush=True); time.sleep(30); con.close()",
         str(settings.store.path)],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
    publisher = threading.Thread(target=publish_all, args=(broker, messages[500:]))
    publisher.start()
    publisher.join(60)
    assert holder.wait(60) == 0
    wait_until(lambda: counts(store)["readings"] == len(messages), 60,
               "every reading after the reader let go")
    assert stored_keys(store) == expected_keys(messages)
    log = collector.log_path.read_text()  # type: ignore[attr-defined]
    assert "commit deferred" in log
    blocked = [line for line in log.splitlines() if "store was blocked for" in line]
    assert blocked, log[-2000:]
    seconds = float(blocked[-1].split("store was blocked for ")[1].split(" s")[0])
    assert 20 <= seconds <= 40


def test_two_collectors_share_the_load_without_storing_twice(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes,
) -> None:
    store = Store.from_settings(settings)
    a = start_collector(processes, store, "--client-id", "collector-a", "--share-group", "vf")
    b = processes.start("ingest.collector", "--client-id", "collector-b", "--share-group", "vf")
    # Both subscribed before the stream starts (a fixed sleep was too short on a loaded
    # machine: one collector then took every message).
    for proc in (a, b):
        wait_until(lambda p=proc: "connected to" in p.log_path.read_text(), 30,
                   "both collectors to connect and subscribe")
    time.sleep(0.5)  # the SUBACK follows the CONNACK the log line reports
    messages = native_stream(catalogue, 4000, utc_now() - timedelta(days=1))
    publish_all(broker, messages)
    wait_until(lambda: counts(store)["readings"] == len(messages), 60, "all readings")
    assert stored_keys(store) == expected_keys(messages)
    for proc in (a, b):
        proc.terminate()
        proc.wait(15)
    stored = [int(p.log_path.read_text().rsplit("stored=", 1)[1].split(",")[0])  # type: ignore[attr-defined]
              for p in (a, b)]
    assert sum(stored) == len(messages)
    assert min(stored) > 0, f"one collector did all the work: {stored}"


def test_a_fiware_notification_through_the_broker(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes, mosquitto_pub
) -> None:
    """What an Orion subscription with an MQTT notification publishes: both directions of a
    gate, stored as readings; a resend stored once."""
    store = Store.from_settings(settings)
    start_collector(processes, store)
    period = {"dateObservedFrom": "2026-02-18T10:00:00+07:00",
              "dateObservedTo": "2026-02-18T10:05:00+07:00"}
    message = json.dumps({"subscriptionId": "5f1", "data": [
        {"id": f"urn:ngsi-ld:CrowdFlowObserved:lsn-den_ky_cung-main:{d}",
         "type": "CrowdFlowObserved", "peopleCount": {"type": "Number", "value": n},
         "direction": {"type": "Text", "value": d},
         **{k: {"type": "DateTime", "value": v} for k, v in period.items()}}
        for d, n in (("inbound", 21), ("outbound", 8))]})
    fiware = "langson/v1/fiware/CrowdFlowObserved"
    mosquitto_pub(fiware, message)
    mosquitto_pub(fiware, message)
    mosquitto_pub(fiware, '{"data": [{"id": "x:nowhere", "peopleCount": 1}]}')
    wait_until(lambda: counts(store)["readings"] == 2 and counts(store)["quarantine"] == 1,
               20, "2 readings and 1 quarantined")
    readings = store.readings()
    assert (readings["count_in"].sum(), readings["count_out"].sum()) == (21, 8)
    assert "no catalogue gate" in store.quarantine()["reason"].iloc[0]


def test_kill_9_mid_stream_of_native_and_lorawan_messages_stores_each_once(
    settings: Settings, catalogue: Catalogue, broker: int, processes: Processes,
) -> None:
    """The collector killed hard while native and LoRaWAN messages flow, then restarted on
    its persistent session: the broker redelivers what was not acknowledged, and every
    reading (frame) is stored exactly once."""
    store = Store.from_settings(settings)
    first = start_collector(processes, store)
    start = utc_now() - timedelta(days=20)
    natives = native_stream(catalogue, 8000, start)
    frames = [(ttn_topic(), ttn_uplink(VS133_EUI, f, start + timedelta(minutes=10 * f),
                                       {"line_1_period_in": f % 7, "line_1_period_out": f % 5,
                                        "line_1_total_in": f * 3, "line_1_total_out": f * 2}))
              for f in range(1, 2001)]
    mixed = [m for pair in zip(natives[::4], frames, strict=False) for m in pair]
    mixed += [m for i, m in enumerate(natives) if i % 4]
    # 10,000 messages over ~10 s: slow enough that the kill lands mid-stream even when the
    # machine is loaded and the store polls below wait for locks.
    publisher = threading.Thread(target=publish_all, args=(broker, mixed, 500, 1000))
    publisher.start()
    wait_until(lambda: counts(store)["readings"] > 1500, 30, "the first readings")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    publisher.join(120)
    between = counts(store)["readings"]
    assert 0 < between < len(mixed), "the kill should have come mid-stream"
    processes.start("ingest.collector")
    wait_until(lambda: counts(store)["readings"] == len(mixed), 90,
               f"the restarted collector to store all {len(mixed)} readings")
    time.sleep(2)  # a redelivered duplicate would land now
    readings = store.readings()
    assert len(readings) == len(mixed)
    lora = readings[readings["device_id"] == VS133_EUI]
    assert sorted(lora["seq"]) == list(range(1, 2001))
    # Sent out of seq order on purpose: gaps were seen and recovered, then filled by the
    # readings arriving later, leaving minute counts equal to the readings' people.
    assert set(store.reading_gaps()["status"]) <= {"filled"}
    minutes = store.minute_counts(start - timedelta(days=1), utc_now())
    assert minutes["count_in"].sum() == readings["count_in"].sum()
    assert minutes["count_out"].sum() == readings["count_out"].sum()

"""Helpers for the ingest tests and benchmark (bench/ingest_throughput.py): a catalogue
with LoRaWAN counters, payload builders for both formats, and a publisher with a bounded
in-flight window."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from ingest.broker_auth import TEST_FLEET, apply_account
from ingest.sim_counters import read_truth_log
from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.contract import parse_counts
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store, StoreError

# Two LoRaWAN counters for the tests: a VS133-type at Kỳ Lừa north gate, a VS350-type at
# the Kỳ Lừa south gate. Test values, not real devices.
VS133_EUI = "24E124713B000001"
VS350_EUI = "24E124713B000002"
TEST_DEV_EUIS = {("ky_lua", "north"): VS133_EUI, ("ky_lua", "south"): VS350_EUI}


def catalogue_with_dev_euis(path: Path) -> Catalogue:
    """The project's catalogue plus the test DevEUIs, written to `path` and loaded back."""
    raw = yaml.safe_load((PROJECT_ROOT / "data" / "sites.yaml").read_text(encoding="utf-8"))
    for site in raw["sites"]:
        for gate in site["gates"]:
            eui = TEST_DEV_EUIS.get((site["id"], gate["id"]))
            if eui:
                gate["dev_eui"] = eui
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_catalogue(path)


def native(seq: int, ts: datetime, n_in: int, n_out: int, *, device: str = "lsn-tam_thanh-main",
           in_total: int | None = None, out_total: int | None = None,
           interval_s: int = 60) -> bytes:
    """A native contract payload; `ts` naive UTC."""
    body: dict[str, object] = {
        "device_id": device, "seq": seq,
        "ts": ts.replace(tzinfo=UTC).isoformat(timespec="seconds"),
        "interval_s": interval_s, "in": n_in, "out": n_out,
    }
    if in_total is not None:
        body["in_total"] = in_total
    if out_total is not None:
        body["out_total"] = out_total
    return json.dumps(body).encode()


def ttn_topic(device_id: str = "vs133-kylua-north", tenant: str | None = "ttn") -> str:
    app = "langson-counters" + (f"@{tenant}" if tenant else "")
    return f"v3/{app}/devices/{device_id}/up"


def ttn_uplink(dev_eui: str, f_cnt: int, received: datetime, decoded: dict,
               device_id: str = "vs133-kylua-north") -> bytes:
    """An uplink as The Things Stack writes it: `f_cnt` left out when 0, nanosecond times."""
    stamp = received.replace(tzinfo=None).isoformat(timespec="microseconds") + "123Z"
    uplink: dict[str, object] = {
        "f_port": 85,
        "frm_payload": "A9IAAAAA",
        "decoded_payload": decoded,
        "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-kylua"}, "rssi": -97, "snr": 7.5}],
        "received_at": stamp,
    }
    if f_cnt:
        uplink["f_cnt"] = f_cnt
    return json.dumps({
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": "langson-counters"},
            "dev_eui": dev_eui,
            "join_eui": "24E124C0002A0001",
        },
        "correlation_ids": ["as:up:01HX"],
        "received_at": stamp,
        "uplink_message": uplink,
    }).encode()


class WindowPublisher:
    """paho QoS 1 publisher with a bounded in-flight window (a semaphore released on PUBACK):
    without it paho's 16-bit message ids wrap while in flight and messages are lost."""

    def __init__(self, port: int, window: int = 500, client_id: str = "test-publisher") -> None:
        self._slots = threading.BoundedSemaphore(window)
        self.acked = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        # Publishes for many counters at once: the tests' and benchmarks' own account.
        apply_account(self.client, get_settings(), TEST_FLEET)
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acked += 1
        self._slots.release()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self._slots.acquire()
        self.client.publish(topic, payload, qos=qos)

    def close(self, timeout_s: float = 60.0) -> None:
        """Wait until every message is acknowledged, then disconnect."""
        for _ in range(self._slots._initial_value):  # type: ignore[attr-defined]
            if not self._slots.acquire(timeout=timeout_s):
                raise TimeoutError("publisher: messages still unacknowledged")
        self.client.disconnect()
        self.client.loop_stop()


def native_stream(catalogue: Catalogue, n: int, start_utc: datetime,
                  prefix: str = "langson/v1") -> list[tuple[str, bytes]]:
    """`n` valid native messages spread round-robin over every catalogue gate, each gate's
    counter with consecutive seqs and one-minute intervals from `start_utc` (naive UTC)."""
    gates = catalogue.gates()
    messages = []
    totals: dict[str, int] = {}
    for i in range(n):
        site, gate = gates[i % len(gates)]
        seq = i // len(gates) + 1
        n_in, n_out = (i * 7) % 13, (i * 5) % 11
        total = totals.get(gate.counter_id, 0) + n_in
        totals[gate.counter_id] = total
        ts = start_utc + timedelta(minutes=seq)
        messages.append((f"{prefix}/{site.id}/{gate.id}/counts",
                         native(seq, ts, n_in, n_out, device=gate.counter_id,
                                in_total=total, out_total=None)))
    return messages


# -- what was published against what was stored ----------------------------------------

KEY = ["device_id", "seq", "ts_utc", "site_id", "gate_id", "interval_s", "count_in",
       "count_out", "in_total", "out_total", "battery_pct"]


def stored_rows(store: Store) -> int:
    try:
        return store.table_counts()["readings"]
    except StoreError:  # not created yet, or the collector holds it right now
        return -1


def truth_rows(truth: Path, settings: Settings) -> list[tuple]:
    catalogue = load_catalogue(settings.catalogue_path)
    rows = []
    for message in read_truth_log(truth):
        r = parse_counts(message["topic"], message["payload"].encode(), catalogue,
                         settings.mqtt.topic_prefix)
        rows.append((r.device_id, r.seq, r.ts_utc, r.site_id, r.gate_id, r.interval_s,
                     r.count_in, r.count_out, r.in_total, r.out_total, r.battery_pct))
    return sorted(rows)


def store_rows(store: Store) -> list[tuple]:
    frame = store.readings()[KEY]
    rows = []
    for rec in frame.itertuples(index=False):
        rows.append((rec.device_id, int(rec.seq), rec.ts_utc.to_pydatetime(), rec.site_id,
                     rec.gate_id, int(rec.interval_s), int(rec.count_in), int(rec.count_out),
                     int(rec.in_total), int(rec.out_total), float(rec.battery_pct)))
    return sorted(rows)

"""A simulated gate counter: the state a real one keeps, and its own MQTT connection.

Shared by the live simulator (`ingest/simulator.py`) and the replay (`ingest/sim_replay.py`):
each gate is one MQTT client logging in with its own account, with its last will (`offline`,
retained) on its status topic, publishing the contract's counts payload at QoS 1 through a
bounded window of unacknowledged messages. `TruthLog` records what the broker acknowledged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from ingest.broker_auth import TTN_BRIDGE, configure_client
from ingest.sim_faults import Action
from visitorflow.catalogue import Gate, Site
from visitorflow.contract import Reading, counts_topic, format_counts, status_topic
from visitorflow.settings import Settings

log = logging.getLogger("simulator")


@dataclass
class GateCounter:
    """The state a real counter keeps: sequence number, cumulative totals, battery."""

    site: Site
    gate: Gate
    seq: int = 0
    in_total: int = 0
    out_total: int = 0
    battery_pct: float = 100.0

    def report(self, end_utc: datetime, interval_s: int, count_in: int, count_out: int) -> Reading:
        self.in_total += count_in
        self.out_total += count_out
        self.battery_pct = max(5.0, self.battery_pct - 0.001 * interval_s / 60)
        reading = Reading(
            site_id=self.site.id,
            gate_id=self.gate.id,
            device_id=self.gate.counter_id,
            seq=self.seq,
            ts_utc=end_utc,
            interval_s=interval_s,
            count_in=count_in,
            count_out=count_out,
            in_total=self.in_total,
            out_total=self.out_total,
            battery_pct=round(self.battery_pct, 1),
        )
        self.seq += 1
        return reading


class CounterClient:
    """One gate counter's MQTT connection, with a bounded window of unacknowledged messages
    (paho's message ids wrap at 65,535; an unbounded loop loses messages)."""

    def __init__(self, settings: Settings, site: Site, gate: Gate, truth: TruthLog | None) -> None:
        self.prefix = settings.mqtt.topic_prefix
        self.site, self.gate = site, gate
        self.truth = truth
        self.window = threading.BoundedSemaphore(settings.simulator.max_inflight)
        # mid -> (topic, payload, counts?) until the broker acknowledges it. paho calls
        # on_publish holding its own lock, so ours is never held while calling into paho;
        # an ack that beats the registration is parked in `early`.
        self.inflight: dict[int, tuple[str, bytes, bool]] = {}
        self.early: set[int] = set()
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=gate.counter_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        # Each counter logs in with its own account, which may write only its own gate's
        # topics (the ACL real counters get). A gate speaking TTN v3 stands for The Things
        # Stack forwarding its uplinks (`ttn-bridge`): no MQTT status of its own.
        self.lorawan = gate.counter_id in settings.simulator.faults.ttn_gates
        self.refused: str | None = None
        host, port = configure_client(self.client, settings,
                                      TTN_BRIDGE if self.lorawan else gate.counter_id)
        self.client.max_inflight_messages_set(settings.simulator.max_inflight)
        self.client.max_queued_messages_set(0)
        self.status = status_topic(self.prefix, site.id, gate.id)
        if not self.lorawan:
            self.client.will_set(self.status, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            return
        if not self.lorawan:
            self._send(self.status, b"online", retain=True, counts=False)
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.lock:
            sent = self.inflight.pop(mid, None)
            if sent is None:
                self.early.add(mid)
                return
        self._acknowledged(*sent)

    def _acknowledged(self, topic: str, payload: bytes, counts: bool) -> None:
        if counts:
            if self.truth:
                self.truth.write(topic, payload)
            self.window.release()

    def _send(self, topic: str, payload: bytes, retain: bool, counts: bool) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self.lock:
            early = info.mid in self.early
            if early:
                self.early.discard(info.mid)
            else:
                self.inflight[info.mid] = (topic, payload, counts)
        if early:
            self._acknowledged(topic, payload, counts)
        return info

    def publish(self, reading: Reading, local_ts: datetime) -> None:
        self.window.acquire()
        topic = counts_topic(self.prefix, self.site.id, self.gate.id)
        self._send(topic, format_counts(reading, local_ts), retain=False, counts=True)

    def act(self, action: Action) -> None:
        """Do what the fault injector decided: publish a counts message (any topic, any
        bytes) or a status change."""
        if action.kind == "status":
            if not self.lorawan:
                self._send(self.status, action.payload, retain=True, counts=False)
            return
        self.window.acquire()
        self._send(action.topic, action.payload, retain=False, counts=True)

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait for every message to be acknowledged, say offline, disconnect."""
        deadline = time.monotonic() + timeout_s
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.inflight:
            log.warning("%s: %d messages unacknowledged at exit", self.gate.counter_id,
                        len(self.inflight))
        if not self.lorawan:
            self._send(self.status, b"offline", retain=True, counts=False).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


class TruthLog:
    """Acknowledged messages as JSON lines, written from the MQTT threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("w", encoding="utf-8")
        self.lock = threading.Lock()
        self.count = 0

    def write(self, topic: str, payload: bytes) -> None:
        line = json.dumps({"topic": topic, "payload": payload.decode("utf-8")})
        with self.lock:
            self.file.write(line + "\n")
            self.count += 1

    def close(self) -> None:
        with self.lock:
            self.file.close()


def read_truth_log(path: Path) -> list[dict]:
    """The messages a simulator run had acknowledged by the broker."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]

"""Counter simulator: stands in for the gate counters until real ones are wired.

Every gate of the catalogue is one MQTT client, as a real counter would be, with its last
will (`offline`, retained) on its status topic. Each interval it publishes the contract's
counts payload: people in and out, cumulative totals, battery. Visitors arrive within the
site's opening hours along a daily curve (busier at weekends) and leave after an
exponentially distributed stay around the site's dwell time, so in and out draw a real
occupancy curve. Closed sites keep reporting zeros, as counters do.

Two clocks:
- live (default): an interval is published when the wall clock passes its end; a start in
  the past (`--start midnight`) is back-filled as fast as the broker takes it first;
- accelerated (`--speed N`, or `max`): simulated time runs N times faster than real time.

`--truth-log FILE` writes every acknowledged message (topic and payload) as JSON lines:
the ground truth that tests compare the store against.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from visitorflow.catalogue import Catalogue, CatalogueError, Gate, Site, load_catalogue
from visitorflow.contract import Reading, counts_topic, format_counts, status_topic
from visitorflow.live import local_day_start_utc, utc_now
from visitorflow.settings import Settings, SettingsError, get_settings

log = logging.getLogger("simulator")

WEEKDAY_UTILISATION = 0.45  # peak occupancy as a share of capacity on a weekday
WEEKEND_UTILISATION = 0.80


def arrival_rate_per_min(site: Site, local: datetime, utilisation: float) -> float:
    """Expected arrivals per minute: zero when closed, a hump across each opening window
    whose peak fills the site to `utilisation` of capacity (Little's law: L = λ·W)."""
    naive = local.replace(tzinfo=None)
    for start, end in site.open_intervals(naive.date()):
        if start <= naive < end:
            phase = (naive - start) / (end - start)
            peak = utilisation * site.capacity / site.dwell_min
            return peak * math.sin(math.pi * phase) ** 1.5
    return 0.0


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


class VisitorModel:
    """Occupancy of every site, stepped one interval at a time."""

    def __init__(self, catalogue: Catalogue, settings: Settings, seed: int) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        self.sites = list(catalogue.sites)
        # Some sites draw more than others: a fixed factor per site from the seed.
        self.popularity = {s.id: float(self.rng.uniform(0.6, 1.35)) for s in self.sites}
        self.occupancy = {s.id: 0 for s in self.sites}
        self.counters = {s.id: [GateCounter(s, g) for g in s.gates] for s in self.sites}

    def step(self, end_utc: datetime, interval_s: int) -> Iterator[tuple[GateCounter, Reading]]:
        """One interval ending at `end_utc`: a reading for every gate."""
        mid = (end_utc - timedelta(seconds=interval_s / 2)).replace(tzinfo=UTC)
        local = mid.astimezone(self.settings.tz)
        weekend = local.weekday() >= 5
        for site in self.sites:
            utilisation = (WEEKEND_UTILISATION if weekend else WEEKDAY_UTILISATION)
            rate = arrival_rate_per_min(site, local, utilisation * self.popularity[site.id])
            arrivals = int(self.rng.poisson(rate * interval_s / 60))
            inside = self.occupancy[site.id]
            if site.is_open(local):
                leave_p = 1 - math.exp(-interval_s / (site.dwell_min * 60))
            else:
                leave_p = 0.5  # closing time: the last visitors file out
            departures = int(self.rng.binomial(inside, leave_p))
            self.occupancy[site.id] = inside + arrivals - departures
            counters = self.counters[site.id]
            ins = self.rng.multinomial(arrivals, [1 / len(counters)] * len(counters))
            outs = self.rng.multinomial(departures, [1 / len(counters)] * len(counters))
            for counter, n_in, n_out in zip(counters, ins, outs, strict=True):
                yield counter, counter.report(end_utc, interval_s, int(n_in), int(n_out))


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
        if settings.mqtt.username:
            self.client.username_pw_set(settings.mqtt.username, settings.mqtt.password)
        self.client.max_inflight_messages_set(settings.simulator.max_inflight)
        self.client.max_queued_messages_set(0)
        self.status = status_topic(self.prefix, site.id, gate.id)
        self.client.will_set(self.status, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if not reason_code.is_failure:
            self._send(self.status, b"online", retain=True, counts=False)
            self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
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

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait for every message to be acknowledged, say offline, disconnect."""
        deadline = time.monotonic() + timeout_s
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.inflight:
            log.warning("%s: %d messages unacknowledged at exit", self.gate.counter_id,
                        len(self.inflight))
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


def parse_start(value: str, settings: Settings) -> datetime:
    """'now', 'midnight' (local) or an ISO time with offset, to naive UTC on the minute."""
    now = utc_now()
    if value == "now":
        start = now
    elif value == "midnight":
        start = local_day_start_utc(now, settings)
    else:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=settings.tz)
        start = parsed.astimezone(UTC).replace(tzinfo=None)
    return start.replace(second=0, microsecond=0)


def run(
    settings: Settings,
    catalogue: Catalogue,
    start_utc: datetime,
    duration: timedelta | None,
    speed: float | None,
    truth_path: Path | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Publish until `duration` of simulated time has passed (None: forever). `speed` None
    follows the wall clock; a number runs that many simulated seconds per real second
    (math.inf: as fast as the broker acknowledges). Returns messages acknowledged."""
    stop = stop or threading.Event()
    interval = settings.simulator.interval_s
    truth = TruthLog(truth_path) if truth_path else None
    model = VisitorModel(catalogue, settings, settings.simulator.seed)
    clients = {
        g.counter_id: CounterClient(settings, s, g, truth) for s, g in catalogue.gates()
    }
    for client in clients.values():
        if not client.connected.wait(10):
            raise ConnectionError(
                f"{client.gate.counter_id} could not connect to the broker at "
                f"{settings.mqtt.host}:{settings.mqtt.port}"
            )
    end_utc = start_utc + duration if duration else None
    tick_end = start_utc + timedelta(seconds=interval)
    real_start = time.monotonic()
    published = 0
    try:
        while not stop.is_set() and (end_utc is None or tick_end <= end_utc):
            if speed is None:
                wait = (tick_end - utc_now()).total_seconds()
            elif math.isinf(speed):
                wait = 0.0
            else:
                sim_elapsed = (tick_end - start_utc).total_seconds()
                wait = real_start + sim_elapsed / speed - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            local_ts = tick_end.replace(tzinfo=UTC).astimezone(settings.tz)
            for counter, reading in model.step(tick_end, interval):
                clients[counter.gate.counter_id].publish(reading, local_ts)
                published += 1
            tick_end += timedelta(seconds=interval)
    finally:
        for client in clients.values():
            client.close()
        if truth:
            truth.close()
    return truth.count if truth else published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Publish simulated gate counts for every gate of the catalogue."
    )
    parser.add_argument("--start", default="now",
                        help="'now' (default), 'midnight' (back-fill today) or an ISO time")
    parser.add_argument("--minutes", type=float, default=None,
                        help="simulated minutes to run (default: forever)")
    parser.add_argument("--speed", default=None,
                        help="simulated seconds per real second, or 'max'; default: wall clock")
    parser.add_argument("--truth-log", type=Path, default=None,
                        help="write every acknowledged message to this JSON-lines file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        start = parse_start(args.start, settings)
        speed = None if args.speed is None else (
            math.inf if args.speed == "max" else float(args.speed)
        )
    except (SettingsError, CatalogueError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    duration = timedelta(minutes=args.minutes) if args.minutes else None
    log.info("simulating %d gates from %s UTC (speed %s)", len(catalogue.gates()), start,
             args.speed or "wall clock")
    try:
        sent = run(settings, catalogue, start, duration, speed, args.truth_log, stop)
    except (ConnectionError, OSError) as exc:
        log.error("%s", exc)
        return 2
    log.info("done: %d messages acknowledged by the broker", sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())

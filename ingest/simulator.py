"""Counter simulator: stands in for the gate counters until real ones are wired.

Every gate of the catalogue is one MQTT client, as a real counter would be, with its last
will (`offline`, retained) on its status topic. Each interval it publishes the contract's
counts payload: people in and out, cumulative totals, battery. Who comes and when is the
visitor engine's job (`ingest/sim_engine.py`, profiles in `data/sim_profiles.yaml`): each
site's opening hours, dwell, week and season, the lunar festivals and national holidays,
the Kỳ Lừa walking street, Mẫu Sơn frost rushes driven by a simulated temperature, border
gates busiest on weekdays. Closed sites keep reporting zeros, as counters do.

Modes (`--mode`):
- live (default): an interval is published when the wall clock passes its end; a start in
  the past (`--start midnight`) is back-filled over MQTT as fast as the broker takes it
  first. `--speed N` runs simulated time N times faster than real time (`max`: as fast as
  the broker acknowledges).
- backfill: years of history written straight into the store (bulk path `Store.write_history`)
  (no MQTT, no collector), at `simulator.backfill_interval_s` resolution; see
  `ingest/sim_backfill.py`.

Faults (`simulator.faults` in the settings, all off by default) sit between the counters
and the broker: `ingest/sim_faults.py`.

Ground truth: `--truth-log FILE` writes every message the broker acknowledged (topic and
payload) as JSON lines; `--truth-dir DIR` writes what truly happened, without faults:
`site_minutes.parquet` (arrivals, departures, occupancy per site and minute),
`readings.parquet` (every clean reading) and `faults.parquet` (every fault injected).
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd

from ingest.broker_auth import TTN_BRIDGE, BrokerAuthError, configure_client
from ingest.sim_engine import Engine
from ingest.sim_faults import Action, FaultInjector
from ingest.sim_profiles import ProfileModel, load_profiles
from visitorflow.catalogue import Catalogue, CatalogueError, Gate, Site, load_catalogue
from visitorflow.contract import Reading, counts_topic, format_counts, status_topic
from visitorflow.live import local_day_start_utc, utc_now
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreError, readings_frame

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


def profile_model(catalogue: Catalogue, settings: Settings, seed: int) -> ProfileModel:
    """The per-site profiles of the settings' file, for this catalogue and seed."""
    path = settings.simulator.profiles_path
    path = path if path.is_absolute() else PROJECT_ROOT / path
    return ProfileModel(catalogue, settings.tz, seed, load_profiles(path))


class VisitorModel:
    """Every gate of the catalogue, stepped one counting interval at a time, from the
    visitor engine (`ingest/sim_engine.py`); keeps the true site occupancy per minute."""

    def __init__(self, catalogue: Catalogue, settings: Settings, seed: int,
                 record_truth: bool = False) -> None:
        self.settings = settings
        self.engine = Engine(catalogue, settings.tz, seed, profile_model(catalogue, settings, seed))
        self.sites = list(catalogue.sites)
        self.counters = {s.id: [GateCounter(s, g) for g in s.gates] for s in self.sites}
        self.record_truth = record_truth
        # (site_id, minute_utc, arrivals, departures, occupancy at the minute's end)
        self.truth: list[tuple[str, datetime, int, int, int]] = []

    def step(self, end_utc: datetime, interval_s: int) -> Iterator[tuple[GateCounter, Reading]]:
        """One interval ending at `end_utc` (naive UTC): a reading for every gate."""
        if interval_s % 60:
            raise ValueError(f"interval_s must be a whole number of minutes, got {interval_s}")
        first = end_utc - timedelta(seconds=interval_s)
        minutes = [first + timedelta(minutes=i) for i in range(interval_s // 60)]
        located = [(m, *self.engine.local_minute(m)) for m in minutes]
        for site in self.sites:
            counters = self.counters[site.id]
            ins = np.zeros(len(counters), dtype=np.int64)
            outs = np.zeros(len(counters), dtype=np.int64)
            for minute, day, idx in located:
                sd = self.engine.site_day(site, day)
                ins += sd.arrivals[:, idx]
                outs += sd.departures[:, idx]
                if self.record_truth:
                    self.truth.append((site.id, minute, int(sd.arrivals[:, idx].sum()),
                                       int(sd.departures[:, idx].sum()),
                                       int(sd.occupancy[idx])))
            for counter, n_in, n_out in zip(counters, ins, outs, strict=True):
                yield counter, counter.report(end_utc, interval_s, int(n_in), int(n_out))

    def truth_frame(self) -> pd.DataFrame:
        """True arrivals, departures and occupancy per site and minute (no faults)."""
        return pd.DataFrame(self.truth, columns=[
            "site_id", "minute_utc", "arrivals", "departures", "occupancy"]).astype(
            {"minute_utc": "datetime64[us]"})


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

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.refused = str(reason_code)
            return
        if not self.lorawan:
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


def write_truth(truth_dir: Path, model: VisitorModel, clean: list[Reading],
                injector: FaultInjector | None) -> None:
    """What truly happened in a run: site minutes, clean readings, faults (Parquet)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    model.truth_frame().to_parquet(truth_dir / "site_minutes.parquet", index=False)
    frame = readings_frame(clean, datetime(1970, 1, 1)).drop(columns="received_at_utc")
    frame.to_parquet(truth_dir / "readings.parquet", index=False)
    events = injector.events_frame() if injector else FaultInjector.empty_events()
    events.to_parquet(truth_dir / "faults.parquet", index=False)


def store_temperature(settings: Settings, model: VisitorModel, day: date) -> None:
    """The simulated Mẫu Sơn temperature of one local day, for forecasts to use. A busy
    store only costs a warning: the counts matter more."""
    try:
        store = Store.from_settings(settings)
        store.initialise()
        store.write_temperature(model.engine.model.temperature_frame(day, day + timedelta(days=1)))
    except StoreError as exc:
        log.warning("temperature for %s not stored: %s", day, exc)


def run(
    settings: Settings,
    catalogue: Catalogue,
    start_utc: datetime,
    duration: timedelta | None,
    speed: float | None,
    truth_path: Path | None = None,
    stop: threading.Event | None = None,
    truth_dir: Path | None = None,
) -> int:
    """Publish until `duration` of simulated time has passed (None: forever). `speed` None
    follows the wall clock; a number runs that many simulated seconds per real second
    (math.inf: as fast as the broker acknowledges). Returns messages acknowledged."""
    stop = stop or threading.Event()
    sim = settings.simulator
    interval = sim.interval_s
    truth = TruthLog(truth_path) if truth_path else None
    model = VisitorModel(catalogue, settings, sim.seed, record_truth=truth_dir is not None)
    injector = FaultInjector(
        sim.faults, sim.seed, settings.mqtt.topic_prefix, settings.tz,
        sim.ttn_application_id, sim.ttn_tenant_id,
        {g.counter_id: g.dev_eui for _, g in catalogue.gates() if getattr(g, "dev_eui", None)},
    )
    faulty = injector.active
    clean: list[Reading] = []
    clients = {
        g.counter_id: CounterClient(settings, s, g, truth) for s, g in catalogue.gates()
    }
    for client in clients.values():
        if not client.connected.wait(10):
            raise ConnectionError(
                f"{client.gate.counter_id} could not connect to the broker at "
                f"{settings.mqtt.host}:{settings.mqtt.port}"
                + (f": refused ({client.refused}); check its account in "
                   f"{settings.mqtt.secrets_dir} (python -m ingest.broker_auth generate)"
                   if client.refused else "")
            )
    end_utc = start_utc + duration if duration else None
    tick_end = start_utc + timedelta(seconds=interval)
    real_start = time.monotonic()
    published = 0
    temperature_days: set[date] = set()
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
            if sim.write_temperature and local_ts.date() not in temperature_days:
                temperature_days.add(local_ts.date())
                store_temperature(settings, model, local_ts.date())
            for counter, reading in model.step(tick_end, interval):
                client = clients[counter.gate.counter_id]
                if truth_dir is not None:
                    clean.append(reading)
                if faulty:
                    for action in injector.process(reading, counter):
                        client.act(action)
                else:
                    client.publish(reading, local_ts)
                published += 1
            tick_end += timedelta(seconds=interval)
    finally:
        for device, actions in injector.flush().items():
            for action in actions:
                clients[device].act(action)
        for client in clients.values():
            client.close()
        if truth:
            truth.close()
        if truth_dir is not None:
            write_truth(truth_dir, model, clean, injector)
    return truth.count if truth else published


HELP = """Simulated gate counters for every gate of the catalogue.

modes:
  live      (default) publish over MQTT to the broker in the settings, one message per gate
            and interval (simulator.interval_s). --start now|midnight|ISO time, --minutes N
            (default: forever), --speed N|max (default: follow the wall clock).
  replay    publish a CSV of historical counts over MQTT as if live (--replay FILE): columns
            ts,site_id,in,out[,gate_id] (ts = start of each period, local time unless it
            has an offset) or ds,y with --site (departures = arrivals shifted by the
            site's dwell); --speed N|max (default max).
  backfill  write history straight into the store through Store.write_history (no MQTT, no
            collector needed; stop the collector first, the store takes one writer at a
            time), one reading per gate every simulator.backfill_interval_s (default 900 s):
            --years N back from --end (default: today), or --start DATE --end DATE.

ground truth: --truth-log FILE (live: acknowledged messages as JSON lines), --truth-dir DIR
(live: site minutes, clean readings and injected faults as Parquet; backfill: true site
intervals, default data/generated/sim/backfill/site_intervals.parquet).
Faults are configured in the settings ([simulator.faults]); see docs/simulator.md.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("live", "backfill", "replay"), default="live",
                        help="live (MQTT, default), backfill (straight into the store) or "
                             "replay (a CSV over MQTT)")
    parser.add_argument("--start", default="now",
                        help="live: 'now' (default), 'midnight' (back-fill today over MQTT) "
                             "or an ISO time; backfill: first local date (YYYY-MM-DD)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="live: simulated minutes to run (default: forever)")
    parser.add_argument("--speed", default=None,
                        help="live: simulated seconds per real second, or 'max'; "
                             "default: wall clock")
    parser.add_argument("--end", default=None,
                        help="backfill: local date to stop before (default: today)")
    parser.add_argument("--years", type=float, default=None,
                        help="backfill: years of history before --end (default 3 when "
                             "--start is not a date)")
    parser.add_argument("--truth-log", type=Path, default=None,
                        help="live: write every acknowledged message to this JSON-lines file")
    parser.add_argument("--truth-dir", type=Path, default=None,
                        help="write the ground truth (Parquet) to this folder")
    parser.add_argument("--replay", type=Path, default=None,
                        help="replay: CSV with ts,site_id,in,out[,gate_id] or ds,y")
    parser.add_argument("--site", default=None,
                        help="replay: the site of a ds,y file")
    parser.add_argument("--no-progress", action="store_true",
                        help="backfill: no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        if args.mode == "backfill":
            return _backfill(args, settings, catalogue)
        if args.mode == "replay":
            return _replay(args, settings, catalogue)
        start = parse_start(args.start, settings)
        speed = None if args.speed is None else (
            math.inf if args.speed == "max" else float(args.speed)
        )
    except (SettingsError, CatalogueError, ValueError, StoreError, OSError) as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    duration = timedelta(minutes=args.minutes) if args.minutes else None
    log.info("simulating %d gates from %s UTC (speed %s)", len(catalogue.gates()), start,
             args.speed or "wall clock")
    try:
        sent = run(settings, catalogue, start, duration, speed, args.truth_log, stop,
                   args.truth_dir)
    except (ConnectionError, OSError, BrokerAuthError) as exc:
        log.error("%s", exc)
        return 2
    log.info("done: %d messages acknowledged by the broker", sent)
    return 0


def _replay(args: argparse.Namespace, settings: Settings, catalogue: Catalogue) -> int:
    from ingest.sim_replay import load_replay, replay

    if args.replay is None:
        raise ValueError("--mode replay needs --replay FILE")
    rows = load_replay(args.replay, catalogue, settings, args.site)
    speed = math.inf if args.speed in (None, "max") else float(args.speed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sent = replay(settings, catalogue, rows, speed, args.truth_log, stop)
    except (ConnectionError, OSError) as exc:
        log.error("%s", exc)
        return 2
    log.info("replayed %d of %d rows from %s", sent, len(rows), args.replay)
    return 0


def _backfill(args: argparse.Namespace, settings: Settings, catalogue: Catalogue) -> int:
    from ingest.sim_backfill import backfill

    today = datetime.now(settings.tz).date()
    end = date.fromisoformat(args.end) if args.end else today
    if args.start not in ("now", "midnight"):
        start = date.fromisoformat(args.start)
    else:
        start = end - timedelta(days=round(365.25 * (args.years or 3)))
    if start >= end:
        raise ValueError(f"backfill start {start} is not before end {end}")
    truth_dir = args.truth_dir
    if truth_dir is None:  # history's truth is small (~1 MB a year): always keep it
        base = settings.simulator.truth_dir
        truth_dir = (base if base.is_absolute() else PROJECT_ROOT / base) / "backfill"
    stats = backfill(settings, catalogue, start, end, truth_dir=truth_dir,
                     progress=not args.no_progress)
    log.info("backfill %s..%s: %s", start, end, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

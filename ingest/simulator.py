"""Counter simulator: stands in for the gate counters until real ones are wired.

Every gate of the catalogue is one MQTT client, as a real counter would be, with its last
will (`offline`, retained) on its status topic (`ingest/sim_counters.py`). Each interval it
publishes the contract's counts payload: people in and out, cumulative totals, battery. Who
comes and when is the visitor engine's job (`ingest/sim_engine.py`, profiles in
`data/sim_profiles.yaml`): each site's opening hours, dwell, week and season, the lunar
festivals and national holidays, the Kỳ Lừa walking street, Mẫu Sơn frost rushes driven by a
simulated temperature, border gates busiest on weekdays. Closed sites keep reporting zeros,
as counters do.

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
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.broker_auth import BrokerAuthError
from ingest.sim_backfill import backfill
from ingest.sim_counters import CounterClient, GateCounter, TruthLog
from ingest.sim_engine import Engine, profile_model
from ingest.sim_faults import FaultInjector
from ingest.sim_replay import load_replay, replay
from visitorflow.catalogue import Catalogue, CatalogueError, load_catalogue
from visitorflow.clock import (
    local_date,
    local_day_start_utc,
    to_utc,
    utc_now,
    wall_seconds_until,
)
from visitorflow.contract import Reading
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreError, readings_frame

log = logging.getLogger("simulator")


class VisitorModel:
    """Every gate of the catalogue, stepped one counting interval at a time, from the
    visitor engine (`ingest/sim_engine.py`); keeps the true site occupancy per minute."""

    def __init__(self, catalogue: Catalogue, settings: Settings, seed: int,
                 record_truth: bool = False,
                 crowd: dict[tuple[str, date], float] | None = None) -> None:
        self.settings = settings
        self.engine = Engine(catalogue, settings.tz, seed,
                             profile_model(catalogue, settings, seed), crowd)
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


def parse_start(value: str, settings: Settings) -> datetime:
    """'now', 'midnight' (local) or an ISO time with offset, to naive UTC on the minute."""
    now = utc_now()
    if value == "now":
        start = now
    elif value == "midnight":
        start = local_day_start_utc(now, settings.tz)
    else:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            start = to_utc(parsed, settings.tz)
        else:
            start = parsed.astimezone(UTC).replace(tzinfo=None)
    return start.replace(second=0, microsecond=0)


def parse_crowd(factors: list[str], days: list[str],
                catalogue: Catalogue) -> dict[tuple[str, date], float]:
    """`--crowd SITE=FACTOR` and `--crowd-on DATE` as (site, local day) -> factor."""
    if bool(factors) != bool(days):
        raise ValueError("--crowd and --crowd-on go together")
    on = [date.fromisoformat(d) for d in days]
    crowd: dict[tuple[str, date], float] = {}
    for item in factors:
        site_id, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--crowd {item!r}: expected SITE=FACTOR")
        if site_id not in catalogue.by_id:
            raise ValueError(f"--crowd {item!r}: no site {site_id!r} in the catalogue")
        factor = float(value)
        if factor <= 0:
            raise ValueError(f"--crowd {item!r}: the factor must be above 0")
        crowd.update({(site_id, day): factor for day in on})
    return crowd


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
    crowd: dict[tuple[str, date], float] | None = None,
) -> int:
    """Publish until `duration` of simulated time has passed (None: forever). `speed` None
    follows the wall clock; a number runs that many simulated seconds per real second
    (math.inf: as fast as the broker acknowledges). `crowd`: (site, local day) -> factor on
    that day's expected arrivals (a scenario's what-if). Returns messages acknowledged."""
    stop = stop or threading.Event()
    sim = settings.simulator
    interval = sim.interval_s
    truth = TruthLog(truth_path) if truth_path else None
    model = VisitorModel(catalogue, settings, sim.seed, record_truth=truth_dir is not None,
                         crowd=crowd)
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
                # The clock in force: the wall clock, or a simulated one shared by the run.
                wait = wall_seconds_until(tick_end)
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
    parser.add_argument("--crowd", action="append", default=[], metavar="SITE=FACTOR",
                        help="live: multiply the site's expected arrivals by FACTOR on the "
                             "--crowd-on days (a scenario's what-if; repeatable)")
    parser.add_argument("--crowd-on", action="append", default=[], metavar="DATE",
                        help="live: local date (YYYY-MM-DD) the --crowd factors apply to "
                             "(repeatable)")
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
        crowd = parse_crowd(args.crowd, args.crowd_on, catalogue)
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
                   args.truth_dir, crowd)
    except (ConnectionError, OSError, BrokerAuthError) as exc:
        log.error("%s", exc)
        return 2
    log.info("done: %d messages acknowledged by the broker", sent)
    return 0


def _replay(args: argparse.Namespace, settings: Settings, catalogue: Catalogue) -> int:
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
    today = local_date(utc_now(), settings.tz)
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

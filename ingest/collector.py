"""The MQTT collector: gate counts from the broker into the store, nothing lost, nothing twice.

- paho-mqtt 2.x, QoS 1, a persistent session (fixed client id, clean_session False) so the
  broker keeps what arrives while the collector is down; it reconnects and re-subscribes.
- Messages are buffered and committed in micro-batches (at least every
  `collector.commit_interval_s`, earlier at `collector.max_batch`); the store is opened for
  each commit and closed after it, so readers can get in between.
- Each message is acknowledged (manual PUBACK) only after the batch holding it is committed:
  a crash loses nothing that the broker does not still hold. A redelivered message is
  stored once (the readings' key).
- A payload that breaks the contract goes to the quarantine table with its raw bytes,
  topic and reason; it never stops the collector nor the good readings around it. So does a
  reading that ends more than 5 minutes in the future (a counter with a wrong clock).
- Three formats, one Reading: the native contract (visitorflow/contract.py), The Things
  Stack v3 uplinks from LoRaWAN counters (visitorflow/formats_ttn.py), deduplicated on
  (dev_eui, f_cnt) within a LoRaWAN session against what the store already holds, and
  FIWARE CrowdFlowObserved notifications (visitorflow/formats_fiware.py). Which topic is
  which format is the routing table of ingest/routes.py, which also gives the subscriptions.
- Each commit re-checks the devices it touched for seq gaps (people recovered from the
  cumulative totals where possible, else the gap recorded as open) and counter resets or
  wraparounds: see visitorflow/ingest_quality.py and the `reading_gaps` table.
- It logs in with its own read-only account (`collector`, ingest/broker_auth.py), over TLS
  with `mqtt.tls`; a refused login or subscription is logged and retried, never a crash.
- `--share-group NAME` subscribes through `$share/NAME/...`: several collectors (each with
  its own `--client-id`) then share the load, and the store's keys keep any reading from
  being stored twice.

Run: `python -m ingest.collector` (settings from visitorflow.toml / VISITORFLOW_* variables).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

import paho.mqtt.client as mqtt

from ingest.broker_auth import COLLECTOR, BrokerAuthError, configure_client
from ingest.collector_metrics import collector_health, collector_registry, newest_per_gate
from ingest.routes import Parsed, ReadingBatch, Router, StatusChange, collector_routes
from visitorflow.alerts import run_alert_step
from visitorflow.catalogue import Catalogue, CatalogueError, load_catalogue
from visitorflow.clock import clock_speed, local_day_start_utc, to_local, to_utc, utc_now
from visitorflow.contract import MAX_FUTURE_S, Reading
from visitorflow.formats_ttn import DEFAULT_INTERVAL_S, FrameDedup
from visitorflow.health import serve_health
from visitorflow.settings import Settings, SettingsError, get_settings
from visitorflow.store import Quarantined, Store, StoreError

# A LoRaWAN frame resent up to 48 h late (the README's horizon for late readings) is found.
LORAWAN_DEDUP_HORIZON = timedelta(hours=48)
# Re-zero occupancy this long after closing: the last readings of the day are in by then.
CLOSING_GRACE = timedelta(minutes=5)
# Closing times and alert thresholds move by the minute: checking each minute (on the clock
# in force: a simulated minute when a scenario runs faster) is on time.
HOUSEKEEPING_EVERY_S = 60
# ... but not more often than this in wall time: each round reads the day's counts and
# writes the evaluation, which a commit waits for.
HOUSEKEEPING_MIN_WALL_S = 1.0
# paho's reconnect back-off: retry a restarted broker at once, a long outage every 30 s.
RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S = 1, 30
# A store lock held longer than this by a reader is worth a line in the log.
LOG_LOCK_WAIT_OVER_S = 0.5
# Housekeeping (closing re-zero, alert evaluation) waits at most this for a held store, then
# tries again next minute: it runs in the commit loop, and each of its writes waiting the full
# store.lock_timeout_s would hold every commit back (17 sites x 5 s while a notebook reads).
HOUSEKEEPING_LOCK_TIMEOUT_S = 0.5

log = logging.getLogger("collector")


class _Ack(NamedTuple):
    """What acknowledging a message takes; an ack of an earlier connection is void."""

    mid: int
    qos: int
    connection: int


@dataclass
class _Pending:
    """Messages received since the last commit, as typed results, and their acks."""

    batches: list[ReadingBatch] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    acks: list[_Ack] = field(default_factory=list)  # one per message
    first_at: float | None = None  # monotonic time the oldest message arrived

    def __len__(self) -> int:
        return len(self.acks)

    def add(self, parsed: Parsed, ack: _Ack) -> None:
        if isinstance(parsed, ReadingBatch):
            self.batches.append(parsed)
        elif isinstance(parsed, StatusChange):
            self.statuses.append(parsed)
        else:
            self.quarantined.append(parsed)
        self.acks.append(ack)
        if self.first_at is None:
            self.first_at = time.monotonic()

    def extend(self, other: _Pending) -> None:
        self.batches += other.batches
        self.statuses += other.statuses
        self.quarantined += other.quarantined
        self.acks += other.acks
        if other.first_at is not None:
            self.first_at = min(self.first_at or other.first_at, other.first_at)


@dataclass
class CollectorStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    commits: int = 0
    failed_commits: int = 0
    max_commit_s: float = 0.0
    max_lock_wait_s: float = 0.0
    lorawan_duplicates: int = 0
    max_blocked_s: float = 0.0
    last_commit_s: float = 0.0
    last_commit_wall: float | None = None  # Unix time of the last commit


class Collector:
    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        store: Store,
        *,
        client_id: str | None = None,
        share_group: str | None = None,
        lorawan_interval_s: int = DEFAULT_INTERVAL_S,
        max_future_s: int = MAX_FUTURE_S,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.store = store
        self._housekeeping_store = Store(store.path, HOUSEKEEPING_LOCK_TIMEOUT_S,
                                         store.retry_max_s)
        self.client_id = client_id or settings.mqtt.collector_client_id
        self.share_group = share_group
        self.lorawan_interval_s = lorawan_interval_s
        self.max_future_s = max_future_s
        self.router = Router(collector_routes(
            catalogue, settings.mqtt.topic_prefix,
            lorawan_interval_s=lorawan_interval_s, max_future_s=max_future_s))
        self._blocked_since: float | None = None  # first failed commit of a blocked spell
        self._rezeroed: set[tuple[str, date]] = set()
        self.stats = CollectorStats()
        # The newest stored reading per (site, gate), for the metrics; from the store at start.
        self.newest_reading_utc: dict[tuple[str, str], datetime] = {}
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._batch_full = threading.Event()
        self._stop = threading.Event()
        self._connection = 0  # acks of an earlier connection are void: the broker resends
        self.connected = threading.Event()
        self.client = self._make_client()

    # -- MQTT ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.manual_ack_set(True)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY_S,
                                   max_delay=RECONNECT_MAX_DELAY_S)
        # The collector's own account (read only); with mqtt.tls, TLS to mqtt.tls_port.
        self.endpoint = configure_client(client, self.settings, COLLECTOR)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            # Logged and retried (paho reconnects): fixing the account needs no restart.
            log.error("broker refused the connection: %s. Check the %r account in %s "
                      "(python -m ingest.broker_auth generate) or mqtt.username/password",
                      reason_code, COLLECTOR, self.settings.mqtt.secrets_dir)
            return
        with self._lock:
            self._connection += 1
        # Subscribing on every connect re-subscribes after a reconnect.
        client.subscribe([(topic, 1) for topic in self.topic_filters()])
        log.info("connected to %s:%s (session present: %s)", *self.endpoint,
                 flags.session_present)
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [(f, rc) for f, rc in zip(self.topic_filters(), reason_codes, strict=False)
                   if rc.is_failure]
        for topic_filter, rc in refused:
            log.error("broker refused the subscription to %s: %s (the ACL of the %r account)",
                      topic_filter, rc, COLLECTOR)
        if not refused:
            log.info("subscribed to %d topic filters", len(reason_codes))

    def topic_filters(self) -> list[str]:
        """The routing table's filters (ingest/routes.py), behind `$share/{group}/` when
        instances share the load."""
        filters = self.router.filters()
        if self.share_group:
            return [f"$share/{self.share_group}/{f}" for f in filters]
        return filters

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_connect_fail(self, client, userdata) -> None:
        log.warning("cannot reach the broker at %s:%s; retrying", *self.endpoint)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        received = utc_now()
        parsed = self.router.parse(msg, received)  # never raises: garbage is quarantined
        with self._lock:
            pending = self._pending
            pending.add(parsed, _Ack(msg.mid, msg.qos, self._connection))
            self.stats.received += 1
            if len(pending) >= self.settings.collector.max_batch:
                self._batch_full.set()

    def backlog(self) -> int:
        """Messages received and not yet committed (the broker holds them until then)."""
        with self._lock:
            return len(self._pending)

    def backlog_age_s(self) -> float:
        """How long the oldest uncommitted message has waited (0 with none)."""
        with self._lock:
            first = self._pending.first_at
        return 0.0 if first is None else time.monotonic() - first

    # -- committing ----------------------------------------------------------------------

    def flush(self) -> int:
        """Commit what is buffered, then acknowledge it. Returns messages committed."""
        with self._lock:
            batch, self._pending = self._pending, _Pending()
            self._batch_full.clear()
        if not len(batch):
            return 0
        started = time.monotonic()
        try:
            readings, received, lorawan_dups = self._drop_lorawan_duplicates(batch.batches)
            statuses = [(s.status, s.received_utc) for s in batch.statuses]
            try:
                result = self.store.write_batch(
                    readings, received, batch.quarantined, statuses, heal=True
                )
            except StoreError:
                raise
            except Exception:
                # A bug in the gap and reset checks must never hold readings back: store
                # them without (this batch's gaps then go unrecorded; the log says so).
                log.exception("gap/reset check failed; storing the batch without it")
                result = self.store.write_batch(
                    readings, received, batch.quarantined, statuses
                )
        except Exception as exc:
            # Keep everything buffered and unacknowledged; the broker holds it too.
            with self._lock:
                batch.extend(self._pending)
                self._pending = batch
            self.stats.failed_commits += 1
            if self._blocked_since is None:
                self._blocked_since = started
            if isinstance(exc, StoreError):
                log.warning("commit deferred, %d messages buffered: %s", len(batch), exc)
            else:
                log.exception("commit failed, %d messages kept buffered", len(batch))
            return 0
        elapsed = time.monotonic() - started
        if self._blocked_since is not None:
            blocked = time.monotonic() - self._blocked_since
            self._blocked_since = None
            self.stats.max_blocked_s = max(self.stats.max_blocked_s, blocked)
            log.warning("store was blocked for %.1f s (another process held it); "
                        "committed the %d messages buffered meanwhile", blocked, len(batch))
        with self._lock:
            connection = self._connection
        for ack in batch.acks:
            if ack.qos > 0 and ack.connection == connection:
                self.client.ack(ack.mid, ack.qos)
        s = self.stats
        s.stored += result.inserted
        s.duplicates += result.duplicates + lorawan_dups
        s.lorawan_duplicates += lorawan_dups
        s.quarantined += result.quarantined
        s.commits += 1
        s.max_commit_s = max(s.max_commit_s, elapsed)
        s.last_commit_s, s.last_commit_wall = elapsed, time.time()
        for reading in readings:
            key = (reading.site_id, reading.gate_id)
            if reading.ts_utc > self.newest_reading_utc.get(key, reading.ts_utc):
                self.newest_reading_utc[key] = reading.ts_utc
            self.newest_reading_utc.setdefault(key, reading.ts_utc)
        s.max_lock_wait_s = max(s.max_lock_wait_s, result.lock_wait_s)
        if result.lock_wait_s > LOG_LOCK_WAIT_OVER_S:
            log.info("waited %.2f s for the store lock", result.lock_wait_s)
        return len(batch)

    def _drop_lorawan_duplicates(
        self, batches: list[ReadingBatch]
    ) -> tuple[list[Reading], list[datetime], int]:
        """The batches' readings and receive times, without LoRaWAN frames already stored
        (same dev_eui and f_cnt in the same session, whatever their receive time), and how
        many were dropped. Checked against the store, so a restart or a second instance
        changes nothing."""
        readings = [r for b in batches for r in b.readings]
        received = [b.received_utc for b in batches for _ in b.readings]
        frames = [r for b in batches if b.lorawan for r in b.readings]
        if not frames:
            return readings, received, 0
        since = min(r.ts_utc for r in frames) - LORAWAN_DEDUP_HORIZON
        stored = self.store.device_frames(sorted({r.device_id for r in frames}), since)
        dedup = FrameDedup.from_stored(
            (d, int(s), t.to_pydatetime())
            for d, s, t in zip(stored["device_id"], stored["seq"], stored["ts_utc"], strict=True)
        )
        _, duplicates = dedup.split(frames)
        drop = {id(r) for r in duplicates}
        keep = [(r, at) for r, at in zip(readings, received, strict=True) if id(r) not in drop]
        if duplicates:
            log.info("dropped %d LoRaWAN frames already stored (same dev_eui and f_cnt)",
                     len(duplicates))
        return [r for r, _ in keep], [at for _, at in keep], len(duplicates)

    def rezero_closed_sites(self, now_utc: datetime) -> dict[str, int]:
        """Re-zero the occupancy of every site that closed today (local time) at least
        CLOSING_GRACE ago, once per day; returns the residual per site corrected now."""
        tz = self.settings.tz
        local_now = to_local(now_utc, tz)
        day = local_now.date()
        corrected: dict[str, int] = {}
        for site in self.catalogue.sites:
            if (site.id, day) in self._rezeroed:
                continue
            # A site open until midnight (24:00) is re-zeroed by the new day itself.
            closes = [end for _, end in site.open_intervals(day) if end.date() == day]
            if not closes or max(closes) + CLOSING_GRACE > local_now:
                continue
            try:
                residual = self._housekeeping_store.rezero_at_closing(
                    site.id, day, local_day_start_utc(now_utc, tz), to_utc(max(closes), tz)
                )
            except StoreError as exc:
                # The others would wait for the same lock: all of them try again next minute.
                log.warning("occupancy re-zeroing of %s and later sites deferred: %s",
                            site.id, exc)
                break
            self._rezeroed.add((site.id, day))
            if residual is not None:
                corrected[site.id] = residual
                log.info("%s closed: occupancy re-zeroed, counter drift %+d people",
                         site.id, residual)
        return corrected

    def run(self, stop: threading.Event | None = None) -> None:
        """Connect and commit micro-batches until `stop` (or SIGTERM/SIGINT) is set."""
        if stop is not None:
            self._stop = stop
        self.client.connect_async(*self.endpoint, keepalive=self.settings.mqtt.keepalive_s)
        self.client.loop_start()
        # Each gate's newest stored reading, for the metrics: read while the connection
        # and subscription proceed in the network thread, not before them.
        with contextlib.suppress(StoreError):
            self.newest_reading_utc.update(newest_per_gate(self.store.gate_health()))
        interval = self.settings.collector.commit_interval_s
        next_report = time.monotonic() + self.settings.collector.report_every_s
        next_rezero = time.monotonic()
        try:
            while not self._stop.is_set():
                self._batch_full.wait(timeout=interval)
                self.flush()
                # Leave the file free for a moment after each commit, so that readers
                # (dashboard, forecasts, notebooks) retrying a held lock get in even while
                # full batches arrive back to back.
                self._stop.wait(self.settings.collector.reader_gap_s)
                if time.monotonic() >= next_rezero:
                    self.rezero_closed_sites(utc_now())
                    run_alert_step(self._housekeeping_store, self.catalogue, self.settings,
                                   utc_now())
                    next_rezero = time.monotonic() + max(
                        HOUSEKEEPING_MIN_WALL_S, HOUSEKEEPING_EVERY_S / clock_speed())
                if time.monotonic() >= next_report:
                    log.info("stats: %s", self.stats)
                    next_report += self.settings.collector.report_every_s
        finally:
            self.flush()
            self.client.disconnect()
            self.client.loop_stop()
            log.info("stopped; %s", self.stats)

    def stop(self) -> None:
        self._stop.set()
        self._batch_full.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Collect gate counts from MQTT into the store.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every commit")
    parser.add_argument("--client-id", default=None,
                        help="MQTT client id (default: mqtt.collector_client_id); each "
                        "instance sharing the load needs its own")
    parser.add_argument("--share-group", default=None,
                        help="subscribe through $share/GROUP/… to share the load with other "
                        "collector instances")
    parser.add_argument("--lorawan-interval-s", type=int, default=DEFAULT_INTERVAL_S,
                        help="report period configured on the LoRaWAN counters (seconds)")
    parser.add_argument("--max-future-s", type=int, default=MAX_FUTURE_S,
                        help="quarantine readings that end more than this after they arrive "
                        "(raise it for a simulator running ahead of the clock)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("paho").setLevel(logging.WARNING)
    try:
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        store = Store.from_settings(settings)
        store.initialise()
    except (SettingsError, CatalogueError, StoreError) as exc:
        log.error("%s", exc)
        return 2
    try:
        collector = Collector(settings, catalogue, store, client_id=args.client_id,
                              share_group=args.share_group,
                              lorawan_interval_s=args.lorawan_interval_s,
                              max_future_s=args.max_future_s)
    except BrokerAuthError as exc:
        log.error("%s", exc)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: collector.stop())
    port = settings.collector.health_port
    health = (serve_health(port, collector_registry(collector),
                           lambda: collector_health(collector)) if port else None)
    log.info("collecting %s into %s", collector.topic_filters(), settings.store.path)
    try:
        collector.run()
    finally:
        if health is not None:
            health.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
  topic and reason; it never stops the collector nor the good readings around it.

Run: `python -m ingest.collector` (settings from visitorflow.toml / VISITORFLOW_* variables).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from visitorflow.catalogue import Catalogue, CatalogueError, load_catalogue
from visitorflow.contract import GateStatus, PayloadError, Reading, parse_counts, parse_status
from visitorflow.contract import subscriptions as topic_filters
from visitorflow.live import utc_now
from visitorflow.settings import Settings, SettingsError, get_settings
from visitorflow.store import Quarantined, Store, StoreError

log = logging.getLogger("collector")


@dataclass
class _Pending:
    """Messages received since the last commit, with what is needed to acknowledge them."""

    readings: list[Reading] = field(default_factory=list)
    received: list = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    statuses: list[tuple[GateStatus, object]] = field(default_factory=list)
    acks: list[tuple[int, int, int]] = field(default_factory=list)  # (mid, qos, connection)

    def __len__(self) -> int:
        return len(self.acks)

    def extend(self, other: _Pending) -> None:
        self.readings += other.readings
        self.received += other.received
        self.quarantined += other.quarantined
        self.statuses += other.statuses
        self.acks += other.acks


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


class Collector:
    def __init__(self, settings: Settings, catalogue: Catalogue, store: Store) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.store = store
        self.stats = CollectorStats()
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._batch_full = threading.Event()
        self._stop = threading.Event()
        self._connection = 0  # acks of an earlier connection are void: the broker resends
        self.connected = threading.Event()
        self.client = self._make_client()

    # -- MQTT ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.settings.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.collector_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.manual_ack_set(True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self._connection += 1
        # Subscribing on every connect re-subscribes after a reconnect.
        client.subscribe([(topic, 1) for topic in topic_filters(self.settings.mqtt.topic_prefix)])
        log.info(
            "connected to %s:%s (session present: %s)",
            self.settings.mqtt.host, self.settings.mqtt.port, flags.session_present,
        )
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_connect_fail(self, client, userdata) -> None:  # noqa: ANN001
        log.warning(
            "cannot reach the broker at %s:%s; retrying",
            self.settings.mqtt.host, self.settings.mqtt.port,
        )

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        received = utc_now()
        prefix = self.settings.mqtt.topic_prefix
        item: tuple[str, object]
        try:
            if msg.topic.endswith("/status"):
                item = ("status", parse_status(msg.topic, msg.payload, self.catalogue, prefix))
            else:
                item = ("reading", parse_counts(msg.topic, msg.payload, self.catalogue, prefix))
        except PayloadError as exc:
            item = ("quarantine", Quarantined(received, msg.topic, bytes(msg.payload), str(exc)))
        except Exception as exc:  # a parser bug must not stop the collector either
            log.exception("unexpected error parsing a message on %s", msg.topic)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            item = ("quarantine", Quarantined(received, msg.topic, bytes(msg.payload), reason))
        with self._lock:
            pending = self._pending
            kind, value = item
            if kind == "reading":
                pending.readings.append(value)
                pending.received.append(received)
            elif kind == "status":
                pending.statuses.append((value, received))
            else:
                pending.quarantined.append(value)
            pending.acks.append((msg.mid, msg.qos, self._connection))
            self.stats.received += 1
            if len(pending) >= self.settings.collector.max_batch:
                self._batch_full.set()

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
            result = self.store.write_batch(
                batch.readings, batch.received, batch.quarantined, batch.statuses
            )
        except Exception as exc:
            # Keep everything buffered and unacknowledged; the broker holds it too.
            with self._lock:
                batch.extend(self._pending)
                self._pending = batch
            self.stats.failed_commits += 1
            if isinstance(exc, StoreError):
                log.warning("commit deferred, %d messages buffered: %s", len(batch), exc)
            else:
                log.exception("commit failed, %d messages kept buffered", len(batch))
            return 0
        elapsed = time.monotonic() - started
        with self._lock:
            connection = self._connection
        for mid, qos, conn in batch.acks:
            if qos > 0 and conn == connection:
                self.client.ack(mid, qos)
        s = self.stats
        s.stored += result.inserted
        s.duplicates += result.duplicates
        s.quarantined += result.quarantined
        s.commits += 1
        s.max_commit_s = max(s.max_commit_s, elapsed)
        s.max_lock_wait_s = max(s.max_lock_wait_s, result.lock_wait_s)
        if result.lock_wait_s > 0.5:
            log.info("waited %.2f s for the store lock", result.lock_wait_s)
        return len(batch)

    def run(self, stop: threading.Event | None = None) -> None:
        """Connect and commit micro-batches until `stop` (or SIGTERM/SIGINT) is set."""
        if stop is not None:
            self._stop = stop
        cfg = self.settings.mqtt
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self.client.loop_start()
        interval = self.settings.collector.commit_interval_s
        next_report = time.monotonic() + self.settings.collector.report_every_s
        try:
            while not self._stop.is_set():
                self._batch_full.wait(timeout=interval)
                self.flush()
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
    collector = Collector(settings, catalogue, store)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: collector.stop())
    log.info(
        "collecting %s into %s", topic_filters(settings.mqtt.topic_prefix), settings.store.path
    )
    collector.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest throughput and latency with real components.

Per run, on a fresh Mosquitto (the project's config) and a fresh store:
1. baseline: the same publisher → `mosquitto_sub -q 1` to /dev/null (Mosquitto's own
   fan-out rate on this machine);
2. the collector as its own process: N native messages (plus 1 % deliberate resends) with a
   bounded in-flight window, QoS 1; end-to-end rate = N / (first publish → last reading
   queryable), loss, duplicates stored, while a reader polls the store every 0.5 s and we
   record how long it waited for the lock;
3. publish → queryable latency at a steady 1,000 messages/s (p50 / p99).
Reported: medians over the runs, and the ratio collector / baseline measured in each run.

    .venv/bin/python -m bench.ingest_throughput --runs 3 --messages 60000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.broker import start_broker
from ingest.broker_auth import TEST_FLEET, cli_auth_args
from tests.conftest import free_port
from tests.ingest_support import WindowPublisher, native_stream
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, get_settings
from visitorflow.store import Store, StoreError


def _wait(predicate, timeout_s: float, what: str, every_s: float = 0.05) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


def _rows(store: Store) -> int:
    try:
        return store.table_counts()["readings"]
    except StoreError:
        return -1


class Reader(threading.Thread):
    """A dashboard-like reader: opens the store read-only every 0.5 s, counts readings,
    closes; records how long each open waited for the collector's lock."""

    def __init__(self, store: Store, period_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.store, self.period_s = store, period_s
        self.waits: list[float] = []
        self.failures = 0
        self.rows = -1
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.rows = self.store.table_counts()["readings"]
                self.waits.append(self.store.last_lock_wait_s)
            except StoreError:
                self.failures += 1
            self.stop.wait(self.period_s)


def baseline_rate(port: int, messages: list[tuple[str, bytes]], window: int) -> float:
    """msg/s from the first publish until mosquitto_sub has received every message."""
    sub = subprocess.Popen(
        [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
         *cli_auth_args(get_settings(), TEST_FLEET),
         "-q", "1", "-t", "bench/#", "-C", str(len(messages)), "-i", "bench-sub"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # subscribed
    publisher = WindowPublisher(port, window=window, client_id="bench-baseline")
    started = time.monotonic()
    for topic, payload in messages:
        publisher.publish("bench/" + topic, payload)
    sub.wait(300)
    elapsed = time.monotonic() - started
    publisher.close()
    return len(messages) / elapsed


def steady_latencies(store: Store, port: int, window: int, messages: list[tuple[str, bytes]],
                     since_utc: datetime, until_utc: datetime, rate: float = 1000.0
                     ) -> list[float]:
    """Publish `messages` at a steady `rate` per second and return, sorted, each one's
    publish → queryable time: a watcher reads the store's readings in [since, until) every
    0.1 s and notes when each key first appears."""
    sent: dict[tuple[str, int], float] = {}
    seen: dict[tuple[str, int], float] = {}

    def watch(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                frame = store.readings(since_utc, until_utc)
            except StoreError:
                continue
            now = time.monotonic()
            for key in zip(frame["device_id"], frame["seq"].astype(int), strict=True):
                seen.setdefault(key, now)
            stop.wait(0.1)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    publisher = WindowPublisher(port, window=window, client_id=f"bench-latency-{port}")
    t0 = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        target = t0 + i / rate
        if (pause := target - time.monotonic()) > 0:
            time.sleep(pause)
        body = json.loads(payload)
        sent[(body["device_id"], body["seq"])] = time.monotonic()
        publisher.publish(topic, payload)
    publisher.close()
    _wait(lambda: len(seen) >= len(messages), 120, "the latency messages")
    stop.set()
    watcher.join(5)
    return sorted(seen[k] - sent[k] for k in sent)


def percentile(sorted_values: list[float], share: float) -> float:
    """The value below which `share` of the sorted values fall (nearest rank)."""
    return sorted_values[max(0, int(len(sorted_values) * share) - 1)]


def one_run(n: int, window: int, latency_s: float, work: Path) -> dict[str, float]:
    port = free_port()
    os.environ["VISITORFLOW_STORE__PATH"] = str(work / "store.duckdb")
    os.environ["VISITORFLOW_MQTT__PORT"] = str(port)
    os.environ["VISITORFLOW_CONFIG"] = str(work / "none.toml")
    # The broker refuses anonymous clients: this run's accounts, with the test-fleet one.
    os.environ["VISITORFLOW_MQTT__SECRETS_DIR"] = str(work / "secrets")
    os.environ["VISITORFLOW_MQTT__TEST_ACCOUNT"] = "true"
    (work / "none.toml").write_text("", encoding="utf-8")
    get_settings.cache_clear()
    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    broker = start_broker(work / "broker", port)
    collector = None
    log = (work / "collector.log").open("wb")
    try:
        start = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
        messages = native_stream(catalogue, n, start - timedelta(days=60))
        base = baseline_rate(port, messages, window)

        store = Store.from_settings(settings)
        collector = subprocess.Popen([sys.executable, "-m", "ingest.collector"],
                                     cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _rows(store) == 0, 30, "the collector to create the store")
        time.sleep(1.0)  # subscribed
        reader = Reader(store)
        reader.start()
        resends = messages[:: 100]  # 1 % sent twice, as a counter that missed a PUBACK does
        publisher = WindowPublisher(port, window=window, client_id="bench-collector")
        started = time.monotonic()
        for i, (topic, payload) in enumerate(messages):
            publisher.publish(topic, payload)
            if i % 100 == 0:
                publisher.publish(topic, payload)
        publisher.close()
        done = _wait(lambda: _rows(store) >= n, 600, "every reading", every_s=0.02)
        rate = n / (done - started)
        time.sleep(2)  # anything extra (a duplicate) would land now
        stored = store.table_counts()["readings"]
        distinct = len(store.readings()[["device_id", "seq", "ts_utc"]].drop_duplicates())

        late = native_stream(catalogue, int(1000 * latency_s), start - timedelta(days=20))
        latencies = steady_latencies(store, port, window, late, start - timedelta(days=21),
                                     start)
        reader.stop.set()
        reader.join(5)
        return {
            "baseline_msg_s": base,
            "collector_msg_s": rate,
            "ratio": rate / base,
            "published": n + len(resends),
            "lost": n - min(stored, distinct),
            "duplicates_stored": stored - n,
            "reader_polls": len(reader.waits),
            "reader_wait_median_ms": 1000 * statistics.median(reader.waits or [0.0]),
            "reader_wait_max_ms": 1000 * max(reader.waits or [0.0]),
            "reader_failures": reader.failures,
            "latency_p50_s": latencies[len(latencies) // 2],
            "latency_p99_s": percentile(latencies, 0.99),
        }
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(30)
        broker.terminate()
        broker.wait(10)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=60000)
    parser.add_argument("--window", type=int, default=500, help="publisher in-flight window")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="vf-bench-") as tmp:
            result = one_run(args.messages, args.window, args.latency_seconds, Path(tmp))
        results.append(result)
        print(f"run {run + 1}: " + ", ".join(f"{k}={v:.3g}" for k, v in result.items()),
              flush=True)
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"command: python -m bench.ingest_throughput --runs {args.runs} "
          f"--messages {args.messages} --window {args.window}")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"{key:24s} median {statistics.median(values):10.3f}   runs "
              + " ".join(f"{v:.3f}" for v in values))
    bad = [r for r in results if r["lost"] or r["duplicates_stored"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

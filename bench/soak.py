"""Soak: the whole ingest pipeline for minutes at ~2,000 messages/s with faults on.

A fresh Mosquitto with accounts and ACL (ingest/broker.py), the collector and the simulator
as their own processes, the simulator logging in per counter (its own accounts), publishing
at `--rate` messages/s (simulated time accelerated: 23 gates, one message per gate and
simulated minute) with the simulator's faults switched on (drops, duplicates, reordering,
corrupted payloads, outages with late bursts, resets, clock skew). Every `--every` seconds
it samples:

- RSS of the broker, the collector and the simulator (psutil);
- the broker's `$SYS` statistics (the `monitor` account): messages held in its store
  (queued or in flight to a client, unacknowledged, plus the retained messages, ~75),
  PUBLISH messages received and sent;
- readings stored (the store opened read-only, as a dashboard does).

After `--minutes` the simulator is stopped (its counters send what they still buffer), the
collector drains, and the store is compared with what the broker acknowledged to the
counters (the simulator's `--truth-log`, streamed to a file so that the simulator's memory
measures the simulator, not a growing truth): every valid reading stored exactly once,
every corrupted one in quarantine. (Readings the faults drop before the broker are the
fault, not a loss of the pipeline; tests/test_sim_live_faults.py accounts for them.)
Samples go to `bench/out/soak/samples.csv`, the summary to `summary.json` (and stdout).

    .venv/bin/python -m bench.soak --minutes 10          # make soak
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import psutil

from ingest.broker import start_broker
from ingest.broker_auth import MONITOR, apply_account
from tests.conftest import free_port
from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.contract import PayloadError, parse_counts
from visitorflow.settings import PROJECT_ROOT, get_settings
from visitorflow.store import Store, StoreError

OUT = PROJECT_ROOT / "bench" / "out" / "soak"
# Faults on, at rates that make every kind happen many times in a run of a few minutes.
FAULTS = {
    "DROP_RATE": "0.01", "DUPLICATE_RATE": "0.02", "REORDER_RATE": "0.02",
    "MALFORMED_RATE": "0.005", "OFFLINE_PER_DAY": "1", "OFFLINE_HOURS_MIN": "0.5",
    "OFFLINE_HOURS_MAX": "3", "OFFLINE_BUFFER": "120", "RESET_PER_DAY": "0.5",
    "SKEW_PER_DAY": "0.5", "SKEW_S_MAX": "120", "SKEW_HOURS": "2",
}
SYS_TOPICS = {
    "$SYS/broker/store/messages/count": "broker_held_msgs",
    "$SYS/broker/publish/messages/received": "broker_publish_received",
    "$SYS/broker/publish/messages/sent": "broker_publish_sent",
    "$SYS/broker/clients/connected": "broker_clients",
    "$SYS/broker/retained messages/count": "broker_retained_msgs",
}


class SysMonitor:
    """The broker's latest $SYS values, read with the monitor account."""

    def __init__(self, settings) -> None:
        self.values: dict[str, float] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-monitor")
        apply_account(self.client, settings, MONITOR)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 0) for t in SYS_TOPICS])
        self.client.on_message = self._on_message
        self.client.connect(settings.mqtt.host, settings.mqtt.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.values[SYS_TOPICS[msg.topic]] = float(msg.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rss_mb(proc: subprocess.Popen) -> float:
    try:
        return psutil.Process(proc.pid).memory_info().rss / 2**20
    except psutil.Error:
        return float("nan")


def readings_stored(store: Store) -> int:
    try:
        return store.table_counts()["readings"]
    except StoreError:
        return -1


def slope_per_min(frame: pd.DataFrame, column: str, skip_s: float) -> float:
    """Least-squares slope of `column` per minute, after the first `skip_s` (warm-up)."""
    part = frame[frame.t_s >= skip_s].dropna(subset=[column])
    if len(part) < 3:
        return float("nan")
    return float(np.polyfit(part.t_s / 60, part[column], 1)[0])


def acknowledged(truth_log: Path, catalogue: Catalogue, prefix: str
                 ) -> tuple[set[tuple[str, int, str]], set[tuple[str, bytes]], int, int]:
    """What the broker acknowledged to the counters: the (device, seq, ts) of the valid
    readings, the distinct corrupted messages (topic, payload), how many corrupted
    messages and how many messages in all (read line by line)."""
    keys: set[tuple[str, int, str]] = set()
    corrupted: set[tuple[str, bytes]] = set()
    broken = messages = 0
    with truth_log.open(encoding="utf-8") as lines:
        for line in lines:
            message = json.loads(line)
            messages += 1
            try:
                r = parse_counts(message["topic"], message["payload"].encode(), catalogue,
                                 prefix)
            except PayloadError:
                broken += 1
                corrupted.add((message["topic"], message["payload"].encode()))
                continue
            keys.add((r.device_id, r.seq, str(r.ts_utc)))
    return keys, corrupted, broken, messages


def stored_keys(store: Store) -> tuple[set[tuple[str, int, str]], int]:
    frame = store.readings()
    keys = set(zip(frame.device_id, frame.seq.astype(int), frame.ts_utc.astype(str),
                   strict=True))
    return keys, len(frame)


def soak(minutes: float, rate: float, every_s: float, work: Path,
         drain_min: float = 20.0) -> dict:
    settings_env = {
        "VISITORFLOW_STORE__PATH": str(work / "store.duckdb"),
        "VISITORFLOW_CONFIG": str(work / "none.toml"),
        "VISITORFLOW_MQTT__SECRETS_DIR": str(work / "secrets"),
        "VISITORFLOW_MQTT__PORT": str(free_port()),
        # The simulated temperature is a side output: keep the store to the counts.
        "VISITORFLOW_SIMULATOR__WRITE_TEMPERATURE": "false",
        **{f"VISITORFLOW_SIMULATOR__FAULTS__{k}": v for k, v in FAULTS.items()},
    }
    (work / "none.toml").write_text("", encoding="utf-8")
    os.environ.update(settings_env)
    get_settings.cache_clear()
    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    gates = len(catalogue.gates())
    interval = settings.simulator.interval_s
    speed = rate * interval / gates  # simulated seconds per real second
    # Simulated time runs ahead `speed` times: start far enough back to stay in the past.
    sim_span = timedelta(seconds=speed * minutes * 60 * 1.5 + 86400)
    sim_start = (datetime.now(UTC) - sim_span).replace(tzinfo=None, second=0, microsecond=0)
    store = Store.from_settings(settings)
    broker = start_broker(work / "broker", settings.mqtt.port, settings=settings)
    logs = {name: (work / f"{name}.log").open("wb") for name in ("collector", "simulator")}
    procs: dict[str, subprocess.Popen] = {"broker": broker}
    samples: list[dict] = []
    monitor = None
    try:
        procs["collector"] = subprocess.Popen(
            [sys.executable, "-m", "ingest.collector"], cwd=PROJECT_ROOT,
            stdout=logs["collector"], stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while readings_stored(store) != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        monitor = SysMonitor(settings)
        truth_log = work / "acknowledged.jsonl"
        procs["simulator"] = subprocess.Popen(
            [sys.executable, "-m", "ingest.simulator", "--start",
             sim_start.replace(tzinfo=UTC).isoformat(), "--speed", f"{speed:.3f}",
             "--truth-log", str(truth_log)],
            cwd=PROJECT_ROOT, stdout=logs["simulator"], stderr=subprocess.STDOUT)
        started = time.monotonic()
        end = started + minutes * 60
        print(f"soak: {minutes:g} min at {rate:g} msg/s (speed {speed:.0f}x, {gates} gates), "
              f"faults on; samples every {every_s:g} s", flush=True)
        while time.monotonic() < end:
            if procs["simulator"].poll() is not None or procs["collector"].poll() is not None:
                raise RuntimeError("a process died: see the logs in " + str(work))
            samples.append(_sample(procs, monitor, store, time.monotonic() - started))
            last = samples[-1]
            print(f"  t={last['t_s']:6.0f} s  rss MB broker {last['rss_broker_mb']:.0f} "
                  f"collector {last['rss_collector_mb']:.0f} simulator "
                  f"{last['rss_simulator_mb']:.0f}  held {last.get('broker_held_msgs')}  "
                  f"stored {last['readings_stored']}", flush=True)
            time.sleep(max(0.0, started + len(samples) * every_s - time.monotonic()))
        publish_s = time.monotonic() - started
        procs["simulator"].send_signal(signal.SIGTERM)
        sim_rc = procs["simulator"].wait(300)
        # Drain: the broker back to holding only its retained messages (the gates' status
        # and its own $SYS ones), and the store's count standing still over two reads.
        drain_started = time.monotonic()
        previous, stable = -2, 0
        while time.monotonic() < drain_started + drain_min * 60 and stable < 2:
            time.sleep(every_s)
            samples.append(_sample(procs, monitor, store, time.monotonic() - started))
            now = samples[-1]["readings_stored"]
            idle = (samples[-1].get("broker_held_msgs", 1e9)
                    <= samples[-1].get("broker_retained_msgs", 0))
            stable = stable + 1 if idle and now == previous and now >= 0 else 0
            previous = now
        drain_s = time.monotonic() - drain_started
        expected, corrupted, broken, messages = acknowledged(truth_log, catalogue,
                                                             settings.mqtt.topic_prefix)
        keys, rows = stored_keys(store)
        # Quarantine keeps every copy it receives (a redelivery too): compare distinct ones.
        held = store.quarantine(limit=10**9)
        quarantined = set(zip(held.topic, map(bytes, held.payload), strict=True))
    finally:
        if monitor is not None:
            monitor.close()
        for name in ("simulator", "collector"):
            if name in procs and procs[name].poll() is None:
                procs[name].terminate()
                procs[name].wait(30)
        broker.terminate()
        broker.wait(10)
        for log in logs.values():
            log.close()
    frame = pd.DataFrame(samples)
    OUT.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT / "samples.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    steady = frame[frame.t_s <= publish_s]
    skip = min(60.0, publish_s / 5)  # warm-up left out of the slopes
    summary = {
        "minutes": round(publish_s / 60, 2),
        "target_msg_s": rate,
        # Broker-side: PUBLISH packets received per second (counts, resends, status).
        "broker_publish_in_msg_s": round(
            slope_per_min(steady, "broker_publish_received", skip) / 60, 1),
        "acknowledged_counts_msg_s": round(messages / publish_s, 1),
        "simulator_exit": sim_rc,
        "drain_s": round(drain_s, 1),
        "acknowledged_counts_msgs": messages,
        "valid_distinct_readings": len(expected),
        "corrupted_msgs": broken,
        "corrupted_distinct": len(corrupted),
        "stored_rows": rows,
        "lost": len(expected - keys),
        "unexpected": len(keys - expected),
        "duplicates_stored": rows - len(keys),
        "quarantine_rows": len(held),
        "quarantine_distinct": len(quarantined),
        "corrupted_not_quarantined": len(corrupted - quarantined),
        "quarantined_not_corrupted": len(quarantined - corrupted),
    }
    for proc in ("broker", "collector", "simulator"):
        col = f"rss_{proc}_mb"
        first = steady[steady.t_s >= skip][col]
        summary[f"{proc}_rss_start_mb"] = round(float(first.iloc[0]), 1)
        summary[f"{proc}_rss_end_mb"] = round(float(steady[col].iloc[-1]), 1)
        summary[f"{proc}_rss_max_mb"] = round(float(steady[col].max()), 1)
        summary[f"{proc}_rss_after_drain_mb"] = round(float(samples[-1][col]), 1)
        summary[f"{proc}_rss_slope_mb_per_min"] = round(slope_per_min(steady, col, skip), 3)
        summary[f"{proc}_cpu_s"] = round(float(steady[f"cpu_{proc}_s"].iloc[-1]), 1)
    held = steady.get("broker_held_msgs", pd.Series(dtype=float)).dropna()
    summary.update({
        "held_msgs_median": float(held.median()) if len(held) else None,
        "held_msgs_max": float(held.max()) if len(held) else None,
        "held_msgs_end": float(held.iloc[-1]) if len(held) else None,
        "held_msgs_slope_per_min": round(slope_per_min(steady, "broker_held_msgs", skip), 2),
        "held_msgs_after_drain": samples[-1].get("broker_held_msgs"),
        "retained_msgs_after_drain": samples[-1].get("broker_retained_msgs"),
    })
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _sample(procs: dict[str, subprocess.Popen], monitor: SysMonitor, store: Store,
            t_s: float) -> dict:
    row: dict[str, float] = {"t_s": round(t_s, 1)}
    for name in ("broker", "collector", "simulator"):
        proc = procs.get(name)
        row[f"rss_{name}_mb"] = rss_mb(proc) if proc else float("nan")
        try:
            times = psutil.Process(proc.pid).cpu_times() if proc else None
            row[f"cpu_{name}_s"] = times.user + times.system if times else float("nan")
        except psutil.Error:
            row[f"cpu_{name}_s"] = float("nan")
    row.update(monitor.values)
    row["readings_stored"] = readings_stored(store)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="target messages/s")
    parser.add_argument("--every", type=float, default=10.0, help="sampling period (s)")
    parser.add_argument("--drain-minutes", type=float, default=20.0,
                        help="longest wait for the collector to catch up after the run")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work folder to keep (store, logs, truth); default: a temp dir")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        summary = soak(args.minutes, args.rate, args.every, args.keep, args.drain_minutes)
    else:
        with tempfile.TemporaryDirectory(prefix="vf-soak-") as tmp:
            summary = soak(args.minutes, args.rate, args.every, Path(tmp), args.drain_minutes)
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} "
          f"cores (shared), Python {platform.python_version()}")
    print(f"command: python -m bench.soak --minutes {args.minutes:g} --rate {args.rate:g}")
    for key, value in summary.items():
        print(f"{key:34s} {value}")
    bad = (summary["lost"] or summary["unexpected"] or summary["duplicates_stored"]
           or summary["corrupted_not_quarantined"] or summary["quarantined_not_corrupted"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

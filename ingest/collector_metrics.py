"""What the collector tells `/metrics` and `/healthz` (visitorflow/health.py serves them).

Read at scrape time from the collector's own counters (`CollectorStats`) and its view of
each gate's newest reading, so a scrape never touches the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from threading import Event
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as MetricsSource

from visitorflow.clock import utc_now


class Collector(Protocol):
    """What the metrics read of ingest.collector.Collector (which imports this module)."""

    stats: Any  # CollectorStats
    connected: Event
    newest_reading_utc: dict[tuple[str, str], datetime]

    def backlog(self) -> int: ...
    def backlog_age_s(self) -> float: ...

# The collector is failing when messages wait this long uncommitted (the store blocked):
# ten commit intervals at the default, far beyond a backup's or a reader's hold.
UNHEALTHY_BACKLOG_AGE_S = 30.0

_COUNTERS = (
    ("received", "Messages received from the broker"),
    ("stored", "Readings stored (new)"),
    ("duplicates", "Readings received again and stored once"),
    ("quarantined", "Messages quarantined (not a valid reading)"),
    ("commits", "Micro-batches committed"),
    ("failed_commits", "Commits deferred (store busy or failing); their messages kept"),
)


class CollectorMetrics(MetricsSource):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        c = self.collector
        stats = c.stats
        for name, doc in _COUNTERS:
            yield CounterMetricFamily(f"visitorflow_collector_{name}", doc,
                                      value=getattr(stats, name))
        yield GaugeMetricFamily("visitorflow_collector_last_commit_seconds",
                                "Duration of the last commit", value=stats.last_commit_s)
        yield GaugeMetricFamily("visitorflow_collector_max_commit_seconds",
                                "Longest commit since start", value=stats.max_commit_s)
        yield GaugeMetricFamily(
            "visitorflow_collector_backlog_messages",
            "Messages received but not yet committed (nor acknowledged: the broker keeps "
            "them too)", value=c.backlog())
        yield GaugeMetricFamily("visitorflow_collector_connected",
                                "1 while connected to the broker",
                                value=1 if c.connected.is_set() else 0)
        ages = GaugeMetricFamily("visitorflow_gate_newest_reading_age_seconds",
                                 "Age of the newest stored reading per gate",
                                 labels=["site", "gate"])
        now = utc_now()
        for (site, gate), newest in sorted(c.newest_reading_utc.items()):
            ages.add_metric([site, gate], (now - newest).total_seconds())
        yield ages


def collector_registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CollectorMetrics(collector))
    return registry


def collector_health(collector: Collector) -> tuple[bool, dict]:
    """Healthy when connected to the broker and nothing has waited long to be committed."""
    problems = []
    if not collector.connected.is_set():
        problems.append("not connected to the broker")
    waiting = collector.backlog_age_s()
    if waiting > UNHEALTHY_BACKLOG_AGE_S:
        problems.append(f"messages waiting {waiting:.0f} s for a commit (store blocked?)")
    last = collector.stats.last_commit_wall
    return not problems, {
        "problems": problems, "backlog": collector.backlog(),
        "last_commit_s_ago": None if last is None else round(time.time() - last, 1),
        "stored": collector.stats.stored, "received": collector.stats.received,
    }


def newest_per_gate(frame) -> dict[tuple[str, str], datetime]:  # gate_health's frame
    """The store's newest reading per gate, to start from."""
    known = frame.dropna(subset=["last_reading_utc"])
    return {(r.site_id, r.gate_id): r.last_reading_utc.to_pydatetime()
            for r in known.itertuples(index=False)}

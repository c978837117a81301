"""The collector's routing table: which topics it reads, and what each becomes.

One row per format, `Route(topic_filter, parse)`: the filter is both what the collector
subscribes to and what a message's topic is matched against (`mqtt.topic_matches_sub`, in
the table's order); the parser turns the message into a typed result:

| topic filter                        | parser        | result                        |
|-------------------------------------|---------------|-------------------------------|
| `{prefix}/+/+/counts`               | native counts | `ReadingBatch` (one reading)  |
| `{prefix}/+/+/status`               | gate status   | `StatusChange`                |
| `v3/+/devices/+/up`                 | TTN v3 uplink | `ReadingBatch` (`lorawan`)    |
| `{prefix}/fiware/CrowdFlowObserved` | FIWARE        | `ReadingBatch` (n readings)   |

A parser raises `PayloadError` for a message that breaks its format; `Router.parse` turns
that, a parser's own bug, or a topic no row matches into a `Quarantined` result, so it never
raises: garbage from one sensor never stops the collector nor loses the readings around it
(tests/test_fuzz_payloads.py, tests/test_collector_faults.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import paho.mqtt.client as mqtt

from visitorflow.catalogue import Catalogue
from visitorflow.contract import (
    GateStatus,
    PayloadError,
    Reading,
    check_not_future,
    counts_topic,
    parse_counts,
    parse_status,
    status_topic,
)
from visitorflow.formats_fiware import counter_index, parse_crowd_flow
from visitorflow.formats_fiware import topic as fiware_topic
from visitorflow.formats_ttn import TOPIC_FILTER as TTN_TOPIC_FILTER
from visitorflow.formats_ttn import dev_eui_index, parse_uplink
from visitorflow.store import Quarantined

log = logging.getLogger("collector")

# Distinct topics whose route is remembered: one per gate and format in practice; the bound
# keeps a flood of made-up topics from growing memory.
ROUTE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """The readings of one message (a FIWARE notification may carry several)."""

    readings: tuple[Reading, ...]
    received_utc: datetime
    # From The Things Stack: checked against the stored (dev_eui, f_cnt) before storing.
    lorawan: bool = False


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A gate's retained `online` / `offline`, as received."""

    status: GateStatus
    received_utc: datetime


Parsed = ReadingBatch | StatusChange | Quarantined
# A message and the (naive UTC) time it arrived, to its result; PayloadError if it is garbage.
Parser = Callable[[mqtt.MQTTMessage, datetime], ReadingBatch | StatusChange]


@dataclass(frozen=True, slots=True)
class Route:
    topic_filter: str
    parse: Parser


def collector_routes(
    catalogue: Catalogue, prefix: str, *, lorawan_interval_s: int, max_future_s: int
) -> tuple[Route, ...]:
    """The collector's table: native counts and status, The Things Stack uplinks (bridged
    to this broker) and FIWARE notifications. Counts first: most messages are counts."""
    gates_by_dev_eui = dev_eui_index(catalogue)
    gates_by_counter = counter_index(catalogue)

    def counts(msg: mqtt.MQTTMessage, received: datetime) -> ReadingBatch:
        reading = parse_counts(msg.topic, msg.payload, catalogue, prefix)
        return ReadingBatch((check_not_future(reading, received, max_future_s),), received)

    def status(msg: mqtt.MQTTMessage, received: datetime) -> StatusChange:
        return StatusChange(parse_status(msg.topic, msg.payload, catalogue, prefix), received)

    def uplink(msg: mqtt.MQTTMessage, received: datetime) -> ReadingBatch:
        reading = parse_uplink(msg.topic, msg.payload, gates_by_dev_eui, lorawan_interval_s)
        return ReadingBatch((check_not_future(reading, received, max_future_s),), received,
                            lorawan=True)

    def crowd_flow(msg: mqtt.MQTTMessage, received: datetime) -> ReadingBatch:
        readings = parse_crowd_flow(msg.payload, gates_by_counter)
        return ReadingBatch(
            tuple(check_not_future(r, received, max_future_s) for r in readings), received)

    return (
        Route(counts_topic(prefix, "+", "+"), counts),
        Route(status_topic(prefix, "+", "+"), status),
        Route(TTN_TOPIC_FILTER, uplink),
        Route(fiware_topic(prefix), crowd_flow),
    )


class Router:
    """Messages to typed results through a routing table; never raises."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        # topic_matches_sub builds a matcher per call (~8 µs); a gate's topic never changes
        # route, so each topic is matched once.
        self._route_of = lru_cache(maxsize=ROUTE_CACHE_SIZE)(self._match)

    def filters(self) -> list[str]:
        """The topic filters to subscribe to, in the table's order."""
        return [route.topic_filter for route in self.routes]

    def _match(self, topic: str) -> Route | None:
        for route in self.routes:
            if mqtt.topic_matches_sub(route.topic_filter, topic):
                return route
        return None

    def parse(self, msg: mqtt.MQTTMessage, received_utc: datetime) -> Parsed:
        """The message's result, or Quarantined with its raw bytes, topic and reason."""
        try:
            route = self._route_of(msg.topic)
            if route is None:
                raise PayloadError(f"topic {msg.topic!r} matches none of the collector's "
                                   f"subscriptions {self.filters()}")
            return route.parse(msg, received_utc)
        except PayloadError as exc:
            return Quarantined(received_utc, msg.topic, bytes(msg.payload), str(exc))
        except Exception as exc:  # a parser bug must not stop the collector either
            log.exception("unexpected error parsing a message on %s", msg.topic)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return Quarantined(received_utc, msg.topic, bytes(msg.payload), reason)

"""The MQTT contract: what the collector accepts and what it quarantines, and why."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from visitorflow.catalogue import load_catalogue
from visitorflow.contract import (
    PayloadError,
    Reading,
    format_counts,
    parse_counts,
    parse_status,
    split_topic,
)
from visitorflow.settings import PROJECT_ROOT

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
PREFIX = "langson/v1"
TOPIC = "langson/v1/tam_thanh/main/counts"
GOOD = {"device_id": "lsn-tam_thanh-main", "seq": 7, "ts": "2026-02-18T10:01:00+07:00",
        "interval_s": 60, "in": 14, "out": 9}


def parse(payload: object, topic: str = TOPIC) -> Reading:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_counts(topic, raw, CATALOGUE, PREFIX)


def test_valid_payload_becomes_a_reading_in_utc() -> None:
    reading = parse({**GOOD, "in_total": 1000, "out_total": 990, "battery_pct": 55.5})
    assert reading == Reading("tam_thanh", "main", "lsn-tam_thanh-main", 7,
                              datetime(2026, 2, 18, 3, 1), 60, 14, 9, 1000, 990, 55.5)


def test_z_suffix_is_utc() -> None:
    assert parse({**GOOD, "ts": "2026-02-18T03:01:00Z"}).ts_utc == datetime(2026, 2, 18, 3, 1)


def test_format_then_parse_round_trips() -> None:
    reading = parse({**GOOD, "in_total": 5, "out_total": 3, "battery_pct": 80})
    assert parse_counts(TOPIC, format_counts(reading), CATALOGUE, PREFIX) == reading


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"seq": -1}, "outside"),
        ({"seq": 1.0}, "must be an integer"),
        ({"in": True}, "must be an integer"),
        ({"in": "12"}, "must be an integer"),
        ({"out": 10**9}, "outside"),
        ({"interval_s": 0}, "outside"),
        ({"ts": "2026-02-18T10:01:00"}, "offset"),
        ({"ts": "yesterday"}, "RFC 3339"),
        ({"ts": 1771383660}, "RFC 3339"),
        ({"device_id": ""}, "device_id"),
        ({"device_id": 42}, "device_id"),
        ({"battery_pct": 101}, "battery_pct"),
        ({"battery_pct": "full"}, "battery_pct"),
        ({"in_total": -5}, "outside"),
    ],
)
def test_contract_breaches_are_named(change: dict, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse({**GOOD, **change})


@pytest.mark.parametrize("missing", ["device_id", "seq", "ts", "interval_s", "in", "out"])
def test_missing_required_field(missing: str) -> None:
    payload = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(PayloadError, match=missing):
        parse(payload)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "exceeds"),
        (b'{"a":' * 600 + b"1" + b"}" * 600, "device_id"),
    ],
)
def test_garbage_bytes_are_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse(raw)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("langson/v1/unknown_site/main/counts", "unknown site"),
        ("langson/v1/tam_thanh/back_door/counts", "unknown gate"),
        ("other/v1/tam_thanh/main/counts", "outside the prefix"),
        ("langson/v1/tam_thanh/counts", "is not"),
    ],
)
def test_topics_outside_the_catalogue(topic: str, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse(GOOD, topic=topic)


def test_status_messages() -> None:
    status = parse_status("langson/v1/tam_thanh/main/status", b"offline", CATALOGUE, PREFIX)
    assert (status.site_id, status.gate_id, status.status) == ("tam_thanh", "main", "offline")
    with pytest.raises(PayloadError, match="online"):
        parse_status("langson/v1/tam_thanh/main/status", b"sleeping", CATALOGUE, PREFIX)


def test_prefix_with_several_levels() -> None:
    assert split_topic("a/b/c", "a/b/c/site/gate/counts") == ("site", "gate", "counts")

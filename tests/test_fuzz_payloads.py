"""Bad input, everywhere: property-based tests over every payload parser.

Hypothesis generates ≥ 10,000 messages for the three formats the collector reads — the
native contract, The Things Stack uplinks and FIWARE CrowdFlowObserved notifications —
good ones (unicode device ids, every optional field, extra fields, any offset) mixed with
bad ones (random bytes, wrong types, huge numbers, deep nesting, megabyte strings, unicode
and hostile ids in topics, clocks in the future, one broken entity among good ones). They go
through the collector's own message handler and commit (`Collector._on_message`, `flush`)
into a real DuckDB store, batch by batch: nothing may crash, every bad message must be in
the quarantine with its raw bytes, every good reading must be stored, and no message may be
quarantined as an "internal error" (a parser bug).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingest.collector import Collector
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import utc_now
from visitorflow.formats_fiware import topic as fiware_topic
from visitorflow.settings import PROJECT_ROOT, Settings, load_settings
from visitorflow.store import Store

from .ingest_support import TEST_DEV_EUIS, catalogue_with_dev_euis, ttn_topic, ttn_uplink

BATCHES = 105
PER_BATCH = 100  # BATCHES × PER_BATCH ≥ 10,000 messages; one commit per batch
PREFIX = "langson/v1"
CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
GATES = [(s.id, g.id, g.counter_id) for s, g in CATALOGUE.gates()]
KNOWN_PARTS = {*CATALOGUE.by_id, *(g for _, g, _ in GATES), "counts", "status"}
REQUIRED = ("device_id", "seq", "ts", "interval_s", "in", "out")
HOSTILE_IDS = ["x'; DROP TABLE readings; --", "tam_thanh'--", "động_tam_thanh", "🏯", "%", "*",
               "tam_thanh\x00", "../../etc/passwd"]
# Unique frame counters, entity ids and receive times for the TTN and FIWARE good messages:
# the collector rightly drops a repeated LoRaWAN frame, which is not what is tested here.
_serial = itertools.count(1)


@dataclass
class Message:
    topic: str
    payload: bytes
    good: bool
    # (device_id, seq, ts_utc) of each reading a good message carries
    keys: list[tuple[str, int, datetime]] = field(default_factory=list)


def _iso(ts: datetime, offset: str) -> str:
    """A naive-UTC time as RFC 3339 with the given offset ('Z' or ±HH:MM)."""
    if offset == "Z":
        return ts.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    delta = timedelta(hours=hours, minutes=minutes) * sign
    return ts.replace(tzinfo=UTC).astimezone(timezone(delta)).isoformat(timespec="seconds")


# Oversized payloads: mostly just over a limit, one in ten a megabyte (each is kept in the
# quarantine with its raw bytes, so the store grows by what is generated here).
oversize = st.sampled_from([8_000] * 6 + [80_000, 300_000, 300_000, 1_048_576])


DEEP = "__deep__"  # stands for a deeply nested value until the JSON text is written


def _json(body: object, depth: int = 0) -> bytes:
    """JSON bytes of `body` with DEEP replaced by `depth` nested lists (written as text:
    json.dumps itself cannot go that deep)."""
    text = json.dumps(body)
    return text.replace(f'"{DEEP}"', "[" * depth + "1" + "]" * depth).encode()


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
wrong_int = st.one_of(texts, st.none(), st.booleans(), st.lists(st.integers(), max_size=3),
                      st.dictionaries(texts, st.integers(), max_size=2),
                      st.floats(allow_nan=False, allow_infinity=False).filter(
                          lambda f: not f.is_integer()), st.just(3.0))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), texts,
                                     st.floats(allow_nan=False, allow_infinity=False)),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=4)


@st.composite
def native_good(draw: st.DrawFn, now: datetime) -> tuple[str, dict, tuple[str, int, datetime]]:
    site, gate, _ = draw(st.sampled_from(GATES))
    device = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                          min_size=1, max_size=16).filter(lambda s: s.strip())
                  | st.just("lsn-" + "đ" * 124))  # the longest allowed, in unicode
    ts = (now - timedelta(seconds=draw(st.integers(60, 3 * 86400)))).replace(microsecond=0)
    body: dict = {
        "device_id": device, "seq": draw(st.integers(0, 2**63 - 1)),
        "ts": _iso(ts, draw(st.sampled_from(["Z", "+07:00", "+00:00", "-05:30", "+14:00"]))),
        "interval_s": draw(st.integers(1, 86_400)),
        "in": draw(st.integers(0, 100_000)), "out": draw(st.integers(0, 100_000)),
    }
    for key in ("in_total", "out_total"):
        if draw(st.booleans()):
            body[key] = draw(st.integers(0, 2**53))
    if draw(st.booleans()):
        body["battery_pct"] = draw(st.one_of(st.integers(0, 100), st.floats(0, 100), st.none()))
    if draw(st.booleans()):  # fields the contract does not know are ignored
        body[draw(texts.filter(lambda k: k not in REQUIRED + ("in_total", "out_total",
                                                              "battery_pct")))] = draw(json_values)
    return f"{PREFIX}/{site}/{gate}/counts", body, (device, body["seq"], ts)


@st.composite
def native_message(draw: st.DrawFn, now: datetime) -> Message:
    topic, body, key = draw(native_good(now))
    kind = draw(st.sampled_from(["good", "good", "good", "bytes", "type", "range", "missing",
                                 "nested", "huge", "topic", "future", "not_object", "encoding"]))
    if kind == "good":
        return Message(topic, json.dumps(body).encode(), True, [key])
    if kind == "bytes":
        return Message(topic, draw(st.binary(max_size=300)), False)
    if kind == "type":
        name = draw(st.sampled_from(REQUIRED))
        if name == "device_id":
            body[name] = draw(st.one_of(st.integers(), st.none(), st.lists(texts, max_size=2),
                                        st.just("   "), st.just(""), st.just("d" * 129)))
        elif name == "ts":
            body[name] = draw(st.one_of(st.integers(), st.sampled_from(
                ["", "now", "2026-13-01T00:00:00Z", "2026-11-21T10:00:00", "21/11/2026 10:00"])))
        else:
            body[name] = draw(wrong_int)
    elif kind == "range":
        name, value = draw(st.sampled_from([
            ("seq", -1), ("seq", 2**63), ("seq", 10**40), ("interval_s", 0),
            ("interval_s", 86_401), ("in", -1), ("in", 100_001), ("out", 10**30),
            ("in_total", 2**53 + 1), ("out_total", -5), ("battery_pct", 100.5),
            ("battery_pct", -1), ("battery_pct", float("nan")), ("battery_pct", float("inf")),
        ]))
        body[name] = value
    elif kind == "missing":
        del body[draw(st.sampled_from(REQUIRED))]
    elif kind == "nested":
        target = draw(st.sampled_from([None, *REQUIRED]))
        depth = draw(st.integers(1_200, 1_900))  # under 4 KiB, over Python's JSON depth
        if target is None:
            return Message(topic, _json(DEEP, depth), False)
        body[target] = DEEP
        return Message(topic, _json(body, depth), False)
    elif kind == "huge":
        body["device_id"] = "d" * draw(oversize)
    elif kind == "topic":
        site = draw(st.one_of(st.sampled_from(HOSTILE_IDS), texts.filter(
            lambda s: s and "/" not in s and s not in KNOWN_PARTS)))
        shape = draw(st.sampled_from(["{p}/{s}/main/counts", "{p}/tam_thanh/{s}/counts",
                                      "{p}/{s}/counts", "other/{s}/main/counts",
                                      "{p}/tam_thanh/main/{s}"]))
        topic = shape.format(p=PREFIX, s=site)
        if topic.endswith("/status"):
            topic += "x"
    elif kind == "future":
        body["ts"] = _iso(now + timedelta(hours=draw(st.integers(1, 10_000))), "+07:00")
    elif kind == "not_object":
        return Message(topic, json.dumps(draw(st.one_of(
            st.lists(json_values, max_size=3), st.integers(), texts, st.none()))).encode(), False)
    elif kind == "encoding":
        return Message(topic, b"\xff\xfe" + json.dumps(body).encode("utf-16-le"), False)
    return Message(topic, json.dumps(body).encode(), False)


@st.composite
def ttn_message(draw: st.DrawFn, now: datetime) -> Message:
    (site, gate), eui = draw(st.sampled_from(sorted(TEST_DEV_EUIS.items())))
    n = next(_serial)
    received = (now - timedelta(days=20) + timedelta(seconds=n)).replace(microsecond=0)
    layout = draw(st.sampled_from(["line_1_", ""]))
    count = st.one_of(st.integers(0, 100_000), st.integers(0, 100_000).map(float))
    decoded = {f"{layout}period_in": draw(count), f"{layout}period_out": draw(count)}
    if draw(st.booleans()):
        decoded[f"{layout}total_in"] = draw(st.integers(0, 65_535))
    if draw(st.booleans()):
        decoded["battery"] = draw(st.one_of(st.integers(-5, 200), texts))  # ignored if odd
    device = draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}", fullmatch=True))
    body = json.loads(ttn_uplink(eui, n, received, decoded, device_id=device))
    kind = draw(st.sampled_from(["good", "good", "good", "bytes", "eui", "f_cnt", "decoded",
                                 "count", "time", "device", "topic", "nested", "huge"]))
    topic = ttn_topic(device)
    if kind == "good":
        return Message(topic, json.dumps(body).encode(), True, [(eui, n, received)])
    up = body["uplink_message"]
    if kind == "bytes":
        return Message(topic, draw(st.binary(max_size=300)), False)
    if kind == "eui":
        body["end_device_ids"]["dev_eui"] = draw(st.one_of(
            st.just("0000000000000099"), st.just(eui[:-1]), st.integers(), st.none(), texts))
    elif kind == "f_cnt":
        up["f_cnt"] = draw(st.one_of(st.just(-1), st.just(2**32), st.just(True), texts,
                                     st.just(1.5), st.lists(st.integers(), max_size=2)))
    elif kind == "decoded":
        up["decoded_payload"] = draw(st.one_of(st.none(), st.just({}), texts,
                                               st.lists(st.integers(), max_size=2),
                                               st.just({"temperature": 21})))
    elif kind == "count":
        key = draw(st.sampled_from(sorted(k for k in decoded if "period" in k)))
        up["decoded_payload"][key] = draw(st.one_of(
            st.just(-1), st.just(100_001), st.just(10**30), st.just(2.5), texts, st.none(),
            st.booleans()))
    elif kind == "time":
        bad = draw(st.one_of(st.none(), st.integers(), st.sampled_from(
            ["", "yesterday", "2026-11-21T10:00:00", "2026-02-30T10:00:00Z"])))
        up["received_at"], body["received_at"] = bad, bad
    elif kind == "device":
        body["end_device_ids"]["device_id"] = device + "-other"
    elif kind == "topic":
        topic = draw(st.sampled_from(["v3/app/devices//up", "v3//devices/x/up",
                                      "v3/app/devices/x/y/up", "v3/app/device/x/up"]))
    elif kind == "nested":
        up["decoded_payload"] = DEEP
        return Message(topic, _json(body, draw(st.integers(1_200, 20_000))), False)
    elif kind == "huge":
        up["frm_payload"] = "A" * (draw(oversize) + 66_000)
    return Message(topic, json.dumps(body).encode(), False)


@st.composite
def fiware_entity(draw: st.DrawFn, now: datetime) -> tuple[dict, tuple[str, int, datetime]]:
    _, _, counter = draw(st.sampled_from(GATES))
    entity_id = f"urn:ngsi-ld:CrowdFlowObserved:{counter}:{next(_serial)}"
    interval_s = draw(st.sampled_from([60, 300, 600, 900, 3600]))
    end = (now - timedelta(seconds=draw(st.integers(0, 86_400)) + 60))
    end = end.replace(second=0, microsecond=0)
    offset = draw(st.sampled_from(["Z", "+07:00", "+00:00"]))
    direction = draw(st.sampled_from(["inbound", "outbound"]))
    values = {"peopleCount": draw(st.integers(0, 100_000)), "direction": direction,
              "dateObservedFrom": _iso(end - timedelta(seconds=interval_s), offset),
              "dateObservedTo": _iso(end, offset)}
    if draw(st.booleans()):  # normalized attributes rather than keyValues
        values = {k: {"type": "Property", "value": v} for k, v in values.items()}
    entity = {"id": entity_id, "type": "CrowdFlowObserved", **values}
    seq = int(end.replace(tzinfo=UTC).timestamp() // interval_s)
    return entity, (entity_id, seq, end)


@st.composite
def fiware_message(draw: st.DrawFn, now: datetime) -> Message:
    entities = draw(st.lists(fiware_entity(now), min_size=1, max_size=3))
    wrap = draw(st.sampled_from(["v2", "ld", "list", "bare"]))
    kind = draw(st.sampled_from(["good", "good", "good", "bytes", "entity", "empty", "nested",
                                 "huge"]))
    body = [e for e, _ in entities]
    if kind == "entity":  # one broken entity: the whole notification is quarantined
        broken = body[draw(st.integers(0, len(body) - 1))]
        name, value = draw(st.sampled_from([
            ("peopleCount", -1), ("peopleCount", 100_001), ("peopleCount", "many"),
            ("direction", "sideways"), ("dateObservedTo", "2000-01-01T00:00:00Z"),
            ("dateObservedFrom", None), ("id", ""), ("id", "x" * 300), ("type", "Bus"),
            ("id", "urn:ngsi-ld:CrowdFlowObserved:x'; DROP TABLE readings; --"),
        ]))
        broken[name] = value
    if kind == "bytes":
        return Message(fiware_topic(PREFIX), draw(st.binary(max_size=300)), False)
    if kind == "empty":
        return Message(fiware_topic(PREFIX), json.dumps({"subscriptionId": "s", "data": []})
                       .encode(), False)
    if kind == "nested":
        return Message(fiware_topic(PREFIX), _json({"subscriptionId": "s", "data": [DEEP]},
                                                   draw(st.integers(1_200, 50_000))), False)
    if kind == "huge":
        body[0]["description"] = "o" * (draw(oversize) + 263_000)
    if wrap == "v2":
        payload: object = {"subscriptionId": "5f1", "data": body}
    elif wrap == "ld":
        payload = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "data": body}
    elif wrap == "list" or len(body) > 1:
        payload = body
    else:
        payload = body[0]
    good = kind == "good"
    return Message(fiware_topic(PREFIX), json.dumps(payload).encode(), good,
                   [key for _, key in entities] if good else [])


NOW = datetime.now(UTC).replace(tzinfo=None)
any_message = st.one_of(native_message(NOW), ttn_message(NOW), fiware_message(NOW))


@pytest.fixture(scope="module")
def fuzz_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """The real collector (no broker: messages are handed to its handler) on a temp store,
    with a catalogue that knows the two test LoRaWAN counters."""
    tmp = tmp_path_factory.mktemp("fuzz")
    settings: Settings = load_settings(
        store={"path": tmp / "fuzz.duckdb"}, catalogue_path=tmp / "sites.yaml")
    catalogue = catalogue_with_dev_euis(Path(settings.catalogue_path))
    store = Store.from_settings(settings)
    store.initialise()
    logging.getLogger("collector").addHandler(ERRORS)
    yield Collector(settings, catalogue, store)
    logging.getLogger("collector").removeHandler(ERRORS)


class _Errors(logging.Handler):
    """Errors the collector logs (e.g. "gap/reset check failed; storing the batch without
    it"): it carries on, but each is a crash of a part of it, which must not happen."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


ERRORS = _Errors()


TOTALS = {"messages": 0, "good": 0, "bad": 0, "readings": 0}


@hypothesis_settings(
    max_examples=BATCHES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example,
                           HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(any_message, min_size=PER_BATCH, max_size=PER_BATCH))
def test_every_payload_is_stored_or_quarantined_never_a_crash(
    fuzz_collector: Collector, batch: list[Message]
) -> None:
    store = fuzz_collector.store
    quarantined_before = TOTALS["bad"]  # every earlier batch checked its own
    for mid, message in enumerate(batch, start=1):
        msg = mqtt.MQTTMessage(mid=mid, topic=message.topic.encode("utf-8", "surrogatepass"))
        msg.payload = message.payload
        msg.qos = 0
        fuzz_collector._on_message(None, None, msg)  # the handler paho calls
    assert fuzz_collector.flush() == len(batch), "the commit must take the whole batch"
    assert not ERRORS.messages, ERRORS.messages[0][-2000:]

    bad = [m for m in batch if not m.good]
    assert store.table_counts()["quarantine"] == quarantined_before + len(bad)
    quarantine = store.quarantine(limit=len(bad))  # newest first: this batch's
    kept = {(t, bytes(p)) for t, p in zip(quarantine["topic"], quarantine["payload"], strict=True)}
    for message in bad:
        assert (message.topic, message.payload) in kept, message.payload[:200]
    internal = quarantine[quarantine["reason"].str.startswith("internal error")]
    assert internal.empty, list(internal["reason"])[:3]

    keys = [key for m in batch if m.good for key in m.keys]
    if keys:
        stored = store.device_frames(sorted({k[0] for k in keys}), datetime(1970, 1, 1))
        found = {(d, int(s), t.to_pydatetime()) for d, s, t in
                 zip(stored["device_id"], stored["seq"], stored["ts_utc"], strict=True)}
        missing = [k for k in keys if k not in found]
        assert not missing, missing[:3]
    TOTALS["messages"] += len(batch)
    TOTALS["good"] += len(batch) - len(bad)
    TOTALS["bad"] += len(bad)
    TOTALS["readings"] += len(keys)


def test_ten_thousand_payloads_went_through(fuzz_collector: Collector) -> None:
    """Runs after the property (file order): it really covered ≥ 10 k mixed messages."""
    assert TOTALS["messages"] >= 10_000, TOTALS
    assert TOTALS["good"] > 3_000 and TOTALS["bad"] > 3_000, TOTALS
    counts = fuzz_collector.store.table_counts()
    assert counts["quarantine"] == TOTALS["bad"], (counts, TOTALS)
    assert fuzz_collector.stats.received == TOTALS["messages"]
    assert fuzz_collector.stats.quarantined == TOTALS["bad"]
    assert counts["readings"] >= 1 and utc_now() > NOW
    print(f"fuzz: {TOTALS}")

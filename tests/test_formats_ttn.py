"""The Things Stack v3 uplinks of LoRaWAN people counters: parsing and frame dedup."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from visitorflow.contract import PayloadError, Reading
from visitorflow.formats_ttn import FrameDedup, dev_eui_index, parse_uplink, split_uplink_topic

from .ingest_support import VS133_EUI, VS350_EUI, catalogue_with_dev_euis, ttn_topic, ttn_uplink

T = datetime(2026, 2, 18, 3, 10, 0, 250000)
VS133 = {"line_1_period_in": 14, "line_1_period_out": 9, "line_1_total_in": 10512,
         "line_1_total_out": 10480}


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    return dev_eui_index(catalogue_with_dev_euis(tmp_path_factory.mktemp("cat") / "s.yaml"))


def test_topic_with_and_without_tenant() -> None:
    assert split_uplink_topic("v3/app@ttn/devices/dev-1/up") == ("app", "ttn", "dev-1")
    assert split_uplink_topic("v3/app/devices/dev-1/up") == ("app", None, "dev-1")
    with pytest.raises(PayloadError, match="not v3"):
        split_uplink_topic("v3/app/devices/dev-1/join")


def test_vs133_uplink_becomes_a_reading(gates: dict) -> None:
    r = parse_uplink(ttn_topic(), ttn_uplink(VS133_EUI, 42, T, VS133), gates, 600)
    assert r == Reading("ky_lua", "north", VS133_EUI, 42, T, 600, 14, 9, 10512, 10480)


def test_vs350_uplink_and_open_source_topic(gates: dict) -> None:
    decoded = {"period_in": 3, "period_out": 0, "total_in": 65530, "total_out": 12,
               "battery": 88}
    r = parse_uplink(ttn_topic("vs350", tenant=None),
                     ttn_uplink(VS350_EUI, 7, T, decoded, "vs350"), gates)
    assert (r.site_id, r.gate_id, r.count_in, r.in_total, r.battery_pct) == (
        "ky_lua", "south", 3, 65530, 88.0)


def test_omitted_f_cnt_is_frame_zero_and_omitted_count_is_zero(gates: dict) -> None:
    # The Things Stack leaves out empty fields: f_cnt 0 and a period_out of 0.
    payload = ttn_uplink(VS133_EUI, 0, T, {"line_1_period_in": 5, "line_1_total_in": 5})
    assert b"f_cnt" not in payload
    r = parse_uplink(ttn_topic(), payload, gates)
    assert (r.seq, r.count_in, r.count_out, r.out_total) == (0, 5, 0, None)


def test_javascript_doubles_are_accepted_when_whole(gates: dict) -> None:
    r = parse_uplink(ttn_topic(), ttn_uplink(VS133_EUI, 1, T, {**VS133, "line_1_period_in": 14.0}),
                     gates)
    assert r.count_in == 14 and isinstance(r.count_in, int)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m["end_device_ids"].update(dev_eui="0000000000000099"), "unknown dev_eui"),
        (lambda m: m["uplink_message"].pop("decoded_payload"), "payload formatter"),
        (lambda m: m["uplink_message"].update(decoded_payload={"temperature": 21}),
         "no people counts"),
        (lambda m: m["uplink_message"]["decoded_payload"].update(line_1_period_in=-1),
         "outside"),
        (lambda m: m["uplink_message"]["decoded_payload"].update(line_1_period_in="4"),
         "must be an integer"),
        (lambda m: m["uplink_message"]["decoded_payload"].update(line_1_period_in=2.5),
         "must be an integer"),
        (lambda m: m["uplink_message"].update(received_at="yesterday"), "RFC 3339"),
        (lambda m: m["end_device_ids"].update(device_id="someone-else"), "differs"),
        (lambda m: m.pop("uplink_message"), "missing"),
    ],
)
def test_broken_uplinks_say_why(
    gates: dict, change: Callable[[dict], object], reason: str
) -> None:
    message = json.loads(ttn_uplink(VS133_EUI, 3, T, dict(VS133)))
    change(message)
    with pytest.raises(PayloadError, match=reason):
        parse_uplink(ttn_topic(), json.dumps(message).encode(), gates)


def test_not_json_and_oversized(gates: dict) -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        parse_uplink(ttn_topic(), b"{", gates)
    with pytest.raises(PayloadError, match="exceeds"):
        parse_uplink(ttn_topic(), b" " * 70_000, gates)


def frame(f_cnt: int, minutes: float, dev: str = VS133_EUI) -> Reading:
    return Reading("ky_lua", "north", dev, f_cnt, T + timedelta(minutes=minutes), 600, 1, 0)


def test_dedup_drops_a_retry_with_a_later_receive_time() -> None:
    dedup = FrameDedup()
    dedup.remember([frame(0, 0), frame(1, 10)])
    new, dup = dedup.split([frame(1, 10.05), frame(2, 20), frame(2, 20)])
    assert [r.seq for r in new] == [2]
    assert [r.seq for r in dup] == [1, 2]  # the retry, and a repeat inside the batch


def test_dedup_keeps_late_frames_and_a_new_session() -> None:
    dedup = FrameDedup()
    dedup.remember([frame(5, 50), frame(7, 70)])
    late, _ = dedup.split([frame(6, 60)])  # arrived out of order, same session
    assert [r.seq for r in late] == [6]
    rejoined, dup = dedup.split([frame(0, 80), frame(1, 90)])  # f_cnt back to 0 later on
    assert [r.seq for r in rejoined] == [0, 1] and not dup
    redelivered, dup = dedup.split([frame(5, 50)])
    assert not redelivered and [r.seq for r in dup] == [5]


def test_dedup_rebuilt_from_the_store_matches(tmp_path: Path) -> None:
    stored = [(VS133_EUI, 0, T), (VS133_EUI, 1, T + timedelta(minutes=10))]
    dedup = FrameDedup.from_stored(stored)
    new, dup = dedup.split([frame(1, 10.1), frame(2, 20)])
    assert [r.seq for r in new] == [2] and [r.seq for r in dup] == [1]

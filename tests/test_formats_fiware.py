"""FIWARE CrowdFlowObserved notifications (NGSIv2 and NGSI-LD) to readings."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from visitorflow.catalogue import load_catalogue
from visitorflow.contract import PayloadError
from visitorflow.formats_fiware import counter_index, parse_crowd_flow
from visitorflow.settings import PROJECT_ROOT

COUNTERS = counter_index(load_catalogue(PROJECT_ROOT / "data" / "sites.yaml"))
ID = "urn:ngsi-ld:CrowdFlowObserved:lsn-tam_thanh-main:{}"


def key_values(direction: str = "inbound", count: object = 12, **extra: object) -> dict:
    return {"id": ID.format(direction), "type": "CrowdFlowObserved", "peopleCount": count,
            "direction": direction, "dateObservedFrom": "2026-02-18T10:00:00+07:00",
            "dateObservedTo": "2026-02-18T10:05:00+07:00", **extra}


def normalized(entity: dict) -> dict:
    return {k: v if k in ("id", "type") else {"type": "Property", "value": v}
            for k, v in entity.items()}


def test_an_ngsiv2_notification_with_both_directions() -> None:
    message = {"subscriptionId": "5f1", "data": [normalized(key_values("inbound", 12)),
                                                 normalized(key_values("outbound", 5))]}
    inbound, outbound = parse_crowd_flow(json.dumps(message).encode(), COUNTERS)
    assert (inbound.site_id, inbound.gate_id, inbound.count_in, inbound.count_out) == (
        "tam_thanh", "main", 12, 0)
    assert (outbound.count_in, outbound.count_out) == (0, 5)
    assert inbound.ts_utc == datetime(2026, 2, 18, 3, 5) and inbound.interval_s == 300
    assert inbound.device_id != outbound.device_id  # two entities, two streams


def test_consecutive_periods_have_consecutive_seqs() -> None:
    later = key_values(dateObservedFrom="2026-02-18T10:05:00+07:00",
                       dateObservedTo="2026-02-18T10:10:00+07:00")
    first, second = parse_crowd_flow(json.dumps([key_values(), later]).encode(), COUNTERS)
    assert second.seq == first.seq + 1


def test_an_ngsi_ld_notification_with_ref_device() -> None:
    entity = normalized(key_values(count=7.0))
    entity["id"] = "urn:ngsi-ld:CrowdFlowObserved:gate-17-in"
    entity["refDevice"] = {"type": "Relationship", "object": "lsn-ky_lua-north"}
    message = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "data": [entity]}
    (reading,) = parse_crowd_flow(json.dumps(message).encode(), COUNTERS)
    assert (reading.site_id, reading.gate_id, reading.count_in) == ("ky_lua", "north", 7)


@pytest.mark.parametrize(
    ("entity", "reason"),
    [
        (key_values(count=-1), "outside"),
        (key_values(count="12"), "integer"),
        (key_values(direction="sideways"), "direction"),
        ({**key_values(), "id": "urn:ngsi-ld:CrowdFlowObserved:nowhere"}, "no catalogue gate"),
        ({**key_values(), "dateObservedTo": "2026-02-18T10:05:00"}, "UTC offset"),
        ({**key_values(), "dateObservedTo": "2026-02-18T09:00:00+07:00"}, "outside 1.."),
        ({**key_values(), "type": "TrafficFlowObserved"}, "not CrowdFlowObserved"),
    ],
)
def test_broken_entities_say_why(entity: dict, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_crowd_flow(json.dumps({"data": [key_values(), entity]}).encode(), COUNTERS)


def test_not_a_notification() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        parse_crowd_flow(b"<xml/>", COUNTERS)
    with pytest.raises(PayloadError, match="non-empty"):
        parse_crowd_flow(b'{"data": []}', COUNTERS)

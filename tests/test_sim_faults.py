"""Fault injection and the TTN v3 encoding, unit by unit (no broker: the live run with
faults through a real broker and collector is tests/test_sim_live_faults.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from ingest.sim_counters import GateCounter
from ingest.sim_faults import FaultInjector
from ingest.sim_ttn import dev_eui, encode_uplink, ttn_device_id
from visitorflow.catalogue import load_catalogue
from visitorflow.contract import PayloadError, Reading, parse_counts
from visitorflow.settings import Settings, SimulatorFaults

PREFIX = "langson/v1"
T0 = datetime(2026, 2, 21, 2, 0)


def readings(n: int, device: str = "lsn-tam_thanh-main") -> list[Reading]:
    site, gate = "tam_thanh", "main"
    return [Reading(site, gate, device, i, T0 + timedelta(minutes=i + 1), 60, i % 5, i % 3,
                    100 + i, 50 + i, 90.0) for i in range(n)]


def injector(settings: Settings, **faults: object) -> FaultInjector:
    return FaultInjector(SimulatorFaults(**faults), 7, PREFIX, settings.tz)


def counts_of(actions: list) -> list[bytes]:
    return [a.payload for a in actions if a.kind == "counts"]


def seq_of(payload: bytes) -> int:
    return json.loads(payload)["seq"]


def test_no_faults_sends_each_reading_once_in_order(settings: Settings) -> None:
    inj = injector(settings)
    assert not inj.active
    sent = [p for r in readings(50) for p in counts_of(inj.process(r))]
    assert [seq_of(p) for p in sent] == list(range(50))
    assert inj.events == []


def test_drop_duplicate_malformed_are_recorded(settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    inj = injector(settings, drop_rate=0.2, duplicate_rate=0.2, malformed_rate=0.2)
    sent = [p for r in readings(300) for p in counts_of(inj.process(r))]
    kinds = {k: {e.seq for e in inj.events if e.kind == k}
             for k in ("drop", "duplicate", "malformed")}
    assert all(15 < len(v) < 110 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    valid: list[int] = []
    broken = 0
    for payload in sent:
        try:
            valid.append(parse_counts(f"{PREFIX}/tam_thanh/main/counts", payload, catalogue,
                                      PREFIX).seq)
        except PayloadError:
            broken += 1
    # Malformed copies fail the contract; dropped readings never appear; duplicates twice.
    assert broken == sum(2 if s in kinds["duplicate"] else 1 for s in kinds["malformed"])
    assert set(valid) == set(range(300)) - kinds["drop"] - kinds["malformed"]
    for s in kinds["duplicate"] - kinds["malformed"]:
        assert valid.count(s) == 2


def test_reorder_swaps_with_the_next_message(settings: Settings) -> None:
    inj = injector(settings, reorder_rate=0.3)
    sent = [seq_of(p) for r in readings(200) for p in counts_of(inj.process(r))]
    sent += [seq_of(p) for acts in inj.flush().values() for p in counts_of(acts)]
    assert sorted(sent) == list(range(200))
    assert sent != sorted(sent)
    held = {e.seq for e in inj.events if e.kind == "reorder"}
    for s in held:
        assert sent.index(s) > sent.index(s + 1) if s + 1 < 200 else True


def test_offline_buffers_then_sends_a_late_burst(settings: Settings) -> None:
    inj = injector(settings, offline_per_day=30, offline_hours_min=0.5, offline_hours_max=1,
                   offline_buffer=20)
    actions = [(r, inj.process(r)) for r in readings(600)]
    statuses = [a.payload for _, acts in actions for a in acts if a.kind == "status"]
    assert b"offline" in statuses and b"online" in statuses
    # A burst: one reading's turn carries many messages (the buffer comes back).
    assert max(len(counts_of(acts)) for _, acts in actions) > 10
    sent = [seq_of(p) for _, acts in actions for p in counts_of(acts)]
    sent += [seq_of(p) for acts in inj.flush().values() for p in counts_of(acts)]
    lost = {e.seq for e in inj.events if e.kind == "buffer_overflow"}
    assert lost, "30–60 min offline with a 20-reading buffer must overwrite some"
    assert set(sent) == set(range(600)) - lost
    assert len(sent) == len(set(sent))


def test_skew_shifts_timestamps_and_reset_restarts_the_counter(settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    site = catalogue.site("tam_thanh")
    counter = GateCounter(site, site.gates[0])
    inj = injector(settings, skew_per_day=20, skew_s_max=120, reset_per_day=20)
    sent = []
    for i in range(600):
        reading = counter.report(T0 + timedelta(minutes=i + 1), 60, 3, 2)
        for payload in counts_of(inj.process(reading, counter)):
            sent.append((reading, parse_counts(f"{PREFIX}/tam_thanh/main/counts", payload,
                                               catalogue, PREFIX)))
    skewed = {(e.seq, e.ts_utc): int(e.detail) for e in inj.events if e.kind == "skew"}
    resets = [e for e in inj.events if e.kind == "reset"]
    assert skewed and resets
    for truth, got in sent:
        shift = skewed.get((truth.seq, truth.ts_utc), 0)
        assert got.ts_utc == truth.ts_utc + timedelta(seconds=shift)
        assert abs(shift) <= 120
    # After a reset the next reading starts again from seq 0 and small totals.
    after = [got for truth, got in sent if got.seq == 0]
    assert len(after) == len(resets) + 1
    assert all(g.in_total == 3 for g in after[1:])


def test_ttn_gates_send_things_stack_v3_uplinks(settings: Settings) -> None:
    device = "lsn-huu_lien-reserve_gate"
    inj = FaultInjector(SimulatorFaults(ttn_gates=[device]), 7, PREFIX, settings.tz,
                        "langson-counters", "ttn")
    reading = Reading("huu_lien", "reserve_gate", device, 42, T0, 60, 7, 3, 1007, 903, 88.0)
    (action,) = inj.process(reading)
    assert action.topic == "v3/langson-counters@ttn/devices/lsn-huu-lien-reserve-gate/up"
    body = json.loads(action.payload)
    ids = body["end_device_ids"]
    assert ids["device_id"] == ttn_device_id(device) == "lsn-huu-lien-reserve-gate"
    assert ids["application_ids"] == {"application_id": "langson-counters"}
    assert ids["dev_eui"] == dev_eui(device) and len(ids["dev_eui"]) == 16
    up = body["uplink_message"]
    assert up["f_cnt"] == 42 and up["f_port"] >= 1
    assert up["decoded_payload"] == {"line_1_period_in": 7, "line_1_period_out": 3,
                                     "line_1_total_in": 1007, "line_1_total_out": 903}
    assert up["rx_metadata"][0]["gateway_ids"]["gateway_id"]
    received = datetime.fromisoformat(up["received_at"][:26])
    assert timedelta(0) <= received - T0 < timedelta(seconds=5)
    assert body["received_at"] == up["received_at"]
    # The Things Stack omits zero values: the first uplink after a join has no f_cnt.
    _, first = encode_uplink(Reading("huu_lien", "reserve_gate", device, 0, T0, 60, 0, 0, 0, 0),
                             "langson-counters", "ttn")
    assert "f_cnt" not in json.loads(first)["uplink_message"]
    # Other gates keep the project's contract.
    other = inj.process(readings(1)[0])[0]
    assert other.topic == f"{PREFIX}/tam_thanh/main/counts"


def test_fault_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        SimulatorFaults(drop_rate=1.5)

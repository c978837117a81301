"""Gate counts as The Things Stack (TTN) v3 LoRaWAN uplinks, for the gates that reach the
platform over LoRaWAN instead of the project's own MQTT contract.

Shape followed (The Things Stack v3 MQTT integration, uplink message): topic
`v3/{application_id}@{tenant_id}/devices/{device_id}/up`, body with `end_device_ids`
(`device_id`, `dev_eui`, `application_ids.application_id`), `received_at` and
`uplink_message` (`f_cnt`, omitted when 0 as TTS omits zero values; `f_port`;
`decoded_payload` from a people-counter payload formatter with line-1 period and total
counts; `rx_metadata`; `received_at`).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

from visitorflow.contract import Reading

F_PORT = 1
GATEWAY_ID = "lsn-gw-01"


def ttn_device_id(counter_id: str) -> str:
    """TTS device ids allow lowercase letters, digits and dashes only: our counter ids
    (`lsn-huu_lien-reserve_gate`) become `lsn-huu-lien-reserve-gate`."""
    return re.sub(r"[^a-z0-9-]", "-", counter_id.lower())


def dev_eui(counter_id: str) -> str:
    """A stable 64-bit DevEUI per counter (16 upper-case hex digits)."""
    return hashlib.sha256(counter_id.encode()).hexdigest()[:16].upper()


def ttn_topic(application_id: str, tenant_id: str, counter_id: str) -> str:
    return f"v3/{application_id}@{tenant_id}/devices/{ttn_device_id(counter_id)}/up"


def _rfc3339(ts: datetime) -> str:
    return ts.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


NETWORK_DELAY = timedelta(milliseconds=350)  # counter → gateway → network server


def encode_uplink(reading: Reading, application_id: str, tenant_id: str,
                  eui: str | None = None) -> tuple[str, bytes]:
    """The TTN v3 uplink (topic, JSON bytes) carrying one reading. The uplink has no counter
    timestamp: the network server stamps `received_at` just after the interval ends
    (`NETWORK_DELAY`). `eui` is the gate's DevEUI from the catalogue (`dev_eui`), else one
    derived from the counter id (which the collector will not know)."""
    received = reading.ts_utc + NETWORK_DELAY
    eui = (eui or dev_eui(reading.device_id)).upper()
    uplink: dict[str, object] = {
        "f_port": F_PORT,
        "frm_payload": "",
        "decoded_payload": {
            "line_1_period_in": reading.count_in,
            "line_1_period_out": reading.count_out,
            "line_1_total_in": reading.in_total or 0,
            "line_1_total_out": reading.out_total or 0,
        },
        "rx_metadata": [{
            "gateway_ids": {"gateway_id": GATEWAY_ID},
            "rssi": -97,
            "channel_rssi": -97,
            "snr": 7.5,
            "received_at": _rfc3339(received),
        }],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9}},
                     "frequency": "923200000"},
        "received_at": _rfc3339(received),
    }
    if reading.seq:
        uplink = {"f_cnt": reading.seq, **uplink}
    body = {
        "end_device_ids": {
            "device_id": ttn_device_id(reading.device_id),
            "application_ids": {"application_id": application_id},
            "dev_eui": eui,
        },
        "correlation_ids": [f"as:up:{eui}{reading.seq:08d}"],
        "received_at": _rfc3339(received),
        "uplink_message": uplink,
    }
    return ttn_topic(application_id, tenant_id, reading.device_id), json.dumps(
        body, separators=(",", ":")).encode("utf-8")

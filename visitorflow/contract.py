"""The MQTT contract between gate counters and the collector (documented in docs/mqtt-contract.md).

Counts: topic `{prefix}/{site_id}/{gate_id}/counts`, QoS 1, UTF-8 JSON object with
`device_id`, `seq`, `ts` (RFC 3339 with offset, end of the interval), `interval_s`, `in`,
`out`, optional `in_total`, `out_total`, `battery_pct`.
Status: topic `{prefix}/{site_id}/{gate_id}/status`, retained `online` / `offline`.

One parser per direction lives here so that the simulator writes what the collector reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from visitorflow.catalogue import Catalogue
from visitorflow.clock import utc_naive

# Larger per-interval counts than this are a broken counter, not a crowd.
MAX_COUNT_PER_INTERVAL = 100_000
MAX_TOTAL = 2**53  # the largest integer JSON readers keep exactly
MAX_INTERVAL_S = 86_400
MAX_PAYLOAD_BYTES = 4096


class PayloadError(ValueError):
    """A message that breaks the contract; the message says which rule."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One counter report for one gate and one counting interval. Times are naive UTC."""

    site_id: str
    gate_id: str
    device_id: str
    seq: int
    ts_utc: datetime  # end of the counting interval
    interval_s: int
    count_in: int
    count_out: int
    in_total: int | None = None
    out_total: int | None = None
    battery_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GateStatus:
    site_id: str
    gate_id: str
    status: Literal["online", "offline"]


def counts_topic(prefix: str, site_id: str, gate_id: str) -> str:
    return f"{prefix}/{site_id}/{gate_id}/counts"


def status_topic(prefix: str, site_id: str, gate_id: str) -> str:
    return f"{prefix}/{site_id}/{gate_id}/status"


def split_topic(prefix: str, topic: str) -> tuple[str, str, str]:
    """`{prefix}/{site}/{gate}/{kind}` to (site, gate, kind); PayloadError otherwise."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise PayloadError(f"topic {topic!r} is outside the prefix {prefix!r}")
    parts = topic[len(head):].split("/")
    if len(parts) != 3 or not all(parts):
        raise PayloadError(f"topic {topic!r} is not {prefix}/<site_id>/<gate_id>/<kind>")
    return parts[0], parts[1], parts[2]


def _known_gate(catalogue: Catalogue, site_id: str, gate_id: str) -> None:
    if site_id not in catalogue.by_id:
        raise PayloadError(f"unknown site {site_id!r} in topic")
    if catalogue.gate(site_id, gate_id) is None:
        raise PayloadError(f"unknown gate {gate_id!r} of site {site_id!r} in topic")


def _integer(obj: dict, key: str, *, low: int, high: int, required: bool = True) -> int | None:
    if key not in obj:
        if required:
            raise PayloadError(f"missing field {key!r}")
        return None
    value = obj[key]
    # bool is an int in Python, and 3.0 is a float in JSON: both break the contract.
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"field {key!r} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise PayloadError(f"field {key!r} = {value} is outside {low}..{high}")
    return value


def _timestamp(obj: dict) -> datetime:
    value = obj.get("ts")
    if not isinstance(value, str):
        raise PayloadError("field 'ts' must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"field 'ts' = {value[:40]!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise PayloadError("field 'ts' must carry a UTC offset (e.g. +07:00 or Z)")
    return utc_naive(parsed)


def load_json(payload: bytes, max_bytes: int) -> object:
    """A payload's JSON, or PayloadError naming why not (too large, not UTF-8, not JSON).
    Shared by every format's parser so garbage is refused the same way everywhere."""
    if len(payload) > max_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8") from None
    except (json.JSONDecodeError, RecursionError):
        raise PayloadError("payload is not JSON") from None


def parse_counts(topic: str, payload: bytes, catalogue: Catalogue, prefix: str) -> Reading:
    """A counts message to a Reading, or PayloadError saying which rule it breaks."""
    site_id, gate_id, kind = split_topic(prefix, topic)
    if kind != "counts":
        raise PayloadError(f"topic {topic!r} is not a counts topic")
    _known_gate(catalogue, site_id, gate_id)
    obj = load_json(payload, MAX_PAYLOAD_BYTES)
    if not isinstance(obj, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(obj).__name__}")
    device_id = obj.get("device_id")
    if not isinstance(device_id, str) or not device_id.strip() or len(device_id) > 128:
        raise PayloadError("field 'device_id' must be a non-empty string of ≤ 128 characters")
    battery = obj.get("battery_pct")
    if battery is not None:
        if isinstance(battery, bool) or not isinstance(battery, int | float):
            raise PayloadError("field 'battery_pct' must be a number")
        if not (math.isfinite(battery) and 0 <= battery <= 100):
            raise PayloadError(f"field 'battery_pct' = {battery} is outside 0..100")
    return Reading(
        site_id=site_id,
        gate_id=gate_id,
        device_id=device_id,
        seq=_integer(obj, "seq", low=0, high=2**63 - 1),
        ts_utc=_timestamp(obj),
        interval_s=_integer(obj, "interval_s", low=1, high=MAX_INTERVAL_S),
        count_in=_integer(obj, "in", low=0, high=MAX_COUNT_PER_INTERVAL),
        count_out=_integer(obj, "out", low=0, high=MAX_COUNT_PER_INTERVAL),
        in_total=_integer(obj, "in_total", low=0, high=MAX_TOTAL, required=False),
        out_total=_integer(obj, "out_total", low=0, high=MAX_TOTAL, required=False),
        battery_pct=None if battery is None else float(battery),
    )


def parse_status(topic: str, payload: bytes, catalogue: Catalogue, prefix: str) -> GateStatus:
    site_id, gate_id, kind = split_topic(prefix, topic)
    if kind != "status":
        raise PayloadError(f"topic {topic!r} is not a status topic")
    _known_gate(catalogue, site_id, gate_id)
    text = payload.decode("utf-8", errors="replace").strip().lower()
    if text not in ("online", "offline"):
        raise PayloadError(f"status must be 'online' or 'offline', got {text[:40]!r}")
    return GateStatus(site_id, gate_id, text)  # type: ignore[arg-type]


def format_counts(reading: Reading, tz_offset_ts: datetime | None = None) -> bytes:
    """The contract's JSON payload for a reading (`ts` in UTC unless an aware time is given)."""
    ts = tz_offset_ts or reading.ts_utc.replace(tzinfo=UTC)
    body: dict[str, object] = {
        "device_id": reading.device_id,
        "seq": reading.seq,
        "ts": ts.isoformat(timespec="seconds"),
        "interval_s": reading.interval_s,
        "in": reading.count_in,
        "out": reading.count_out,
    }
    for key, value in (
        ("in_total", reading.in_total),
        ("out_total", reading.out_total),
        ("battery_pct", reading.battery_pct),
    ):
        if value is not None:
            body[key] = value
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


# A counter's clock may run a little fast; beyond this its timestamps cannot be trusted and
# would count people in minutes that have not happened yet.
MAX_FUTURE_S = 300


def check_not_future(reading: Reading, received_utc: datetime, max_future_s: int = MAX_FUTURE_S
                     ) -> Reading:
    """The reading unchanged, or PayloadError if it ends too far after it was received."""
    ahead = (reading.ts_utc - received_utc).total_seconds()
    if ahead > max_future_s:
        raise PayloadError(
            f"field 'ts' is {ahead:.0f} s in the future (more than {max_future_s} s): "
            "the counter's clock is wrong"
        )
    return reading

"""LoRaWAN people counters through The Things Stack v3 MQTT integration.

Topic `v3/{application_id}@{tenant_id}/devices/{device_id}/up` (no `@tenant` on the
open-source build). The Things Stack's MQTT server is its own broker: a Mosquitto bridge
(`topic v3/+/devices/+/up in 1`) or a second collector connection brings the uplinks here.

The JSON carries `end_device_ids{device_id, dev_eui, application_ids}`, `received_at` and
`uplink_message{f_cnt, f_port, decoded_payload, rx_metadata, received_at}`. The server omits
empty fields, so the first frame of a session (`f_cnt` 0) has no `f_cnt`. The decoded
payload of a Milesight VS133-type counter carries `line_1_period_in/out` (people in the
report period) and `line_1_total_in/out` (cumulative, can reset); a VS350-type counter
carries `period_in/out` and 2-byte `total_in/out` that wrap at 65,536 (handled where totals
are compared: visitorflow/ingest_quality.py).

Each uplink becomes the same `Reading` as a native message: `device_id` is the DevEUI,
`seq` the frame counter, `ts_utc` the Network Server's receive time (the end of the report
period). The gate is found through the catalogue's `dev_eui`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from visitorflow.catalogue import Catalogue
from visitorflow.clock import utc_naive
from visitorflow.contract import (
    MAX_COUNT_PER_INTERVAL,
    MAX_TOTAL,
    PayloadError,
    Reading,
    load_json,
)

TOPIC_FILTER = "v3/+/devices/+/up"
# LoRaWAN uplinks carry up to ~240 bytes of application payload, but the integration's JSON
# adds metadata per receiving gateway: allow more than the native 4 KiB.
MAX_TTN_PAYLOAD_BYTES = 64 * 1024
# The counters' report period is configured on the device, not sent in each uplink.
# Milesight's people counters are usually set to report every 10 minutes.
DEFAULT_INTERVAL_S = 600

# (period in, period out, total in, total out) field names per counter family.
_LAYOUTS = (
    ("line_1_period_in", "line_1_period_out", "line_1_total_in", "line_1_total_out"),  # VS133
    ("period_in", "period_out", "total_in", "total_out"),  # VS350
)


def is_uplink_topic(topic: str) -> bool:
    return topic.startswith("v3/") and topic.endswith("/up")


def split_uplink_topic(topic: str) -> tuple[str, str | None, str]:
    """`v3/{app}[@{tenant}]/devices/{device}/up` → (application_id, tenant_id, device_id)."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "v3" or parts[2] != "devices" or parts[4] != "up":
        raise PayloadError(f"topic {topic!r} is not v3/<app>[@<tenant>]/devices/<device>/up")
    app, _, tenant = parts[1].partition("@")
    if not app or not parts[3]:
        raise PayloadError(f"topic {topic!r} has an empty application or device id")
    return app, tenant or None, parts[3]


def _count(decoded: dict, key: str, high: int) -> int | None:
    if key not in decoded:
        return None
    value = decoded[key]
    # Payload formatters run in JavaScript, where every number is a double: 12.0 is 12.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"decoded_payload.{key} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= high:
        raise PayloadError(f"decoded_payload.{key} = {value} is outside 0..{high}")
    return value


_RFC3339 = re.compile(r"^(.+?)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _time(value: object, where: str) -> datetime:
    if not isinstance(value, str) or (match := _RFC3339.match(value)) is None:
        raise PayloadError(f"{where} must be an RFC 3339 string with a UTC offset")
    # The server writes nanoseconds (…:00.123456789Z); Python keeps microseconds.
    head, fraction, zone = match.groups()
    text = head + (fraction or "")[:7] + ("+00:00" if zone == "Z" else zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"{where} = {value[:40]!r} is not RFC 3339") from None
    return utc_naive(parsed)


def dev_eui_index(catalogue: Catalogue) -> dict[str, tuple[str, str]]:
    """DevEUI (upper case) → (site_id, gate_id) for every gate with a LoRaWAN counter."""
    return {g.dev_eui.upper(): (s.id, g.id) for s, g in catalogue.gates() if g.dev_eui}


def parse_uplink(
    topic: str,
    payload: bytes,
    gates: dict[str, tuple[str, str]],
    interval_s: int = DEFAULT_INTERVAL_S,
) -> Reading:
    """A The Things Stack uplink to a Reading, or PayloadError saying what is wrong.
    `gates` is `dev_eui_index(catalogue)`."""
    _, _, topic_device = split_uplink_topic(topic)
    obj = load_json(payload, MAX_TTN_PAYLOAD_BYTES)
    if not isinstance(obj, dict):
        raise PayloadError("payload must be a JSON object")
    ids = obj.get("end_device_ids")
    uplink = obj.get("uplink_message")
    if not isinstance(ids, dict) or not isinstance(uplink, dict):
        raise PayloadError("missing end_device_ids or uplink_message")
    dev_eui = ids.get("dev_eui")
    if not isinstance(dev_eui, str) or len(dev_eui) != 16:
        raise PayloadError("end_device_ids.dev_eui must be 16 hex digits")
    if ids.get("device_id") not in (None, topic_device):
        raise PayloadError(f"end_device_ids.device_id differs from the topic's {topic_device!r}")
    place = gates.get(dev_eui.upper())
    if place is None:
        raise PayloadError(f"unknown dev_eui {dev_eui!r}: no gate in the catalogue has it")
    f_cnt = uplink.get("f_cnt", 0)  # omitted when 0
    if isinstance(f_cnt, bool) or not isinstance(f_cnt, int) or not 0 <= f_cnt < 2**32:
        raise PayloadError("uplink_message.f_cnt must be an integer 0..2^32-1")
    decoded = uplink.get("decoded_payload")
    if not isinstance(decoded, dict):
        raise PayloadError("uplink_message.decoded_payload is missing: set a payload formatter")
    for period_in, period_out, total_in, total_out in _LAYOUTS:
        count_in = _count(decoded, period_in, MAX_COUNT_PER_INTERVAL)
        count_out = _count(decoded, period_out, MAX_COUNT_PER_INTERVAL)
        if count_in is None and count_out is None:
            continue
        # An omitted period count is a zero the server left out, when its partner is there.
        return Reading(
            site_id=place[0],
            gate_id=place[1],
            device_id=dev_eui.upper(),
            seq=f_cnt,
            ts_utc=_time(uplink.get("received_at", obj.get("received_at")),
                         "uplink_message.received_at"),
            interval_s=interval_s,
            count_in=count_in or 0,
            count_out=count_out or 0,
            in_total=_count(decoded, total_in, MAX_TOTAL),
            out_total=_count(decoded, total_out, MAX_TOTAL),
            battery_pct=_battery(decoded),
        )
    raise PayloadError("decoded_payload has no people counts (line_1_period_in/out or "
                       "period_in/out)")


def _battery(decoded: dict) -> float | None:
    value = decoded.get("battery")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    return None


@dataclass
class _Session:
    last_f_cnt: int
    last_ts: datetime
    seen: set[int] = field(default_factory=set)


class FrameDedup:
    """Drops LoRaWAN frames already stored: the same (dev_eui, f_cnt) within a session.

    A frame repeated with a later receive time (a confirmed-uplink retry, a second
    integration) has the same f_cnt but not the same time, so the store's key alone would
    count it twice. A session ends when the device rejoins: its f_cnt goes back down while
    time moves on. Out-of-order frames of the current session (lower f_cnt, earlier time)
    are kept.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}

    def known(self, device_id: str) -> bool:
        return device_id in self._sessions

    def _classify(self, sessions: dict[str, _Session], r: Reading) -> bool:
        """Whether `r` is new; updates `sessions` as if it were stored."""
        s = sessions.get(r.device_id)
        if s is None:
            sessions[r.device_id] = _Session(r.seq, r.ts_utc, {r.seq})
            return True
        if r.seq > s.last_f_cnt:
            s.last_f_cnt, s.last_ts = r.seq, max(s.last_ts, r.ts_utc)
            s.seen.add(r.seq)
            return True
        if r.seq == s.last_f_cnt or (r.seq in s.seen and r.ts_utc <= s.last_ts):
            return False
        if r.ts_utc > s.last_ts:  # f_cnt went down as time moved on: a new session
            sessions[r.device_id] = _Session(r.seq, r.ts_utc, {r.seq})
            return True
        s.seen.add(r.seq)  # a late frame of this session
        return True

    def split(self, readings: Sequence[Reading]) -> tuple[list[Reading], list[Reading]]:
        """(new, duplicates), without remembering anything: call `remember` after the commit."""
        scratch = {
            r.device_id: _Session(s.last_f_cnt, s.last_ts, set(s.seen))
            for r in readings if (s := self._sessions.get(r.device_id)) is not None
        }
        new, dup = [], []
        for r in readings:
            (new if self._classify(scratch, r) else dup).append(r)
        return new, dup

    def remember(self, readings: Sequence[Reading]) -> None:
        for r in sorted(readings, key=lambda r: r.ts_utc):
            self._classify(self._sessions, r)

    @classmethod
    def from_stored(cls, frames: Iterable[tuple[str, int, datetime]]) -> FrameDedup:
        """The sessions that stored (device_id, seq, ts_utc) frames, oldest first, imply."""
        dedup = cls()
        for device_id, seq, ts_utc in frames:
            dedup._classify(dedup._sessions, _Frame(device_id, seq, ts_utc))
        return dedup


@dataclass(frozen=True, slots=True)
class _Frame:
    device_id: str
    seq: int
    ts_utc: datetime

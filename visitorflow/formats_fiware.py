"""FIWARE `CrowdFlowObserved` entities (Smart Data Models, Transportation).

Why this third format: Vietnamese smart-city platforms built on FIWARE publish people flows
as this model, and a Context Broker can push them to MQTT itself (Orion's subscriptions
with an `mqtt` notification, or an NGSI-LD broker's MQTT notifications), so the collector
needs no HTTP endpoint. Topic `{prefix}/fiware/CrowdFlowObserved`.

Accepted: an NGSIv2 notification (`{"subscriptionId", "data": [...]}`), an NGSI-LD
notification (`{"type": "Notification", "data": [...]}`) or a bare entity; attributes
normalized (`{"type": ..., "value": ...}`) or keyValues. Per entity: `peopleCount`,
`direction` (`inbound` / `outbound`), `dateObservedFrom`, `dateObservedTo`. The gate is the
catalogue gate whose `counter_id` is the entity's `refDevice` or one `:`-segment of its id
(e.g. `urn:ngsi-ld:CrowdFlowObserved:lsn-tam_thanh-main:inbound`).

Each entity becomes a Reading with only `in` (inbound) or only `out` (outbound); its
`device_id` is the entity id and its `seq` the number of the observation period since the
epoch, so consecutive periods have consecutive seqs and a missing period is a gap.
"""

from __future__ import annotations

from datetime import UTC, datetime

from visitorflow.catalogue import Catalogue
from visitorflow.clock import utc_naive
from visitorflow.contract import (
    MAX_COUNT_PER_INTERVAL,
    MAX_INTERVAL_S,
    PayloadError,
    Reading,
    load_json,
)

MAX_FIWARE_PAYLOAD_BYTES = 256 * 1024  # a notification may batch many entities
MAX_ENTITY_ID = 256  # NGSI's limit on entity ids


def topic(prefix: str) -> str:
    return f"{prefix}/fiware/CrowdFlowObserved"


def _value(entity: dict, key: str) -> object:
    """An attribute's value, normalized (`{"value": …}`, NGSI-LD `{"object": …}`) or not."""
    value = entity.get(key)
    if isinstance(value, dict):
        return value.get("value", value.get("object"))
    return value


def _time(entity: dict, key: str) -> datetime:
    value = _value(entity, key)
    if isinstance(value, dict):  # NGSI-LD DateTime: {"@type": "DateTime", "@value": "…"}
        value = value.get("@value")
    if not isinstance(value, str):
        raise PayloadError(f"{key} must be an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{key} = {value[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise PayloadError(f"{key} must carry a UTC offset")
    return utc_naive(parsed)


def _entities(obj: object) -> list[dict]:
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        entities = obj["data"]
    elif isinstance(obj, dict) and "id" in obj:
        entities = [obj]
    elif isinstance(obj, list):
        entities = obj
    else:
        raise PayloadError("expected a notification with `data`, an entity or a list of them")
    if not entities or not all(isinstance(e, dict) for e in entities):
        raise PayloadError("`data` must be a non-empty list of entities")
    return entities


def counter_index(catalogue: Catalogue) -> dict[str, tuple[str, str]]:
    """counter_id → (site_id, gate_id)."""
    return {g.counter_id: (s.id, g.id) for s, g in catalogue.gates()}


def parse_crowd_flow(payload: bytes, counters: dict[str, tuple[str, str]]) -> list[Reading]:
    """Every CrowdFlowObserved entity of a message as a Reading, or PayloadError for the
    first entity that breaks a rule (the message is then quarantined whole, raw bytes
    kept). `counters` is `counter_index(catalogue)`."""
    obj = load_json(payload, MAX_FIWARE_PAYLOAD_BYTES)
    readings = []
    for n, entity in enumerate(_entities(obj)):
        try:
            readings.append(_reading(entity, counters))
        except PayloadError as exc:
            raise PayloadError(f"entity {n}: {exc}") from None
    return readings


def _reading(entity: dict, counters: dict[str, tuple[str, str]]) -> Reading:
    entity_id = entity.get("id")
    if not isinstance(entity_id, str) or not entity_id or len(entity_id) > MAX_ENTITY_ID:
        raise PayloadError("id must be a non-empty string")
    if entity.get("type") not in ("CrowdFlowObserved", None):
        raise PayloadError(f"type {str(entity.get('type'))[:40]!r} is not CrowdFlowObserved")
    ref = _value(entity, "refDevice")
    candidates = ([ref] if isinstance(ref, str) else []) + entity_id.split(":")
    place = next((counters[c] for c in candidates if c in counters), None)
    if place is None:
        raise PayloadError(f"no catalogue gate for {entity_id[:80]!r} (refDevice or id)")
    count = _value(entity, "peopleCount")
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int):
        raise PayloadError("peopleCount must be an integer")
    if not 0 <= count <= MAX_COUNT_PER_INTERVAL:
        raise PayloadError(f"peopleCount = {count} is outside 0..{MAX_COUNT_PER_INTERVAL}")
    direction = _value(entity, "direction")
    if direction not in ("inbound", "outbound"):
        raise PayloadError("direction must be 'inbound' or 'outbound'")
    start, end = _time(entity, "dateObservedFrom"), _time(entity, "dateObservedTo")
    interval_s = int((end - start).total_seconds())
    if not 1 <= interval_s <= MAX_INTERVAL_S:
        raise PayloadError(f"dateObservedTo − dateObservedFrom = {interval_s} s is outside "
                           f"1..{MAX_INTERVAL_S}")
    epoch = end.replace(tzinfo=UTC).timestamp()
    return Reading(
        site_id=place[0],
        gate_id=place[1],
        device_id=entity_id,
        seq=int(epoch // interval_s),
        ts_utc=end,
        interval_s=interval_s,
        count_in=count if direction == "inbound" else 0,
        count_out=count if direction == "outbound" else 0,
    )

"""The published field definitions of the two FIWARE Smart Data Models the export writes,
transcribed as JSON Schema for the tests (the machine running them is offline).

Sources (read 2026-11-21):
- CrowdFlowObserved: github.com/smart-data-models/dataModel.Transportation,
  CrowdFlowObserved/schema.json (commit 0b16e49c), which pulls in GSMA-Commons and
  Location-Commons of data-models/common-schema.json.
- TourismPresenceObserved: github.com/smart-data-models/dataModel.TourismDestinations,
  TourismPresenceObserved/model.yaml (commit 1cb0468e, version 0.0.1).

Transcribed as published (types, enums, bounds, required), with one deliberate
tightening: `additionalProperties: false`, so the export cannot invent an attribute the
model does not define.
"""

from __future__ import annotations

from datetime import datetime

from jsonschema import Draft7Validator, FormatChecker

_ENTITY_ID = {"type": "string", "minLength": 1, "maxLength": 256}
_DATE_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}
_POINT = {
    "type": "object",
    "required": ["type", "coordinates"],
    "properties": {"type": {"enum": ["Point"]},
                   "coordinates": {"type": "array", "items": {"type": "number"},
                                   "minItems": 2}},
}
_ADDRESS = {
    "type": "object",
    "properties": {key: _TEXT for key in (
        "addressCountry", "addressLocality", "addressRegion", "district",
        "postOfficeBoxNumber", "postalCode", "streetAddress", "streetNr")},
    "additionalProperties": False,
}
# GSMA-Commons and Location-Commons (common-schema.json), shared by both models.
_COMMONS = {
    "id": _ENTITY_ID,
    "dateCreated": _DATE_TIME,
    "dateModified": _DATE_TIME,
    "source": _TEXT,
    "name": _TEXT,
    "alternateName": _TEXT,
    "description": _TEXT,
    "dataProvider": _TEXT,
    "owner": {"type": "array", "items": _ENTITY_ID},
    "seeAlso": {"oneOf": [{"type": "array", "items": _TEXT, "minItems": 1}, _TEXT]},
    "location": _POINT,
    "address": _ADDRESS,
    "areaServed": _TEXT,
    # Not a model attribute: the JSON-LD envelope every NGSI-LD payload carries.
    "@context": {"type": ["array", "string"]},
}

CROWD_FLOW_OBSERVED = {
    "type": "object",
    "required": ["id", "type", "dateObserved"],
    "additionalProperties": False,
    "properties": {
        **_COMMONS,
        "type": {"enum": ["CrowdFlowObserved"]},
        "refRoadSegment": _ENTITY_ID,
        "dateObserved": {"type": "string"},  # an instant or an ISO 8601 interval
        "dateObservedFrom": _DATE_TIME,
        "dateObservedTo": _DATE_TIME,
        "peopleCount": {"type": "integer", "minimum": 0},
        "occupancy": {"type": "number", "minimum": 0, "maximum": 1},
        "averageCrowdSpeed": {"type": "number", "minimum": 0},
        "congested": {"type": "boolean"},
        "averageHeadwayTime": {"type": "number", "minimum": 0},
        "direction": {"enum": ["inbound", "outbound"]},
    },
}

TOURISM_PRESENCE_OBSERVED = {
    "type": "object",
    "required": ["id", "type", "dateObserved", "location", "locationCode", "nationality",
                 "visitorCount", "hour"],
    "additionalProperties": False,
    "properties": {
        **_COMMONS,
        "type": {"enum": ["TourismPresenceObserved"]},
        "aggregationType": {"enum": ["hourly_sum", "hourly_average", "hourly_snapshot",
                                     "hourly_estimate"]},
        "dateObserved": _DATE_TIME,
        "district": _TEXT,
        "hour": {"type": "number", "minimum": 0, "maximum": 23},
        "locationCode": _TEXT,
        "locationName": _TEXT,
        "nationality": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "nationalityName": _TEXT,
        "visitorCount": {"type": "number", "minimum": 0},
    },
}

MODELS = {"CrowdFlowObserved": CROWD_FLOW_OBSERVED,
          "TourismPresenceObserved": TOURISM_PRESENCE_OBSERVED}

# jsonschema checks "date-time" only with an optional package installed; check it here.
_formats = FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.tzinfo is not None


def validator(entity_type: str) -> Draft7Validator:
    return Draft7Validator(MODELS[entity_type], format_checker=_formats)


NGSI_LD_ATTRIBUTE_TYPES = {"Property", "GeoProperty", "Relationship"}


def ngsi_ld_problems(entity: dict) -> list[str]:
    """What breaks the NGSI-LD normalized form: a URN id naming the type, attributes as
    typed objects with a value (or object), DateTime values as {"@type", "@value"}, and an
    @context."""
    problems = []
    prefix = f"urn:ngsi-ld:{entity.get('type')}:"
    if not str(entity.get("id", "")).startswith(prefix):
        problems.append(f"id {entity.get('id')!r} does not start with {prefix}")
    if not entity.get("@context"):
        problems.append("no @context")
    for key, attr in entity.items():
        if key in ("id", "type", "@context"):
            continue
        if not isinstance(attr, dict) or attr.get("type") not in NGSI_LD_ATTRIBUTE_TYPES:
            problems.append(f"{key}: not a Property, GeoProperty or Relationship")
            continue
        if attr["type"] == "Relationship" and "object" not in attr:
            problems.append(f"{key}: Relationship without object")
        if attr["type"] != "Relationship" and "value" not in attr:
            problems.append(f"{key}: no value")
        value = attr.get("value")
        typed = isinstance(value, dict) and "@type" in value
        if typed and (value["@type"] != "DateTime" or not _is_datetime(value.get("@value"))):
            problems.append(f"{key}: bad typed value {value}")
    return problems


def _is_datetime(text: object) -> bool:
    try:
        return _rfc3339(text)
    except ValueError:
        return False

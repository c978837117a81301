"""The site catalogue (`data/sites.yaml`): sites, their gates and counters, capacities, hours.

Loaded once per process and validated; a bad file raises CatalogueError naming the site,
the field and what is wrong.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Language = Literal["vi", "en", "zh"]
LANGUAGES: tuple[Language, ...] = ("vi", "en", "zh")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SiteKind = Literal[
    "cave", "temple", "pagoda", "heritage", "street_market", "mountain", "border_gate",
    "town", "village", "nature_reserve",
]
CapacityBasis = Literal["area", "parking", "lodging", "road", "estimate", "placeholder"]
_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class CatalogueError(ValueError):
    """The catalogue file cannot be used as it is."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalizedName(_Strict):
    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)

    def get(self, language: str) -> str:
        return getattr(self, language) if language in LANGUAGES else self.en


def _parse_clock(value: str) -> time | None:
    """'HH:MM' to a time; '24:00' (end of day) to None."""
    if value == "24:00":
        return None
    return datetime.strptime(value, "%H:%M").time()


class OpeningRule(_Strict):
    days: tuple[Weekday, ...] = Field(min_length=1)
    open: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    close: str = Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")

    @model_validator(mode="after")
    def _open_before_close(self) -> OpeningRule:
        if self.close != "24:00" and self.open >= self.close:
            raise ValueError(f"open {self.open} must be before close {self.close}")
        return self

    def interval_on(self, day: date) -> tuple[datetime, datetime] | None:
        """Naive local start and end of this rule on `day`, or None if it does not apply."""
        if WEEKDAYS[day.weekday()] not in self.days:
            return None
        start = datetime.combine(day, _parse_clock(self.open) or time())
        close = _parse_clock(self.close)
        end = datetime.combine(day, close) if close else datetime.combine(day, time()) + timedelta(
            days=1
        )
        return start, end


class Gate(_Strict):
    id: str
    name: LocalizedName
    counter_id: str = Field(min_length=1)
    # LoRaWAN counters (The Things Stack) are named by their DevEUI: 16 hex digits.
    dev_eui: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{16}$")

    @field_validator("id")
    @classmethod
    def _snake(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("gate id must be snake_case (a-z, 0-9, _)")
        return v


class Site(_Strict):
    id: str
    name: LocalizedName
    kind: SiteKind
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    coord_confidence: str
    capacity: int = Field(gt=0, description="people on site at once")
    capacity_basis: CapacityBasis
    capacity_note: str
    dwell_min: int = Field(gt=0, description="typical minutes a visitor stays")
    opening_hours: tuple[OpeningRule, ...] = Field(min_length=1)
    gates: tuple[Gate, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _snake(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("site id must be snake_case (a-z, 0-9, _)")
        return v

    @model_validator(mode="after")
    def _unique_gates(self) -> Site:
        ids = [g.id for g in self.gates]
        if len(ids) != len(set(ids)):
            raise ValueError(f"gate ids repeat within the site: {ids}")
        return self

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """Naive local (start, end) opening intervals on a calendar day, sorted."""
        spans = (rule.interval_on(day) for rule in self.opening_hours)
        return sorted(span for span in spans if span)

    def is_open(self, local: datetime) -> bool:
        """Whether the site is open at a naive or aware local time."""
        naive = local.replace(tzinfo=None)
        return any(start <= naive < end for start, end in self.open_intervals(naive.date()))


class Catalogue(_Strict):
    sites: tuple[Site, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalogue:
        site_ids = [s.id for s in self.sites]
        dup_sites = {i for i in site_ids if site_ids.count(i) > 1}
        if dup_sites:
            raise ValueError(f"site ids repeat: {sorted(dup_sites)}")
        counters = [g.counter_id for s in self.sites for g in s.gates]
        dup_counters = {c for c in counters if counters.count(c) > 1}
        if dup_counters:
            raise ValueError(f"counter ids repeat across gates: {sorted(dup_counters)}")
        return self

    @cached_property
    def by_id(self) -> dict[str, Site]:
        return {s.id: s for s in self.sites}

    def site(self, site_id: str) -> Site:
        try:
            return self.by_id[site_id]
        except KeyError:
            raise KeyError(f"unknown site {site_id!r}") from None

    def gate(self, site_id: str, gate_id: str) -> Gate | None:
        site = self.by_id.get(site_id)
        if site is None:
            return None
        return next((g for g in site.gates if g.id == gate_id), None)

    def gates(self) -> list[tuple[Site, Gate]]:
        return [(s, g) for s in self.sites for g in s.gates]


def load_catalogue(path: Path) -> Catalogue:
    """Read and validate the catalogue; errors name the site, the field and the problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(
            f"site catalogue not found at {path}; set catalogue_path in the settings"
        ) from None
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise CatalogueError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise CatalogueError(f"{path} is invalid: " + "; ".join(
            _describe(raw, err) for err in exc.errors()
        ) + f". Fix these fields in {path} (data/README.md describes each one).") from None


def _describe(raw: object, err: dict) -> str:
    """Name a validation error by site id instead of list index where possible."""
    loc = list(err["loc"])
    parts: list[str] = []
    node = raw
    for key in loc:
        if isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
            label = node.get("id") if isinstance(node, dict) else None
            parts.append(f"[{label}]" if label else f"[{key}]")
        else:
            node = node.get(key) if isinstance(node, dict) else None
            parts.append(f".{key}")
    return f"{''.join(parts).lstrip('.')}: {err['msg']}"

"""The thin simulator's visitor model (its MQTT side is tested end to end)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ingest.simulator import VisitorModel, parse_start
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import Settings


def run_day(settings: Settings, day_start_utc: datetime, seed: int = 1) -> list:
    model = VisitorModel(load_catalogue(settings.catalogue_path), settings, seed)
    out = []
    for minute in range(1, 24 * 60 + 1):
        out += [r for _, r in model.step(day_start_utc + timedelta(minutes=minute), 60)]
    return out


def test_a_day_is_plausible_and_reproducible(settings: Settings) -> None:
    day = datetime(2026, 11, 20, 17, 0)  # Saturday 21 Nov 2026, local midnight
    readings = run_day(settings, day)
    catalogue = load_catalogue(settings.catalogue_path)
    assert len(readings) == 24 * 60 * len(catalogue.gates())
    assert readings == run_day(settings, day)  # same seed, same day
    by_site: dict[str, list] = {}
    for r in readings:
        by_site.setdefault(r.site_id, []).append(r)
    tam_thanh = catalogue.site("tam_thanh")
    for r in by_site["tam_thanh"]:
        local = r.ts_utc.replace(tzinfo=UTC).astimezone(settings.tz) - timedelta(seconds=30)
        if r.count_in:
            assert tam_thanh.is_open(local), f"arrival while closed at {local}"
    # Everyone who came into a site that closes by evening had left by midnight.
    for site_id in ("tam_thanh", "nhi_thanh", "den_ky_cung", "chua_tien"):
        site_readings = by_site[site_id]
        assert sum(r.count_in for r in site_readings) == sum(r.count_out for r in site_readings)
    last = {r.device_id: r for r in readings}
    for device, r in last.items():
        assert r.in_total == sum(x.count_in for x in readings if x.device_id == device)
    assert sum(r.count_in for r in by_site["tam_thanh"]) > 100


def test_walking_street_only_on_friday_and_saturday_nights(settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    model = VisitorModel(catalogue, settings, seed=3)
    site = catalogue.site("ky_lua")
    evening = slice(19 * 60, 24 * 60)  # local minutes, after the market has closed
    friday = model.engine.site_day(site, date(2026, 11, 20)).site_arrivals[evening].sum()
    wednesday = model.engine.site_day(site, date(2026, 11, 18)).site_arrivals[evening].sum()
    assert friday > 2000
    assert wednesday == 0


def test_interval_must_be_whole_minutes(settings: Settings) -> None:
    model = VisitorModel(load_catalogue(settings.catalogue_path), settings, seed=1)
    with pytest.raises(ValueError, match="whole number of minutes"):
        list(model.step(datetime(2026, 11, 20, 3, 0), 90))


def test_parse_start(settings: Settings) -> None:
    assert parse_start("2026-02-17T08:00+07:00", settings) == datetime(2026, 2, 17, 1, 0)
    assert parse_start("2026-02-17T08:00", settings) == datetime(2026, 2, 17, 1, 0)

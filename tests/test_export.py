"""The open-data export, run as its command on a small store written through the
collector's own write path: Parquet partitioned by local date, CSV, and NGSI-LD entities
checked against the published FIWARE model definitions (tests/fiware_models.py) and read
back by the collector's own FIWARE reader."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.fiware_models import ngsi_ld_problems, validator
from visitorflow.catalogue import load_catalogue
from visitorflow.contract import Reading
from visitorflow.export import UNKNOWN_NATIONALITY, key_values
from visitorflow.formats_fiware import counter_index, parse_crowd_flow
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

# Local days 10 and 11 March 2026 = UTC [9 Mar 17:00, 11 Mar 17:00).
FIRST, LAST = date(2026, 3, 10), date(2026, 3, 11)
RANGE_START, RANGE_END = datetime(2026, 3, 9, 17), datetime(2026, 3, 11, 17)
EXPORTED = {"den_ky_cung": ["main"], "ky_lua": ["north", "south", "market"]}
NOT_EXPORTED = {"tam_thanh": ["main"]}
INTERVAL_S = 300
# Readings from an hour before the range to an hour after it: the bounds must cut them.
READ_FROM, READ_TO = RANGE_START - timedelta(hours=1), RANGE_END + timedelta(hours=1)


def _readings() -> list[Reading]:
    out = []
    for site, gates in {**EXPORTED, **NOT_EXPORTED}.items():
        for g, gate in enumerate(gates):
            ts, seq = READ_FROM + timedelta(seconds=INTERVAL_S), 0
            while ts <= READ_TO:
                out.append(Reading(site, gate, f"lsn-{site}-{gate}", seq, ts, INTERVAL_S,
                                   (seq + g) % 7, (seq + 2 * g) % 5))
                ts += timedelta(seconds=INTERVAL_S)
                seq += 1
    return out


def _in_range(reading: Reading) -> bool:
    began = reading.ts_utc - timedelta(seconds=reading.interval_s)
    return RANGE_START <= began < RANGE_END and reading.site_id in EXPORTED


@pytest.fixture
def export_store(settings: Settings) -> Settings:
    store = Store.from_settings(settings)
    store.initialise()
    readings = _readings()
    store.write_batch(readings, [r.ts_utc + timedelta(seconds=2) for r in readings])
    hours = pd.date_range(RANGE_START, periods=48, freq="h")
    store.write_forecast_run(
        {"run_id": "run-1", "created_at_utc": datetime(2026, 3, 9, 12),
         "history_end_utc": datetime(2026, 3, 9, 12), "settings_json": "{}", "sites_ok": 1,
         "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame({"site_id": ["den_ky_cung"], "status": ["ok"], "message": [None],
                      "fit_s": [1.0], "regressors": [None], "backtest_mae_ratio": [None]}),
        pd.DataFrame({"site_id": "den_ky_cung", "ts_utc": hours.astype("datetime64[us]"),
                      "is_open": True, "arrivals": 5.0, "arrivals_lower": 1.0,
                      "arrivals_upper": 9.0, "occupancy": 3.0, "occupancy_upper": 6.0,
                      "capacity": 300, "p_overload": 0.0}),
        pd.DataFrame({"site_id": "den_ky_cung", "day_local": [FIRST, LAST, LAST + timedelta(1)],
                      "arrivals": 100.0, "arrivals_lower": 50.0, "arrivals_upper": 150.0,
                      "festival": "ky_cung_ta_phu"}),
    )
    return settings


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The export as a user runs it (the environment carries the test's store)."""
    return subprocess.run([sys.executable, "-m", "visitorflow.export", *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def _export(out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli("--start", FIRST.isoformat(), "--end", LAST.isoformat(),
                     "--sites", ",".join(EXPORTED), "--out", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return result


def _entities(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_help_explains_the_export() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for needle in ("Parquet", "CSV", "NGSI-LD", "CrowdFlowObserved", "TourismPresenceObserved",
                   "--start", "--end", "--sites", "--out", "Asia/Ho_Chi_Minh"):
        assert needle in text


def test_tables_as_parquet_partitioned_by_local_date_and_csv(
    export_store: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    _export(out)
    expected = [r for r in _readings() if _in_range(r)]
    readings = pq.read_table(out / "parquet" / "readings").to_pandas()
    # Hive partitions by local day: exactly the two days asked for.
    assert sorted(p.name for p in (out / "parquet" / "readings").iterdir()) == [
        "date=2026-03-10", "date=2026-03-11"]
    assert len(readings) == len(expected)
    assert set(readings["site_id"]) == set(EXPORTED)
    assert readings["count_in"].sum() == sum(r.count_in for r in expected)
    assert str(readings["ts_utc"].dtype).endswith("UTC]")
    # The interval that began at local midnight (17:00 UTC) opens 10 March ...
    first = readings.sort_values("ts_utc").iloc[0]
    assert first["ts_utc"] == pd.Timestamp("2026-03-09T17:05", tz="UTC")
    assert str(first["date"]) == "2026-03-10"
    minutes = pq.read_table(out / "parquet" / "minute_counts").to_pandas()
    assert minutes["count_in"].sum() == readings["count_in"].sum()
    assert minutes["count_out"].sum() == sum(r.count_out for r in expected)
    csv = pd.read_csv(out / "csv" / "readings.csv")
    assert len(csv) == len(readings)
    assert csv["ts_utc"].str.endswith("Z").all()
    hourly = pd.read_csv(out / "csv" / "forecast_hourly.csv")
    assert len(hourly) == 48 and set(hourly["run_id"]) == {"run-1"}
    daily = pq.read_table(out / "parquet" / "forecast_daily").to_pandas()
    assert len(daily) == 2  # the day after the range is left out
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"]["parquet/readings"] == len(expected)
    assert manifest["sites"] == list(EXPORTED)


def test_exporting_again_replaces_the_days(export_store: Settings, tmp_path: Path) -> None:
    out = tmp_path / "export"
    _export(out, "--what", "readings", "--formats", "parquet")
    _export(out, "--what", "readings", "--formats", "parquet")
    readings = pq.read_table(out / "parquet" / "readings").to_pandas()
    assert len(readings) == sum(_in_range(r) for r in _readings())


def test_ngsi_ld_entities_follow_the_published_models(
    export_store: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    _export(out, "--what", "ngsi-ld")
    flows = _entities(out / "ngsi-ld" / "CrowdFlowObserved.jsonld")
    presence = _entities(out / "ngsi-ld" / "TourismPresenceObserved.jsonld")
    gates = sum(len(g) for g in EXPORTED.values())
    assert len(flows) == gates * 2 * 4 * 48  # gates × directions × quarter hours × hours
    assert len(presence) == len(EXPORTED) * 48
    for entity in flows + presence:
        assert ngsi_ld_problems(entity) == [], entity["id"]
        errors = [e.message for e in validator(entity["type"]).iter_errors(key_values(entity))]
        assert errors == [], (entity["id"], errors)
    assert len({e["id"] for e in flows + presence}) == len(flows) + len(presence)
    expected = [r for r in _readings() if _in_range(r)]
    inbound = sum(e["peopleCount"]["value"] for e in flows
                  if e["direction"]["value"] == "inbound")
    outbound = sum(e["peopleCount"]["value"] for e in flows
                   if e["direction"]["value"] == "outbound")
    assert inbound == sum(r.count_in for r in expected)
    assert outbound == sum(r.count_out for r in expected)
    assert sum(e["visitorCount"]["value"] for e in presence) == inbound
    first = min(presence, key=lambda e: e["dateObserved"]["value"]["@value"])
    # The model wants the middle of the hour; `hour` is the local hour of day.
    assert first["dateObserved"]["value"]["@value"] == "2026-03-09T17:30:00Z"
    assert first["hour"]["value"] == 0
    assert first["aggregationType"]["value"] == "hourly_sum"
    assert first["nationality"]["value"] == UNKNOWN_NATIONALITY


def test_the_model_checks_can_fail() -> None:
    """The validators reject what the published definitions forbid."""
    flow = {"id": "urn:ngsi-ld:CrowdFlowObserved:x", "type": "CrowdFlowObserved",
            "dateObserved": "2026-03-10T01:00:00Z/2026-03-10T01:15:00Z",
            "dateObservedFrom": "2026-03-10T01:00:00Z", "peopleCount": 3,
            "direction": "inbound"}
    assert not list(validator("CrowdFlowObserved").iter_errors(flow))
    for change in ({"direction": "in"}, {"peopleCount": -1}, {"peopleCount": 2.5},
                   {"dateObservedFrom": "10/03/2026"}, {"visitors": 3}):
        assert list(validator("CrowdFlowObserved").iter_errors({**flow, **change})), change
    presence = {"id": "urn:ngsi-ld:TourismPresenceObserved:x",
                "type": "TourismPresenceObserved", "dateObserved": "2026-03-10T01:30:00Z",
                "location": {"type": "Point", "coordinates": [106.7, 21.8]},
                "locationCode": "tam_thanh", "nationality": "ZZ", "visitorCount": 4, "hour": 8}
    assert not list(validator("TourismPresenceObserved").iter_errors(presence))
    for change in ({"nationality": "zz"}, {"hour": 24}, {"aggregationType": "sum"}):
        assert list(validator("TourismPresenceObserved").iter_errors({**presence, **change}))
    without = {k: v for k, v in presence.items() if k != "nationality"}
    assert list(validator("TourismPresenceObserved").iter_errors(without))
    assert ngsi_ld_problems(flow)  # keyValues is not the normalized form


def test_crowd_flow_entities_read_back_by_the_collector(
    export_store: Settings, tmp_path: Path
) -> None:
    """What we publish, our own FIWARE reader maps back to the same gate and
    people: the ids and attributes mean what they say."""
    out = tmp_path / "export"
    _export(out, "--what", "ngsi-ld", "--interval-min", "60")
    catalogue = load_catalogue(export_store.catalogue_path)
    counters = counter_index(catalogue)
    totals: dict[tuple[str, str], list[int]] = {}
    for entity in _entities(out / "ngsi-ld" / "CrowdFlowObserved.jsonld"):
        (reading,) = parse_crowd_flow(json.dumps(entity).encode(), counters)
        assert reading.interval_s == 3600
        sums = totals.setdefault((reading.site_id, reading.gate_id), [0, 0])
        sums[0] += reading.count_in
        sums[1] += reading.count_out
    expected: dict[tuple[str, str], list[int]] = {}
    for r in _readings():
        if _in_range(r):
            sums = expected.setdefault((r.site_id, r.gate_id), [0, 0])
            sums[0] += r.count_in
            sums[1] += r.count_out
    assert totals == expected


def test_key_values_form(export_store: Settings, tmp_path: Path) -> None:
    out = tmp_path / "export"
    _export(out, "--what", "ngsi-ld", "--key-values")
    for name in ("CrowdFlowObserved", "TourismPresenceObserved"):
        entities = _entities(out / "ngsi-ld" / f"{name}.jsonld")
        assert entities
        for entity in entities[:200]:
            assert not list(validator(name).iter_errors(entity))


@pytest.mark.parametrize(("args", "message"), [
    (["--sites", "nowhere"], "unknown site(s) nowhere"),
    (["--interval-min", "7"], "must divide 60"),
    (["--what", "photos"], "--what photos unknown"),
])
def test_bad_requests_are_refused_with_a_reason(
    export_store: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli("--start", "2026-03-10", "--end", "2026-03-11", "--out",
                     str(tmp_path / "x"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_start_after_end_and_missing_store(settings: Settings, tmp_path: Path) -> None:
    result = run_cli("--start", "2026-03-11", "--end", "2026-03-10", "--out", str(tmp_path))
    assert result.returncode == 2 and "after --end" in result.stderr
    result = run_cli("--start", "2026-03-10", "--end", "2026-03-10", "--out", str(tmp_path))
    assert result.returncode == 2 and "no store" in result.stderr

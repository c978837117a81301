"""Every SQL statement is parameterised: a hostile id such as
`x'; DROP TABLE readings; --` handed to any store entry point that takes a string from a
user, a counter or an operator is just a bad id — nothing is dropped, nothing leaks, the
text is stored verbatim where it is data — and the catalogue and settings files are checked
on load with messages naming the field and the fix."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from visitorflow.alerts import evaluate_alerts
from visitorflow.catalogue import CatalogueError, load_catalogue
from visitorflow.clock import utc_now
from visitorflow.contract import PayloadError, Reading, parse_counts
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, load_settings
from visitorflow.store import Store, StoreError
from visitorflow.store.schema import has_table

HOSTILE = [
    "x'; DROP TABLE readings; --",
    "' OR '1'='1",
    "tam_thanh' OR 1=1 --",
    '"; DELETE FROM minute_counts; --',
    "tam_thanh); DROP TABLE alerts; --",
    "tam_thanh\x00",
    "%",
    "_",
    "*",
    "động_tam_thanh",
    "$1",
    "?",
]
TABLES = ["readings", "quarantine", "minute_counts", "gate_status", "alerts", "alert_acks",
          "alert_thresholds", "capacity_overrides", "change_log", "action_texts"]


@pytest.fixture
def hostile_store(dashboard_store: Settings, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The dashboard store with its alerts evaluated and one admin change of each kind."""
    monkeypatch.setattr(dashboard_store.alerts, "raise_after_min", 1)
    store = Store.from_settings(dashboard_store)
    evaluate_alerts(store, load_catalogue(dashboard_store.catalogue_path), dashboard_store,
                    utc_now())
    store.set_capacity("tam_thanh", 400, "admin.chi", utc_now(), baseline=350)
    store.set_alert_thresholds("den_bac_le", 0.5, 0.7, 0.9, "admin.chi", utc_now())
    store.set_action_text("*", "busy", "en", "Watch the gate.", "operator.binh", utc_now())
    return store


def snapshot(store: Store) -> dict[str, int]:
    # The tables' row counts, read directly; the names come from TABLES, never from input.
    with store._connect(read_only=True) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_hostile_ids_in_every_reader_find_nothing_and_change_nothing(
    hostile_store: Store,
) -> None:
    store = hostile_store
    before = snapshot(store)
    for hostile in HOSTILE:  # one store for all: each id must leave it as it was
        readers_find_nothing(store, hostile)
    assert snapshot(store) == before


def readers_find_nothing(store: Store, hostile: str) -> None:
    now = utc_now()
    start, day = now - timedelta(days=2), date.today()
    frames = [
        store.readings(sites=hostile),
        store.minute_counts(start, now, sites=hostile),
        store.temperature(hostile, start, now, source=hostile),
        store.reading_gaps(status=hostile),
        store.occupancy_corrections(site_id=hostile),
        store.device_frames([hostile], start),
        store.hourly_arrivals(hostile, start, now),
        store.forecast_sites(hostile),
        store.latest_forecast(site_id=hostile, run_id=hostile),
        store.site_hourly_counts(start, now, [hostile]),
        store.minute_counts(start, now, [hostile]),
        store.readings_for_sites(start, now, [hostile]),
        store.gate_interval_counts(start, now, 900, [hostile]),
        store.forecast_hourly_range(start, now, [hostile], [hostile]),
        store.forecast_daily_range(day, day, [hostile]),
        store.gate_coverage(start, now, [hostile]),
    ]
    assert all(isinstance(f, pd.DataFrame) and f.empty for f in frames), hostile
    with store._connect(read_only=True) as con:
        assert has_table(con, hostile) is False
    with pytest.raises(ValueError, match="granularity"):
        store.latest_forecast(granularity=hostile)
    with pytest.raises(StoreError, match="no alert"):
        store.acknowledge_alert(hostile, "operator.binh", "note", now)


def test_hostile_ids_in_admin_writes_are_refused_as_bad_ids(hostile_store: Store) -> None:
    store = hostile_store
    before = snapshot(store)
    for hostile in HOSTILE:
        admin_writes_refuse(store, hostile)
    assert snapshot(store) == before


def admin_writes_refuse(store: Store, hostile: str) -> None:
    now = utc_now()
    with pytest.raises(ValueError, match="not a site id"):
        store.set_capacity(hostile, 500, "admin.chi", now)
    with pytest.raises(ValueError, match="not a site id"):
        store.set_alert_thresholds(hostile, 0.5, 0.7, 0.9, "admin.chi", now)
    if hostile != "*":  # '*' is the province-wide default of an action text
        with pytest.raises(ValueError, match="not a site id"):
            store.set_action_text(hostile, "busy", "en", "text", "operator.binh", now)
    with pytest.raises(ValueError, match="action key"):
        store.set_action_text("tam_thanh", hostile, "en", "text", "operator.binh", now)
    with pytest.raises(ValueError, match="language"):
        store.set_action_text("tam_thanh", "busy", hostile, "text", "operator.binh", now)


def test_hostile_text_where_it_is_data_is_stored_verbatim(hostile_store: Store) -> None:
    store = hostile_store
    before = snapshot(store)
    now = utc_now()
    alert_id = store.open_alerts()["alert_id"].iloc[0]
    for n, hostile in enumerate(HOSTILE):
        store.acknowledge_alert(alert_id, hostile, hostile + " note", now + timedelta(seconds=n))
        store.set_action_text("tam_thanh", "busy", "vi", hostile, hostile, now)
        store.set_capacity("mau_son", 100 + n, hostile, now)
    store.write_batch(
        [Reading(h, h, h, 1, now, 60, 1, 0) for h in HOSTILE], now)
    audit = store.alert_audit()
    assert set(HOSTILE) <= set(audit["acked_by"])
    assert set(h + " note" for h in HOSTILE) <= set(audit["note"])
    assert store.action_texts().set_index(["site_id", "lang"]).loc[
        ("tam_thanh", "vi"), "text"] == HOSTILE[-1]
    assert set(HOSTILE) <= set(store.change_log()["changed_by"])
    # A hostile string where a counter's id goes is stored as that id, nothing else happens.
    stored = store.device_frames(HOSTILE, now - timedelta(minutes=1))
    assert sorted(stored["device_id"]) == sorted(HOSTILE)
    after = snapshot(store)
    assert after["readings"] == before["readings"] + len(HOSTILE)
    assert after["alert_acks"] == before["alert_acks"] + len(HOSTILE)
    assert all(after[t] >= before[t] for t in TABLES)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_site_id_in_a_topic_is_an_unknown_site(settings: Settings, hostile: str) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    payload = (b'{"device_id":"d","seq":1,"ts":"2026-11-21T10:00:00+07:00","interval_s":60,'
               b'"in":1,"out":0}')
    with pytest.raises(PayloadError, match="unknown (site|gate)"):
        parse_counts(f"langson/v1/{hostile}/main/counts", payload, catalogue, "langson/v1")
    with pytest.raises(PayloadError, match="unknown gate"):
        parse_counts(f"langson/v1/tam_thanh/{hostile}/counts", payload, catalogue,
                     "langson/v1")


# -- configuration files validated on load -----------------------------------------------------


def broken_catalogue(tmp_path: Path, change: Callable[[dict], object]) -> Path:
    """data/sites.yaml with `change` applied to its raw dict."""
    raw = yaml.safe_load((PROJECT_ROOT / "data" / "sites.yaml").read_text(encoding="utf-8"))
    change(raw)
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r["sites"][0].update(capacity=-5), r"sites\[\w+\]\.capacity"),
    (lambda r: r["sites"][0].update(id="x'; DROP TABLE readings; --"), r"sites\[.*\]\.id"),
    (lambda r: r["sites"][0].pop("name"), r"sites\[\w+\]\.name: Field required"),
    (lambda r: r["sites"][0].update(lat="north"), r"sites\[\w+\]\.lat"),
    (lambda r: r["sites"][0]["gates"][0].update(dev_eui="xyz"), r"gates\[\w+\]\.dev_eui"),
    (lambda r: r["sites"][0].update(capcity=10), r"sites\[\w+\]\.capcity: Extra inputs"),
    (lambda r: r["sites"][0]["opening_hours"][0].update(open="25:00"),
     r"opening_hours\[0\]\.open"),
])
def test_a_broken_catalogue_names_the_field_and_the_fix(
    tmp_path: Path, change: Callable[[dict], object], field: str
) -> None:
    path = broken_catalogue(tmp_path, change)
    with pytest.raises(CatalogueError, match=field) as err:
        load_catalogue(path)
    assert f"Fix these fields in {path}" in str(err.value)


def test_a_catalogue_that_is_not_yaml_or_not_text_says_so(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text("sites: [\n  - id: a\n    name: {vi: 'x'", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(path)
    path.write_bytes(b"\xff\xfe\x00s\x00i")
    with pytest.raises(CatalogueError, match="not UTF-8"):
        load_catalogue(path)


@pytest.mark.parametrize(("toml", "message"), [
    ("[load]\nbusy = 0.9\ncrowded = 0.85\n", r"load: .*busy < crowded < overload"),
    ("[mqtt]\nport = 'eighteen'\n", r"mqtt\.port: "),
    ("[dashbord]\nrefresh_s = 5\n", r"dashbord: Extra inputs are not permitted"),
    ("[auth]\nsession_hours = 0\n", r"auth\.session_hours: "),
    ("[load\nbusy = ", r"is not valid TOML .*fix that line"),
])
def test_a_broken_settings_file_names_the_field_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    path = tmp_path / "visitorflow.toml"
    path.write_text(toml, encoding="utf-8")
    monkeypatch.setenv("VISITORFLOW_CONFIG", str(path))
    with pytest.raises(SettingsError, match=message) as err:
        load_settings()
    assert str(path) in str(err.value)

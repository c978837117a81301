"""The officials' live page (dashboard/app.py) run by Streamlit's AppTest against a real store."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from visitorflow.catalogue import load_catalogue
from visitorflow.clock import to_local, utc_now
from visitorflow.contract import Reading
from visitorflow.load import LEVEL_COLOURS, LoadLevel
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store

from .conftest import DASHBOARD_USERS, hold_store_lock, sign_in

# AppTest resolves a relative path against the calling file (tests/), not the working folder.
APP = PROJECT_ROOT / "dashboard" / "app.py"
LOCAL_STYLE = "app/static/blank_style.json"


# Every page needs a signed-in official: the viewer's account, made per test.
pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches", "dashboard_users")


def run_app() -> AppTest:
    at = sign_in(AppTest.from_file(APP, default_timeout=30).run(), DASHBOARD_USERS["viewer"])
    assert not at.exception, [e.value for e in at.exception]
    return at


def deck_of(at: AppTest) -> dict:
    charts = at.get("deck_gl_json_chart")
    assert len(charts) == 1, "expected exactly one map"
    return json.loads(charts[0].proto.json)


def layer(deck: dict, layer_id: str) -> dict:
    found = [lyr for lyr in deck["layers"] if lyr["id"] == layer_id]
    assert found, f"no layer {layer_id!r} in {[lyr['id'] for lyr in deck['layers']]}"
    return found[0]


def test_live_page_draws_levels_on_the_map_and_in_the_table(dashboard_store: Settings) -> None:
    catalogue = load_catalogue(dashboard_store.catalogue_path)
    at = run_app()

    assert at.title[0].value == "Lượng khách tại các điểm du lịch Lạng Sơn"
    deck = deck_of(at)
    sites = {row["site_id"]: row for row in layer(deck, "sites")["data"]}
    assert set(sites) == {s.id for s in catalogue.sites} and len(sites) == 17
    expected = {
        "tam_thanh": LoadLevel.OVERLOAD, "den_ky_cung": LoadLevel.CROWDED,
        "huu_nghi": LoadLevel.BUSY, "den_bac_le": LoadLevel.NORMAL, "mau_son": LoadLevel.NO_DATA,
    }
    for site_id, level in expected.items():
        assert sites[site_id]["level"] == level.value, site_id
        assert sites[site_id]["colour"] == list(LEVEL_COLOURS[level]), site_id
    assert sites["tam_thanh"]["colour"] == [210, 30, 30]
    assert sites["tam_thanh"]["occupancy_text"] == "380 / 350"
    # Sized by occupancy, with a floor so that empty and silent sites stay visible.
    assert sites["tam_thanh"]["radius"] > sites["den_bac_le"]["radius"] > sites["mau_son"]["radius"]
    assert sites["mau_son"]["radius"] >= 4

    boundary = layer(deck, "boundary")
    assert boundary["@@type"] == "GeoJsonLayer"
    assert boundary["data"]["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert layer(deck, "sites")["@@type"] == "ScatterplotLayer"
    # A literal, not an accessor expression ("@@=pixels" draws every dot across the map).
    assert layer(deck, "sites")["radiusUnits"] == "pixels"
    assert deck["layers"][0]["id"] == "boundary", "the province must be drawn under the sites"

    # Offline map: the local blank style, and no URL anywhere in the spec.
    assert deck["mapStyle"] == LOCAL_STYLE
    assert "http" not in at.get("deck_gl_json_chart")[0].proto.json
    tooltip = json.loads(at.get("deck_gl_json_chart")[0].proto.tooltip)
    for field in ("{name}", "{occupancy_text}", "{arrivals_last_hour}", "{level_label}",
                  "{age_text}"):
        assert field in tooltip["html"]
    assert any("gis.chinhphu.vn" in c.value for c in at.caption)

    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Khách đang có mặt"] == "1,400"  # 380 + 270 + 700 + 50
    assert metrics["Lượt đến hôm nay"] == "1,470"  # 400 + 290 + 720 + 60
    assert (metrics["Điểm quá tải"], metrics["Điểm rất đông"], metrics["Điểm đông"]) == (
        "1", "1", "1")
    age_label = next(label for label in metrics if label.startswith("Dữ liệu lúc "))
    assert metrics[age_label].endswith("giây trước")
    assert any("Động Tam Thanh (380/350)" in e.value for e in at.error)

    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["Điểm", "Mức tải", "Khách hiện có"]
    assert set(table["Điểm"]) == {s.name.vi for s in catalogue.sites}
    top = table.iloc[0]
    assert top["Điểm"] == "Động Tam Thanh" and "Quá tải" in top["Mức tải"]
    assert top["Khách hiện có"] == 380 and top["Sức chứa"] == 350 and top["% sức chứa"] == 109


def test_view_state_stays_constant_when_the_data_changes(dashboard_store: Settings) -> None:
    at = run_app()
    first = deck_of(at)
    now = utc_now()
    Store.from_settings(dashboard_store).write_batch(
        [Reading("nhi_thanh", "main", "lsn-nhi_thanh-main", 2, now, 60, 300, 0)], now
    )
    st.cache_data.clear()  # as when the snapshot's ttl runs out
    second = deck_of(at.run())
    assert first["layers"] != second["layers"], "the refresh should carry the new counts"
    assert second["initialViewState"] == first["initialViewState"]
    view = second["initialViewState"]
    assert 21.6 < view["latitude"] < 22.1 and 106.4 < view["longitude"] < 107.0
    assert 7.5 < view["zoom"] < 9


def test_language_switch_shows_chinese_names(dashboard_store: Settings) -> None:
    at = run_app()
    at.sidebar.selectbox(key="language").set_value("zh").run()
    assert not at.exception
    assert at.title[0].value == "谅山旅游景点客流"
    names = set(at.dataframe[0].value["景点"])
    assert "三清洞" in names and "Động Tam Thanh" not in names
    sites = {row["site_id"]: row for row in layer(deck_of(at), "sites")["data"]}
    assert sites["tam_thanh"]["name"] == "三清洞"
    assert sites["tam_thanh"]["level_label"] == "超载"


def test_no_store_yet_says_so_without_a_traceback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISITORFLOW_DASHBOARD__DEFAULT_LANGUAGE", "en")
    get_settings.cache_clear()
    assert not settings.store.path.exists()
    at = run_app()
    assert [i.value for i in at.info] == ["No data yet: start the collector (make demo)."]
    assert not at.get("deck_gl_json_chart") and not at.error


def test_old_data_is_flagged_and_never_shown_as_empty_sites(settings: Settings) -> None:
    then = utc_now() - timedelta(minutes=20)
    store = Store.from_settings(settings)
    store.initialise()
    store.write_batch([Reading("tam_thanh", "main", "lsn-tam_thanh-main", 1, then, 60, 9, 0)], then)
    at = run_app()
    assert any("20 phút" in w.value for w in at.warning), [w.value for w in at.warning]
    sites = layer(deck_of(at), "sites")["data"]
    assert {row["level"] for row in sites} == {"no_data"}
    assert all(row["colour"] == list(LEVEL_COLOURS[LoadLevel.NO_DATA]) for row in sites)


def test_a_silent_gate_says_since_when_in_the_table_and_tooltip(settings: Settings) -> None:
    """Kỳ Lừa's north gate reported 20 minutes ago, its other gates now: the site keeps its
    level from the live gates, and says which gate is silent since when."""
    now = utc_now()
    then = now - timedelta(minutes=20)
    store = Store.from_settings(settings)
    store.initialise()
    store.write_batch([
        Reading("ky_lua", "north", "lsn-ky_lua-north", 1, then, 60, 5, 0),
        Reading("ky_lua", "south", "lsn-ky_lua-south", 1, now, 60, 5, 0),
        Reading("ky_lua", "market", "lsn-ky_lua-market", 1, now, 60, 5, 0),
    ], now)
    hhmm = to_local(then, settings.tz).strftime("%H:%M")
    at = run_app()
    table = at.dataframe[0].value
    row = table[table["Điểm"].str.startswith("Phố đi bộ Kỳ Lừa")].iloc[0]
    assert hhmm in row["Cổng mất tín hiệu"] and row["Mức tải"] != "Không có dữ liệu"
    sites = {r["site_id"]: r for r in layer(deck_of(at), "sites")["data"]}
    assert hhmm in sites["ky_lua"]["notice"]
    assert sites["tam_thanh"]["notice"]  # never reported: says so, not "0 visitors"


def test_busy_store_warns_and_keeps_the_previous_snapshot(
    dashboard_store: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VISITORFLOW_STORE__LOCK_TIMEOUT_S", "0.3")
    get_settings.cache_clear()
    at = run_app()
    assert not any("locked" in w.value for w in at.warning)
    # Another process holding the file read-write blocks every reader (docs/platform-notes.md).
    holder = hold_store_lock(dashboard_store.store.path)
    try:
        st.cache_data.clear()  # the snapshot's ttl has run out
        at.run()
    finally:
        holder.terminate()
        holder.wait(10)
    assert not at.exception
    assert any("still locked" in w.value for w in at.warning), [w.value for w in at.warning]
    sites = {row["site_id"]: row for row in layer(deck_of(at), "sites")["data"]}
    assert sites["tam_thanh"]["level"] == "overload", "the previous snapshot stays on screen"


def test_a_configured_basemap_replaces_the_local_style(
    dashboard_store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISITORFLOW_DASHBOARD__BASEMAP_STYLE_URL", "https://tiles.example/s.json")
    get_settings.cache_clear()
    assert deck_of(run_app())["mapStyle"] == "https://tiles.example/s.json"


def test_static_serving_is_on_and_the_blank_style_is_valid() -> None:
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text("utf-8"))
    assert config["server"]["enableStaticServing"] is True
    style = json.loads((APP.parent / "static" / "blank_style.json").read_text("utf-8"))
    assert style["version"] == 8 and style["sources"] == {}
    assert [lyr["type"] for lyr in style["layers"]] == ["background"]

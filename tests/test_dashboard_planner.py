"""The festival planner page (dashboard/views/planner.py) run by Streamlit's AppTest against a
real store holding a forecast run written by the test, and its CSV and Excel downloads."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from tests.planner_support import daily_frame, hourly_frame
from visitorflow import planner
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import local_date, utc_now
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def planned_store(settings: Settings) -> dict:
    """A forecast run from local midnight today: hourly for 14 days (Tam Thanh at 420 people
    tomorrow 10:00, Kỳ Cùng at 120 the day after at 11:00), daily for 400 days (peaks on
    the same days)."""
    today = local_date(utc_now(), settings.tz)
    tam_at = datetime.combine(today + timedelta(days=1), datetime.min.time()).replace(hour=10)
    ky_at = datetime.combine(today + timedelta(days=2), datetime.min.time()).replace(hour=11)
    hourly = hourly_frame(today, 14, {"tam_thanh": (tam_at, 420.0),
                                      "den_ky_cung": (ky_at, 120.0)})
    daily = daily_frame(today, 400, {"tam_thanh": (tam_at.date(), 900.0),
                                     "den_ky_cung": (ky_at.date(), 400.0)})
    now = utc_now()
    store = Store.from_settings(settings)
    store.initialise()
    store.write_forecast_run(
        {"run_id": "run-1", "created_at_utc": now, "history_end_utc": now,
         "settings_json": "{}", "sites_ok": 2, "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame({"site_id": ["tam_thanh", "den_ky_cung"], "status": "ok", "message": None,
                      "fit_s": 1.0, "regressors": None, "backtest_mae_ratio": None}),
        hourly, daily)
    return {"today": today, "tam_at": tam_at, "ky_at": ky_at}


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """What the page hands Streamlit to download, by file name (a spy on its media store)."""
    files: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):  # Streamlit's signature
        if filename:
            files[filename] = path_or_data
        return real(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


@pytest.fixture
def planner_page(signed_in_app: Callable[..., AppTest]) -> Callable[[], AppTest]:
    """The planner page, signed in as a viewer (planning needs no more)."""
    def open_page() -> AppTest:
        at = signed_in_app("viewer")
        at.switch_page("views/planner.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def test_a_week_ahead_per_site_with_heat_map_and_exports(
    planned_store: dict, downloads: dict[str, bytes], planner_page: Callable[[], AppTest]
) -> None:
    at = planner_page()
    assert at.title[0].value == "Kế hoạch lễ hội"
    at.radio(key="planner_mode").set_value("range").run()
    assert not at.exception, [e.value for e in at.exception]
    # The default range is the coming week: all within the hourly forecast.
    assert not at.info, [i.value for i in at.info]
    table = at.dataframe[0].value
    assert len(table) == 17  # every site; those without a forecast show dashes
    first = table.iloc[0]
    assert first["Điểm"] == "Động Tam Thanh"
    assert first["Ngày cao điểm"] == planned_store["tam_at"].strftime("%d/%m/%Y")
    assert first["Giờ cao điểm"] == planned_store["tam_at"].strftime("%d/%m 10:00")
    assert first["Khách có mặt tối đa"] == "420" and first["% sức chứa"] == 120
    assert first["Xác suất quá tải cao nhất (%)"] == 100
    assert first["Dự báo dùng"] == "theo giờ"
    assert table.iloc[1]["Điểm"] == "Đền Kỳ Cùng"
    assert len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart")) == 1

    # The downloads hold the table the page shows.
    week = f"{planned_store['today']:%Y%m%d}_{planned_store['today'] + timedelta(days=6):%Y%m%d}"
    csv = pd.read_csv(io.BytesIO(downloads[f"planner_{week}.csv"]), encoding="utf-8-sig",
                      dtype=str, keep_default_na=False)
    assert list(csv.columns) == list(table.columns)
    assert csv.iloc[0]["Điểm"] == "Động Tam Thanh" and csv.iloc[0]["Sức chứa"] == "350"
    assert csv.iloc[0]["Giờ cao điểm"] == first["Giờ cao điểm"]
    sheets = pd.read_excel(io.BytesIO(downloads[f"planner_{week}.xlsx"]), sheet_name=None)
    assert list(sheets) == ["Kế hoạch", "Xác suất theo giờ"]
    assert list(sheets["Kế hoạch"]["Điểm"]) == list(table["Điểm"])
    assert len(sheets["Xác suất theo giờ"]) == 7 * 24

    # In English, and for one site only.
    at.sidebar.selectbox(key="language").set_value("en").run()
    at.multiselect(key="planner_sites_range").set_value(["den_ky_cung"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Festival planner"
    table = at.dataframe[0].value
    assert list(table["Site"]) == [load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
                                   .site("den_ky_cung").name.en]
    assert table.iloc[0]["Peak hour"] == planned_store["ky_at"].strftime("%d/%m 11:00")


def test_a_festival_beyond_the_hourly_horizon_says_what_is_daily_only(
    planned_store: dict, downloads: dict[str, bytes], planner_page: Callable[[], AppTest]
) -> None:
    at = planner_page()
    # The festivals offered are computed from the lunar rules; the furthest one is weeks
    # beyond the 14 hourly days and within the 400 daily ones.
    windows = planner.festival_windows(planned_store["today"])
    last = windows.iloc[-1]
    picker = at.selectbox(key="planner_festival")
    assert picker.options[0].startswith(windows.iloc[0]["name_vi"])
    picker.set_value(len(windows) - 1).run()
    at.multiselect(key=f"planner_sites_{last['festival_id']}_{last['year']}").set_value(
        ["tam_thanh", "den_bac_le"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("vượt quá dự báo theo giờ" in i.value for i in at.info), at.info
    assert any("Không có dự báo theo giờ" in c.value for c in at.caption)
    table = at.dataframe[0].value
    tam, bac_le = table.iloc[0], table.iloc[1]
    assert tam["Điểm"] == "Động Tam Thanh" and tam["Dự báo dùng"] == "chỉ theo ngày"
    assert tam["Giờ cao điểm"] == "–" and tam["Khách có mặt tối đa"].endswith("(ước tính)")
    assert tam["Lượt đến ngày cao điểm"] == 220  # an ordinary day of the test's forecast
    assert bac_le["Ngày cao điểm"] == "–"  # no forecast for this site
    name = f"planner_{last['first_day']:%Y%m%d}_{last['last_day']:%Y%m%d}.csv"
    csv = pd.read_csv(io.BytesIO(downloads[name]), encoding="utf-8-sig", dtype=str,
                      keep_default_na=False)
    assert list(csv["Điểm"]) == list(table["Điểm"])


def test_without_a_forecast_the_page_says_so(
    settings: Settings, planner_page: Callable[[], AppTest]
) -> None:
    Store.from_settings(settings).initialise()
    at = planner_page()
    at.radio(key="planner_mode").set_value("range").run()
    assert any("Chưa có dự báo" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.dataframe

"""The redirect page (dashboard/views/redirect.py) run by Streamlit's AppTest against a real
store: live counts from dashboard_store and a forecast run written by the test.

Đồng Đăng (24 min from Tam Thanh) and Mẫu Sơn (60 min) are always open, so what the test
checks holds at any hour of the day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.redirect_support import write_hourly_run
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import utc_now
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def forecast_store(dashboard_store: Settings) -> Settings:
    """dashboard_store (Tam Thanh overloaded now) with a forecast run: Đồng Đăng calm, Mẫu Sơn
    overloaded, from the hour before now to three hours ahead."""
    start = pd.Timestamp(utc_now()).floor("h") - pd.Timedelta(hours=1)
    hours = pd.DataFrame([
        {"site_id": site_id, "ts_utc": start + timedelta(hours=h), "occupancy": occupancy,
         "p_overload": p}
        for site_id, occupancy, p in (("dong_dang", 200.0, 0.0), ("mau_son", 3500.0, 0.9))
        for h in range(5)
    ])
    write_hourly_run(Store.from_settings(dashboard_store), CATALOGUE, hours, start)
    return dashboard_store


def redirect_page(signed_in_app: Callable[..., AppTest]) -> AppTest:
    at = signed_in_app("viewer")  # the advice is for every official, viewers included
    at.switch_page("views/redirect.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _row(table: pd.DataFrame, name: str) -> pd.Series:
    rows = table[table["Điểm"] == name]
    assert len(rows) == 1, (name, list(table["Điểm"]))
    return rows.iloc[0]


def test_busiest_site_first_ranked_table_and_messages_in_three_languages(
    forecast_store: Settings, signed_in_app: Callable[..., AppTest],
) -> None:
    at = redirect_page(signed_in_app)
    assert at.title[0].value == "Gợi ý điểm thay thế"
    # The busiest site now (Tam Thanh, 380 of 350) is chosen for the official.
    assert at.selectbox(key="redirect_site").value == "tam_thanh"
    assert at.subheader[0].value == "Điểm thay thế cho Động Tam Thanh"

    table = at.dataframe[0].value
    dong_dang = _row(table, CATALOGUE.site("dong_dang").name.vi)
    mau_son = _row(table, CATALOGUE.site("mau_son").name.vi)
    assert dong_dang["Còn chỗ"] and not mau_son["Còn chỗ"]
    assert dong_dang["Hạng"] < mau_son["Hạng"]
    assert (dong_dang["Dựa trên"], dong_dang["Mức"]) == ("Dự báo", "Bình thường")
    assert mau_son["Mức"] == "Quá tải" and mau_son["Đi xe (phút)"] == 60
    # Crowded now (270 of 300) and without a forecast: judged on its live count.
    ky_cung = table[table["Điểm"] == CATALOGUE.site("den_ky_cung").name.vi]
    assert ky_cung.empty or (not ky_cung.iloc[0]["Còn chỗ"]
                             and ky_cung.iloc[0]["Dựa trên"] == "Trực tiếp")

    messages = [c.value for c in at.code]
    assert len(messages) == 3
    for text, lang in zip(messages, ("vi", "en", "zh"), strict=True):
        assert CATALOGUE.site("tam_thanh").name.get(lang) in text, text
        assert CATALOGUE.site("dong_dang").name.get(lang) in text, text
        assert CATALOGUE.site("mau_son").name.get(lang) not in text, text

    at.sidebar.selectbox(key="language").set_value("en").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Redirect advice"
    assert "Level" in at.dataframe[0].value.columns
    assert at.selectbox(key="redirect_site").value == "tam_thanh"  # kept across the rerun

    at.selectbox(key="redirect_site").set_value("dong_dang").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == "Alternatives to Đồng Đăng Border Town"
    assert CATALOGUE.site("dong_dang").name.zh in at.code[2].value


def test_without_a_store_the_page_says_so(
    settings: Settings, signed_in_app: Callable[..., AppTest],
) -> None:
    at = redirect_page(signed_in_app)
    assert any("Chưa có dữ liệu" in i.value for i in at.info)
    assert not at.dataframe

"""The alerts page (dashboard/views/alerts.py) run by Streamlit's AppTest against a real store
whose alerts the collector's evaluation step wrote."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from visitorflow.alerts import evaluate_alerts, load_actions
from visitorflow.catalogue import load_catalogue
from visitorflow.live import utc_now
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store

APP = PROJECT_ROOT / "dashboard" / "app.py"


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def alerted_store(dashboard_store: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """dashboard_store after one evaluation by the collector's step: Tam Thanh overloaded,
    Kỳ Cùng crowded, Hữu Nghị busy (raised after 1 minute here, the reading being fresh)."""
    monkeypatch.setenv("VISITORFLOW_ALERTS__RAISE_AFTER_MIN", "1")
    get_settings.cache_clear()
    settings = get_settings()
    evaluate_alerts(Store.from_settings(settings), load_catalogue(settings.catalogue_path),
                    settings, utc_now())
    return settings


def alerts_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/alerts.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_alert_id(settings: Settings, site_id: str) -> str:
    alerts = Store.from_settings(settings).open_alerts()
    return alerts.loc[alerts["site_id"] == site_id, "alert_id"].iloc[0]


def test_open_alerts_show_with_level_site_and_recommended_action(alerted_store: Settings) -> None:
    at = alerts_page()
    assert at.title[0].value == "Cảnh báo"
    assert at.subheader[0].value == "Cảnh báo đang mở (3)"
    # The most severe first, in red, with the site's name and its numbers.
    assert at.error[0].value.startswith("**Quá tải · Trực tiếp**")
    assert "Động Tam Thanh" in at.error[0].value and "380/350" in at.error[0].value
    assert "Rất đông" in at.warning[0].value
    action = load_actions(alerted_store.alerts.actions_path)["default"]["overload"]["vi"]
    assert any(action in m.value for m in at.markdown)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 3  # the audit


def test_acknowledging_writes_an_ack_row_with_the_note(alerted_store: Settings) -> None:
    alert_id = open_alert_id(alerted_store, "tam_thanh")
    at = alerts_page()
    at.text_input(key=f"ack_by_{alert_id}").input("Nguyễn Văn A")
    at.text_input(key=f"ack_note_{alert_id}").input("Đã điều tiết lượt vào ở cổng")
    at.button(key=f"ack_{alert_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]

    audit = Store.from_settings(alerted_store).alert_audit()
    acked = audit[audit["alert_id"] == alert_id]
    assert list(acked["acked_by"]) == ["Nguyễn Văn A"]
    assert list(acked["note"]) == ["Đã điều tiết lượt vào ở cổng"]
    assert audit.loc[audit["alert_id"] != alert_id, "acked_by"].isna().all()
    assert any(s.value == "Đã lưu xác nhận." for s in at.success)
    assert any("Đã xác nhận bởi Nguyễn Văn A" in s.value for s in at.success)


def test_an_acknowledgement_needs_a_name_and_a_note(alerted_store: Settings) -> None:
    alert_id = open_alert_id(alerted_store, "tam_thanh")
    at = alerts_page()
    at.text_input(key=f"ack_by_{alert_id}").input("Nguyễn Văn A")
    at.button(key=f"ack_{alert_id}").click().run()
    assert any("ghi chú" in w.value for w in at.warning)
    assert Store.from_settings(alerted_store).alert_audit()["acked_by"].isna().all()


def test_page_in_english_and_before_any_evaluation(dashboard_store: Settings) -> None:
    at = alerts_page()
    assert any("Chưa có đánh giá cảnh báo" in i.value for i in at.info)
    at.sidebar.selectbox(key="language").set_value("en").run()
    assert not at.exception
    assert at.title[0].value == "Alerts"
    assert any("No alert evaluated yet" in i.value for i in at.info)


def test_site_page_shows_a_site_against_its_forecast_and_its_counters(
    dashboard_store: Settings,
) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/site.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Chi tiết điểm"
    at.selectbox(key="site").set_value("tam_thanh").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("arrow_line_chart")) + len(at.get("vega_lite_chart")) >= 2
    gates, devices = (t.value for t in at.dataframe)
    assert gates["Cổng chính"].sum() == 400  # people in today, at the main gate
    device = devices.iloc[0]
    assert device["Máy đếm"] == "lsn-tam_thanh-main" and not device["Mất tín hiệu"]
    at.sidebar.selectbox(key="language").set_value("en").run()
    assert at.title[0].value == "Site detail" and not at.exception

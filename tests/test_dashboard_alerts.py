"""The alerts page (dashboard/views/alerts.py) run by Streamlit's AppTest against a real store
whose alerts the collector's evaluation step wrote, signed in as each role."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from visitorflow.alerts import evaluate_alerts, load_actions
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import utc_now
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store

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


@pytest.fixture
def alerts_page(signed_in_app: Callable[..., AppTest]) -> Callable[..., AppTest]:
    """`alerts_page(role="operator")`: the alerts page, signed in with that role."""
    def open_page(role: str = "operator") -> AppTest:
        at = signed_in_app(role)
        at.switch_page("views/alerts.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def open_alert_id(settings: Settings, site_id: str) -> str:
    alerts = Store.from_settings(settings).open_alerts()
    return alerts.loc[alerts["site_id"] == site_id, "alert_id"].iloc[0]


def test_open_alerts_show_with_level_site_and_recommended_action(
    alerted_store: Settings, alerts_page: Callable[..., AppTest]
) -> None:
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


def test_an_operator_acknowledges_as_themselves_with_a_note(
    alerted_store: Settings, alerts_page: Callable[..., AppTest],
    dashboard_users: dict[str, str],
) -> None:
    alert_id = open_alert_id(alerted_store, "tam_thanh")
    at = alerts_page("operator")
    # No name to type: the signed-in account is who acknowledged.
    assert not [t for t in at.text_input if t.key == f"ack_by_{alert_id}"]
    at.text_input(key=f"ack_note_{alert_id}").input("Đã điều tiết lượt vào ở cổng")
    at.button(key=f"ack_{alert_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]

    audit = Store.from_settings(alerted_store).alert_audit()
    acked = audit[audit["alert_id"] == alert_id]
    assert list(acked["acked_by"]) == [dashboard_users["operator"]]
    assert list(acked["note"]) == ["Đã điều tiết lượt vào ở cổng"]
    assert acked["acked_at_utc"].notna().all()
    assert audit.loc[audit["alert_id"] != alert_id, "acked_by"].isna().all()
    assert any(s.value == "Đã lưu xác nhận." for s in at.success)
    assert any(f"Đã xác nhận bởi {dashboard_users['operator']}" in s.value for s in at.success)


def test_an_acknowledgement_needs_a_note(
    alerted_store: Settings, alerts_page: Callable[..., AppTest]
) -> None:
    alert_id = open_alert_id(alerted_store, "tam_thanh")
    at = alerts_page("admin")  # admins may do what operators do
    at.button(key=f"ack_{alert_id}").click().run()
    assert any("ghi chú" in w.value for w in at.warning)
    assert Store.from_settings(alerted_store).alert_audit()["acked_by"].isna().all()


def test_a_viewer_sees_alerts_but_cannot_acknowledge_or_edit(
    alerted_store: Settings, alerts_page: Callable[..., AppTest]
) -> None:
    alert_id = open_alert_id(alerted_store, "tam_thanh")
    at = alerts_page("viewer")
    assert at.subheader[0].value == "Cảnh báo đang mở (3)"
    assert not [b for b in at.button if b.key and b.key.startswith("ack_")]
    assert not [t for t in at.text_input if t.key == f"ack_note_{alert_id}"]
    assert not [b for b in at.button if b.key == "save_action"]
    assert any("quyền xem" in c.value for c in at.caption)


def test_a_session_that_lost_its_role_cannot_acknowledge(
    alerted_store: Settings, alerts_page: Callable[..., AppTest],
    dashboard_users: dict[str, str],
) -> None:
    """The role is checked again on the server when the button is pressed: a role change
    ends the session, nothing is stored, and the official is asked to sign in again."""
    from visitorflow.users import set_role

    alert_id = open_alert_id(alerted_store, "tam_thanh")
    at = alerts_page("operator")
    set_role(alerted_store.auth.users_path, dashboard_users["operator"], "viewer")
    at.text_input(key=f"ack_note_{alert_id}").input("seen")
    at.button(key=f"ack_{alert_id}").click().run()
    assert Store.from_settings(alerted_store).alert_audit()["acked_by"].isna().all()
    assert at.title[0].value == "Đăng nhập", [t.value for t in at.title]


def test_an_operator_edits_a_recommended_action_with_who_and_when(
    alerted_store: Settings, alerts_page: Callable[..., AppTest],
    dashboard_users: dict[str, str],
) -> None:
    at = alerts_page("operator")
    at.selectbox(key="action_site").set_value("tam_thanh").run()
    at.selectbox(key="action_key").set_value("overload").run()
    before = at.text_area(key="action_tam_thanh_overload_en").value
    at.text_area(key="action_tam_thanh_overload_en").input("Close the cave gate; call 113.")
    at.button(key="save_action").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = Store.from_settings(alerted_store)
    edits = store.action_texts()
    assert list(zip(edits["site_id"], edits["action_key"], edits["lang"], edits["text"],
                    edits["updated_by"], strict=True)) == [
        ("tam_thanh", "overload", "en", "Close the cave gate; call 113.",
         dashboard_users["operator"])]
    log = store.change_log()
    assert list(log["old_value"]) == [before] and list(log["item"]) == ["overload.en"]
    # The page shows the operator's text for Tam Thanh in English, others keep the file's.
    at.sidebar.selectbox(key="language").set_value("en").run()
    assert any("Close the cave gate; call 113." in m.value for m in at.markdown)
    # The collector's next evaluation stores it with a new alert too.
    from visitorflow.alerts import load_actions as file_actions
    from visitorflow.alerts import recommended_action, with_action_edits

    merged = with_action_edits(file_actions(alerted_store.alerts.actions_path), edits)
    assert recommended_action(merged, "tam_thanh", "live", "overload", "en") == (
        "Close the cave gate; call 113.")
    assert recommended_action(merged, "den_ky_cung", "live", "overload", "en") == before


def test_page_in_english_and_before_any_evaluation(
    dashboard_store: Settings, alerts_page: Callable[..., AppTest]
) -> None:
    at = alerts_page()
    assert any("Chưa có đánh giá cảnh báo" in i.value for i in at.info)
    at.sidebar.selectbox(key="language").set_value("en").run()
    assert not at.exception
    assert at.title[0].value == "Alerts"
    assert any("No alert evaluated yet" in i.value for i in at.info)


def test_site_page_shows_a_site_against_its_forecast_and_its_counters(
    dashboard_store: Settings, signed_in_app: Callable[..., AppTest],
) -> None:
    at = signed_in_app("viewer")
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

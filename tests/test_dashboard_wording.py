"""What the officials read on the alerts, redirect, site and planner pages: when alerts were
last evaluated and that no site is busy when none is open; a redirect message that never
calls a calm site busy; probabilities as percentages; the current hour shown as a count so
far. Streamlit's AppTest against a real store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page
from visitorflow.alerts import evaluate_alerts
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import to_local, utc_now
from visitorflow.settings import Settings

from .test_dashboard_redirect import forecast_store  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def _evaluate(settings: Settings, minutes_ago: float = 0) -> str:
    """One evaluation by the collector's step, `minutes_ago`; its local time as shown."""
    at = utc_now() - timedelta(minutes=minutes_ago)
    from visitorflow.store import Store

    evaluate_alerts(Store.from_settings(settings), load_catalogue(settings.catalogue_path),
                    settings, at)
    return to_local(at, settings.tz).strftime("%d/%m %H:%M")


@pytest.mark.parametrize(("lang", "evaluated", "none_open"), [
    ("vi", "Cảnh báo được đánh giá lần cuối lúc", "mọi điểm có số liệu đều ở mức bình thường"),
    ("en", "Alerts last evaluated at", "every site with data is at the normal level"),
    ("zh", "警报最近一次评估于", "所有有数据的景点均处于正常水平"),
])
def test_alerts_page_says_when_alerts_were_evaluated_and_that_sites_are_normal(
    lang: str, evaluated: str, none_open: str, settings: Settings,
    signed_in_app: Callable[..., AppTest],
) -> None:
    """An evaluation that raised nothing (an empty store: no site has data): the page says
    when it ran, in local time, and that nothing is open; not "no evaluation yet"."""
    from visitorflow.store import Store

    Store.from_settings(settings).initialise()
    when = _evaluate(settings)
    at = open_page(signed_in_app, "alerts", lang)
    assert any(c.value.startswith(evaluated) and when in c.value for c in at.caption), (
        [c.value for c in at.caption])
    assert any(none_open in s.value for s in at.success), [s.value for s in at.success]
    assert not at.info and not at.warning


def test_an_old_evaluation_warns_that_the_collector_may_have_stopped(
    settings: Settings, signed_in_app: Callable[..., AppTest],
) -> None:
    from visitorflow.store import Store

    Store.from_settings(settings).initialise()
    when = _evaluate(settings, minutes_ago=30)
    at = open_page(signed_in_app, "alerts")
    assert any(when in w.value and "bộ thu có thể đã dừng" in w.value for w in at.warning)


def test_a_forecast_alert_gives_its_probability_as_a_percentage(
    forecast_store: Settings, signed_in_app: Callable[..., AppTest],  # noqa: F811
) -> None:
    """Mẫu Sơn is forecast overloaded with p = 0.9 (tests/test_dashboard_redirect.py)."""
    _evaluate(forecast_store)
    at = open_page(signed_in_app, "alerts", "en")
    shown = [e.value for e in at.error] + [w.value for w in at.warning]
    forecast = [m for m in shown if "likely overloaded" in m]
    assert forecast and all("(probability 90%)" in m for m in forecast), shown
    assert not any("p = 0." in m for m in shown)
    audit = at.dataframe[0].value
    assert audit["Message"].str.contains("probability 90%").any()


def test_redirect_page_says_how_busy_the_chosen_site_is_and_the_message_does_not(
    forecast_store: Settings, signed_in_app: Callable[..., AppTest],  # noqa: F811
) -> None:
    at = open_page(signed_in_app, "redirect")
    # Đền Bắc Lệ: 50 of 500, normal.
    at.selectbox(key="redirect_site").set_value("den_bac_le").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Đền Bắc Lệ lúc này: bình thường (10 % sức chứa)" in i.value
               and "chưa đông" in i.value for i in at.info), [i.value for i in at.info]
    for message in (c.value for c in at.code):
        assert "đông khách" not in message and "is busy" not in message, message
    # Tam Thanh, 380 of 350: its level, no "not busy" note.
    at.selectbox(key="redirect_site").set_value("tam_thanh").run()
    assert any("Động Tam Thanh lúc này: quá tải (109 % sức chứa)" in m.value
               for m in at.markdown)
    assert not any("chưa đông" in i.value for i in at.info)
    # The overload probability and the load as whole percentages, not 0.000000.
    # The Styler's display values: what the grid draws.
    styled = convert_arrow_bytes_to_pandas_df(
        at.dataframe[0].proto.arrow_data.styler.display_values)
    mau_son = styled[styled.iloc[:, 1] == "Khu du lịch Mẫu Sơn"].iloc[0]
    assert "90 %" in list(mau_son), list(mau_son)
    assert not any("0.000000" in str(v) for v in styled.to_numpy().ravel())


def test_planner_probability_is_a_percentage(
    forecast_store: Settings, signed_in_app: Callable[..., AppTest],  # noqa: F811
) -> None:
    at = open_page(signed_in_app, "planner")
    at.radio(key="planner_mode").set_value("range").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    column = "Xác suất quá tải cao nhất (%)"
    values = dict(zip(table["Điểm"], table[column], strict=True))
    assert values["Khu du lịch Mẫu Sơn"] == 90


def test_site_page_marks_the_current_hour_as_so_far_and_shades_the_forecast_range(
    dashboard_store: Settings, signed_in_app: Callable[..., AppTest],
) -> None:
    """Tam Thanh counted 400 people this hour (dashboard_store) and has a forecast for
    today."""
    from tests.redirect_support import write_hourly_run
    from visitorflow.clock import local_day_start_utc
    from visitorflow.store import Store

    start = local_day_start_utc(utc_now(), dashboard_store.tz)
    hours = pd.DataFrame({"site_id": "tam_thanh", "occupancy": 100.0, "p_overload": 0.1,
                          "ts_utc": pd.date_range(start, periods=24, freq="h")})
    write_hourly_run(Store.from_settings(dashboard_store),
                     load_catalogue(dashboard_store.catalogue_path), hours, utc_now())
    at = open_page(signed_in_app, "site")
    at.selectbox(key="site").set_value("tam_thanh").run()
    assert not at.exception, [e.value for e in at.exception]
    import json

    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    marks = {json.dumps(layer["encoding"]["color"].get("datum"), ensure_ascii=False):
             layer["mark"]
             for layer in spec["layer"]}
    now = to_local(utc_now(), dashboard_store.tz).strftime("%H:%M")
    so_far = next(v for k, v in marks.items() if "Giờ này, tính đến" in k)
    assert so_far["type"] == "point"
    assert any(now[:2] in k for k in marks if "Giờ này" in k)
    band = next(v for k, v in marks.items() if "Khoảng dự báo (80 %)" in k)
    assert band["type"] == "area"
    forecast = next(v for k, v in marks.items() if k == '"Dự báo"')
    assert forecast["type"] == "line" and forecast["strokeDash"]
    assert not any("Dự báo thấp" in k or "Dự báo cao" in k for k in marks)

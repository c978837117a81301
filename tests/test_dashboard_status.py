"""The system-status line on every page: the clock (wall or scenario), the age of the newest
data and forecast, the last backup and refit; a warning when forecasts are stale or the
refit failed. The decisions (visitorflow/system_status.py), then the app in AppTest, then
Chromium."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from visitorflow.clock import to_local, utc_now
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store
from visitorflow.system_status import (
    age_parts,
    forecast_in_use_utc,
    job_outcomes,
    speed_text,
    system_status,
)

from .test_dashboard_browser import (  # noqa: F401 - fixtures used by name
    CHROMIUM_ARGS,
    REFRESH_S,
    chromium,
    dashboard_url,
    sign_in,
)

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")

NOW = datetime(2026, 2, 18, 3, 42)  # 10:42 in Lạng Sơn
STALE_H = 26.0
NO_JOBS = pd.DataFrame(columns=["job", "last_started_utc", "last_finished_utc", "last_ok",
                                "last_detail", "last_ok_utc"])


def runs(*made: tuple[datetime, int]) -> pd.DataFrame:
    """Forecast runs as Store.forecast_runs gives them, newest first: (created, sites_ok)."""
    return pd.DataFrame({"created_at_utc": [m for m, _ in made],
                         "sites_ok": [ok for _, ok in made]})


# -- the decisions -----------------------------------------------------------------------


def test_a_forecast_is_stale_after_the_limit_and_says_since_when() -> None:
    fresh = system_status(NOW, NOW - timedelta(minutes=3), runs((NOW - timedelta(hours=5), 17)),
                          NO_JOBS, STALE_H)
    assert (fresh.data_age_s, fresh.forecast_age_s) == (180, 5 * 3600)
    assert not fresh.forecast_stale and not fresh.warn
    made = NOW - timedelta(hours=30)
    stale = system_status(NOW, None, runs((made, 17)), NO_JOBS, STALE_H)
    assert stale.forecast_stale and stale.warn and not stale.refit_failed
    assert stale.stale_since_utc == made + timedelta(hours=STALE_H)
    assert stale.data_age_s is None
    # Exactly at the limit: not yet.
    edge = system_status(NOW, None, runs((NOW - timedelta(hours=STALE_H), 17)), NO_JOBS, STALE_H)
    assert not edge.forecast_stale


def test_no_forecast_is_not_stale_and_a_run_that_fitted_nothing_is_not_in_use() -> None:
    none = system_status(NOW, None, runs(), NO_JOBS, STALE_H)
    assert none.forecast_utc is None and not none.forecast_stale and not none.warn
    older = NOW - timedelta(hours=30)
    # The newest run failed for every site: the forecasts in use are the older run's.
    assert forecast_in_use_utc(runs((NOW - timedelta(hours=1), 0), (older, 17))) == older
    assert forecast_in_use_utc(runs((NOW, 0))) is None


def test_job_outcomes_and_a_failed_refit(settings: Settings) -> None:
    store = Store.from_settings(settings)
    store.initialise()
    assert job_outcomes(store.job_status()) == {}  # no job ever ran
    day = timedelta(days=1)
    store.record_job("backup", NOW - day, NOW - day + timedelta(minutes=2), True, "7 kept")
    store.record_job("backup", NOW - timedelta(hours=2), NOW - timedelta(hours=2), False, "disk")
    store.record_job("refit", NOW - timedelta(hours=5), NOW - timedelta(hours=4), False,
                     "exit code 1")
    jobs = job_outcomes(store.job_status())
    assert jobs["backup"].ok is False and jobs["backup"].detail == "disk"
    assert jobs["backup"].last_ok_utc == NOW - day + timedelta(minutes=2)
    status = system_status(NOW, None, runs((NOW - timedelta(hours=6), 17)), store.job_status(),
                           STALE_H)
    assert status.refit_failed and status.warn and not status.forecast_stale
    store.record_job("refit", NOW - timedelta(hours=1), NOW, True, "17 sites")
    assert not system_status(NOW, None, runs((NOW, 17)), store.job_status(), STALE_H).warn


def test_ages_read_at_a_glance() -> None:
    assert age_parts(59) == (0, "min") and age_parts(3599) == (59, "min")
    assert age_parts(3600) == (1, "h") and age_parts(30 * 3600 + 59) == (30, "h")
    assert age_parts(47 * 3600) == (47, "h") and age_parts(3 * 86400 + 5) == (3, "d")
    assert age_parts(-5) == (0, "min"), "a reading stamped a moment ahead"
    assert speed_text(144.0) == "144" and speed_text(2.5) == "2.5"


# -- the app ------------------------------------------------------------------------------


def write_run(settings: Settings, created_utc: datetime, sites_ok: int = 17) -> None:
    """A forecast run (no rows: the status line reads the run's creation time only)."""
    empty = pd.DataFrame()
    Store.from_settings(settings).write_forecast_run(
        {"run_id": f"run-{created_utc:%Y%m%d%H%M%S}", "created_at_utc": created_utc,
         "history_end_utc": created_utc, "settings_json": json.dumps({}),
         "sites_ok": sites_ok, "sites_failed": 17 - sites_ok, "wall_s": 30.0},
        empty, empty, empty)


def status_line(at: AppTest) -> str:
    """The page's first caption: the status line comes before the page itself."""
    return at.main.caption[0].value


def warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "Dự báo đã cũ" in w.value or "stale" in w.value
            or "cập nhật dự báo gần nhất" in w.value]


def test_every_page_shows_the_status_line_and_a_fresh_forecast_warns_nothing(
    dashboard_store: Settings, signed_in_app: Callable[..., AppTest]
) -> None:
    now = utc_now()
    write_run(dashboard_store, now - timedelta(hours=5, minutes=10))
    store = Store.from_settings(dashboard_store)
    store.record_job("backup", now - timedelta(hours=3), now - timedelta(hours=3), True)
    store.record_job("refit", now - timedelta(hours=5, minutes=30),
                     now - timedelta(hours=5, minutes=10), True)
    at = signed_in_app("viewer")
    line = status_line(at)
    assert line.startswith("Giờ ") and re.search(r"dữ liệu mới nhất [01] phút trước", line), line
    assert "dự báo 5 giờ trước" in line and "sao lưu 3 giờ trước" in line, line
    assert ": xong" in line, line
    assert not warnings(at)
    for page in ("views/alerts.py", "views/planner.py"):
        at.switch_page(page).run()
        assert not at.exception and status_line(at) == line


def test_a_stale_forecast_and_a_failed_refit_warn_on_every_page(
    dashboard_store: Settings, signed_in_app: Callable[..., AppTest]
) -> None:
    now = utc_now()
    made = now - timedelta(hours=30)
    write_run(dashboard_store, made)
    Store.from_settings(dashboard_store).record_job(
        "refit", now - timedelta(hours=2), now - timedelta(hours=1), False,
        "forecasting.run exited with code 1.")
    at = signed_in_app("operator")
    assert "dự báo 30 giờ trước" in status_line(at) and ": lỗi" in status_line(at)
    [warning] = warnings(at)
    since = to_local(made + timedelta(hours=26), dashboard_store.tz).strftime("%d/%m %H:%M")
    assert f"Dự báo đã cũ từ {since}" in warning and "(30 giờ trước)" in warning, warning
    assert "code 1." in warning and "code 1.." not in warning, warning
    assert "vẫn hoạt động" in warning, warning
    at.switch_page("views/site.py").run()
    assert not at.exception and len(warnings(at)) == 1


def test_an_empty_store_says_what_is_missing_without_warning(
    settings: Settings, dashboard_users: dict[str, str],
    signed_in_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VISITORFLOW_DASHBOARD__DEFAULT_LANGUAGE", "en")
    get_settings.cache_clear()
    Store.from_settings(settings).initialise()
    at = signed_in_app("viewer")
    line = status_line(at)
    assert "no data yet" in line and "no forecast yet" in line and "no backup yet" in line
    assert "refit" not in line and not warnings(at)


def test_a_scenario_clock_is_labelled_with_its_speed(
    settings: Settings, dashboard_users: dict[str, str],
    signed_in_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch,
) -> None:
    Store.from_settings(settings).initialise()
    monkeypatch.setenv("VISITORFLOW_DASHBOARD__DEFAULT_LANGUAGE", "en")
    monkeypatch.setenv("VISITORFLOW_CLOCK__START_UTC", "2026-11-21T01:00:00")
    monkeypatch.setenv("VISITORFLOW_CLOCK__ANCHOR_UNIX", repr(time.time()))
    monkeypatch.setenv("VISITORFLOW_CLOCK__SPEED", "144")
    get_settings.cache_clear()
    line = status_line(signed_in_app("viewer"))
    assert line.startswith("Scenario clock 21/11 08:"), line  # 01:00 UTC is 08:00 local
    assert "(×144)" in line, line


# -- in Chromium --------------------------------------------------------------------------


@pytest.mark.browser
def test_the_browser_shows_the_stale_warning_until_a_fresh_forecast_arrives(
    chromium: Path, dashboard_url: str, dashboard_store: Settings,  # noqa: F811
    dashboard_users: dict[str, str], tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    write_run(dashboard_store, utc_now() - timedelta(hours=30))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            sign_in(page, dashboard_url, dashboard_users["viewer"])
            page.get_by_text("Dự báo đã cũ từ").wait_for(timeout=60_000)
            page.get_by_text("dự báo 30 giờ trước").wait_for(timeout=10_000)
            stale_text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "stale.png"), full_page=True)
            # The morning refit lands: the line and warning follow within a refresh or two.
            write_run(dashboard_store, utc_now())
            page.get_by_text("dự báo 0 phút trước").wait_for(timeout=60_000)
            # The old warning stays, faded, until that refresh has finished drawing.
            page.get_by_text("Dự báo đã cũ từ").wait_for(state="detached", timeout=30_000)
            page.wait_for_timeout(3 * REFRESH_S * 1000)  # and it does not come back
            fresh_warnings = page.get_by_text("Dự báo đã cũ từ").count()
        finally:
            browser.close()
    assert "Cảnh báo theo số đếm trực tiếp vẫn hoạt động." in stale_text
    assert fresh_warnings == 0

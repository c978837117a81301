"""The Kỳ Cùng scenario (`make demo SCENARIO=ky-cung`) in a real headless Chromium, played fast:
an official signed in as the scenario's operator sees, in order, a forecast alert for Đền Kỳ
Cùng raised before the noon procession, the temple over capacity on the live page, acknowledges
its live alert on the alerts page, and gets redirect advice naming only sites with room; the
public page of the full temple says so on a phone. Ctrl-C then leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from orchestration.scenario import DEMO_OPERATOR
from tests.test_dashboard_browser import CHROMIUM_ARGS, open_alerts_page, sign_in
from tests.test_public_browser import PHONE
from visitorflow.clock import to_local
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store, StoreError
from visitorflow.users import add_user

from .conftest import TEST_PASSWORD, wait_until

pytestmark = pytest.mark.browser

# Played from 09:00 local at 60x (a simulated hour a wall minute): the collector evaluates
# alerts once a wall minute, so the live overload (from ~11:00) is raised by ~12:05 and stays
# open until ~14:00, two wall minutes and more for the official to acknowledge it. Two hours
# before the procession: on a machine loaded by other work the collector's first evaluation
# came 106 wall seconds (simulated minutes) after the clock started, so the forecast alert
# still comes before 11:00 (an hour more of play cost the suite a wall minute).
PLAY_FROM = "09:00"
SPEED = 60
# 400 days: the 2026 festival (10 March) is in the history, so the forecast has seen one.
HISTORY_DAYS = 400
# The refit of the sites the story is about (minutes saved on a shared machine); the others
# are advised on their live counts.
REFIT_SITES = "den_ky_cung,den_ta_phu,ky_lua"
PROCESSION_LOCAL = "11:00"  # the procession's crowd fills the temples from about then
# The ports this test may use (others run beside it on the same machine).
DASHBOARD_PORTS, PUBLIC_PORTS, MQTT_PORTS = range(8621, 8630), range(8721, 8730), range(
    18941, 18950)
KY_CUNG = "Đền Kỳ Cùng"
NAV = '[data-testid="stSidebarNav"]'
# Backfill and refit on a shared machine: minutes, not seconds.
READY_TIMEOUT_S = 900


def port_in(ports: range) -> int:
    """The first port of `ports` nobody listens on."""
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {ports.start}..{ports.stop - 1}")


def open_page(page, title: str) -> None:  # a Playwright page
    """Through the sidebar, as an official does (a reload would start a new session)."""
    page.locator(NAV).get_by_text(title, exact=True).click()


def local_hhmm(utc: object, settings: Settings) -> str:
    return to_local(pd.Timestamp(utc), settings.tz).strftime("%H:%M")


def test_the_ky_cung_scenario_in_the_browser(settings: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_dashboard_browser import CHROMIUM

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium`")
    work = tmp_path / "scenario"
    users = tmp_path / "scenario_users.json"
    # The scenario keeps an operator account it finds: this one has the tests' password.
    add_user(users, DEMO_OPERATOR, "operator", TEST_PASSWORD)
    dashboard, public, mqtt = (port_in(r) for r in (DASHBOARD_PORTS, PUBLIC_PORTS, MQTT_PORTS))
    output = tmp_path / "scenario.log"
    with output.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.scenario", "ky-cung",
             "--history-days", str(HISTORY_DAYS), "--play-from", PLAY_FROM,
             "--refit-sites", REFIT_SITES,
             "--speed", str(SPEED), "--work-dir", str(work), "--users-path", str(users),
             "--dashboard-port", str(dashboard), "--public-port", str(public),
             "--mqtt-port", str(mqtt), "--no-progress"],
            cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    day_store = Store.from_settings(settings.model_copy(
        update={"store": settings.store.model_copy(update={"path": work / "store.duckdb"})}))
    url = f"http://localhost:{dashboard}/"
    steps: dict[str, str] = {}  # step -> scenario local time it was seen

    def open_alerts() -> pd.DataFrame:
        try:
            alerts = day_store.open_alerts()
        except StoreError:  # the collector is committing
            return pd.DataFrame()
        return pd.DataFrame() if alerts is None else alerts

    def ky_cung_alert(kind: str) -> pd.Series | None:
        alerts = open_alerts()
        if alerts.empty:
            return None
        hit = alerts[(alerts["site_id"] == "den_ky_cung") & (alerts["kind"] == kind)]
        return None if hit.empty else hit.iloc[0]

    try:
        def ready() -> bool:
            assert proc.poll() is None, output.read_text()
            return b"dashboard: http://localhost" in output.read_bytes()

        wait_until(ready, READY_TIMEOUT_S, "the scenario's history, refit and services")

        def dashboard_up() -> bool:
            try:
                with urllib.request.urlopen(f"{url}_stcore/health", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(dashboard_up, 90, "the dashboard to answer")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1300}).new_page()
                sign_in(page, url, DEMO_OPERATOR)

                # 1. The forecast alert, raised hours before the procession.
                open_alerts_page(page)
                page.get_by_text(re.compile(f"{KY_CUNG} có khả năng quá tải từ")).first.wait_for(
                    timeout=180_000)
                forecast = ky_cung_alert("forecast")
                assert forecast is not None, open_alerts()
                steps["forecast alert"] = local_hhmm(forecast["raised_at_utc"], settings)
                page.screenshot(path=str(tmp_path / "1_forecast_alert.png"), full_page=True)

                # 2. The temple goes red on the live page (its over-capacity line).
                open_page(page, "Bản đồ trực tiếp")
                over = page.get_by_text(re.compile(rf"^Quá tải: .*{KY_CUNG} \(\d+/300\)"))
                over.first.wait_for(timeout=300_000)
                page.screenshot(path=str(tmp_path / "2_live_red.png"), full_page=True)

                # 3. Its live alert, acknowledged by the operator on the alerts page.
                wait_until(lambda: ky_cung_alert("live") is not None
                           and ky_cung_alert("live")["level"] == "overload", 240,
                           "the collector to raise Kỳ Cùng's live overload alert")
                live = ky_cung_alert("live")
                open_alerts_page(page)
                box = page.locator('[data-testid="stVerticalBlock"]').filter(
                    has=page.get_by_text(re.compile(f"^Quá tải · Trực tiếp — .*{KY_CUNG}"))
                ).filter(has=page.get_by_label("Ghi chú")).last
                box.get_by_label("Ghi chú").wait_for(timeout=60_000)
                box.get_by_label("Ghi chú").fill("Đã mở lối ra phụ, hướng khách sang điểm khác")
                box.get_by_role("button", name="Xác nhận", exact=True).click()
                page.get_by_text("Đã lưu xác nhận.").wait_for(timeout=60_000)
                page.screenshot(path=str(tmp_path / "3_acknowledged.png"), full_page=True)

                # 4. Redirect advice for the temple: only sites with room.
                open_page(page, "Gợi ý điểm thay thế")
                page.get_by_label("Điểm đang đông").click()
                page.get_by_role("option", name=KY_CUNG, exact=True).click()
                page.get_by_text(f"Điểm thay thế cho {KY_CUNG}").wait_for(timeout=60_000)
                message = page.get_by_text(re.compile(f"^Các điểm gần {KY_CUNG} ")).first
                message.wait_for(timeout=60_000)
                advice = message.inner_text()
                page.screenshot(path=str(tmp_path / "4_redirect.png"), full_page=True)

                # 5. The public page of the full temple, on a phone.
                phone = browser.new_context(viewport=PHONE, device_scale_factor=2,
                                            is_mobile=True, java_script_enabled=False)
                public_page = phone.new_page()
                public_page.goto(f"http://127.0.0.1:{public}/site/den_ky_cung?lang=vi")
                public_level = public_page.locator("#level").inner_text().strip()
                nearby = public_page.locator("#nearby li").all_inner_texts()
                public_page.screenshot(path=str(tmp_path / "5_public_phone.png"),
                                       full_page=True)
            finally:
                browser.close()
        # The public server answers from a cache rebuilt each few seconds: slow on a busy
        # machine, hence the long timeout.
        with urllib.request.urlopen(f"http://127.0.0.1:{public}/api/v1/sites.json",
                                    timeout=120) as response:
            feed = json.load(response)
        audit = day_store.alert_audit()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    text = output.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "demo stopped" in text

    # In order: the forecast alert before the procession, for an hour at or after it began.
    raised = to_local(pd.Timestamp(forecast["raised_at_utc"]), settings.tz)
    assert raised.strftime("%H:%M") < PROCESSION_LOCAL, (forecast, steps)
    assert pd.Timestamp(forecast["from_utc"]) > pd.Timestamp(forecast["raised_at_utc"]), forecast
    assert pd.Timestamp(live["raised_at_utc"]) > pd.Timestamp(forecast["raised_at_utc"])
    # The acknowledgement is the operator's, of the live alert.
    acked = audit[audit["acked_by"].notna()]
    assert list(zip(acked["alert_id"], acked["acked_by"], strict=True)) == [
        (live["alert_id"], DEMO_OPERATOR)], acked
    assert acked["acked_at_utc"].iloc[0] > live["raised_at_utc"]
    # The advice names sites, each with room (quiet or busy) in the public feed.
    levels = {site["name"]["vi"]: site["level"] for site in feed["sites"]}
    named = [name for name in levels if name in advice and name != KY_CUNG]
    assert named, advice
    assert all(levels[name] in ("quiet", "busy") for name in named), (advice, levels)
    assert levels[KY_CUNG] == "full"
    assert public_level == "Đã kín chỗ", public_level
    assert nearby and not any("Đền Tả Phủ" in item for item in nearby), nearby
    # Stopping leaves nothing behind.
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(work)], capture_output=True,
                               text=True).stdout
    assert leftovers == "", f"processes left running: {leftovers}"
    assert datetime.fromisoformat(feed["generated"]).date().isoformat() == "2027-02-27"

"""The dashboard in a real headless Chromium: officials sign in; the map draws, keeps the
official's pan across refreshes, and nothing leaves the machine; an operator acknowledges an
alert and a viewer cannot."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np
import pytest

from visitorflow.clock import utc_now
from visitorflow.contract import Reading
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

from .conftest import TEST_PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Flags from docs/platform-notes.md: software WebGL for deck.gl, and no background traffic.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
LOCAL_HOSTS = {"localhost", "127.0.0.1"}
MAP = '[data-testid="stDeckGlJsonChart"]'
REFRESH_S = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium`")
    return CHROMIUM


@pytest.fixture
def dashboard_url(
    dashboard_store: Settings, dashboard_users: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    """`streamlit run dashboard/app.py` on a free port against the test's store, with an
    account per role (conftest.dashboard_users)."""
    port = _free_port()
    log_path = tmp_path / "streamlit.log"
    env = os.environ.copy()  # carries VISITORFLOW_STORE__PATH from the settings fixture
    env["VISITORFLOW_DASHBOARD__REFRESH_S"] = str(REFRESH_S)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)
        yield f"http://localhost:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def sign_in(page: Page, url: str, name: str) -> None:
    """Open the dashboard at `url` and sign in through its form, as an official does."""
    page.goto(url)
    page.get_by_label("Tên đăng nhập").fill(name)
    page.get_by_label("Mật khẩu").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.get_by_text(f"Đăng nhập: {name}").wait_for(timeout=60_000)


def open_alerts_page(page: Page) -> None:
    """Through the sidebar, as an official does (a reload would start a new session)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Cảnh báo", exact=True).click()


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _settled_map_pixels(page: Page) -> np.ndarray:
    """The map's pixels once no element of the page is greyed out as stale (Streamlit fades
    them while a run is going on, and the page refreshes itself every few seconds)."""
    def faded() -> bool:
        return page.locator(MAP).evaluate(
            "el => !!el.closest('[data-stale=\"true\"]')")

    for _ in range(80):
        if not faded():
            shot = page.locator(MAP).screenshot()
            if not faded():
                return _pixels(shot)
        page.wait_for_timeout(250)
    pytest.fail("the page never settled for a screenshot")


def _province_mask(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return abs(r - 252) + abs(g - 253) + abs(b - 247) <= 6


def _colour_shares(rgb: np.ndarray) -> dict[str, float]:
    """Share of the map's pixels in each colour of interest (dots are drawn at 85 % opacity
    over the province fill)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {
        "background": float((abs(r - 238) + abs(g - 242) + abs(b - 240) <= 6).mean()),
        "province": float(_province_mask(rgb).mean()),
        "red": float(((r > 170) & (g < 90) & (b < 90)).mean()),
        "green": float(((g > 130) & (r < 120) & (b < 120)).mean()),
        "grey": float(((r >= 130) & (r <= 175) & (abs(r - g) < 6) & (abs(r - b) < 6)).mean()),
    }


def _province_x(rgb: np.ndarray) -> float:
    """Horizontal centre of the drawn province, in map pixels."""
    return float(np.nonzero(_province_mask(rgb))[1].mean())


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob", "about") or parsed.hostname in LOCAL_HOSTS


def test_map_draws_offline_and_keeps_the_pan_across_refreshes(
    chromium: Path, dashboard_url: str, dashboard_store: Settings, tmp_path: Path,
    dashboard_users: dict[str, str],
) -> None:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            context.on("request", lambda req: requests.append(req.url))
            page = context.new_page()
            page.on("websocket", lambda ws: requests.append(ws.url))
            sign_in(page, dashboard_url, dashboard_users["viewer"])
            page.wait_for_selector(f"{MAP} canvas", timeout=60_000)
            # The style, then the layers, draw a moment after the canvas appears. (Not
            # "networkidle": on a loaded machine the live page's refreshes kept it from
            # ever going idle within 30 s.)
            for _ in range(150):
                if any(url.endswith("blank_style.json") for url in requests):
                    break
                page.wait_for_timeout(200)
            page.wait_for_timeout(2000)
            chart = page.locator(MAP)
            text = page.inner_text("body")
            # Not while a run greys the page out: on a loaded machine the live page's own
            # refreshes can keep it faded for seconds.
            first = _settled_map_pixels(page)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # The official drags the map 200 px to the left ...
            box = chart.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx, cy)
            page.mouse.down()
            page.mouse.move(cx - 200, cy, steps=10)
            page.mouse.up()
            page.wait_for_timeout(500)
            panned = _settled_map_pixels(page)
            # ... new counts arrive and the page refreshes on its own ...
            now = utc_now()
            Store.from_settings(dashboard_store).write_batch(
                [Reading("huu_nghi", "checkpoint", "lsn-huu_nghi-checkpoint", 2, now, 60, 400, 0)],
                now,
            )
            page.get_by_text("Cửa khẩu quốc tế Hữu Nghị (1100/1000)").wait_for(
                timeout=10 * REFRESH_S * 1000
            )
            page.wait_for_timeout(1000)
            refreshed = _settled_map_pixels(page)
            page.screenshot(path=str(tmp_path / "dashboard_refreshed.png"), full_page=True)
        finally:
            browser.close()

    external = sorted({u for u in requests if not _is_local(u)})
    assert not external, f"requests left the machine: {external}"
    assert any(urlparse(u).path.endswith("/app/static/blank_style.json") for u in requests), (
        "the map should load its local blank style"
    )
    assert "Động Tam Thanh" in text, text[:2000]
    assert "Ranh giới: gis.chinhphu.vn" in text

    shares = _colour_shares(first)
    # The blank style's background around the province, the province filled light, a red
    # dot (overload) and a green one (normal); grey no-data dots stay small.
    assert shares["background"] > 0.02, shares
    assert shares["province"] > 0.15, shares
    assert shares["red"] > 0.0003 and shares["green"] > 0.0001, shares
    assert shares["grey"] < 0.05, shares

    # ... and the map stays where the official put it.
    moved = _province_x(first) - _province_x(panned)
    assert 150 < moved < 250, f"the drag should move the province ~200 px, moved {moved:.0f}"
    assert abs(_province_x(refreshed) - _province_x(panned)) < 5, (
        "the refresh reset the map's view"
    )


def test_a_viewer_cannot_acknowledge_and_an_operator_can(
    chromium: Path, dashboard_url: str, dashboard_store: Settings, tmp_path: Path,
    dashboard_users: dict[str, str],
) -> None:
    from playwright.sync_api import sync_playwright

    from visitorflow.alerts import evaluate_alerts
    from visitorflow.catalogue import load_catalogue
    from visitorflow.settings import AlertSettings

    # The collector's step, raising at once (the fixture's reading is a minute old).
    settings = dashboard_store.model_copy(update={"alerts": AlertSettings(
        raise_after_min=1, actions_path=dashboard_store.alerts.actions_path)})
    store = Store.from_settings(settings)
    evaluate_alerts(store, load_catalogue(settings.catalogue_path), settings, utc_now())
    tam_thanh = store.open_alerts().iloc[0]
    assert (tam_thanh["site_id"], tam_thanh["level"]) == ("tam_thanh", "overload")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            # A viewer (own browser context: own session) sees the alerts, no control.
            viewer = browser.new_context(viewport={"width": 1400, "height": 1300}).new_page()
            sign_in(viewer, dashboard_url, dashboard_users["viewer"])
            open_alerts_page(viewer)
            viewer.get_by_text("Cảnh báo đang mở (3)").wait_for(timeout=60_000)
            viewer.get_by_text("Bạn đăng nhập với quyền xem").wait_for(timeout=10_000)
            # The heading is drawn before the list under it: wait for the list's first alert.
            viewer.get_by_text("Động Tam Thanh").first.wait_for(timeout=30_000)
            viewer_text = viewer.inner_text("body")
            viewer_buttons = viewer.get_by_role("button", name="Xác nhận", exact=True).count()
            viewer_notes = viewer.get_by_label("Ghi chú").count()
            viewer.screenshot(path=str(tmp_path / "alerts_viewer.png"), full_page=True)

            page = browser.new_context(viewport={"width": 1400, "height": 1300}).new_page()
            sign_in(page, dashboard_url, dashboard_users["operator"])
            open_alerts_page(page)
            page.get_by_text("Cảnh báo đang mở (3)").wait_for(timeout=60_000)
            page.get_by_label("Ghi chú").first.wait_for(timeout=30_000)
            text = page.inner_text("body")
            # The most severe alert comes first: its inputs are the first ones. No name to
            # type: the signed-in operator is who acknowledges.
            page.get_by_label("Ghi chú").first.fill("Đã điều tiết cổng")
            page.get_by_role("button", name="Xác nhận", exact=True).first.click()
            page.get_by_text("Đã lưu xác nhận.").wait_for(timeout=10 * REFRESH_S * 1000)
            # The answer outlives the view's own refreshes long enough to be read.
            page.wait_for_timeout(3 * REFRESH_S * 1000)
            still_told = page.get_by_text("Đã lưu xác nhận.").count()
            page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)
        finally:
            browser.close()

    assert "Động Tam Thanh" in viewer_text and "Quá tải" in viewer_text, viewer_text[:2000]
    assert (viewer_buttons, viewer_notes) == (0, 0), "a viewer must get no acknowledge control"
    assert still_told == 1, "the acknowledgement's confirmation left with the next refresh"
    assert "Động Tam Thanh" in text and "Quá tải" in text, text[:2000]
    audit = store.alert_audit()
    acked = audit[audit["acked_by"].notna()]
    assert list(zip(acked["alert_id"], acked["acked_by"], acked["note"], strict=True)) == [
        (tam_thanh["alert_id"], dashboard_users["operator"], "Đã điều tiết cổng")
    ]

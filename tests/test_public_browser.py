"""The public page in a real headless Chromium on a phone-sized screen, scripts off as on the
plainest phone browser: it fits the screen, shows the level in words and colour, switches
language through its links, leads to a nearby site, and loads nothing from elsewhere."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.public_support import NOW, Clock, seed_public_store, serve
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from visitorflow.settings import Settings

pytestmark = pytest.mark.browser
PHONE = {"width": 360, "height": 740}  # a common small Android screen, CSS pixels


def test_the_page_on_a_phone(settings: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium`")
    seed_public_store(settings)
    requests: list[str] = []
    with serve(settings, Clock(NOW)) as base_url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                locale="en-US", java_script_enabled=False,
            )
            context.on("request", lambda req: requests.append(req.url))
            page = context.new_page()
            page.goto(f"{base_url}/site/tam_thanh")  # as scanned: no ?lang=, phone in English
            assert page.locator("html").get_attribute("lang") == "en"
            assert page.locator("h1").inner_text() == "Tam Thanh Cave"
            level = page.locator("#level")
            assert level.inner_text().strip() == "Full"
            dot = level.locator(".dot")
            assert dot.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(210, 30, 30)"
            assert dot.bounding_box()["width"] > 10  # visible, not collapsed
            assert page.locator("#best").inner_text().startswith("Today 15:00–16:00")
            assert page.locator("#nearby li").count() == 2
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"the page scrolls sideways ({width} px)"
            assert level.bounding_box()["y"] < PHONE["height"] / 2  # the answer at first sight
            page.screenshot(path=str(tmp_path / "public_en.png"), full_page=True)

            page.get_by_role("link", name="中文").click()
            page.wait_for_url("**/site/tam_thanh?lang=zh")
            assert page.locator("h1").inner_text() == "三清洞"
            assert page.locator("#level").inner_text().strip() == "已满"
            first = page.locator("#nearby li a").first
            target = first.inner_text()
            first.click()
            page.wait_for_url("**?lang=zh")
            assert page.locator("h1").inner_text() == target
            assert page.locator("#level").inner_text().strip() in ("人少", "暂无数据")
            page.screenshot(path=str(tmp_path / "public_zh_nearby.png"), full_page=True)
        finally:
            browser.close()
    assert requests and all(urlparse(u).hostname == "127.0.0.1" for u in requests), requests

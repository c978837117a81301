"""The live map's names, legend, district lines, spread-out city sites and the way from a site
on the map to its detail page: the deck's spec through Streamlit's AppTest, then the page in
a real headless Chromium (a canvas: names are checked in the deck's data and as drawn pixels,
the legend and the site list as the page's text; a click on a dot or a name lands on the
pixel computed from the map's view)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from visitorflow.catalogue import load_catalogue
from visitorflow.live import label_width_px, map_layout, world_px
from visitorflow.load import LEVEL_LABELS, LoadLevel
from visitorflow.settings import PROJECT_ROOT, Settings

from .test_dashboard_app import deck_of, layer
from .test_dashboard_browser import (  # noqa: F401  (fixtures)
    CHROMIUM_ARGS,
    MAP,
    _is_local,
    _settled_map_pixels,
    chromium,
    dashboard_url,
    sign_in,
)

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
LANGS = ("vi", "en", "zh")
ZOOM = 8.2  # the live page's province view
LEGEND = '[data-testid="map-legend"]'


# -- the layout, on its own ---------------------------------------------------------------------


def _points(lang: str = "vi") -> pd.DataFrame:
    return pd.DataFrame([{"site_id": s.id, "lat": s.lat, "lon": s.lon,
                          "label": s.name.get(lang)} for s in CATALOGUE.sites])


def test_sites_on_top_of_each_other_go_into_a_column_and_lone_sites_stay() -> None:
    points = pd.DataFrame([
        {"site_id": "a", "lat": 21.85, "lon": 106.75, "label": "A"},
        {"site_id": "b", "lat": 21.8505, "lon": 106.7505, "label": "B"},
        {"site_id": "c", "lat": 21.851, "lon": 106.749, "label": "C"},
        {"site_id": "far", "lat": 21.5, "lon": 106.4, "label": "Far"},
    ])
    layout = map_layout(points, ZOOM, row_px=22).set_index("site_id")
    assert not layout.at["far", "moved"]
    assert (layout.at["far", "map_lon"], layout.at["far", "map_lat"]) == (106.4, 21.5)
    drawn = [world_px(layout.at[i, "map_lon"], layout.at[i, "map_lat"], ZOOM) for i in "abc"]
    assert layout.loc[list("abc"), "moved"].all()
    assert len({round(x) for x, _ in drawn}) == 1, "one column"
    ys = sorted(y for _, y in drawn)
    assert [round(b - a) for a, b in itertools.pairwise(ys)] == [22, 22]


@pytest.mark.parametrize("lang", LANGS)
def test_the_catalogue_drawn_at_the_province_zoom_has_no_dot_or_name_over_another(
    lang: str,
) -> None:
    """The 8 city sites lie within ~8 px of each other at the province's zoom; drawn, no two
    dots are closer than a row and no two names' boxes overlap (the same estimate of a
    name's width as the layout's: 13 px type)."""
    layout = map_layout(_points(lang), ZOOM, row_px=22, char_px=13 * 0.55).set_index(
        "site_id")
    assert layout["moved"].sum() >= 8
    boxes = {}
    for site in CATALOGUE.sites:
        x, y = world_px(layout.at[site.id, "map_lon"], layout.at[site.id, "map_lat"], ZOOM)
        w = label_width_px(site.name.get(lang), 13 * 0.55)
        boxes[site.id] = ((x + 8, y - 8, x + 8 + w, y + 8)
                          if layout.at[site.id, "anchor"] == "start"
                          else (x - 8 - w, y - 8, x - 8, y + 8))
        boxes[site.id, "dot"] = (x, y)
    dots = [v for k, v in boxes.items() if isinstance(k, tuple)]
    for (x0, y0), (x1, y1) in itertools.combinations(dots, 2):
        assert abs(x0 - x1) + abs(y0 - y1) >= 21, "two dots drawn on top of each other"
    names = {k: v for k, v in boxes.items() if not isinstance(k, tuple)}
    for (a, ba), (b, bb) in itertools.combinations(names.items(), 2):
        overlap = ba[0] < bb[2] and bb[0] < ba[2] and ba[1] < bb[3] and bb[1] < ba[3]
        assert not overlap, f"the names of {a} and {b} overlap"


# -- the deck's spec ------------------------------------------------------------------------------


@pytest.fixture
def live_page(signed_in_app: Callable[..., AppTest]) -> Callable[[str], AppTest]:
    def open_page(lang: str) -> AppTest:
        at = signed_in_app("viewer")
        if lang != "vi":
            at.sidebar.selectbox(key="language").set_value(lang).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


@pytest.mark.usefixtures("fresh_streamlit_caches")
@pytest.mark.parametrize("lang", LANGS)
def test_the_map_names_every_site_in_the_language_with_a_legend_and_the_former_districts(
    lang: str, dashboard_store: Settings, live_page: Callable[[str], AppTest],
) -> None:
    at = live_page(lang)
    deck = deck_of(at)
    labels = layer(deck, "labels")
    assert labels["@@type"] == "TextLayer"
    names = {row["site_id"]: row["name"] for row in labels["data"]}
    assert names == {s.id: s.name.get(lang) for s in CATALOGUE.sites}
    # Every letter of the names is in the glyph atlas (deck.gl draws ASCII only by default),
    # and the font is one of the machine's: nothing is fetched.
    assert set("".join(names.values())) <= set(labels["characterSet"])
    assert "Noto Sans CJK SC" in labels["fontFamily"]
    assert "http" not in at.get("deck_gl_json_chart")[0].proto.json
    # Names sit on the dots as drawn: the same places as the sites layer's.
    sites = {r["site_id"]: r for r in layer(deck, "sites")["data"]}
    assert all((r["map_lon"], r["map_lat"]) == (sites[r["site_id"]]["map_lon"],
                                                sites[r["site_id"]]["map_lat"])
               for r in labels["data"])
    moved = {r["site_id"] for r in layer(deck, "leaders")["data"]}
    assert {"tam_thanh", "ky_lua", "den_ta_phu"} <= moved and "mau_son" not in moved
    # The former districts: 11 outlines, lines only, over the province's fill.
    districts = layer(deck, "districts")
    assert len(districts["data"]["features"]) == 11 and districts["filled"] is False
    ids = [lyr["id"] for lyr in deck["layers"]]
    assert ids.index("boundary") < ids.index("districts") < ids.index("sites") < ids.index(
        "labels")

    # A click on a dot or on a name selects its site (and opens its page: in Chromium, below).
    assert layer(deck, "sites")["pickable"] and labels["pickable"]
    chart = at.get("deck_gl_json_chart")[0].proto
    assert list(chart.selection_mode) and chart.id, "the map should be selectable"

    legend = next(m.value for m in at.markdown if "map-legend" in m.value)
    for level in LoadLevel:
        assert LEVEL_LABELS[level][lang] in legend, (level, legend)
    assert f"{LEVEL_LABELS[LoadLevel.OVERLOAD][lang]} (1)" in legend
    caption = " ".join(c.value for c in at.caption)
    assert "2025" in caption and "gis.chinhphu.vn" in caption


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_choosing_a_site_under_the_map_gives_a_link_to_its_detail_page(
    dashboard_store: Settings, live_page: Callable[[str], AppTest],
) -> None:
    """The link itself is followed in Chromium (below); here: it is there, to that site."""
    at = live_page("vi")
    at.selectbox(key="live_open_site").set_value("mau_son").run()
    assert not at.exception, [e.value for e in at.exception]
    links = [link.proto for link in at.get("page_link")]
    assert len(links) == 1 and "Mẫu Sơn" in links[0].label, links
    assert "site=mau_son" in links[0].query_string, links[0]


# -- in a real browser ----------------------------------------------------------------------------


def _dark_share(rgb) -> float:
    """Share of the map's pixels dark enough to be the names' letters (the outlines, leader
    lines and dots are lighter or coloured)."""
    return float(((rgb[..., 0] < 90) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).mean())


def _wait_for_map(page, requests: list[str]) -> None:
    page.wait_for_selector(f"{MAP} canvas", timeout=60_000)
    for _ in range(150):
        if any(url.endswith("blank_style.json") for url in requests):
            break
        page.wait_for_timeout(200)
    page.wait_for_timeout(2500)  # the style, then the layers and the glyph atlas


def _open_site_list(page, label: str) -> None:
    """Open the drop-down of the site list under the map (labelled `label`); a click that
    lands while the page redraws is tried again."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label))
    for _ in range(5):
        box.locator("input").click()
        try:
            page.get_by_role("option").first.wait_for(timeout=4_000)
            return
        except Exception:
            page.keyboard.press("Escape")
    raise AssertionError(f"the site list {label!r} did not open")


def _map_pixel(page, lon: float, lat: float) -> tuple[float, float]:
    """Where the point (lon, lat) is drawn on the page: the map opens on the province view,
    and two points' world pixels differ by their distance on the screen."""
    box = page.locator(MAP).bounding_box()
    cx, cy = world_px(106.73, 21.89, ZOOM)
    x, y = world_px(lon, lat, ZOOM)
    return box["x"] + box["width"] / 2 + x - cx, box["y"] + box["height"] / 2 + y - cy


def _choose_language(page, label: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=label).click()


@pytest.mark.browser
def test_map_names_legend_and_the_way_to_a_site_in_three_languages(
    chromium: Path, dashboard_url: str, dashboard_store: Settings, tmp_path: Path,  # noqa: F811
    dashboard_users: dict[str, str],
) -> None:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    seen: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            context.on("request", lambda req: requests.append(req.url))
            page = context.new_page()
            page.on("websocket", lambda ws: requests.append(ws.url))
            sign_in(page, dashboard_url, dashboard_users["viewer"])
            for lang, choice, title in (
                ("vi", None, "Lượng khách tại các điểm du lịch Lạng Sơn"),
                ("en", "English", "Visitors at the tourist sites of Lạng Sơn"),
                ("zh", "中文", "谅山旅游景点客流"),
            ):
                if choice:
                    _choose_language(page, choice)
                page.get_by_role("heading", name=title).wait_for(timeout=60_000)
                _wait_for_map(page, requests)
                seen[lang] = {
                    "legend": page.locator(LEGEND).inner_text(),
                    "dark": _dark_share(_settled_map_pixels(page)),
                }
                page.screenshot(path=str(tmp_path / f"map_{lang}.png"), full_page=True)
                # The site list under the map, in the page's language.
                _open_site_list(page, json.loads('"' + {
                    "vi": "Xem chi tiết điểm", "en": "Open a site\'s detail",
                    "zh": "查看景点详情"}[lang] + '"'))
                seen[lang]["list"] = page.get_by_role("option").all_inner_texts()
                page.keyboard.press("Escape")

            # Hovering Mẫu Sơn's dot (not moved: drawn on its true point) shows its tooltip,
            # which says a click opens it; without the mouse, the list under the map does.
            page.locator(MAP).scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            mau_son = CATALOGUE.site("mau_son")
            at = _map_pixel(page, mau_son.lon, mau_son.lat)
            page.mouse.move(*at)
            page.wait_for_timeout(300)
            page.mouse.move(at[0] + 1, at[1])
            page.get_by_text("点击景点打开详情页").wait_for(timeout=10_000)
            _open_site_list(page, "查看景点详情")
            page.get_by_role("option", name=mau_son.name.get("zh")).click()
            page.get_by_text("打开详情页：" + mau_son.name.get("zh")).click()
            page.get_by_role("heading", name="景点详情").wait_for(timeout=30_000)
            page.wait_for_timeout(3000)  # stays drawn after the live page's timer would fire
            assert page.get_by_role("heading", name="景点详情").is_visible()
            page.screenshot(path=str(tmp_path / "site_after_choice.png"), full_page=True)
            site_url = page.url
        finally:
            browser.close()

    external = sorted({u for u in requests if not _is_local(u)})
    assert not external, f"requests left the machine: {external}"
    for lang in LANGS:
        legend, listed = seen[lang]["legend"], seen[lang]["list"]
        for level in LoadLevel:
            assert LEVEL_LABELS[level][lang] in legend, (lang, legend)
        assert sorted(listed) == sorted(s.name.get(lang) for s in CATALOGUE.sites), listed
        # 17 names in dark letters on white boxes: without the names (or with their
        # letters missing from the glyph atlas) next to no pixel of the map is this dark.
        assert seen[lang]["dark"] > 0.0005, {lg: seen[lg]["dark"] for lg in LANGS}
    assert "site=mau_son" in site_url, site_url


def _site_page_after(page, click: tuple[float, float], title: str, today: str) -> dict:
    """Click the map at `click` as a hand does (the pointer over the site first, then a
    press of 80 ms: deck.gl lost about one in eight instant clicks that came with no hover);
    once the site page's title shows, wait past the live page's refresh (REFRESH_S: a stray
    refresh of the live page broke the new page at about this time) and read what is drawn:
    title, the chosen site, its first section, the address."""
    page.mouse.move(*click)
    page.wait_for_timeout(200)
    page.mouse.click(*click, delay=80)
    page.get_by_role("heading", name=title).wait_for(timeout=30_000)
    page.wait_for_timeout(3000)
    main = page.locator('[data-testid="stMain"]')
    return {
        "title": main.get_by_role("heading", name=title).is_visible(),
        "site": main.locator('[data-testid="stSelectbox"] input').first.input_value(
            timeout=5_000),
        "today": main.get_by_role("heading", name=today).is_visible(),
        "url": page.url,
    }


@pytest.mark.browser
def test_a_click_on_a_dot_or_a_name_on_the_map_opens_that_sites_page(
    chromium: Path, dashboard_url: str, dashboard_store: Settings, tmp_path: Path,  # noqa: F811
    dashboard_users: dict[str, str],
) -> None:
    """Mẫu Sơn's dot in Vietnamese, then (back on the live map, in Chinese) the name of a city
    site drawn in the column beside its group: each opens that site's page, in the page's
    language, still drawn seconds later; going back to the map stays on the map."""
    from playwright.sync_api import sync_playwright

    live_vi, live_zh = "Lượng khách tại các điểm du lịch Lạng Sơn", "谅山旅游景点客流"
    mau_son, ky_lua = CATALOGUE.site("mau_son"), CATALOGUE.site("ky_lua")
    zh_layout = map_layout(_points("zh"), ZOOM, row_px=22, char_px=13 * 0.55).set_index(
        "site_id").loc["ky_lua"]
    assert zh_layout["moved"]
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            context.on("request", lambda req: requests.append(req.url))
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            sign_in(page, dashboard_url, dashboard_users["viewer"])
            page.get_by_role("heading", name=live_vi).wait_for(timeout=60_000)
            _wait_for_map(page, requests)
            page.locator(MAP).scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            by_dot = _site_page_after(page, _map_pixel(page, mau_son.lon, mau_son.lat),
                                      "Chi tiết điểm", "Hôm nay so với dự báo")
            page.screenshot(path=str(tmp_path / "site_after_dot.png"), full_page=True)

            # Back on the map (the click's selection must not open the site again).
            page.locator('[data-testid="stSidebarNav"]').get_by_text(
                "Bản đồ trực tiếp", exact=True).click()
            page.get_by_role("heading", name=live_vi).wait_for(timeout=30_000)
            page.wait_for_timeout(3000)
            stayed = page.get_by_role("heading", name=live_vi).is_visible()

            # The name, not the dot: its text starts a dot's radius (at most 10 px in a
            # column) and 4 px beside the dot, on the side the layout put it.
            _choose_language(page, "中文")
            page.get_by_role("heading", name=live_zh).wait_for(timeout=60_000)
            _wait_for_map(page, requests)
            page.locator(MAP).scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            x, y = _map_pixel(page, zh_layout["map_lon"], zh_layout["map_lat"])
            side = 1 if zh_layout["anchor"] == "start" else -1
            by_name = _site_page_after(page, (x + side * 24, y), "景点详情", "今日与预测对比")
            page.screenshot(path=str(tmp_path / "site_after_name.png"), full_page=True)
        finally:
            browser.close()

    assert by_dot == {"title": True, "site": mau_son.name.get("vi"), "today": True,
                      "url": by_dot["url"]}, by_dot
    assert by_dot["url"].endswith("?site=mau_son"), by_dot
    assert stayed, "going back to the live map opened the site's page again"
    assert by_name == {"title": True, "site": ky_lua.name.get("zh"), "today": True,
                       "url": by_name["url"]}, by_name
    assert by_name["url"].endswith("?site=ky_lua"), by_name
    # A stray refresh of the live page on the site's page showed as a console error ("Bad
    # delta path"), then a page that stayed blank.
    assert not errors, errors

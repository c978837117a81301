"""The public page behind a site's QR code and its JSON feed, served over real HTTP from a real
store: level words, best time, nearby sites with room (the officials' redirect ranking), the
three languages, what the province chooses to show, and nothing of the officials' pages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from public.page import choose_language
from public.status import StatusCache, public_level
from tests.conftest import hold_store_lock, wait_until
from tests.public_support import NOW, Clock, seed_public_store, serve
from visitorflow.catalogue import Catalogue
from visitorflow.contract import Reading
from visitorflow.redirect import redirect_options
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store

TEXTS = yaml.safe_load((PROJECT_ROOT / "public" / "texts.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def catalogue(settings: Settings) -> Catalogue:
    return seed_public_store(settings)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def base_url(settings: Settings, catalogue: Catalogue, clock: Clock):
    with serve(settings, clock) as url:
        yield url


def get(url: str, lang_header: str | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"Accept-Language": lang_header or ""})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode("utf-8")


def visible(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<style>.*?</style>|<[^>]+>", " ", page)).strip()


def test_a_site_in_overload_shows_full_and_proposes_sites_with_room(
    settings: Settings, catalogue: Catalogue, clock: Clock
) -> None:
    status = StatusCache(settings, catalogue, clock=clock).site("tam_thanh")
    assert status["level"] == "full"  # 380 people for 350
    assert status["colour"] == "#d21e1e"
    # The officials' advice, asked independently: the first two sites with room, in its order.
    options = redirect_options(Store.from_settings(settings), catalogue, settings, "tam_thanh",
                               NOW)
    expected = options[options["has_room"]].head(2)["site_id"].tolist()
    assert len(expected) == 2 and "nhi_thanh" not in expected  # crowded next door: no room
    assert [n["site_id"] for n in status["nearby"]] == expected
    assert all(n["level"] == "quiet" for n in status["nearby"])
    # Full until 15:00, then quiet: the best time is this afternoon.
    assert status["best_time"] == {"start": "2026-11-21T15:00:00+07:00",
                                   "end": "2026-11-21T16:00:00+07:00", "level": "quiet"}
    starts = [h["start"] for h in status["hours"]]
    # Open hours only (07:00–18:00), from the current hour to the end of tomorrow.
    assert starts[0] == "2026-11-21T10:00:00+07:00" and starts[-1] == "2026-11-22T17:00:00+07:00"
    assert len(starts) == 8 + 11
    assert [h["level"] for h in status["hours"][:5]] == ["full"] * 5
    assert status["data_time"] == "2026-11-21T09:58:00+07:00" and status["data_age_s"] == 120


def test_every_site_proposes_what_the_officials_advice_proposes(
    settings: Settings, catalogue: Catalogue, clock: Clock
) -> None:
    """Including sites whose alternatives are nudged by live counts (Kỳ Cùng, Hữu Nghị, Bắc
    Lệ report now): the same two sites, in the same order, with the same level on arrival."""
    cache = StatusCache(settings, catalogue, clock=clock)
    store = Store.from_settings(settings)
    proposals = 0
    for site in catalogue.sites:
        options = redirect_options(store, catalogue, settings, site.id, NOW)
        officials = options[options["has_room"]].head(2)
        nearby = cache.site(site.id)["nearby"]
        assert [(n["site_id"], n["level"]) for n in nearby] == [
            (r.site_id, public_level(r.predicted_level)) for r in officials.itertuples()
        ], site.id
        proposals += len(nearby)
    assert proposals >= 20


def test_each_language_renders(base_url: str, catalogue: Catalogue) -> None:
    site = catalogue.site("tam_thanh")
    for lang in ("vi", "en", "zh"):
        code, headers, page = get(f"{base_url}/site/tam_thanh?lang={lang}")
        assert code == 200 and headers["Content-Language"] == lang
        assert f'<html lang="{lang}">' in page
        text = visible(page)
        assert site.name.get(lang) in text
        assert TEXTS["levels"]["full"][lang] in text
        assert TEXTS["page"]["best_time"][lang] in text
        assert TEXTS["page"]["nearby"][lang] in text
        for other in ("nhat_thanh", "thanh_nha_mac"):
            assert catalogue.site(other).name.get(lang) in text
        assert "<script" not in page.lower()
    # The phone's language chooses when there is no ?lang=.
    assert get(f"{base_url}/site/tam_thanh", "zh-CN,zh;q=0.9,en;q=0.8")[1][
        "Content-Language"] == "zh"
    assert get(f"{base_url}/site/tam_thanh", "fr-FR,en;q=0.5")[1]["Content-Language"] == "en"
    assert get(f"{base_url}/site/tam_thanh", "fr-FR")[1]["Content-Language"] == "vi"


def test_language_choice() -> None:
    assert choose_language("en", "zh-CN", "vi") == "en"
    assert choose_language("xx", "zh-TW;q=0.4,en-GB;q=0.8", "vi") == "en"
    assert choose_language(None, "de,vi-VN;q=0.1", "en") == "vi"
    assert choose_language(None, "en;q=0", "zh") == "zh"
    assert choose_language(None, None, "vi") == "vi"


def test_the_json_feed_matches_the_page(base_url: str) -> None:
    code, headers, body = get(f"{base_url}/api/v1/sites/tam_thanh.json")
    assert code == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=10"
    assert headers["Access-Control-Allow-Origin"] == "*"
    feed = json.loads(body)
    _, _, page = get(f"{base_url}/site/tam_thanh?lang=en")
    assert re.search(r'data-level="(\w+)"', page)[1] == feed["level"]
    assert re.findall(r'<li data-site="(\w+)">', page) == [n["site_id"] for n in feed["nearby"]]
    assert re.findall(r'<time datetime="([^"]+)">', page) == [h["start"] for h in feed["hours"]]
    hour_levels = re.findall(r'</time> <span class="dot" style="background:#\w+"></span>([^<]+)<',
                             page)
    assert hour_levels == [TEXTS["levels"][h["level"]]["en"] for h in feed["hours"]]
    best = re.search(r'id="best">([^<]+)<', page)[1]
    assert best.startswith("Today 15:00–16:00") and feed["best_time"]["start"].endswith(
        "T15:00:00+07:00")
    assert "Updated at 09:58 (2 min ago)" in visible(page)
    # The province-wide feed holds every site, each equal to its own feed.
    _, _, all_body = get(f"{base_url}/api/v1/sites.json")
    everything = json.loads(all_body)
    assert len(everything["sites"]) == 17
    assert everything["generated"] == "2026-11-21T10:00:00+07:00"
    assert next(s for s in everything["sites"] if s["site_id"] == "tam_thanh") == feed
    assert get(f"{base_url}/api/v1/sites/nowhere.json")[0] == 404


def test_counts_are_shown_only_if_the_province_chooses(
    settings: Settings, catalogue: Catalogue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(settings, clock) as url:
        feed = json.loads(get(f"{url}/api/v1/sites/tam_thanh.json")[2])
        page = get(f"{url}/site/tam_thanh?lang=en")[2]
    assert "occupancy" not in feed and "capacity" not in feed
    assert all("occupancy" not in h for h in feed["hours"])
    assert "380" not in visible(page) and "350" not in visible(page)

    monkeypatch.setenv("VISITORFLOW_PUBLIC__SHOW_COUNTS", "true")
    get_settings.cache_clear()
    with serve(get_settings(), clock) as url:
        feed = json.loads(get(f"{url}/api/v1/sites/tam_thanh.json")[2])
        page = get(f"{url}/site/tam_thanh?lang=en")[2]
    assert (feed["occupancy"], feed["capacity"]) == (380, 350)
    assert feed["hours"][0]["occupancy"] == 385  # 1.1 x 350
    assert "380 of 350 people" in visible(page)


def test_nothing_of_the_officials_is_reachable(base_url: str) -> None:
    for path in ("/_stcore/health", "/alerts", "/app/static/blank_style.json",
                 "/api/v1/alerts.json", "/site/../dashboard", "/site/tam_thanh/ack"):
        assert get(base_url + path)[0] == 404, path
    request = urllib.request.Request(f"{base_url}/site/tam_thanh", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    for path in ("/", "/site/tam_thanh"):
        code, headers, page = get(base_url + path)
        assert code == 200
        links = re.findall(r'href="([^"]+)"', page)
        assert links and all(re.match(r"^(/site/\w+|/)?\?lang=(vi|en|zh)$", link)
                             for link in links), links
        assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_no_data_and_the_age_of_the_data(base_url: str, catalogue: Catalogue) -> None:
    page = get(f"{base_url}/site/mau_son?lang=en")[2]  # no counter ever reported
    assert 'data-level="no_data"' in page
    assert "No data from the gate counters yet" in visible(page)
    index = visible(get(f"{base_url}/?lang=en")[2])
    assert "Tam Thanh Cave — Full" in index, index
    assert "Mẫu Sơn Mountain Tourist Area — No data" in index, index


def test_one_store_read_serves_every_phone_for_the_cache_period(
    settings: Settings, catalogue: Catalogue, clock: Clock
) -> None:
    cache = StatusCache(settings, catalogue, clock=clock)
    assert cache.site("den_bac_le")["level"] == "quiet"  # 50 of 500
    # 300 more people arrive: 350 of 500 is busy, but not before the cache period is over.
    Store.from_settings(settings).write_batch(
        [Reading("den_bac_le", "main", "lsn-den_bac_le-main", 2, NOW - timedelta(minutes=1),
                 60, 300, 0)], NOW)
    clock.now = NOW + timedelta(seconds=settings.public.cache_s - 1)
    assert cache.site("den_bac_le")["level"] == "quiet"
    clock.now = NOW + timedelta(seconds=settings.public.cache_s)
    assert cache.site("den_bac_le")["level"] == "busy"


def test_a_held_store_serves_the_last_status_or_says_unavailable(
    settings: Settings, catalogue: Catalogue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISITORFLOW_STORE__LOCK_TIMEOUT_S", "0.3")
    get_settings.cache_clear()
    quick = get_settings()
    with serve(quick, clock) as url:
        assert get(f"{url}/site/tam_thanh?lang=en")[0] == 200
        holder = hold_store_lock(quick.store.path)
        try:
            clock.now = NOW + timedelta(minutes=1)
            code, _, page = get(f"{url}/site/tam_thanh?lang=en")
            assert code == 200 and 'data-level="full"' in page  # the last status, its own age
        finally:
            holder.terminate()
            holder.wait(10)
    with serve(quick, clock) as url:  # a fresh server: nothing cached yet
        holder = hold_store_lock(quick.store.path)
        try:
            code, headers, page = get(f"{url}/site/tam_thanh?lang=en")
        finally:
            holder.terminate()
            holder.wait(10)
    assert code == 503 and headers["Retry-After"] == "30"
    assert TEXTS["page"]["unavailable"]["en"] in page and "Traceback" not in page


def test_the_server_runs_as_its_own_process(settings: Settings, processes, tmp_path: Path
                                            ) -> None:
    """`python -m public.server` on the settings' port, before any store exists: every site
    says no data; a port already taken is a clear error."""
    port = settings.public.port
    proc = processes.start("public.server")

    def healthy() -> bool:
        try:
            return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        except OSError:
            return False

    wait_until(healthy, 30, "the public server to answer")
    code, _, page = get(f"http://127.0.0.1:{port}/site/tam_thanh?lang=en")
    assert code == 200 and 'data-level="no_data"' in page
    second = subprocess.run([sys.executable, "-m", "public.server"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in second.stderr
    assert "Traceback" not in second.stderr
    assert proc.poll() is None


def test_every_string_has_three_languages_with_the_same_placeholders() -> None:
    placeholder = re.compile(r"\{(\w*)\}")
    for section, entries in TEXTS.items():
        for key, tr in entries.items():
            assert set(tr) == {"vi", "en", "zh"} and all(tr.values()), f"{section}.{key}"
            fields = {lang: sorted(placeholder.findall(tr[lang])) for lang in tr}
            assert fields["vi"] == fields["en"] == fields["zh"], f"{section}.{key}: {fields}"

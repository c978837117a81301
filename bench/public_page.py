"""Page weight and time to first render of the public visitor page on a throttled phone link.

    .venv/bin/python -m bench.public_page [--site tam_thanh] [--runs 7]

Serves the public app (public/server.py) from this process against the store in the settings
(the demo's, with its live counts and forecasts), then loads one site's page in headless
Chromium (/usr/bin/chromium, phone viewport 360 x 740, no cache, a fresh browser context per
load) under network profiles set through the DevTools protocol
(Network.emulateNetworkConditions) and a 4x CPU slowdown (Emulation.setCPUThrottlingRate) for
a phone. Reports medians of the first contentful paint (FCP, the browser's own paint timing),
the response end, and the bytes on the wire; and, server side, the median time to serve the
page from the status cache. Prints a Markdown table for bench/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request

from public.server import background_server, create_app

# The Chromium and flags of the browser tests (quiet and offline: docs/platform-notes.md).
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from visitorflow.settings import get_settings

PHONE = {"width": 360, "height": 740}
# (name, round-trip latency ms, download kbit/s, upload kbit/s, CPU slowdown)
PROFILES = [
    ("unthrottled (baseline)", 0, 0, 0, 1),
    ("4G, slow (Lighthouse mobile: 150 ms, 1.6 Mbit/s)", 150, 1600, 750, 4),
    ("weak signal (DevTools 3G: 300 ms, 750 kbit/s)", 300, 750, 250, 4),
]


def _load_once(browser, url: str, profile: tuple) -> dict[str, float]:
    _, latency, down, up, cpu = profile
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                  locale="vi-VN")
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        if latency or down:
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": latency,
                "downloadThroughput": down * 1000 / 8, "uploadThroughput": up * 1000 / 8,
            })
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu})
        wire = 0.0
        requests = []
        page.on("requestfinished", lambda r: requests.append(r))
        started = time.perf_counter()
        page.goto(url, wait_until="load")
        load_s = time.perf_counter() - started
        # The paint entry may land a frame after the load event: wait for it.
        fcp = page.evaluate("""() => new Promise(resolve => {
            const found = () => {
                const e = performance.getEntriesByName('first-contentful-paint')[0];
                if (e) resolve(e.startTime);
            };
            new PerformanceObserver(found).observe({type: 'paint', buffered: true});
            found();
            setTimeout(() => resolve(null), 10000);
        })""")
        timing = page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return {response_end: nav.responseEnd, encoded: nav.encodedBodySize,
                    decoded: nav.decodedBodySize};
        }""")
        if fcp is None:
            raise RuntimeError("Chromium reported no first contentful paint")
        for request in requests:
            sizes = request.sizes()
            wire += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        return {"fcp_ms": fcp, "response_end_ms": timing["response_end"],
                "load_ms": load_s * 1000, "wire_bytes": wire,
                "body_gzip_bytes": timing["encoded"], "body_bytes": timing["decoded"],
                "requests": len(requests)}
    finally:
        context.close()


def _server_side(url: str, n: int = 200) -> float:
    """Median milliseconds to fetch the page from the warm status cache (loopback)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="tam_thanh")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    settings = get_settings()
    app = create_app(settings)
    rows = []
    with background_server(app) as base, sync_playwright() as pw:
        url = f"{base}/site/{args.site}"
        status = app.cache.site(args.site)
        print(f"page {url}: level {status['level']}, {len(status['hours'])} forecast hours, "
              f"{len(status['nearby'])} nearby sites; store {settings.store.path}")
        server_ms = _server_side(url)
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for profile in PROFILES:
                runs = [_load_once(browser, url, profile) for _ in range(args.runs)]
                rows.append((profile[0], runs))
                print(f"{profile[0]}: FCP " + " / ".join(f"{r['fcp_ms']:.0f}" for r in runs),
                      flush=True)
        finally:
            browser.close()
    baseline = statistics.median(r["fcp_ms"] for r in rows[0][1])
    print(f"\nserver: page from the status cache, median of 200 loopback GETs: "
          f"{server_ms:.1f} ms")
    first = rows[0][1][0]
    print(f"page: {first['body_bytes']:.0f} B of HTML ({first['body_gzip_bytes']:.0f} B "
          f"gzip), {first['requests']} request(s), {first['wire_bytes']:.0f} B on the wire "
          f"with headers\n")
    print("| profile | FCP median, ms | FCP / baseline | FCP best, ms | response end median, ms "
          "| load event median, ms | runs (FCP, ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in rows:
        fcp = statistics.median(r["fcp_ms"] for r in runs)
        print(f"| {name} | **{fcp:.0f}** | {fcp / baseline:.1f} | "
              f"{min(r['fcp_ms'] for r in runs):.0f} | "
              f"{statistics.median(r['response_end_ms'] for r in runs):.0f} | "
              f"{statistics.median(r['load_ms'] for r in runs):.0f} | "
              + " / ".join(f"{r['fcp_ms']:.0f}" for r in runs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

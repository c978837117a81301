"""The scenario demo, timed: `python -m orchestration.scenario <name> --stop-at-end` from start
to end of its day (history, refit, play), while a headless Chromium signed in as the
scenario's operator goes round the live, alerts and redirect pages and times each page's
script run (from the click in the sidebar until Streamlit reports the run finished), and
photographs the peak (Kỳ Cùng's live overload alert open) for the README into
docs/screenshots/ (live map with red sites, the alerts with a forecast alert's lead time, the
redirect advice for Đền Kỳ Cùng, the public page on a phone). For the ky-cung scenario.

    .venv/bin/python -m bench.scenario_bench ky-cung --work-dir /tmp/scenario_bench

Figures go to bench/results.md by hand (the section "Scenario demo").
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.screenshots import CHROMIUM, CHROMIUM_ARGS, IDLE, OUT, PROJECT_ROOT, settle

PAGES = {"live": "Bản đồ trực tiếp", "alerts": "Cảnh báo", "redirect": "Gợi ý điểm thay thế"}
PHONE = {"width": 360, "height": 740}  # as tests/test_public_browser.py
NAV = '[data-testid="stSidebarNav"]'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_for_line(log: Path, needle: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the scenario did not get to {needle!r}:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(1)


def at_peak(store_path: Path) -> bool:
    """The peak: Kỳ Cùng's live overload alert is open (read-only, as any reader)."""
    from visitorflow.settings import get_settings
    from visitorflow.store import Store, StoreError

    settings = get_settings().model_copy(deep=True)
    settings.store.path = store_path
    try:
        alerts = Store.from_settings(settings).open_alerts()
    except StoreError:  # the collector is committing: next round
        return False
    if alerts is None or alerts.empty:
        return False
    return bool(((alerts["site_id"] == "den_ky_cung") & (alerts["kind"] == "live")
                 & (alerts["level"] == "overload")).any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="ky-cung")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/scenario_bench"))
    parser.add_argument("--speed", type=float, default=None)
    parser.add_argument("--history-days", type=int, default=None)
    parser.add_argument("--dashboard-port", type=int, default=8622)
    parser.add_argument("--public-port", type=int, default=8722)
    parser.add_argument("--mqtt-port", type=int, default=18942)
    parser.add_argument("--screenshots", type=Path, default=OUT,
                        help="where the peak's PNGs go (default docs/screenshots)")
    args = parser.parse_args()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from orchestration.scenario import DEMO_OPERATOR
    from visitorflow.users import add_user

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: make system-deps-test")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="scenario_bench_"))
    users = tmp / "users.json"
    password = secrets.token_urlsafe(12)
    add_user(users, DEMO_OPERATOR, "operator", password)
    log = args.work_dir / "scenario.log"
    command = [sys.executable, "-m", "orchestration.scenario", args.scenario, "--stop-at-end",
               "--work-dir", str(args.work_dir), "--users-path", str(users),
               "--dashboard-port", str(args.dashboard_port),
               "--public-port", str(args.public_port), "--mqtt-port", str(args.mqtt_port),
               "--no-progress",
               *(["--speed", str(args.speed)] if args.speed else []),
               *(["--history-days", str(args.history_days)] if args.history_days else [])]
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=os.environ.copy())
    timings: dict[str, list[float]] = {name: [] for name in PAGES}
    shots: list[str] = []
    try:
        wait_for_line(log, "dashboard: http://localhost", proc, 3600)
        ready_s = time.perf_counter() - started
        url = f"http://127.0.0.1:{args.dashboard_port}/"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}_stcore/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
            page.goto(url)
            page.get_by_label("Tên đăng nhập").fill(DEMO_OPERATOR)
            page.get_by_label("Mật khẩu").fill(password)
            page.get_by_role("button", name="Đăng nhập").click()
            page.wait_for_selector(NAV, timeout=120_000)
            settle(page)
            while proc.poll() is None:
                for name, title in PAGES.items():
                    if proc.poll() is not None:
                        break
                    began = time.perf_counter()
                    try:
                        page.locator(NAV).get_by_text(title, exact=True).first.click()
                        page.wait_for_timeout(100)  # the run starts after the click's message
                        page.wait_for_selector(IDLE, timeout=120_000)
                    except PlaywrightTimeout:
                        if proc.poll() is not None:  # the day is over: the dashboard is gone
                            break
                        raise
                    timings[name].append(time.perf_counter() - began)
                    if name == "live" and not shots and at_peak(
                            args.work_dir / "store.duckdb"):
                        shots = take_peak_screenshots(page, browser, args)
                page.wait_for_timeout(1000)
            browser.close()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    total_s = time.perf_counter() - started
    summary = json.loads((args.work_dir / "summary.json").read_text(encoding="utf-8"))
    history = json.loads((args.work_dir / "history.json").read_text(encoding="utf-8"))
    print(f"scenario {args.scenario}: total {total_s:.0f} s wall; ready (history + refit "
          f"+ start) {ready_s:.0f} s; backfill {history['backfill_s']} s, refit "
          f"{history['refit_s']} s; day played in {summary['play_wall_s']} s at "
          f"{summary['speed']}x")
    for name, values in timings.items():
        if values:
            print(f"  {name}: {len(values)} renders, median {statistics.median(values):.2f} s, "
                  f"p95 {percentile(values, 0.95):.2f} s, max {max(values):.2f} s")
    (args.work_dir / "page_timings.json").write_text(json.dumps(timings), encoding="utf-8")
    for alert in summary["alerts"]:
        print(f"  {alert['text']}")
    print("screenshots: " + (", ".join(shots) or "none (the peak was not reached)"))


def take_peak_screenshots(page, browser, args: argparse.Namespace) -> list[str]:
    """The peak as the README shows it; returns the files written."""
    out = args.screenshots
    out.mkdir(parents=True, exist_ok=True)
    saved = []

    def save(target, name: str) -> None:
        path = out / f"scenario_{name}.png"
        target.screenshot(path=str(path), full_page=True)
        saved.append(str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT)
                     else str(path))

    settle(page, 3000)
    save(page, "live")
    for name in ("alerts", "redirect"):
        page.locator(NAV).get_by_text(PAGES[name], exact=True).first.click()
        settle(page, 1500)
        if name == "redirect":
            page.get_by_label("Điểm đang đông").click()
            page.get_by_role("option", name="Đền Kỳ Cùng", exact=True).click()
            settle(page, 1500)
        save(page, name)
    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                java_script_enabled=False).new_page()
    phone.goto(f"http://127.0.0.1:{args.public_port}/site/den_ky_cung?lang=vi")
    save(phone, "public_phone")
    phone.context.close()
    page.locator(NAV).get_by_text(PAGES["live"], exact=True).first.click()
    settle(page)
    return saved


if __name__ == "__main__":
    main()

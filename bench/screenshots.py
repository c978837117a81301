"""Screenshots of every dashboard page, for the README: starts `streamlit run dashboard/app.py`
on a filled store, drives the system's Chromium with Playwright (offline, no browser
download) and saves one PNG per page into docs/screenshots/.

The pages are read from dashboard/app.py and dashboard/shared.py (every
`st.Page("views/<name>.py", ...)`), their titles from dashboard/texts.yaml (`pages`), so a
page added later is photographed without touching this script. When the dashboard asks
officials to sign in, the script signs in with VISITORFLOW_SCREENSHOT_USER and
VISITORFLOW_SCREENSHOT_PASSWORD if set; otherwise it gives the dashboard a temporary users
file with one admin account (so that the admin page shows too) and signs in with that.
Pages in Vietnamese (the default); the live page also in English and Chinese, the planner
also for a date range (its heat map).

    .venv/bin/python -m bench.screenshots                         # the settings' store
    .venv/bin/python -m bench.screenshots --store /tmp/bench_dashboard/visitorflow.duckdb
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OUT = PROJECT_ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# As in tests/test_dashboard_browser.py (docs/platform-notes.md): software WebGL, no
# background traffic.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
PAGE_RE = re.compile(r'st\.Page\(\s*"views/(\w+)\.py"[^)]*?\[\s*"(\w+)"\s*\]', re.S)
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
LANGUAGE_LABEL = "Ngôn ngữ · Language · 语言"
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English", "zh": "中文"}


def dashboard_pages() -> list[tuple[str, str]]:
    """(view name, title key) of every page the app registers, in order, default first."""
    found: list[tuple[str, str]] = []
    for source in ("app.py", "shared.py"):
        text = (PROJECT_ROOT / "dashboard" / source).read_text(encoding="utf-8")
        found += [m for m in PAGE_RE.findall(text) if m not in found]
    return found


def texts() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "dashboard" / "texts.yaml").read_text("utf-8"))


def unused_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def account(env: dict[str, str], workdir: Path) -> tuple[str, str] | None:
    """Who signs in: the operator's account from the environment, else a temporary admin
    in a users file of its own (never the real one). None: the dashboard has no sign-in."""
    if os.environ.get("VISITORFLOW_SCREENSHOT_USER"):
        return (os.environ["VISITORFLOW_SCREENSHOT_USER"],
                os.environ.get("VISITORFLOW_SCREENSHOT_PASSWORD", ""))
    try:
        from visitorflow.users import add_user
    except ImportError:
        return None
    users = workdir / "users.json"
    password = secrets.token_urlsafe(12)
    add_user(users, "screenshots", "admin", password)
    env["VISITORFLOW_AUTH__USERS_PATH"] = str(users)
    return "screenshots", password


def start_dashboard(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    health = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(health, timeout=1).close()
            return proc
        except OSError:  # not listening yet
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the dashboard did not start:\n{log.read_text(errors='replace')}")


def settle(page, extra_ms: int = 2500) -> None:  # a Playwright page
    """Wait for the script run to finish, then for charts and the map to draw."""
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_timeout(extra_ms)
    page.wait_for_selector(IDLE, timeout=120_000)


def sign_in_if_asked(page, who: tuple[str, str] | None, labels: dict) -> bool:
    """Fill the sign-in form if the dashboard shows one; False if it cannot sign in."""
    password = page.locator('input[type="password"]')
    if password.count() == 0:
        return True
    if who is None:
        return False
    page.get_by_label(labels["name"]["vi"]).fill(who[0])
    password.first.fill(who[1])
    page.get_by_role("button", name=labels["submit"]["vi"]).click()
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=60_000)
    return True


def set_language(page, lang: str) -> None:  # a Playwright page
    page.get_by_label(LANGUAGE_LABEL).click()
    page.get_by_role("option", name=LANGUAGE_NAMES[lang]).click()
    settle(page, 1000)


def open_page(page, title: str) -> None:  # a Playwright page
    """Through the sidebar, as an official does (a new URL would start a new session)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).first.click()
    settle(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="store to show (default: the settings')")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from visitorflow.settings import get_settings

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: make system-deps-test")
    env = os.environ.copy()
    store = args.store or get_settings().store.path
    if not Path(store).exists():
        raise SystemExit(f"no store at {store}: run `make demo` (or make backfill and make "
                         "forecast) first, or pass --store")
    env["VISITORFLOW_STORE__PATH"] = str(Path(store).resolve())
    table = texts()
    pages = dashboard_pages()
    args.out.mkdir(parents=True, exist_ok=True)
    port = unused_port()
    with tempfile.TemporaryDirectory() as tmp:
        who = account(env, Path(tmp))
        proc = start_dashboard(env, port, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": args.width,
                                                        "height": args.height})
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
                settle(page)
                if not sign_in_if_asked(page, who, table.get("auth", {})):
                    raise SystemExit("the dashboard asks to sign in: set "
                                     "VISITORFLOW_SCREENSHOT_USER and _PASSWORD")
                saved = []
                for view, key in pages:
                    title = table["pages"][key]["vi"]
                    if page.locator('[data-testid="stSidebarNav"]').get_by_text(
                            title, exact=True).count() == 0:
                        print(f"skipped {view}: not in the sidebar for this account")
                        continue
                    open_page(page, title)
                    path = args.out / f"{view}.png"
                    page.screenshot(path=str(path), full_page=True)
                    saved.append(path)
                    print(f"saved {path.relative_to(PROJECT_ROOT)}")
                if ("planner", "planner") in pages:  # its heat map shows for the coming week
                    open_page(page, table["pages"]["planner"]["vi"])
                    page.get_by_text(table["planner"]["by_range"]["vi"], exact=True).click()
                    settle(page)
                    path = args.out / "planner_range.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(f"saved {path.relative_to(PROJECT_ROOT)}")
                first_view, first_key = pages[0]
                open_page(page, table["pages"][first_key]["vi"])
                for lang in ("en", "zh"):
                    set_language(page, lang)
                    path = args.out / f"{first_view}_{lang}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(f"saved {path.relative_to(PROJECT_ROOT)}")
                browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()

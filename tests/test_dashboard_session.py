"""Sign-in that survives a reload: signed, expiring session tokens (visitorflow/sessions.py)
refused when expired, tampered with, signed out, or when the account was removed or its
role changed; failed sign-ins that stay locked across a restart; and the real dashboard in
Chromium keeping an official signed in across reloads until sign-out or removal."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from visitorflow.sessions import (
    COOKIE_NAME,
    SECRET_FILE,
    SIGNED_OUT_FILE,
    Refused,
    Sessions,
    session_secret,
)
from visitorflow.settings import Settings
from visitorflow.users import LoginThrottle, User, hash_password, remove_user

from .test_dashboard_browser import (  # noqa: F401 - fixtures used by name
    CHROMIUM_ARGS,
    chromium,
    dashboard_url,
    sign_in,
)

HOURS = 8
NOW = 1_780_000_000.0  # a fixed wall-clock moment (2026)
OFFICIAL = User("nguyen.van.a", "operator", hash_password("long-password-1"))


@pytest.fixture
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sessions:
    return Sessions(session_secret(tmp_path), HOURS, tmp_path / SIGNED_OUT_FILE)


def test_a_token_signs_its_official_in_until_the_session_limit(sessions: Sessions) -> None:
    token = sessions.issue(OFFICIAL, now=NOW)
    users = {OFFICIAL.name: OFFICIAL}
    assert sessions.check(token, users, now=NOW + 60) == (OFFICIAL, None)
    assert sessions.check(token, users, now=NOW + HOURS * 3600 - 1) == (OFFICIAL, None)
    assert sessions.check(token, users, now=NOW + HOURS * 3600 + 1) == (None, Refused.EXPIRED)
    assert sessions.seconds_left(token, now=NOW + 3600) == (HOURS - 1) * 3600
    assert sessions.seconds_left(token, now=NOW + HOURS * 3600 + 5) == 0
    # Its content is readable, not secret: nothing in it but who, role, when and an id.
    assert "long-password" not in token and "scrypt" not in token


def test_a_tampered_or_foreign_token_is_refused(sessions: Sessions, tmp_path: Path) -> None:
    users = {OFFICIAL.name: OFFICIAL}
    token = sessions.issue(OFFICIAL, now=NOW)
    payload, signature = token.split(".")
    # Another payload under the same signature (e.g. an admin's role written in).
    forged = sessions.issue(User(OFFICIAL.name, "admin", ""), now=NOW).split(".")[0]
    for bad in (f"{forged}.{signature}", f"{payload}.{signature[:-2]}AA", payload, "", "x.y"):
        assert sessions.check(bad, users, now=NOW) == (None, Refused.TAMPERED), bad
    other = Sessions(b"another secret entirely, 32 bytes", HOURS, tmp_path / "other.json")
    assert sessions.check(other.issue(OFFICIAL, now=NOW), users, now=NOW) == (
        None, Refused.TAMPERED)
    # Issued in the future: not a clock of this machine.
    assert sessions.check(sessions.issue(OFFICIAL, now=NOW + 3600), users, now=NOW) == (
        None, Refused.TAMPERED)


def test_a_removed_account_or_a_changed_role_ends_the_session(sessions: Sessions) -> None:
    token = sessions.issue(OFFICIAL, now=NOW)
    assert sessions.check(token, {}, now=NOW) == (None, Refused.REMOVED)
    promoted = User(OFFICIAL.name, "admin", OFFICIAL.password_hash)
    assert sessions.check(token, {OFFICIAL.name: promoted}, now=NOW) == (
        None, Refused.ROLE_CHANGED)


def test_a_signed_out_token_is_refused_by_every_process(
    sessions: Sessions, tmp_path: Path
) -> None:
    users = {OFFICIAL.name: OFFICIAL}
    kept, ended = sessions.issue(OFFICIAL, now=NOW), sessions.issue(OFFICIAL, now=NOW)
    # Another dashboard process, started before the sign-out, reads the same file.
    other_process = Sessions(session_secret(tmp_path), HOURS, tmp_path / SIGNED_OUT_FILE)
    assert other_process.check(ended, users, now=NOW) == (OFFICIAL, None)
    time.sleep(0.01)  # a distinct file time for the other process to notice
    sessions.sign_out(ended, now=NOW + 10)
    assert sessions.check(ended, users, now=NOW + 20) == (None, Refused.SIGNED_OUT)
    assert other_process.check(ended, users, now=NOW + 20) == (None, Refused.SIGNED_OUT)
    assert sessions.check(kept, users, now=NOW + 20) == (OFFICIAL, None), "only that token"
    path = tmp_path / SIGNED_OUT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Ids are kept until their token would have expired anyway, then dropped.
    later = sessions.issue(OFFICIAL, now=NOW + HOURS * 3600 + 10)
    sessions.sign_out(later, now=NOW + HOURS * 3600 + 20)
    assert len(json.loads(path.read_text("utf-8"))) == 1
    sessions.sign_out("not a token", now=NOW)  # nothing to record


def test_the_secret_is_made_once_private_or_taken_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "secrets"
    first = session_secret(folder)
    assert len(first) == 32 and session_secret(folder) == first
    assert stat.S_IMODE((folder / SECRET_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    configured = "from the deployment's environment file"
    assert session_secret(folder, configured) == configured.encode()


def test_a_lockout_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "failures.json"
    before = LoginThrottle(max_failures=2, lockout_s=300, path=path)
    before.failed("Admin", now=NOW)
    before.failed("admin", now=NOW + 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    after = LoginThrottle(max_failures=2, lockout_s=300, path=path)  # the restarted dashboard
    assert after.locked_for("admin", now=NOW + 2) == pytest.approx(299)
    assert after.locked_for("admin", now=NOW + 302) == 0
    after.succeeded("admin")
    assert LoginThrottle(2, 300, path).locked_for("admin", now=NOW + 2) == 0
    path.write_text("{broken", "utf-8")
    assert LoginThrottle(2, 300, path).locked_for("admin", now=NOW) == 0, "a damaged file"


# -- the dashboard in Chromium -------------------------------------------------------------


@pytest.mark.browser
def test_a_reload_keeps_the_official_signed_in_until_sign_out_or_removal(
    chromium: Path, dashboard_url: str, dashboard_store: Settings,  # noqa: F811
    dashboard_users: dict[str, str],
) -> None:
    from playwright.sync_api import sync_playwright

    viewer, operator = dashboard_users["viewer"], dashboard_users["operator"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            sign_in(page, dashboard_url, viewer)
            page.wait_for_function(f"document.cookie.includes('{COOKIE_NAME}=')",
                                   timeout=30_000)
            cookie = next(c for c in context.cookies() if c["name"] == COOKIE_NAME)
            # The control-room screen reloads: still signed in, no form.
            page.reload()
            page.get_by_text(f"Đăng nhập: {viewer}").wait_for(timeout=60_000)
            assert page.get_by_label("Mật khẩu").count() == 0

            # Sign-out deletes the cookie, and a reload shows the form.
            page.get_by_role("button", name="Đăng xuất").click()
            page.get_by_label("Mật khẩu").wait_for(timeout=30_000)
            page.wait_for_function(f"!document.cookie.includes('{COOKIE_NAME}=')",
                                   timeout=30_000)
            page.reload()
            page.get_by_label("Mật khẩu").wait_for(timeout=60_000)
            # A copy of the signed-out cookie is refused by the server too.
            copied = browser.new_context()
            copied.add_cookies([cookie])
            replay = copied.new_page()
            replay.goto(dashboard_url)
            replay.get_by_label("Mật khẩu").wait_for(timeout=60_000)
            copied.close()

            # The operator signs in; the account is removed; the next reload signs out.
            sign_in(page, dashboard_url, operator)
            page.reload()
            page.get_by_text(f"Đăng nhập: {operator}").wait_for(timeout=60_000)
            remove_user(dashboard_store.auth.users_path, operator)
            page.reload()
            page.get_by_label("Mật khẩu").wait_for(timeout=60_000)
            assert page.get_by_text(f"Đăng nhập: {operator}").count() == 0
        finally:
            browser.close()

    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"], "served over http here"
    lifetime = cookie["expires"] - time.time()
    assert HOURS * 3600 - 600 < lifetime <= HOURS * 3600, lifetime

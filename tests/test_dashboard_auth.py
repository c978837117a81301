"""Officials sign in: accounts with hashed passwords, roles deciding pages and
controls, expiry, throttled failures, and the admin page's capacities and thresholds with
who, when and old → new. Unit tests of visitorflow.users, then the real app in AppTest."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from visitorflow.alerts import evaluate_alerts
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import utc_now
from visitorflow.limits import effective_limits
from visitorflow.live import live_status
from visitorflow.sessions import Refused, sessions_for
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store
from visitorflow.users import (
    LoginThrottle,
    UsersError,
    add_user,
    authenticate,
    ensure_first_admin,
    hash_password,
    load_users,
    set_role,
    verify_password,
)

from .conftest import DASHBOARD_APP, TEST_PASSWORD, sign_in

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


# -- accounts --------------------------------------------------------------------------------


def test_passwords_are_salted_scrypt_hashes_and_verify() -> None:
    first, second = hash_password("lang-son-2026"), hash_password("lang-son-2026")
    assert first.startswith("scrypt$16384$8$1$") and first != second  # salted
    assert "lang-son-2026" not in first
    assert verify_password("lang-son-2026", first) and verify_password("lang-son-2026", second)
    assert not verify_password("lang-son-2027", first)
    assert not verify_password("lang-son-2026", "plain-text")


def test_the_users_file_is_private_and_checked_on_load(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "users.json"
    add_user(path, "nguyen.van.a", "operator", "mật-khẩu-dài")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "mật-khẩu-dài" not in path.read_text(encoding="utf-8")
    users = load_users(path)
    assert users["nguyen.van.a"].role == "operator"
    assert authenticate(users, "nguyen.van.a", "mật-khẩu-dài") is not None
    assert authenticate(users, "nguyen.van.a", "wrong password") is None
    assert authenticate(users, "nobody", "mật-khẩu-dài") is None
    with pytest.raises(UsersError, match="exists"):
        add_user(path, "nguyen.van.a", "admin", "another-password")
    with pytest.raises(UsersError, match="at least 8"):
        add_user(path, "short", "viewer", "abc")
    with pytest.raises(UsersError, match="use one of viewer, operator, admin"):
        add_user(path, "chief", "superuser", "long-enough-1")
    with pytest.raises(UsersError, match="user name"):
        add_user(path, "x'; DROP TABLE readings; --", "viewer", "long-enough-1")

    path.write_text('{"users": {"b": {"role": "boss", "password": "scrypt$x"}}}', "utf-8")
    with pytest.raises(UsersError, match=r"users\.b\.role = 'boss': use one of"):
        load_users(path)
    path.write_text('{"users": {"b": {"role": "admin", "password": "hunter2"}}}', "utf-8")
    with pytest.raises(UsersError, match=r"users\.b\.password is not a scrypt hash.*passwd b"):
        load_users(path)
    path.write_text("{not json", "utf-8")
    with pytest.raises(UsersError, match="cannot be read"):
        load_users(path)


def test_cli_takes_the_password_from_stdin_never_argv(settings: Settings) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "visitorflow.users", "add", "tran.thi.b", "--role", "operator",
         "--password-stdin"],
        input="secret-from-stdin\n", capture_output=True, text=True, cwd=PROJECT_ROOT,
        env=os.environ.copy(), timeout=60,
    )
    assert run.returncode == 0, run.stderr
    users = load_users(settings.auth.users_path)
    assert users["tran.thi.b"].role == "operator"
    assert verify_password("secret-from-stdin", users["tran.thi.b"].password_hash)
    bad = subprocess.run(
        [sys.executable, "-m", "visitorflow.users", "role", "tran.thi.b", "root"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=os.environ.copy(), timeout=60,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    gone = subprocess.run(
        [sys.executable, "-m", "visitorflow.users", "passwd", "nobody", "--password-stdin"],
        input="whatever-long\n", capture_output=True, text=True, cwd=PROJECT_ROOT,
        env=os.environ.copy(), timeout=60,
    )
    assert gone.returncode == 2 and "no user 'nobody'" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_the_throttle_locks_a_name_after_repeated_failures() -> None:
    throttle = LoginThrottle(max_failures=3, lockout_s=60)
    for i in range(3):
        assert throttle.locked_for("Admin", now=100 + i) == 0
        throttle.failed("Admin", now=100 + i)
    assert throttle.locked_for("admin", now=103) == pytest.approx(59)  # names: any case
    assert throttle.locked_for("someone.else", now=103) == 0
    assert throttle.locked_for("admin", now=163) == 0  # the lockout ran out
    throttle.failed("admin", now=163)
    assert throttle.locked_for("admin", now=164) == 0, "a fresh series after the lockout"
    throttle.succeeded("admin")
    assert throttle.locked_for("admin", now=164) == 0


def test_the_demo_creates_a_first_admin_once_with_a_private_password_file(tmp_path: Path) -> None:
    users_path = tmp_path / "secrets" / "users.json"
    secret = ensure_first_admin(users_path)
    assert secret is not None and stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text("utf-8").split("password: ")[1].split()[0]
    assert authenticate(load_users(users_path), "admin", password).role == "admin"
    assert ensure_first_admin(users_path) is None  # never replaced


# -- signing in to the dashboard --------------------------------------------------------------


def fresh_app() -> AppTest:
    return AppTest.from_file(DASHBOARD_APP, default_timeout=30).run()


def test_nothing_shows_before_signing_in_and_a_wrong_password_is_refused(
    dashboard_store: Settings, dashboard_users: dict[str, str]
) -> None:
    at = fresh_app()
    assert [t.value for t in at.title] == ["Đăng nhập"]
    assert not at.get("deck_gl_json_chart") and not at.dataframe and not at.metric
    sign_in(at, dashboard_users["operator"], "not-the-password")
    assert [e.value for e in at.error] == ["Sai tên đăng nhập hoặc mật khẩu."]
    assert [t.value for t in at.title] == ["Đăng nhập"]
    sign_in(at, "nobody", TEST_PASSWORD)  # same answer for an unknown name
    assert [e.value for e in at.error] == ["Sai tên đăng nhập hoặc mật khẩu."]
    sign_in(at, dashboard_users["operator"])
    assert not at.exception and at.title[0].value.startswith("Lượng khách")
    assert "sign_in_password" not in at.session_state, "the password must not linger"
    assert any(dashboard_users["operator"] in c.value and "điều hành" in c.value
               for c in at.sidebar.caption)


def test_failed_sign_ins_are_delayed_then_locked(
    settings: Settings, dashboard_users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISITORFLOW_AUTH__FAILURE_DELAY_S", "0.4")
    monkeypatch.setenv("VISITORFLOW_AUTH__MAX_FAILURES", "2")
    get_settings.cache_clear()
    at = fresh_app()
    started = time.monotonic()
    sign_in(at, dashboard_users["admin"], "guess-1")
    assert time.monotonic() - started >= 0.4
    sign_in(at, dashboard_users["admin"], "guess-2")
    # Locked now, even with the right password, and in another session too.
    other = sign_in(fresh_app(), dashboard_users["admin"])
    assert any("Sai quá nhiều lần" in e.value for e in other.error)
    assert [t.value for t in other.title] == ["Đăng nhập"]
    # Another name is not locked.
    assert sign_in(fresh_app(), dashboard_users["viewer"]).title[0].value != "Đăng nhập"


def test_a_session_expires_and_sign_out_ends_it(
    settings: Settings, signed_in_app: Callable[..., AppTest], dashboard_users: dict[str, str]
) -> None:
    sessions = sessions_for(settings.auth)
    viewer = load_users(settings.auth.users_path)[dashboard_users["viewer"]]
    at = signed_in_app("viewer")
    at.session_state["signed_in"] = {"token": sessions.issue(
        viewer, now=time.time() - settings.auth.session_hours * 3600 - 1)}
    at.run()
    assert [t.value for t in at.title] == ["Đăng nhập"]
    assert any("hết hạn" in i.value for i in at.info)

    at = signed_in_app("viewer")
    token = at.session_state["signed_in"]["token"]
    at.sidebar.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == ["Đăng nhập"]
    assert not at.info, "signing out is no expiry"
    # A copy of the token (the browser's cookie) is refused from now on.
    assert sessions.check(token, load_users(settings.auth.users_path)) == (
        None, Refused.SIGNED_OUT)


def test_a_changed_role_ends_the_session(
    settings: Settings, signed_in_app: Callable[..., AppTest], dashboard_users: dict[str, str]
) -> None:
    at = signed_in_app("operator")
    set_role(settings.auth.users_path, dashboard_users["operator"], "viewer")
    at.run()
    assert [t.value for t in at.title] == ["Đăng nhập"]
    assert any("Quyền của tài khoản đã thay đổi" in i.value for i in at.info)
    sign_in(at, dashboard_users["operator"])
    assert any("(xem)" in c.value for c in at.sidebar.caption), "signed in again as viewer"


def test_a_removed_account_is_signed_out_at_once(
    settings: Settings, signed_in_app: Callable[..., AppTest], dashboard_users: dict[str, str]
) -> None:
    from visitorflow.users import remove_user

    at = signed_in_app("operator")
    remove_user(settings.auth.users_path, dashboard_users["operator"])
    at.run()
    assert [t.value for t in at.title] == ["Đăng nhập"]


def test_without_a_users_file_the_dashboard_says_how_to_make_an_admin(settings: Settings) -> None:
    at = fresh_app()
    assert not at.exception
    assert any("python -m visitorflow.users add" in e.value for e in at.error)
    assert not at.text_input


def test_only_admins_get_the_admin_page(signed_in_app: Callable[..., AppTest]) -> None:
    for role in ("viewer", "operator"):
        at = signed_in_app(role)
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page("views/admin.py")
    at = signed_in_app("admin")
    at.switch_page("views/admin.py").run()
    assert not at.exception and at.title[0].value == "Quản trị"


# -- the admin page ---------------------------------------------------------------------------


def admin_page(signed_in_app: Callable[..., AppTest]) -> AppTest:
    at = signed_in_app("admin")
    at.switch_page("views/admin.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_admin_changes_a_capacity_and_every_reader_uses_it(
    dashboard_store: Settings, signed_in_app: Callable[..., AppTest],
    dashboard_users: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalogue = load_catalogue(dashboard_store.catalogue_path)
    store = Store.from_settings(dashboard_store)
    at = admin_page(signed_in_app)
    at.selectbox(key="admin_site").set_value("tam_thanh").run()
    assert at.number_input(key="capacity_tam_thanh").value == 350
    at.number_input(key="capacity_tam_thanh").set_value(500)
    at.button(key="save_capacity").click().run()
    assert not at.exception and any(s.value == "Đã lưu." for s in at.success)

    overrides = store.capacity_overrides()
    assert list(zip(overrides["site_id"], overrides["capacity"], overrides["updated_by"],
                    strict=True)) == [("tam_thanh", 500, dashboard_users["admin"])]
    log = store.change_log()
    assert list(zip(log["what"], log["site_id"], log["old_value"], log["new_value"],
                    log["changed_by"], strict=True)) == [
        ("capacity", "tam_thanh", "350", "500", dashboard_users["admin"])]
    assert (utc_now() - log["changed_at_utc"].iloc[0].to_pydatetime()).total_seconds() < 60
    changes = at.dataframe[-1].value
    assert list(changes["Cũ"]) == ["350"] and list(changes["Mới"]) == ["500"]

    # Live load levels: 380 people are 76 % of 500 (busy), not 109 % of 350 (overload).
    live = live_status(store, catalogue, dashboard_store).set_index("site_id")
    assert live.at["tam_thanh", "capacity"] == 500 and live.at["tam_thanh", "level"] == "busy"
    # Alerts (the collector's step) and everything else reading effective_limits.
    monkeypatch.setenv("VISITORFLOW_ALERTS__RAISE_AFTER_MIN", "1")
    get_settings.cache_clear()
    evaluate_alerts(store, catalogue, get_settings(), utc_now())
    alert = store.open_alerts().set_index("site_id").loc["tam_thanh"]
    assert (alert["level"], alert["capacity"]) == ("busy", 500)
    assert effective_limits(store, catalogue, dashboard_store)[0].site("tam_thanh").capacity == 500

    # Back to the catalogue's value, logged too.
    at.button(key="reset_capacity").click().run()
    assert store.capacity_overrides().empty
    assert list(store.change_log()["new_value"])[0] == "350"


def test_an_admin_sets_rising_thresholds_for_one_site(
    dashboard_store: Settings, signed_in_app: Callable[..., AppTest],
    dashboard_users: dict[str, str],
) -> None:
    store = Store.from_settings(dashboard_store)
    at = admin_page(signed_in_app)
    at.selectbox(key="admin_site").set_value("den_bac_le").run()
    # Not rising: refused with the rule, nothing stored.
    at.number_input(key="busy_den_bac_le").set_value(0.9)
    at.button(key="save_thresholds").click().run()
    assert any("tăng dần" in w.value for w in at.warning), [w.value for w in at.warning]
    assert store.alert_thresholds().empty
    # 50 people of 500 (10 %): busy from 5 %.
    for share, value in (("busy", 0.05), ("crowded", 0.5), ("overload", 0.8)):
        at.number_input(key=f"{share}_den_bac_le").set_value(value)
    at.button(key="save_thresholds").click().run()
    own = store.alert_thresholds().set_index("site_id").loc["den_bac_le"]
    assert (own["busy"], own["crowded"], own["overload"], own["updated_by"]) == (
        0.05, 0.5, 0.8, dashboard_users["admin"])
    log = store.change_log().iloc[0]
    assert (log["what"], log["old_value"], log["new_value"]) == (
        "thresholds", "0.60 / 0.85 / 1.00", "0.05 / 0.50 / 0.80")
    catalogue = load_catalogue(dashboard_store.catalogue_path)
    live = live_status(store, catalogue, dashboard_store).set_index("site_id")
    assert live.at["den_bac_le", "level"] == "busy"


def test_the_forecaster_reads_the_capacity_and_overload_share_in_force(settings: Settings) -> None:
    from forecasting.run import prepare_tasks

    store = Store.from_settings(settings)
    store.initialise()
    store.set_capacity("tam_thanh", 500, "admin.chi", utc_now(), baseline=350)
    store.set_alert_thresholds("tam_thanh", 0.5, 0.7, 0.9, "admin.chi", utc_now())
    catalogue = load_catalogue(settings.catalogue_path)
    tasks = prepare_tasks(store, catalogue, settings, utc_now().replace(minute=0, second=0,
                                                                         microsecond=0),
                          ["tam_thanh", "nhi_thanh"])
    by_site = {t.site.id: t for t in tasks}
    assert by_site["tam_thanh"].site.capacity == 500
    assert by_site["tam_thanh"].overload_share == 0.9
    assert by_site["nhi_thanh"].site.capacity == catalogue.site("nhi_thanh").capacity
    assert by_site["nhi_thanh"].overload_share == settings.load.overload

"""What every page of the dashboard shares: settings, the catalogue and the chosen language.

dashboard/app.py (the entry) loads them and draws the language selector before it runs a
page; a page gets them with `page_context()`. Streamlit puts dashboard/ on sys.path while
it runs the app, so pages `from shared import page_context`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pandas as pd
import streamlit as st
import yaml

from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.clock import to_local, utc_now
from visitorflow.limits import effective_limits
from visitorflow.sessions import COOKIE_NAME, THROTTLE_FILE, Sessions, sessions_for, state_dir
from visitorflow.settings import AuthSettings, Settings, get_settings
from visitorflow.store import Store, StoreBusy, StoreError, StoreMissing
from visitorflow.system_status import SystemStatus, age_parts, speed_text, system_status
from visitorflow.users import LoginThrottle, User, UsersError, authenticate, load_users

R = TypeVar("R")
# The status line's store reads: newest reading, forecast runs, job outcomes.
StatusReads = tuple[datetime | None, pd.DataFrame, pd.DataFrame]
# A failed refit's reason is shown up to this many characters: a line, not a traceback
# (the scheduler's log has the rest).
DETAIL_CHARS = 200

LANGUAGES = {"vi": "Tiếng Việt", "en": "English", "zh": "中文"}
TEXTS_PATH = Path(__file__).with_name("texts.yaml")


@st.cache_resource(show_spinner=False)
def _texts() -> dict[str, dict[str, dict[str, object]]]:
    with TEXTS_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def page_texts(page: str) -> dict[str, dict[str, object]]:
    """One page's strings from the dashboard's translation table (texts.yaml), by language:
    `page_texts("live")["en"]["title"]`."""
    section = _texts()[page]
    return {lang: {key: tr[lang] for key, tr in section.items()} for lang in LANGUAGES}


@st.cache_resource(show_spinner=False)
def catalogue_at(path: str) -> Catalogue:
    return load_catalogue(Path(path))


@st.cache_resource(show_spinner=False, max_entries=2)
def _effective_catalogue(path: str, _settings: Settings, tick: int) -> Catalogue:
    """The catalogue with the capacities in force (admins' overrides), read once per refresh
    (`tick`) for every session; the file's catalogue if the store cannot be read now."""
    catalogue = catalogue_at(path)
    try:
        return effective_limits(Store.from_settings(_settings), catalogue, _settings)[0]
    except StoreError:
        return catalogue


def page_context() -> tuple[Settings, Catalogue, str]:
    """Settings, catalogue (with the capacities in force) and language for a page (the entry
    has already checked them). The catalogue file as it is: `catalogue_at`."""
    settings = get_settings()
    lang = st.session_state.get("language", settings.dashboard.default_language)
    tick = int(time.time() // settings.dashboard.refresh_s)
    return settings, _effective_catalogue(str(settings.catalogue_path), settings, tick), lang


def local_time(ts_utc: datetime, settings: Settings, with_date: bool = False) -> str:
    """A naive-UTC time from the store as clock time in the settings' zone."""
    local = to_local(pd.Timestamp(ts_utc), settings.tz)
    return local.strftime("%d/%m %H:%M" if with_date else "%H:%M")


def read_store(read: Callable[[], R], text: dict[str, str]) -> R | None:
    """Run a page's store read; if the store is missing, busy or broken, tell the operator
    in their language (never a traceback) and return None."""
    try:
        return read()
    except StoreMissing:
        st.info(text["no_data_yet"])
    except StoreBusy as exc:
        st.warning(f"{text['store_busy']} {exc}")
    except StoreError as exc:
        st.error(f"{text['store_error']} {exc}")
    return None


# -- the system-status line -----------------------------------------------------------
# dashboard/app.py shows it on every page; visitorflow/system_status.py decides what it says.


@st.cache_resource(show_spinner=False, max_entries=2)
def _status_reads(store_path: str, _settings: Settings, tick: int) -> StatusReads | None:
    """The store's newest reading, forecast runs and job outcomes, read once per refresh
    (`tick`) for every session; None if the store cannot be read now (the pages say why)."""
    store = Store.from_settings(_settings)
    try:
        return store.latest_reading_utc(), store.forecast_runs(limit=10), store.job_status()
    except StoreMissing:
        return None, pd.DataFrame(columns=["created_at_utc", "sites_ok"]), pd.DataFrame(
            columns=["job", "last_finished_utc", "last_ok", "last_detail", "last_ok_utc"])
    except StoreError:
        return None


def current_system_status(settings: Settings) -> SystemStatus | None:
    """The status as of now on the clock in force (simulated or wall), or None if the store
    cannot be read now."""
    tick = int(time.time() // settings.dashboard.refresh_s)
    reads = _status_reads(str(settings.store.path), settings, tick)
    if reads is None:
        return None
    latest, runs, jobs = reads
    scenario = settings.clock.speed if settings.clock.start_utc is not None else None
    return system_status(utc_now(), latest, runs, jobs, settings.forecast.stale_after_hours,
                         scenario_speed=scenario)


def _age(seconds: float, text: dict[str, str]) -> str:
    count, unit = age_parts(seconds)
    return text[f"age_{unit}"].format(n=count)


def status_texts(status: SystemStatus | None, settings: Settings,
                 text: dict[str, str]) -> tuple[str, str | None]:
    """The status line and the warning (None: nothing to warn about) in one language
    (`text`: texts.yaml's `status` section)."""
    if status is None:
        return text["unavailable"], None
    clock = local_time(status.now_utc, settings, with_date=status.scenario_speed is not None)
    parts = [text["clock"].format(time=clock) if status.scenario_speed is None else
             text["scenario_clock"].format(time=clock, speed=speed_text(status.scenario_speed))]
    if status.data_age_s is None:
        parts.append(text["no_data"])
    else:
        parts.append(text["data"].format(age=_age(status.data_age_s, text)))
    if status.forecast_age_s is None:
        parts.append(text["no_forecast"])
    else:
        parts.append(text["forecast"].format(age=_age(status.forecast_age_s, text)))
    backup = status.backup
    if backup is None:
        parts.append(text["no_backup"])
    elif backup.ok:
        parts.append(text["backup"].format(
            age=_age((status.now_utc - backup.finished_utc).total_seconds(), text)))
    else:
        parts.append(text["backup_failed"].format(
            time=local_time(backup.finished_utc, settings, with_date=True)))
    if status.refit is not None:
        key = "refit_ok" if status.refit.ok else "refit_failed_short"
        parts.append(text[key].format(
            time=local_time(status.refit.finished_utc, settings, with_date=True)))
    line = " · ".join(parts)
    if not status.warn:
        return line, None
    warnings = []
    if status.forecast_stale:
        warnings.append(text["stale"].format(
            since=local_time(status.stale_since_utc, settings, with_date=True),
            made=local_time(status.forecast_utc, settings, with_date=True),
            age=_age(status.forecast_age_s, text),
            hours=f"{status.stale_after_hours:g}"))
    if status.refit_failed:
        detail = (status.refit.detail or "?").strip().rstrip(".")
        if len(detail) > DETAIL_CHARS:
            detail = detail[:DETAIL_CHARS] + "…"
        warnings.append(text["refit_failed"].format(
            time=local_time(status.refit.finished_utc, settings, with_date=True),
            detail=detail))
    warnings.append(text["live_alerts_work"])
    return line, " ".join(warnings)


# -- signing in ----------------------------------------------------------------------
# Officials sign in with a name and password from the users file (visitorflow/users.py) and
# get a signed token (visitorflow/sessions.py), kept in the session and in a cookie so that a
# reload signs them in again. Every check reads the users file (cached by its mtime), so a
# removed account or a changed role ends the session at once.

SIGNED_IN = "signed_in"  # session_state: {"token": ...}
SESSION_ENDED = "session_ended"  # session_state: why the last token was refused


@st.cache_resource(show_spinner=False)
def _users_at(path: str, mtime: float) -> dict[str, User]:
    return load_users(Path(path))


def _users(settings: Settings) -> dict[str, User]:
    path = settings.auth.users_path
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    return _users_at(str(path), mtime)


@st.cache_resource(show_spinner=False)
def _throttle(max_failures: int, lockout_s: float, path: str) -> LoginThrottle:
    """Failed sign-ins, shared by every session of this server process and kept in a file
    so that a restart does not lift a lockout."""
    return LoginThrottle(max_failures, lockout_s, Path(path))


@st.cache_resource(show_spinner=False)
def _sessions_at(users_path: str, session_hours: float) -> Sessions:
    return sessions_for(AuthSettings(users_path=Path(users_path), session_hours=session_hours))


def _sessions(settings: Settings) -> Sessions:
    return _sessions_at(str(settings.auth.users_path), settings.auth.session_hours)


def _browser_token() -> str | None:
    """The session cookie the browser sent when this session connected (a reload sends it
    again); None in tests without a browser."""
    try:
        return st.context.cookies.get(COOKIE_NAME)
    except (AttributeError, RuntimeError):
        return None


def current_user() -> User | None:
    """The signed-in official, or None: nobody signed in, or the token was refused (expired
    after auth.session_hours, signed out, account removed or role changed). Writers check it
    again before writing."""
    settings = get_settings()
    sessions = _sessions(settings)
    token = st.session_state.get(SIGNED_IN, {}).get("token")
    if token is None:
        token = _browser_token()
        if token is None or token == st.session_state.get("refused_token"):
            return None
    user, refused = sessions.check(token, _users(settings))
    if user is None:
        st.session_state.pop(SIGNED_IN, None)
        st.session_state["refused_token"] = token
        st.session_state[SESSION_ENDED] = str(refused)
        return None
    st.session_state[SIGNED_IN] = {"token": token}
    return user


def _set_cookie_script(token: str, max_age: int) -> str:
    """JavaScript that stores (max_age > 0) or deletes (0) the session cookie. SameSite=Strict:
    never sent with a request from another site; Secure when the page is served over https
    (the browser knows, even behind a proxy)."""
    return (f"<script>document.cookie = '{COOKIE_NAME}={token}; Max-Age={max_age}; Path=/; "
            "SameSite=Strict' + (location.protocol === 'https:' ? '; Secure' : '');</script>")


def _write_cookie(token: str, max_age: int) -> None:
    # In the sidebar: the element is empty and would leave a gap above the page's title.
    st.sidebar.html(_set_cookie_script(token, max_age), unsafe_allow_javascript=True)


def _sign_out() -> None:
    token = st.session_state.pop(SIGNED_IN, {}).get("token")
    if token is not None:
        _sessions(get_settings()).sign_out(token)
        st.session_state["refused_token"] = token
    st.session_state[SESSION_ENDED] = "signed_out"


def _try_sign_in(settings: Settings, text: dict[str, str], name: str, password: str) -> bool:
    throttle = _throttle(settings.auth.max_failures, settings.auth.lockout_s,
                         str(state_dir(settings.auth.users_path) / THROTTLE_FILE))
    wait = throttle.locked_for(name)
    if wait > 0:
        st.error(text["locked"].format(minutes=max(1, round(wait / 60))))
        return False
    user = authenticate(_users(settings), name, password)
    if user is None:
        throttle.failed(name)
        time.sleep(settings.auth.failure_delay_s)  # slows guessing
        st.error(text["wrong"])
        return False
    throttle.succeeded(name)
    st.session_state[SIGNED_IN] = {"token": _sessions(settings).issue(user)}
    st.session_state.pop(SESSION_ENDED, None)
    return True


def signed_in_user(settings: Settings, lang: str) -> User:
    """The official using this session. Nobody signed in: draw the sign-in form and stop
    the script (no page runs); signed in: who and a sign-out button in the sidebar."""
    text = page_texts("auth")[lang]
    try:
        user = current_user()
        if user is None and not _users(settings):
            st.error(text["no_users"].format(path=settings.auth.users_path))
            st.stop()
    except UsersError as exc:
        st.error(str(exc))
        st.stop()
    if user is None:
        # Whatever cookie this browser holds signs nobody in: remove it.
        _write_cookie("", 0)
        st.title(text["title"])
        ended = st.session_state.pop(SESSION_ENDED, None)
        if ended in ("expired", "role_changed"):
            st.info(text[ended])
        with st.form("sign_in", clear_on_submit=True):
            name = st.text_input(text["name"], key="sign_in_name")
            password = st.text_input(text["password"], type="password", key="sign_in_password")
            submitted = st.form_submit_button(text["submit"], key="sign_in_submit")
        if submitted and _try_sign_in(settings, text, name, password):
            st.rerun()
        st.stop()
    token = st.session_state[SIGNED_IN]["token"]
    if _browser_token() != token:
        _write_cookie(token, _sessions(settings).seconds_left(token))
    st.sidebar.caption(text["signed_in_as"].format(name=user.name, role=text[user.role]))
    st.sidebar.button(text["sign_out"], key="sign_out", on_click=_sign_out)
    return user


def pages_for(user: User, pages: list, titles: dict[str, object]) -> list:
    """The pages a role sees: every page, and the admin page for admins."""
    if user.can("admin"):
        pages = [*pages, st.Page("views/admin.py", title=titles["admin"], icon="🛠️")]
    return pages


def user_with_role(role: str) -> User | None:
    """For a write: the signed-in user if they hold `role` now, else None (the session may
    have expired or the role changed since the page was drawn): checked on the server, not
    only by hiding the control."""
    user = current_user()
    return user if user is not None and user.can(role) else None

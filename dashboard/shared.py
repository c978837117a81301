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
from visitorflow.clock import to_local
from visitorflow.limits import effective_limits
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store, StoreBusy, StoreError, StoreMissing
from visitorflow.users import LoginThrottle, User, UsersError, authenticate, load_users

R = TypeVar("R")

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


# -- signing in ----------------------------------------------------------------------
# Officials sign in with a name and password from the users file (visitorflow/users.py).
# The session keeps only the name and the sign-in time; the role is read from the users file
# on every check, so a changed role or a removed account takes effect at once.

SIGNED_IN = "signed_in"


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
def _throttle(max_failures: int, lockout_s: float) -> LoginThrottle:
    """Failed sign-ins, shared by every session of this server process."""
    return LoginThrottle(max_failures, lockout_s)


def current_user() -> User | None:
    """The signed-in official, or None: nobody signed in, the session expired (after
    auth.session_hours) or the account was removed. Writers check it again before writing."""
    settings = get_settings()
    session = st.session_state.get(SIGNED_IN)
    if not session:
        return None
    if time.time() - session["at"] > settings.auth.session_hours * 3600:
        st.session_state.pop(SIGNED_IN, None)
        st.session_state["session_expired"] = True
        return None
    user = _users(settings).get(session["name"])
    if user is None:
        st.session_state.pop(SIGNED_IN, None)
    return user


def _sign_out() -> None:
    st.session_state.pop(SIGNED_IN, None)


def _try_sign_in(settings: Settings, text: dict[str, str], name: str, password: str) -> bool:
    throttle = _throttle(settings.auth.max_failures, settings.auth.lockout_s)
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
    st.session_state[SIGNED_IN] = {"name": user.name, "at": time.time()}
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
        st.title(text["title"])
        if st.session_state.pop("session_expired", False):
            st.info(text["expired"])
        with st.form("sign_in", clear_on_submit=True):
            name = st.text_input(text["name"], key="sign_in_name")
            password = st.text_input(text["password"], type="password", key="sign_in_password")
            submitted = st.form_submit_button(text["submit"], key="sign_in_submit")
        if submitted and _try_sign_in(settings, text, name, password):
            st.rerun()
        st.stop()
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

"""Visitor flow at the tourist sites of Lạng Sơn: the officials' dashboard (entry point).

Run from the repo root: `streamlit run dashboard/app.py` (settings from visitorflow.toml and
VISITORFLOW_* variables). This script sets up what every page shares — settings, the site
catalogue, the language selector in the sidebar, the officials' sign-in — and runs the
chosen page from views/ (not pages/: that folder name switches on Streamlit's older
file-based multipage mode), under a one-line system status.
"""

from __future__ import annotations

import streamlit as st
from shared import (
    LANGUAGES,
    catalogue_at,
    current_system_status,
    page_texts,
    pages_for,
    signed_in_user,
    status_texts,
)

from visitorflow.catalogue import CatalogueError
from visitorflow.settings import SettingsError, get_settings

PAGE_TITLES = page_texts("pages")
STATUS = page_texts("status")

st.set_page_config(page_title="Lạng Sơn · visitor flow", page_icon="🗺️", layout="wide")

try:
    settings = get_settings()
    catalogue_at(str(settings.catalogue_path))
except (SettingsError, CatalogueError) as exc:
    st.error(str(exc))
    st.stop()

lang = st.sidebar.selectbox(
    "Ngôn ngữ · Language · 语言",
    options=list(LANGUAGES),
    index=list(LANGUAGES).index(settings.dashboard.default_language),
    format_func=LANGUAGES.get,
    key="language",
)

# Officials sign in before any page runs; their role decides which pages and controls exist.
user = signed_in_user(settings, lang)


# One small line on every page: the clock, how old the data and forecasts are, the last backup
# and refit; a warning when forecasts are stale. Redrawn each refresh, apart from the page.
@st.fragment(run_every=settings.dashboard.refresh_s)
def system_status_line() -> None:
    line, warning = status_texts(current_system_status(settings), settings, STATUS[lang])
    st.caption(line)
    if warning:
        st.warning(warning, icon="⚠️")


page = st.navigation(pages_for(user, [
    st.Page("views/live.py", title=PAGE_TITLES[lang]["live"], icon="🗺️", default=True),
    st.Page("views/alerts.py", title=PAGE_TITLES[lang]["alerts"], icon="🚨"),
    st.Page("views/site.py", title=PAGE_TITLES[lang]["site"], icon="📍"),
    st.Page("views/redirect.py", title=PAGE_TITLES[lang]["redirect"], icon="🔀"),
    st.Page("views/planner.py", title=PAGE_TITLES[lang]["planner"], icon="📅"),
    st.Page("views/warning.py", title=PAGE_TITLES[lang]["warning"], icon="⏱️"),
], PAGE_TITLES[lang]))
system_status_line()
page.run()

"""What every page of the dashboard shares: settings, the catalogue and the chosen language.

dashboard/app.py (the entry) loads them and draws the language selector before it runs a
page; a page gets them with `page_context()`. Streamlit puts dashboard/ on sys.path while
it runs the app, so pages `from shared import page_context`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pandas as pd
import streamlit as st
import yaml

from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.settings import Settings, get_settings
from visitorflow.store import StoreBusy, StoreError, StoreMissing

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


def page_context() -> tuple[Settings, Catalogue, str]:
    """Settings, catalogue and language for a page (the entry has already checked them)."""
    settings = get_settings()
    lang = st.session_state.get("language", settings.dashboard.default_language)
    return settings, catalogue_at(str(settings.catalogue_path)), lang


def local_time(ts_utc: datetime, settings: Settings, with_date: bool = False) -> str:
    """A naive-UTC time from the store as Asia/Ho_Chi_Minh clock time."""
    local = pd.Timestamp(ts_utc).to_pydatetime().replace(tzinfo=UTC).astimezone(settings.tz)
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

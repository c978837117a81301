"""The redirect page: for a busy site, the other sites ranked by their predicted load when a
visitor would get there, and a short message to copy in the three languages
(visitorflow.redirect, the same advice as the public visitor page)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from shared import LANGUAGES, local_time, page_context, page_texts, read_store

from visitorflow.clock import utc_now
from visitorflow.live import live_status
from visitorflow.load import LEVEL_COLOURS, LEVEL_LABELS, LoadLevel
from visitorflow.redirect import RedirectError, busiest_site, redirect_message, redirect_options
from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError

TEXT = page_texts("redirect")

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])
st.caption(T["how"].format(blend=settings.redirect.live_blend_min,
                           minutes=settings.redirect.max_travel_min))
refresh_s = settings.dashboard.refresh_s


@st.cache_data(ttl=refresh_s, max_entries=4, show_spinner=False)
def live_now(store_path: str, _settings: Settings) -> pd.DataFrame:
    """Every site's level now: the page's first choice is the busiest, and the page says
    how busy the chosen site really is (the message to copy does not)."""
    return live_status(Store.from_settings(_settings), catalogue, _settings, utc_now())


@st.cache_data(ttl=refresh_s, max_entries=32, show_spinner=False)
def options_for(site_id: str, store_path: str, _settings: Settings) -> pd.DataFrame:
    """One site's alternatives: a few short reads per site and refresh, shared by sessions."""
    return redirect_options(Store.from_settings(_settings), catalogue, _settings, site_id,
                            utc_now())


site_ids = [s.id for s in catalogue.sites]
if "redirect_site" not in st.session_state:
    # Once per session, so the refresh never moves the official's own choice.
    try:
        first = busiest_site(live_now(str(settings.store.path), settings))
    except StoreError:
        first = None  # the view below says what is wrong with the store
    st.session_state["redirect_site"] = first or site_ids[0]
site_id = st.selectbox(T["site"], site_ids, key="redirect_site",
                       format_func=lambda i: catalogue.site(i).name.get(lang))


def level_colours(levels: pd.Series) -> list[str]:
    """Background of the level column: the live map's colour for each level."""
    return [f"background-color: rgb{LEVEL_COLOURS[LoadLevel(lv)]}; color: white"
            for lv in levels]


def options_table(options: pd.DataFrame) -> pd.io.formats.style.Styler:
    basis = {"forecast": T["basis_forecast"], "live": T["basis_live"], "none": T["basis_none"]}
    table = pd.DataFrame({
        T["col_rank"]: options["rank"],
        T["col_site"]: [catalogue.site(i).name.get(lang) for i in options["site_id"]],
        T["col_travel"]: options["travel_min"].round().astype(int),
        T["col_walk"]: pd.array(options["walk_min"].round(), dtype="Int64"),
        T["col_arrival"]: [local_time(t, settings) for t in options["arrival_utc"]],
        T["col_occupancy"]: pd.array(options["predicted_occupancy"].round(), dtype="Int64"),
        T["col_capacity"]: options["capacity"],
        T["col_load"]: (options["predicted_share"] * 100).round(0),
        T["col_level"]: [LEVEL_LABELS[lv][lang] for lv in options["predicted_level"]],
        T["col_p"]: options["p_overload"] * 100,
        T["col_room"]: options["has_room"].astype(bool),
        T["col_basis"]: [basis[b] for b in options["basis"]],
    })
    levels = options["predicted_level"].set_axis(table.index)
    # Percentages as text: a Styler shows its floats with six decimals whatever the column
    # settings say.
    return (table.style.apply(lambda _: level_colours(levels), subset=[T["col_level"]])
            .format(percent_text, subset=[T["col_load"], T["col_p"]]))


def percent_text(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.0f} %"


def chosen_site_now() -> None:
    """The chosen site's level and load now, above its alternatives; the message to copy
    is meant for a site that is busy or worse."""
    try:
        live = live_now(str(settings.store.path), settings).set_index("site_id")
    except StoreError:
        return  # the view below says what is wrong with the store
    row = live.loc[site_id]
    level = LoadLevel(row["level"])
    share = "–" if pd.isna(row["load_share"]) else percent_text(row["load_share"] * 100)
    text = T["site_now"].format(site=catalogue.site(site_id).name.get(lang),
                                level=LEVEL_LABELS[level][lang].lower(), share=share)
    if level == LoadLevel.NORMAL:
        st.info(f"{text} {T['not_busy']}")
    else:
        st.markdown(text)


@st.fragment(run_every=refresh_s)
def redirect_view() -> None:
    try:
        options = read_store(lambda: options_for(site_id, str(settings.store.path), settings),
                             T)
    except RedirectError as exc:
        st.error(f"{T['config_error']} {exc}")
        return
    if options is None:
        return

    chosen_site_now()
    st.subheader(T["options"].format(site=catalogue.site(site_id).name.get(lang)))
    if options.empty:
        st.info(T["no_options"].format(minutes=settings.redirect.max_travel_min))
    else:
        if not options["has_room"].any():
            st.warning(T["no_room"])
        if not (options["basis"] == "forecast").any():
            st.caption(T["no_forecast"])
        st.dataframe(options_table(options), hide_index=True, width="stretch")

    st.subheader(T["message"])
    for col, code in zip(st.columns(len(LANGUAGES)), LANGUAGES, strict=True):
        col.markdown(f"**{LANGUAGES[code]}**")
        col.code(redirect_message(catalogue, site_id, options, code), language=None,
                 wrap_lines=True)


st.sidebar.caption(f"↻ {refresh_s:g} s")
redirect_view()

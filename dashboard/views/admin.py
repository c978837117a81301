"""The admin page: each site's capacity and load thresholds, and the log of every change.

Only admins get this page (dashboard/app.py registers it for them) and every save checks the
role again on the server. Capacities override the catalogue's (data/sites.yaml) and
thresholds override `settings.load`, for one site; both are stored with who and when, and
every change is logged (old → new). The collector's alerts, the live map, redirect advice
and the next forecast run read them through visitorflow.limits.effective_limits.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from shared import (
    catalogue_at,
    current_user,
    local_time,
    page_context,
    page_texts,
    read_store,
    user_with_role,
)

from visitorflow.clock import utc_now
from visitorflow.limits import SHARES, effective_limits
from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError

TEXT = page_texts("admin")

settings, _, lang = page_context()
catalogue = catalogue_at(str(settings.catalogue_path))  # the file's: overrides are shown apart
T = TEXT[lang]
st.title(T["title"])
user = current_user()
if user is None or not user.can("admin"):
    st.error(T["admins_only"])
    st.stop()


@st.cache_data(ttl=settings.dashboard.refresh_s, max_entries=2, show_spinner=False)
def admin_state(_settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The limits in force per site and the change log (newest first)."""
    store = Store.from_settings(_settings)
    return effective_limits(store, catalogue, _settings)[1], store.change_log()


def site_name(site_id: str) -> str:
    return T["all_sites"] if site_id == "*" else catalogue.site(site_id).name.get(lang)


def saved(problem: str | None = None) -> None:
    if problem:
        st.session_state["admin_problem"] = problem
    else:
        st.session_state["admin_done"] = T["saved"]
        admin_state.clear()


def save_capacity(site_id: str, reset: bool = False) -> None:
    who = user_with_role("admin")
    if who is None:
        return saved(T["not_allowed"])
    value = None if reset else int(st.session_state[f"capacity_{site_id}"])
    try:
        Store.from_settings(settings).set_capacity(
            site_id, value, who.name, utc_now(), baseline=catalogue.site(site_id).capacity)
    except (StoreError, ValueError) as exc:
        return saved(f"{T['store_busy']} {exc}")
    saved()


def save_thresholds(site_id: str, before: tuple[float, float, float]) -> None:
    who = user_with_role("admin")
    if who is None:
        return saved(T["not_allowed"])
    busy, crowded, overload = (float(st.session_state[f"{s}_{site_id}"]) for s in SHARES)
    if not 0 < busy < crowded < overload:
        return saved(T["must_rise"])
    try:
        Store.from_settings(settings).set_alert_thresholds(
            site_id, busy, crowded, overload, who.name, utc_now(), baseline=before)
    except (StoreError, ValueError) as exc:
        return saved(f"{T['store_busy']} {exc}")
    saved()


for key, show in (("admin_problem", st.warning), ("admin_done", st.success)):
    if key in st.session_state:
        show(st.session_state.pop(key))

state = read_store(lambda: admin_state(settings), T)
if state is None:
    st.stop()
limits, changes = state

site_id = st.selectbox(T["site"], [s.id for s in catalogue.sites], key="admin_site",
                       format_func=site_name)
site = catalogue.site(site_id)
row = limits.loc[site_id]
left, right = st.columns(2)
with left.form(key=f"capacity_form_{site_id}"):
    st.number_input(T["capacity"], min_value=1, max_value=1_000_000, step=10,
                    value=int(row["capacity"]), key=f"capacity_{site_id}")
    st.caption(T["catalogue_capacity"].format(capacity=site.capacity, basis=site.capacity_basis))
    st.form_submit_button(T["save_capacity"], key="save_capacity", on_click=save_capacity,
                          args=(site_id,))
if int(row["capacity"]) != site.capacity:
    left.button(T["reset_capacity"], key="reset_capacity", on_click=save_capacity,
                args=(site_id, True))
with right.form(key=f"thresholds_form_{site_id}"):
    st.markdown(f"**{T['thresholds']}**")
    for share in SHARES:
        st.number_input(T[share], min_value=0.01, max_value=10.0, step=0.05, format="%.2f",
                        value=float(row[share]), key=f"{share}_{site_id}")
    st.caption(T["defaults"].format(**{s: f"{getattr(settings.load, s):.2f}" for s in SHARES}))
    st.form_submit_button(T["save_thresholds"], key="save_thresholds", on_click=save_thresholds,
                          args=(site_id, tuple(float(row[s]) for s in SHARES)))

st.subheader(T["current"])
st.dataframe(pd.DataFrame({
    T["site"]: [site_name(i) for i in limits.index],
    T["capacity"]: limits["capacity"].astype(int).to_numpy(),
    **{T[s]: limits[s].round(2).to_numpy() for s in SHARES},
}), hide_index=True, width="stretch")

st.subheader(T["changes"])
if changes.empty:
    st.info(T["no_changes"])
else:
    st.dataframe(pd.DataFrame({
        T["col_when"]: [local_time(t, settings, with_date=True) for t in changes["changed_at_utc"]],
        T["col_who"]: changes["changed_by"],
        T["site"]: [site_name(i) if i == "*" or i in catalogue.by_id else i
                    for i in changes["site_id"]],
        T["col_what"]: [what if pd.isna(item) else f"{what} {item}"
                        for what, item in zip(changes["what"], changes["item"], strict=True)],
        T["col_old"]: changes["old_value"].fillna("–"),
        T["col_new"]: changes["new_value"].fillna("–"),
    }), hide_index=True, width="stretch")

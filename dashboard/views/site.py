"""The site page: one site's day against its forecast band, gate by gate counts, the health of
its counters and the last 30 days (visitorflow.site_detail), refreshing itself."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from shared import page_context, page_texts, read_store

from visitorflow.clock import utc_now
from visitorflow.settings import Settings
from visitorflow.site_detail import SiteDetail, site_detail
from visitorflow.store import Store

TEXT = page_texts("site")

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])
refresh_s = settings.dashboard.refresh_s

site_ids = [s.id for s in catalogue.sites]
site_id = st.selectbox(T["site"], site_ids, key="site",
                       format_func=lambda i: catalogue.site(i).name.get(lang))
site = catalogue.site(site_id)


@st.cache_data(ttl=refresh_s, max_entries=32, show_spinner=False)
def detail(site_id: str, _settings: Settings) -> SiteDetail:
    """One site's detail: a few short queries per site and refresh, shared by sessions."""
    return site_detail(Store.from_settings(_settings), catalogue, _settings, site_id, utc_now())


def hours(index: pd.Index) -> list[str]:
    return [pd.Timestamp(t).strftime("%H:%M") for t in index]


# Vega-Lite specs written out rather than st.line_chart / st.bar_chart: those build an Altair
# chart on every refresh, ~60 ms of server CPU each; a spec costs ~3 ms (bench/results.md,
# the site page's drawing: two line charts and a bar chart 168 ms, three specs 10 ms).
def line_chart(frame: pd.DataFrame, x_title: str, y_title: str) -> dict:
    """One line per column of `frame` (index: the x axis, in order), named by the column."""
    long = frame.rename_axis("x").reset_index().melt("x", var_name="series", value_name="y")
    return {"data": long, "spec": {
        "mark": {"type": "line", "point": False},
        "encoding": {
            "x": {"field": "x", "type": "ordinal", "title": x_title, "sort": None},
            "y": {"field": "y", "type": "quantitative", "title": y_title},
            "color": {"field": "series", "type": "nominal", "title": None,
                      "sort": list(frame.columns)},
        }}}


def bar_chart(series: pd.Series, x_title: str | None, y_title: str) -> dict:
    """One bar per index label of `series`, in order."""
    frame = series.rename_axis("x").reset_index(name="y")
    return {"data": frame, "spec": {
        "mark": "bar",
        "encoding": {"x": {"field": "x", "type": "ordinal", "title": x_title, "sort": None},
                     "y": {"field": "y", "type": "quantitative", "title": y_title}}}}


@st.fragment(run_every=refresh_s)
def site_view() -> None:
    d = read_store(lambda: detail(site_id, settings), T)
    if d is None:
        return

    st.subheader(T["today"])
    today = d.today.copy()
    today.index = hours(today.index)
    band = {"arrivals": T["arrivals"], "forecast_arrivals": T["forecast"],
            "forecast_lower": T["lower"], "forecast_upper": T["upper"]}
    left, right = st.columns(2)
    left.vega_lite_chart(**line_chart(today[[c for c in band if c in today]]
                                      .rename(columns=band), T["hour"], T["arrivals"]),
                         width="stretch")
    occ = {"occupancy": T["occupancy"], "forecast_occupancy": T["forecast_occupancy"]}
    right.vega_lite_chart(**line_chart(today[[c for c in occ if c in today]].rename(columns=occ)
                                       .assign(**{T["capacity"]: site.capacity}),
                                       T["hour"], T["occupancy"]), width="stretch")

    st.subheader(T["gates"])
    if d.gates.empty:
        st.caption(T["none"])
    else:
        gates = d.gates.copy()
        gates.index = hours(gates.index)
        gates = gates.rename(columns={g.id: g.name.get(lang) for g in site.gates})
        st.dataframe(gates, width="stretch")

    st.subheader(T["devices"])
    st.dataframe(pd.DataFrame({
        T["gate"]: [next((g.name.get(lang) for g in site.gates if g.id == gid), gid)
                    for gid in d.devices["gate_id"]],
        T["counter"]: d.devices["counter_id"],
        T["last_seen"]: ["–" if t is None or pd.isna(t) else pd.Timestamp(t).strftime(
            "%d/%m %H:%M") for t in d.devices["last_seen_local"]],
        T["battery"]: d.devices["battery_pct"],
        T["status"]: d.devices["status"],
        T["silent"]: d.devices["silent"],
        T["lost"]: d.devices["lost_readings"],
        T["recovered"]: d.devices["recovered_readings"],
    }), hide_index=True, width="stretch")

    st.subheader(T["days"])
    if d.days.empty:
        st.caption(T["none"])
    else:
        days = d.days.set_index(pd.to_datetime(d.days["day_local"]).dt.strftime("%d/%m"))
        st.vega_lite_chart(**bar_chart(days["arrivals"], None, T["arrivals"]), width="stretch")


site_view()

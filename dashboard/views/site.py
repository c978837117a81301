"""The site page: one site's day against its forecast band (with how far to trust that
forecast, visitorflow.forecast_skill), gate by gate counts, the health of its counters and the
last 30 days (visitorflow.site_detail), refreshing itself."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from shared import local_time, page_context, page_texts, read_store

from visitorflow.clock import utc_now
from visitorflow.forecast_skill import skill_sentence
from visitorflow.settings import Settings
from visitorflow.site_detail import SiteDetail, site_detail
from visitorflow.store import Store

TEXT = page_texts("site")

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])
refresh_s = settings.dashboard.refresh_s

site_ids = [s.id for s in catalogue.sites]
# Opened from the live map with ?site=<id>: that site. The choice is written back to the
# address, so a reload or a shared link shows the same site.
if st.query_params.get("site") in site_ids:
    st.session_state["site"] = st.query_params["site"]


def site_to_address() -> None:
    st.query_params["site"] = st.session_state["site"]


site_id = st.selectbox(T["site"], site_ids, key="site", on_change=site_to_address,
                       format_func=lambda i: catalogue.site(i).name.get(lang))
site = catalogue.site(site_id)


@st.cache_data(ttl=refresh_s, max_entries=32, show_spinner=False)
def detail(site_id: str, _settings: Settings) -> SiteDetail:
    """One site's detail: a few short queries per site and refresh, shared by sessions."""
    return site_detail(Store.from_settings(_settings), catalogue, _settings, site_id, utc_now())


@st.cache_data(ttl=refresh_s, max_entries=32, show_spinner=False)
def forecast_skill(site_id: str, _settings: Settings) -> pd.DataFrame:
    """Which forecaster made the site's forecast and how it did against "the same hour last
    week" in the newest backtest: one row, from the run whose forecast `detail` shows (none
    before the site's first forecast). Kept as long as `detail`, so after a new run the
    sentence and the forecast line change within a refresh of each other."""
    return Store.from_settings(_settings).forecast_skill(site_id)


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


def arrivals_chart(today: pd.DataFrame, now_text: str) -> dict:
    """Arrivals per hour against the forecast: the finished hours as a line, the current
    hour as a marked point "so far" (half an hour's count is not a drop), the forecast as a
    dashed line inside its shaded range."""
    names = {"arrivals": T["arrivals"], "so_far": T["so_far"].format(time=now_text),
             "forecast": T["forecast"],
             "band": T["band"].format(width=round(settings.forecast.interval_width * 100))}
    colours = {"arrivals": "#1f5f99", "so_far": "#1f5f99", "forecast": "#e07b00",
               "band": "#f4c38a"}
    started = today["arrivals"].notna() if "arrivals" in today else pd.Series(False, today.index)
    frame = pd.DataFrame({
        "x": today.index,
        "arrivals": today["arrivals"].where(today["complete"]) if "arrivals" in today else None,
        "so_far": today["arrivals"].where(started & ~today["complete"])
        if "arrivals" in today else None,
        "forecast": today.get("forecast_arrivals"),
        "lower": today.get("forecast_lower"),
        "upper": today.get("forecast_upper"),
    })
    shown = [k for k in ("band", "forecast", "arrivals", "so_far")
             if frame["upper" if k == "band" else k].notna().any()]
    # One colour scale for every layer, so the legend names the band, the lines and the point.
    colour = {"scale": {"domain": [names[k] for k in shown],
                        "range": [colours[k] for k in shown]},
              "title": None, "legend": {"orient": "bottom"}}
    x = {"field": "x", "type": "ordinal", "title": T["hour"], "sort": None}
    y_title = T["arrivals"]
    layers = {
        "band": {"mark": {"type": "area", "opacity": 0.45},
                 "encoding": {"x": x, "y": {"field": "lower", "type": "quantitative",
                                            "title": y_title},
                              "y2": {"field": "upper"}, "color": {"datum": names["band"]}}},
        "forecast": {"mark": {"type": "line", "strokeDash": [5, 4]},
                     "encoding": {"x": x, "y": {"field": "forecast", "type": "quantitative",
                                                "title": y_title},
                                  "color": {"datum": names["forecast"]}}},
        "arrivals": {"mark": {"type": "line", "point": True},
                     "encoding": {"x": x, "y": {"field": "arrivals", "type": "quantitative",
                                                "title": y_title},
                                  "color": {"datum": names["arrivals"]}}},
        "so_far": {"mark": {"type": "point", "shape": "diamond", "filled": True, "size": 120},
                   "encoding": {"x": x, "y": {"field": "so_far", "type": "quantitative",
                                              "title": y_title},
                                "color": {"datum": names["so_far"]}}},
    }
    chosen = [layers[k] for k in shown]
    if chosen:
        chosen[0]["encoding"]["color"] = {**chosen[0]["encoding"]["color"], **colour}
    return {"data": frame, "spec": {"layer": chosen}}


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
    left, right = st.columns(2)
    arrivals = arrivals_chart(today, local_time(utc_now(), settings))
    if arrivals["spec"]["layer"]:
        left.vega_lite_chart(**arrivals, width="stretch")
    else:
        left.caption(T["none"])
    # How far to trust the forecast line: its forecaster against "same hour last week".
    skill = read_store(lambda: forecast_skill(site_id, settings), T)
    if skill is not None and len(skill):
        row = skill.iloc[0]
        left.caption(skill_sentence(row["model"], row["backtest_mae_ratio"], lang,
                                    row.get("prophet_share")))
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

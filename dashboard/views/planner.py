"""The festival planner: pick a festival (dates from the lunar rules) or any date range, and
see per site the forecast peak day and hour, the peak occupancy against capacity, how its
forecast did against "the same hour last week" in the newest backtest, the probability of
overload as a day × hour heat map, and download it all (CSV, Excel).

The numbers come from visitorflow.planner on the latest forecast run; the hourly forecast
reaches 14 days, the daily one a festival season, and the page says which is which."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st
from shared import local_time, page_context, page_texts, read_store

from visitorflow import planner
from visitorflow.clock import local_date, utc_now
from visitorflow.forecast_skill import skill_sentences
from visitorflow.settings import Settings
from visitorflow.store import Store

TEXT = page_texts("planner")

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])
st.caption(T["intro"])


@st.cache_data(ttl=300, max_entries=2, show_spinner=False)
def forecasts(
    store_path: str, _settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The latest hourly and daily forecasts of every site and, from the same runs, which
    forecaster made each and how it scored against "the same hour last week" (a forecast
    run changes them at most a few times a day; read together so that they agree)."""
    store = Store.from_settings(_settings)
    return (store.latest_forecast(granularity="hourly"),
            store.latest_forecast(granularity="daily"), store.forecast_skill())


@st.cache_data(ttl=3600, show_spinner=False)
def windows(today: date) -> pd.DataFrame:
    return planner.festival_windows(today)


def day_text(day: date | None) -> str:
    return "–" if day is None or pd.isna(day) else pd.Timestamp(day).strftime("%d/%m/%Y")


today = local_date(utc_now(), settings.tz)

# -- what to plan for -------------------------------------------------------------------------

modes = {"festival": T["by_festival"], "range": T["by_range"]}
mode = st.radio(T["pick_by"], list(modes), format_func=modes.get, horizontal=True,
                key="planner_mode")
all_sites = [s.id for s in catalogue.sites]
if mode == "festival":
    festivals = windows(today)
    if festivals.empty:
        st.info(T["no_festival"])
        st.stop()
    choice = st.selectbox(
        T["festival"], festivals.index, key="planner_festival",
        format_func=lambda i: T["festival_option"].format(
            name=festivals.at[i, f"name_{lang}"], year=festivals.at[i, "year"],
            first=day_text(festivals.at[i, "first_day"]),
            last=day_text(festivals.at[i, "last_day"])),
    )
    festival = festivals.loc[choice]
    first_day, last_day = festival["first_day"], festival["last_day"]
    if festival["peak_days"]:
        st.caption(T["peak_days"].format(days=", ".join(day_text(d) for d in
                                                        festival["peak_days"])))
    default_sites = [s for s in festival["sites"] if s in all_sites] or all_sites
    sites_key = f"planner_sites_{festival['festival_id']}_{festival['year']}"
else:
    picked = st.date_input(T["date_range"], (today, today + timedelta(days=6)),
                           format="DD/MM/YYYY", key="planner_range")
    if not isinstance(picked, tuple | list) or len(picked) != 2:
        st.info(T["pick_both"])
        st.stop()
    first_day, last_day = picked
    default_sites, sites_key = all_sites, "planner_sites_range"

site_ids = st.multiselect(T["sites"], all_sites, default=default_sites, key=sites_key,
                          format_func=lambda i: catalogue.site(i).name.get(lang))
if not site_ids:
    st.info(T["pick_sites"])
    st.stop()

# -- the forecasts ----------------------------------------------------------------------------

read = read_store(lambda: forecasts(str(settings.store.path), settings), T)
if read is None:
    st.stop()
hourly, daily, skill = read
if hourly.empty and daily.empty:
    st.info(T["no_forecast"])
    st.stop()

tz = settings.timezone
hourly_until = planner.hourly_horizon_end(hourly, tz)
daily_until = pd.to_datetime(daily["day_local"]).dt.date.max() if len(daily) else None
made = pd.concat([hourly["run_created_at_utc"], daily["run_created_at_utc"]]).max()
st.caption(T["forecast_from"].format(time=local_time(made, settings, with_date=True),
                                     hourly_until=day_text(hourly_until),
                                     daily_until=day_text(daily_until)))

plan = planner.plan_sites(hourly, daily, first_day, last_day,
                          {s.id: s.capacity for s in catalogue.sites}, tz, site_ids)
grid = planner.overload_grid(hourly, first_day, last_day, tz, site_ids)

if plan["peak_day"].isna().all():
    st.warning(T["beyond_forecast"].format(until=day_text(daily_until)))
    st.stop()
covered = int(plan["hourly_days"].max())
if covered == 0:
    st.info(T["daily_only"].format(until=day_text(hourly_until)))
elif covered < int(plan["days"].iloc[0]):
    st.info(T["partial"].format(n=covered, days=int(plan["days"].iloc[0]),
                                until=day_text(hourly_until)))

# -- the table --------------------------------------------------------------------------------


def occupancy_text(row: pd.Series) -> str:
    if pd.isna(row["peak_occupancy"]):
        return "–"
    value = f"{row['peak_occupancy']:,.0f}"
    return T["estimate"].format(value=value) if row["peak_occupancy_source"] == "estimate" \
        else value


def whole(value: float) -> object:
    return pd.NA if pd.isna(value) else round(value)


basis = {"hourly": T["basis_hourly"], "partial": T["basis_partial"], "daily": T["basis_daily"]}
# In the table (and so in the downloads a planner passes on) rather than beside it: how far
# to trust a site's figures belongs on the site's row.
skill_text = skill_sentences(skill, lang)
table = pd.DataFrame({
    T["col_site"]: [catalogue.site(i).name.get(lang) for i in plan["site_id"]],
    T["col_peak_day"]: [day_text(d) for d in plan["peak_day"]],
    T["col_arrivals"]: pd.array([whole(v) for v in plan["peak_day_arrivals"]], dtype="Int64"),
    T["col_arrivals_range"]: [
        "–" if pd.isna(lo) else f"{lo:,.0f} – {hi:,.0f}"
        for lo, hi in zip(plan["peak_day_arrivals_lower"], plan["peak_day_arrivals_upper"],
                          strict=True)],
    T["col_peak_hour"]: ["–" if pd.isna(t) else pd.Timestamp(t).strftime("%d/%m %H:00")
                         for t in plan["peak_hour"]],
    T["col_peak_occupancy"]: [occupancy_text(r) for _, r in plan.iterrows()],
    T["col_capacity"]: plan["capacity"],
    T["col_load"]: (plan["peak_load"] * 100).round(0),
    T["col_p"]: (plan["max_p_overload"] * 100).round(0),
    T["col_hours"]: plan["hours_likely_overloaded"],
    T["col_basis"]: [basis[b] for b in plan["basis"]],
    T["col_skill"]: [skill_text.get(i, "–") for i in plan["site_id"]],
})
st.subheader(T["table"])
st.dataframe(table, hide_index=True, width="stretch", column_config={
    T["col_load"]: st.column_config.NumberColumn(format="%d%%"),
    T["col_p"]: st.column_config.ProgressColumn(min_value=0, max_value=100, format="%d %%"),
    T["col_skill"]: st.column_config.TextColumn(width="large", help=T["skill_help"]),
})

# -- the day × hour heat map ------------------------------------------------------------------

st.subheader(T["heatmap"])
if grid.empty:
    st.caption(T["no_heatmap"])
    grid_table = pd.DataFrame()
else:
    grid_table = pd.DataFrame({
        T["day"]: [day_text(d) for d in grid["day_local"]],
        T["hour"]: [f"{h:02d}:00" for h in grid["hour"]],
        T["p_overload"]: (grid["p_overload"] * 100).round(0),
        T["col_site"]: ["" if pd.isna(i) else catalogue.site(i).name.get(lang)
                        for i in grid["site_id"]],
    })
    # A Vega-Lite spec rather than an Altair chart: ~3 ms of server CPU instead of ~60 ms.
    fields = dict(zip(["day", "hour", "p", "site"], grid_table.columns, strict=True))
    st.vega_lite_chart(grid_table.set_axis(list(fields), axis=1), {
        "mark": "rect",
        "encoding": {
            "x": {"field": "hour", "type": "ordinal", "title": fields["hour"]},
            "y": {"field": "day", "type": "ordinal", "title": fields["day"], "sort": None},
            "color": {"field": "p", "type": "quantitative", "title": fields["p"],
                      "scale": {"domain": [0, 100], "scheme": "orangered"}},
            "tooltip": [{"field": f, "title": title} for f, title in fields.items()],
        }}, width="stretch")

# -- export -----------------------------------------------------------------------------------

name = f"planner_{first_day:%Y%m%d}_{last_day:%Y%m%d}"
left, right = st.columns(2)
left.download_button(T["download_csv"], planner.to_csv_bytes(table), f"{name}.csv",
                     "text/csv", key="planner_csv", on_click="ignore")
right.download_button(
    T["download_excel"],
    planner.to_excel_bytes({T["sheet_plan"]: table, T["sheet_grid"]: grid_table}),
    f"{name}.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    key="planner_excel", on_click="ignore",
)

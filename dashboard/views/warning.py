"""The early-warning page: how early and how rightly the forecast alerts flagged
overload through a simulated festival season — the newest results file of
`python -m orchestration.season_eval` (alerts.early_warning_dir), or another one chosen;
with none there, the reference evaluation recorded in the repository, labelled as such."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from shared import local_time, page_context, page_texts

from forecasting.early_warning import REFERENCE_RESULTS, read_results, results_files

TEXT = page_texts("warning")

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])
st.caption(T["intro"])

files = results_files(settings.alerts.early_warning_dir)
# A season takes ~25 minutes to evaluate, so a fresh machine shows the recorded reference
# until it has results of its own; this machine's results always take precedence.
showing_reference = not files and REFERENCE_RESULTS.is_file()
if showing_reference:
    chosen = REFERENCE_RESULTS
elif files:
    chosen = st.selectbox(T["file"], files, format_func=lambda p: p.name, key="warning_file")
else:
    st.info(T["no_results"].format(folder=settings.alerts.early_warning_dir))
    st.stop()


@st.cache_data(max_entries=8, show_spinner=False)
def results(path: str, mtime: float) -> dict:
    """One results file, read again only when it changes."""
    return read_results(Path(path))


try:
    r = results(str(chosen), chosen.stat().st_mtime)
except (OSError, ValueError, KeyError) as exc:
    st.error(T["unreadable"].format(file=chosen.name, error=exc))
    st.stop()


def run_date(created_utc: str | None) -> str:
    """The local day a results file was written (files carry `created_utc`)."""
    if not created_utc:
        return "–"
    return pd.Timestamp(created_utc).tz_convert(settings.tz).strftime("%Y-%m-%d")


if showing_reference:
    st.info(T["reference"].format(folder=settings.alerts.early_warning_dir, seed=r["seed"],
                                  date=run_date(r.get("created_utc"))))


def site_name(site_id: str) -> str:
    return T["overall"] if site_id == "all" else catalogue.site(site_id).name.get(lang)


def hours(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.1f} h"


def share(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.0%}"


season, goal, cfg = r["season"], r["goal"], r["settings"]
st.markdown(T["season"].format(start=season["start_local"], end=season["end_local"],
                               seed=r["seed"], sites=len(season["sites"])))

overall = r["summary"].set_index("site_id").loc["all"] if len(r["summary"]) else None
if overall is None:
    st.info(T["no_episodes"])
    st.stop()
left, middle, right, last = st.columns(4)
left.metric(T["episodes"], int(overall["episodes"]))
middle.metric(T["flagged_goal"].format(h=goal["lead_h"]), share(overall["share_goal"]),
              help=T["goal_help"].format(share=f"{goal['share']:.0%}", h=goal["lead_h"]))
right.metric(T["lead"], hours(overall["lead_median_h"]),
             help=T["lead_help"].format(p10=hours(overall["lead_p10_h"])))
last.metric(T["false_alarms"], share(overall["false_share"]),
            help=T["false_help"].format(max=f"{goal['false_share_max']:.0%}"))

st.subheader(T["by_site"])
table = r["summary"]
st.dataframe(pd.DataFrame({
    T["site"]: [site_name(s) for s in table["site_id"]],
    T["episodes"]: table["episodes"],
    T["flagged_any"]: table["flagged"],
    T["flagged_goal"].format(h=goal["lead_h"]): [share(v) for v in table["share_goal"]],
    T["lead"]: [hours(v) for v in table["lead_median_h"]],
    T["lead_p10"]: [hours(v) for v in table["lead_p10_h"]],
    T["alerts"]: table["alerts"],
    T["false_alarms"]: [share(v) for v in table["false_share"]],
}), hide_index=True, width="stretch")

st.subheader(T["episode_list"])
eps = r["episodes"]
if eps.empty:
    st.caption(T["no_episodes"])
else:
    reasons = {"": "", "no data": T["reason_no_data"],
               "forecast too low": T["reason_too_low"], "late refit": T["reason_late_refit"],
               "flagged late": T["reason_flagged_late"]}
    st.dataframe(pd.DataFrame({
        T["site"]: [site_name(s) for s in eps["site_id"]],
        T["start"]: [local_time(t, settings, with_date=True) for t in eps["start_utc"]],
        T["minutes"]: eps["minutes"],
        T["peak"]: [f"{p:,} / {c:,}" for p, c in zip(eps["peak_occupancy"], eps["capacity"],
                                                      strict=True)],
        T["raised"]: ["–" if pd.isna(t) else local_time(t, settings, with_date=True)
                      for t in eps["raised_at_utc"]],
        T["lead"]: [hours(v) for v in eps["lead_h"]],
        T["reason"]: [reasons.get(v, v) for v in eps["reason"].fillna("")],
    }), hide_index=True, width="stretch")

st.subheader(T["settings"])
st.markdown(T["settings_text"].format(
    p=share(cfg["forecast_p"]), margin=share(cfg["forecast_p_margin"]),
    horizon=cfg["forecast_horizon_h"],
    nowcast=cfg["nowcast_hours"], ratio=cfg["nowcast_ratio_max"],
    refits=", ".join(f"{h:02d}:00" for h in cfg["refit_hours_local"]),
    step=season["alert_step_min"]))
if len(r["tuning"]):
    st.subheader(T["tuning"])
    st.dataframe(r["tuning"], hide_index=True, width="stretch")

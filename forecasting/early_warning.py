"""Early-warning evaluation: how early and how rightly forecast alerts flag overload.

DataFrames in and out, no store and no MQTT (`orchestration/season_eval.py` feeds them):

1. `overload_episodes`: from the simulator's true occupancy per site and minute, the spells
   with occupancy ≥ `overload_share` × capacity for at least `min_minutes` minutes (dips
   shorter than `merge_gap_min` inside one spell do not split it);
2. `simulate_alerts`: the product's forecast-alert logic (`visitorflow.alerts.forecast_alerts`,
   with its hysteresis and the nowcast) stepped through simulated time, each step using the
   forecast run in force then (the newest run finished by then) and the hourly arrivals
   stored before it;
3. `alert_spells`: consecutive steps with a site's forecast alert open = one alert, raised at
   its first step and cleared at the first step without it; its window runs from raised to
   cleared + `forecast_horizon_h` (while open, the alert claims an overload within the
   horizon of every moment);
4. `match_episodes`: an episode is flagged when an alert was raised at or before its start
   and the alert's window reaches the start; lead time = start − raised; an alert whose
   window meets no episode is a false alarm;
5. `miss_reasons`: for each episode not flagged ≥ `lead_goal_h` ahead, why — no forecast /
   no data, forecast too low (no run before the episode's end reached the threshold for
   its hours), late refit (only runs finished after start − lead goal did), or flagged too
   late (the run in force reached it, the alert logic did not raise in time);
6. `summary`: per site and overall — episodes, share flagged ≥ lead goal, share flagged at
   all, lead time median and 10th percentile, alerts, false alarms and their share.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from visitorflow.alerts import forecast_alerts
from visitorflow.settings import PROJECT_ROOT, AlertSettings

EPISODE_COLUMNS = ["site_id", "start_utc", "end_utc", "minutes", "peak_occupancy", "capacity"]
SPELL_COLUMNS = ["site_id", "raised_at_utc", "cleared_at_utc", "window_end_utc",
                 "first_from_utc", "max_p"]


# -- episodes ---------------------------------------------------------------------------------

def overload_episodes(
    truth: pd.DataFrame, capacity: dict[str, int], overload_share: float = 1.0,
    min_minutes: int = 15, merge_gap_min: int = 0,
) -> pd.DataFrame:
    """Overload episodes from true occupancy per minute.

    truth: site_id, minute_utc (naive UTC, minute start), occupancy (people at its end).
    Returns site_id, start_utc (first minute at or above the threshold), end_utc (the minute
    after the last one), minutes (at or above, gaps excluded), peak_occupancy, capacity."""
    rows = []
    for site_id, site in truth.sort_values("minute_utc").groupby("site_id", sort=True):
        if site_id not in capacity:
            continue
        cap = capacity[site_id]
        minutes = pd.to_datetime(site["minute_utc"]).to_numpy()
        occ = site["occupancy"].to_numpy()
        over = occ >= overload_share * cap
        runs = _runs(minutes, over, occ)
        merged: list[list] = []
        for start, end, count, peak in runs:
            if merged and (start - merged[-1][1]) <= np.timedelta64(merge_gap_min, "m"):
                last = merged[-1]
                last[1], last[2], last[3] = end, last[2] + count, max(last[3], peak)
            else:
                merged.append([start, end, count, peak])
        for start, end, count, peak in merged:
            if count >= min_minutes:
                rows.append({"site_id": site_id, "start_utc": pd.Timestamp(start),
                             "end_utc": pd.Timestamp(end), "minutes": int(count),
                             "peak_occupancy": int(peak), "capacity": int(cap)})
    return pd.DataFrame(rows, columns=EPISODE_COLUMNS)


def _runs(minutes: np.ndarray, over: np.ndarray, occ: np.ndarray) -> list[tuple]:
    """(start, end, minutes, peak occupancy) of each spell of consecutive True minutes; a
    missing minute in the series ends a spell."""
    out = []
    one = np.timedelta64(1, "m")
    start = None
    for i, flag in enumerate(over):
        contiguous = i > 0 and minutes[i] - minutes[i - 1] == one
        if start is not None and not (flag and contiguous):
            out.append((minutes[start], minutes[i - 1] + one, i - start,
                        int(occ[start:i].max())))
            start = None
        if flag and start is None:
            start = i
    if start is not None:
        out.append((minutes[start], minutes[-1] + one, len(over) - start,
                    int(occ[start:].max())))
    return out


# -- alerts through simulated time ---------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One forecast run: usable from `in_force_utc` (history end + the refit's wall time)."""

    run_id: str
    history_end_utc: datetime
    in_force_utc: datetime
    hourly: pd.DataFrame  # Store.latest_forecast(run_id=…) hourly rows


def run_in_force(runs: list[Run], at_utc: datetime) -> Run | None:
    """The newest run finished by `at_utc` (runs sorted by in_force_utc)."""
    chosen = None
    for run in runs:
        if run.in_force_utc <= at_utc:
            chosen = run
        else:
            break
    return chosen


def simulate_alerts(
    runs: list[Run], arrivals: pd.DataFrame, steps: Iterable[datetime], cfg: AlertSettings,
    thresholds: pd.DataFrame, interval_width: float = 0.8,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Open forecast alerts at each step: step_utc, site_id, from_utc, p_overload, run_id.

    arrivals: the stored hourly arrivals of the season (site_id, hour_utc, arrivals); at each
    step the nowcast sees only the hours completed before it."""
    runs = sorted(runs, key=lambda r: r.in_force_utc)
    # Sorted by hour, so each step takes its rows by binary search instead of a full mask.
    arrivals = arrivals.assign(hour_utc=pd.to_datetime(arrivals["hour_utc"])).sort_values(
        ["hour_utc", "site_id"], ignore_index=True)
    arrival_hours = arrivals["hour_utc"].to_numpy()
    back = pd.Timedelta(hours=max(cfg.nowcast_hours, 1))
    horizon = pd.Timedelta(hours=cfg.forecast_horizon_h)
    open_sites: set[str] = set()
    rows = []
    current: Run | None = None
    for i, step in enumerate(steps):
        run = run_in_force(runs, step)
        if run is None:
            continue
        if run is not current:
            current = run
            hourly = run.hourly.assign(ts_utc=pd.to_datetime(run.hourly["ts_utc"])).sort_values(
                ["ts_utc", "site_id"], ignore_index=True)
            hours = hourly["ts_utc"].to_numpy()
        now = pd.Timestamp(step)
        hour = now.floor("h")
        # Only what forecast_alerts looks at, and the nowcast's past hours.
        frame = hourly.iloc[np.searchsorted(hours, (hour - back).to_datetime64()):
                            np.searchsorted(hours, (now + horizon).to_datetime64())]
        recent = arrivals.iloc[np.searchsorted(arrival_hours, (hour - back).to_datetime64()):
                               np.searchsorted(arrival_hours, hour.to_datetime64())]
        alerts = forecast_alerts(frame, step, cfg, open_sites, thresholds, recent, interval_width)
        open_sites = set(alerts["site_id"])
        for a in alerts.itertuples():
            rows.append({"step_utc": now, "site_id": a.site_id, "from_utc": a.from_utc,
                         "p_overload": a.p_overload, "run_id": run.run_id})
        if progress is not None:
            progress(i)
    return pd.DataFrame(rows, columns=["step_utc", "site_id", "from_utc", "p_overload",
                                       "run_id"])


def alert_spells(open_steps: pd.DataFrame, steps: list[datetime], horizon_h: float
                 ) -> pd.DataFrame:
    """Consecutive steps with a site's alert open, as alerts: raised_at_utc, cleared_at_utc
    (first step without it, or the step after the last), window_end_utc (cleared +
    horizon), first_from_utc (the hour the alert first named), max_p."""
    if open_steps.empty:
        return pd.DataFrame(columns=SPELL_COLUMNS)
    index = {pd.Timestamp(s): i for i, s in enumerate(steps)}
    step_len = (pd.Timestamp(steps[1]) - pd.Timestamp(steps[0])) if len(steps) > 1 else \
        pd.Timedelta(minutes=1)
    rows = []
    for site_id, site in open_steps.sort_values("step_utc").groupby("site_id", sort=True):
        pos = np.array([index[pd.Timestamp(s)] for s in site["step_utc"]])
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        for chunk in np.split(np.arange(len(pos)), breaks):
            first, last = site.iloc[chunk[0]], site.iloc[chunk[-1]]
            nxt = pos[chunk[-1]] + 1
            cleared = (pd.Timestamp(steps[nxt]) if nxt < len(steps)
                       else pd.Timestamp(last["step_utc"]) + step_len)
            rows.append({"site_id": site_id, "raised_at_utc": pd.Timestamp(first["step_utc"]),
                         "cleared_at_utc": cleared,
                         "window_end_utc": cleared + pd.Timedelta(hours=horizon_h),
                         "first_from_utc": pd.Timestamp(first["from_utc"]),
                         "max_p": float(site.iloc[chunk]["p_overload"].max())})
    return pd.DataFrame(rows, columns=SPELL_COLUMNS)


# -- matching and metrics ------------------------------------------------------------------

def match_episodes(episodes: pd.DataFrame, spells: pd.DataFrame
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Episodes with `flagged`, `raised_at_utc` and `lead_h` (hours from the earliest alert
    whose window reaches the start; NaN when none); spells with `false_alarm` (no episode
    overlaps its window)."""
    eps = episodes.copy()
    lead, raised = [], []
    for e in eps.itertuples():
        own = spells[(spells["site_id"] == e.site_id) & (spells["raised_at_utc"] <= e.start_utc)
                     & (spells["window_end_utc"] > e.start_utc)] if len(spells) else spells
        if len(own):
            first = own["raised_at_utc"].min()
            raised.append(first)
            lead.append((e.start_utc - first) / pd.Timedelta(hours=1))
        else:
            raised.append(pd.NaT)
            lead.append(np.nan)
    eps["raised_at_utc"] = pd.to_datetime(pd.Series(raised, dtype="datetime64[ns]"))
    eps["lead_h"] = pd.Series(lead, dtype=float)
    eps["flagged"] = eps["lead_h"].notna()
    sp = spells.copy()
    false = []
    for s in sp.itertuples():
        mine = episodes[(episodes["site_id"] == s.site_id)
                        & (episodes["end_utc"] > s.raised_at_utc)
                        & (episodes["start_utc"] < s.window_end_utc)]
        false.append(mine.empty)
    sp["false_alarm"] = pd.Series(false, dtype=bool)
    return eps, sp


def peak_p_by_run(episodes: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """For each episode and each run finished before the episode ended: the run's highest
    p_overload over the hours the episode touches (no nowcast). site_id, start_utc, run_id,
    in_force_utc, peak_p."""
    rows = []
    for e in episodes.itertuples():
        hours_from = pd.Timestamp(e.start_utc).floor("h")
        for run in runs:
            if run.in_force_utc >= e.end_utc:
                continue
            h = run.hourly
            ts = pd.to_datetime(h["ts_utc"])
            mine = h[(h["site_id"] == e.site_id) & (ts >= hours_from) & (ts < e.end_utc)]
            rows.append({"site_id": e.site_id, "start_utc": e.start_utc, "run_id": run.run_id,
                         "in_force_utc": pd.Timestamp(run.in_force_utc),
                         "peak_p": float(mine["p_overload"].max()) if len(mine) else np.nan})
    return pd.DataFrame(rows, columns=["site_id", "start_utc", "run_id", "in_force_utc",
                                       "peak_p"])


def miss_reasons(episodes: pd.DataFrame, peaks: pd.DataFrame, p_threshold: float,
                 lead_goal_h: float) -> pd.Series:
    """Why each episode was not flagged `lead_goal_h` ahead ('' when it was): 'no data'
    (no run forecast the episode's hours), 'forecast too low', 'late refit', 'flagged late'."""
    reasons = []
    for e in episodes.itertuples():
        if e.flagged and e.lead_h >= lead_goal_h:
            reasons.append("")
            continue
        mine = peaks[(peaks["site_id"] == e.site_id) & (peaks["start_utc"] == e.start_utc)]
        mine = mine[mine["peak_p"].notna()]
        if mine.empty:
            reasons.append("no data")
            continue
        goal = pd.Timestamp(e.start_utc) - pd.Timedelta(hours=lead_goal_h)
        early = mine[mine["in_force_utc"] <= goal]
        if not early.empty and early.iloc[-1]["peak_p"] >= p_threshold:
            reasons.append("flagged late")
        elif (mine["peak_p"] >= p_threshold).any():
            reasons.append("late refit")
        else:
            reasons.append("forecast too low")
    return pd.Series(reasons, index=episodes.index, dtype=object)


def summary(episodes: pd.DataFrame, spells: pd.DataFrame, site_ids: list[str],
            lead_goal_h: float) -> pd.DataFrame:
    """Per site and 'all': episodes, flagged (any lead), flagged_goal (≥ lead goal) and its
    share, lead_median_h, lead_p10_h, alerts, false_alarms and their share, missed."""
    rows = []
    for site_id in [*site_ids, "all"]:
        e = episodes if site_id == "all" else episodes[episodes["site_id"] == site_id]
        s = spells if site_id == "all" else spells[spells["site_id"] == site_id]
        if site_id != "all" and e.empty and s.empty:
            continue
        leads = e.loc[e["flagged"], "lead_h"] if len(e) else pd.Series(dtype=float)
        goal = int((leads >= lead_goal_h).sum())
        n_false = int(s["false_alarm"].sum()) if len(s) else 0
        rows.append({
            "site_id": site_id, "episodes": len(e), "flagged": int(len(leads)),
            "flagged_goal": goal, "share_goal": goal / len(e) if len(e) else np.nan,
            "lead_median_h": float(leads.median()) if len(leads) else np.nan,
            "lead_p10_h": float(leads.quantile(0.1)) if len(leads) else np.nan,
            "alerts": len(s), "false_alarms": n_false,
            "false_share": n_false / len(s) if len(s) else np.nan,
            "missed": len(e) - goal,
        })
    return pd.DataFrame(rows)


def evaluation_steps(start_utc: datetime, end_utc: datetime, step_min: int) -> list[datetime]:
    """Alert steps every `step_min` minutes over [start, end)."""
    out, t = [], pd.Timestamp(start_utc)
    while t < pd.Timestamp(end_utc):
        out.append(t.to_pydatetime())
        t += timedelta(minutes=step_min)
    return out


def score(
    episodes: pd.DataFrame, runs: list[Run], arrivals: pd.DataFrame, steps: list[datetime],
    cfg: AlertSettings, thresholds: pd.DataFrame, site_ids: list[str], lead_goal_h: float,
    interval_width: float = 0.8, progress: Callable[[int], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Everything for one alert configuration: open steps, spells, matched episodes (with miss
    reasons), and the summary table."""
    open_steps = simulate_alerts(runs, arrivals, steps, cfg, thresholds, interval_width,
                                 progress)
    spells = alert_spells(open_steps, steps, cfg.forecast_horizon_h)
    eps, spells = match_episodes(episodes, spells)
    peaks = peak_p_by_run(episodes, sorted(runs, key=lambda r: r.in_force_utc))
    eps["reason"] = miss_reasons(eps, peaks, cfg.forecast_p, lead_goal_h)
    return {"episodes": eps, "spells": spells,
            "summary": summary(eps, spells, site_ids, lead_goal_h), "peaks": peaks}


# -- results files -------------------------------------------------------------------------

# The last evaluation recorded in the repository (a copy of one results file): a fresh
# machine has none of its own until the 25-minute season has run, and the dashboard's
# early-warning page shows this one meanwhile, labelled as such.
REFERENCE_RESULTS = PROJECT_ROOT / "data" / "early_warning_reference.json"


def results_files(folder: Path) -> list[Path]:
    """The evaluation results (JSON) in `folder`, newest first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def read_results(path: Path) -> dict:
    """A results file written by `orchestration.season_eval`: its header (seed, season, goal,
    settings, timing) as dicts, and summary, episodes, alerts, runs, tuning as DataFrames
    (times as naive UTC timestamps)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = dict(doc)
    for key in ("summary", "episodes", "alerts", "runs", "tuning"):
        frame = pd.DataFrame(doc.get(key) or [])
        for column in frame.columns:
            if column.endswith("_utc"):
                frame[column] = pd.to_datetime(frame[column]).dt.tz_localize(None)
        out[key] = frame
    return out

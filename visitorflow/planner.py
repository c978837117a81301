"""Festival planning from the latest forecasts: for a festival (or any date range), per site
the peak day and hour, the expected peak occupancy against capacity, the highest probability
of overload, and the day × hour overload grid. Pure functions, DataFrames in and out.

Festival dates come from the lunar rules in data/festivals.yaml (visitorflow.festivals),
never typed. Forecasts come from `Store.latest_forecast`: the hourly model reaches only
`forecast.hourly_horizon_days` (14) ahead, the daily one ≥ 120 days, so a window beyond the
hourly horizon has a peak day and daily arrivals, while its peak hour, occupancy and
overload probability are known only for the days the hourly forecast covers. For those
days the peak occupancy is *estimated* from the daily arrivals and the site's own ratio of
peak occupancy to daily arrivals in the hourly forecast (`basis` says which is which).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd

from visitorflow.clock import to_local
from visitorflow.festivals import DEFAULT_PATH, festival_days

PLAN_COLUMNS = [
    "site_id", "capacity", "days", "hourly_days", "peak_day", "peak_day_arrivals",
    "peak_day_arrivals_lower", "peak_day_arrivals_upper", "peak_hour", "peak_occupancy",
    "peak_occupancy_upper", "peak_occupancy_source", "peak_load", "max_p_overload",
    "hours_likely_overloaded", "basis",
]
GRID_COLUMNS = ["day_local", "hour", "p_overload", "site_id"]
# An hour counts as "likely overloaded" for a planner at this probability (the alerts'
# forecast_p is for the next hours; planning weeks ahead wants the even-odds line).
LIKELY_P = 0.5


def festival_windows(
    start_day: date, days_ahead: int = 400, path: str | None = None
) -> pd.DataFrame:
    """Festival occurrences that have not ended by `start_day` and start within `days_ahead`
    days, soonest first: festival_id, year, first_day, last_day, peak_days (list of dates),
    sites (tuple, empty = province-wide), name_vi/en/zh."""
    rows = []
    for year in range(start_day.year - 1, (start_day + timedelta(days=days_ahead)).year + 1):
        days = festival_days([year], path or DEFAULT_PATH)
        for fest_id, fest in days.groupby("festival_id", sort=False):
            first, last = fest["date"].min(), fest["date"].max()
            if last < start_day or first > start_day + timedelta(days=days_ahead):
                continue
            head = fest.iloc[0]
            rows.append({
                "festival_id": fest_id, "year": year, "first_day": first, "last_day": last,
                "peak_days": sorted(fest.loc[fest["is_peak"], "date"]),
                "sites": head["sites"],
                "name_vi": head["name_vi"], "name_en": head["name_en"], "name_zh": head["name_zh"],
            })
    columns = ["festival_id", "year", "first_day", "last_day", "peak_days", "sites",
               "name_vi", "name_en", "name_zh"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["first_day", "festival_id"], ignore_index=True)


def local_hours(hourly: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Hourly forecast rows with their local time: `ts_local` (naive), `day_local`, `hour`."""
    local = to_local(hourly["ts_utc"], tz)
    return hourly.assign(ts_local=local, day_local=local.dt.date, hour=local.dt.hour)


def _in_window(frame: pd.DataFrame, first_day: date, last_day: date,
               site_ids: Sequence[str] | None) -> pd.DataFrame:
    keep = (frame["day_local"] >= first_day) & (frame["day_local"] <= last_day)
    if site_ids is not None:
        keep &= frame["site_id"].isin(list(site_ids))
    return frame[keep]


def _occupancy_ratio(hours: pd.DataFrame) -> pd.Series:
    """Per site: median over the forecast's days of peak occupancy / daily arrivals (how many
    of a day's visitors are on site at once at the busiest hour)."""
    per_day = hours.groupby(["site_id", "day_local"]).agg(
        peak=("occupancy", "max"), arrivals=("arrivals", "sum"))
    per_day = per_day[per_day["arrivals"] > 0]
    return (per_day["peak"] / per_day["arrivals"]).groupby("site_id").median()


def plan_sites(
    hourly: pd.DataFrame,
    daily: pd.DataFrame,
    first_day: date,
    last_day: date,
    capacities: dict[str, int],
    tz: str,
    site_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per site for the local days first_day..last_day (inclusive), from the latest
    hourly and daily forecasts (`Store.latest_forecast`): peak_day and its arrivals band
    (daily model), peak_hour (local), peak_occupancy(_upper) and peak_load (share of
    capacity), max_p_overload and hours_likely_overloaded (p ≥ 0.5) from the hourly model
    over the `hourly_days` of the window it covers. `basis`: `hourly` (every day covered),
    `partial` (some days), `daily` (none: no peak hour nor probability). When the peak day
    lies beyond the hourly horizon its peak occupancy is estimated from its daily arrivals
    (`peak_occupancy_source` = `estimate`, else `hourly`). Sorted by peak load, highest
    first."""
    site_ids = list(site_ids) if site_ids is not None else sorted(capacities)
    days = (last_day - first_day).days + 1
    all_hours = local_hours(hourly, tz) if len(hourly) else pd.DataFrame(
        columns=["site_id", "day_local", "hour", "ts_local", "occupancy", "arrivals"])
    ratios = _occupancy_ratio(all_hours) if len(all_hours) else pd.Series(dtype=float)
    hours = _in_window(all_hours, first_day, last_day, site_ids)
    window_days = _in_window(daily.assign(day_local=pd.to_datetime(daily["day_local"]).dt.date),
                             first_day, last_day, site_ids) if len(daily) else daily
    rows = []
    for site_id in site_ids:
        row = dict.fromkeys(PLAN_COLUMNS)
        row.update(site_id=site_id, capacity=capacities[site_id], days=days,
                   hourly_days=0, hours_likely_overloaded=0)
        site_days = window_days[window_days["site_id"] == site_id] if len(window_days) else None
        if site_days is not None and len(site_days):
            peak = site_days.loc[site_days["arrivals"].idxmax()]
            row.update(peak_day=peak["day_local"], peak_day_arrivals=peak["arrivals"],
                       peak_day_arrivals_lower=peak["arrivals_lower"],
                       peak_day_arrivals_upper=peak["arrivals_upper"])
        site_hours = hours[hours["site_id"] == site_id]
        row["hourly_days"] = site_hours["day_local"].nunique()
        if len(site_hours):
            top = site_hours.loc[site_hours["occupancy"].idxmax()]
            row.update(peak_hour=top["ts_local"], peak_occupancy=top["occupancy"],
                       peak_occupancy_upper=top["occupancy_upper"],
                       max_p_overload=site_hours["p_overload"].max(),
                       hours_likely_overloaded=int((site_hours["p_overload"] >= LIKELY_P).sum()))
            if row["peak_day"] is None:  # no daily forecast: the busiest day of the hours
                by_day = site_hours.groupby("day_local")["arrivals"].sum()
                row.update(peak_day=by_day.idxmax(), peak_day_arrivals=by_day.max())
        row["basis"] = ("hourly" if row["hourly_days"] >= days
                        else "partial" if row["hourly_days"] else "daily")
        row["peak_occupancy_source"] = "hourly" if len(site_hours) else None
        # The busiest day lies beyond the hourly horizon: estimate its peak occupancy.
        if (row["peak_day"] is not None and row["peak_day"] not in set(site_hours["day_local"])
                and site_id in ratios.index):
            estimate = row["peak_day_arrivals"] * ratios[site_id]
            if row["peak_occupancy"] is None or estimate > row["peak_occupancy"]:
                row.update(peak_hour=None, peak_occupancy=estimate, peak_occupancy_upper=None,
                           peak_occupancy_source="estimate")
        if row["peak_occupancy"] is not None:
            row["peak_load"] = row["peak_occupancy"] / row["capacity"]
        rows.append(row)
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    for col in ("peak_day_arrivals", "peak_day_arrivals_lower", "peak_day_arrivals_upper",
                "peak_occupancy", "peak_occupancy_upper", "peak_load", "max_p_overload"):
        plan[col] = pd.to_numeric(plan[col], errors="coerce")
    return plan.sort_values(["peak_load", "peak_day_arrivals"], ascending=False,
                            na_position="last", ignore_index=True)


def overload_grid(
    hourly: pd.DataFrame,
    first_day: date,
    last_day: date,
    tz: str,
    site_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The day × hour heat map over the days of the window the hourly forecast covers: one
    row per local day and hour (0–23), `p_overload` the highest over the sites and `site_id`
    the site it belongs to. Hours the forecast has no row for (none here) are NaN; days it
    does not cover are absent (empty frame: the window is beyond the hourly horizon)."""
    if hourly.empty:
        return pd.DataFrame(columns=GRID_COLUMNS)
    hours = _in_window(local_hours(hourly, tz), first_day, last_day, site_ids)
    if hours.empty:
        return pd.DataFrame(columns=GRID_COLUMNS)
    worst = hours.loc[hours.groupby(["day_local", "hour"])["p_overload"].idxmax(),
                      ["day_local", "hour", "p_overload", "site_id"]]
    full = pd.MultiIndex.from_product(
        [sorted(hours["day_local"].unique()), range(24)], names=["day_local", "hour"])
    return (worst.set_index(["day_local", "hour"]).reindex(full).reset_index()[GRID_COLUMNS])


def hourly_horizon_end(hourly: pd.DataFrame, tz: str) -> date | None:
    """The last local day with an hourly forecast (None without one)."""
    if hourly.empty:
        return None
    return local_hours(hourly, tz)["day_local"].max()


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    """A table as CSV, UTF-8 with a byte-order mark so Excel shows Vietnamese and Chinese."""
    return table.to_csv(index=False).encode("utf-8-sig")


def to_excel_bytes(sheets: dict[str, pd.DataFrame]) -> bytes:
    """Tables as an Excel workbook (.xlsx, openpyxl), one sheet each (names ≤ 31 chars)."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name[:31], index=False)
    return buffer.getvalue()

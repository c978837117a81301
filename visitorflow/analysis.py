"""What the analysts' notebooks compute: flows, festival effects, maps, forecast quality and
festival after-action reviews.

The notebooks in `notebooks/` only call `visitorflow.analysis` and draw; anything the product
might need again lives here, tested, instead of in a cell. This module holds the notebook's
way into the store (`open_workspace`) and the queries over a range of days; the derived
tables and map frames are in `visitorflow.analysis_tables` and re-exported here, so a
notebook imports one module. All reads go through `visitorflow.store.Store`, which opens the
DuckDB file read-only per query and closes it at once: a notebook left open for hours never
holds the file, so it never stalls the collector (a held connection does:
tests/test_notebooks.py, `test_a_held_connection_does_stall_the_collector`). Times come out
of the store as naive UTC (`*_utc`) and are shown here as naive local time in the settings'
zone (`*_local`, visitorflow.clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd

from visitorflow.analysis_tables import (
    BOUNDARY_ATTRIBUTION,
    DISTRICTS_PATH,
    HOURS_LEVELS,
    TRAVEL_MATRIX_PATH,
    WEEKDAY_NAMES,
    acknowledgement_times,
    boundary_frame,
    calendar_days,
    daily_flows,
    districts_frame,
    error_summary,
    festival_effects,
    festival_occurrences,
    flow_lags,
    hour_of_day_profile,
    hours_per_level,
    load_episodes,
    month_profile,
    residuals_by_hour,
    sites_frame,
    travel_minutes,
    visitors_by_district,
    weekday_profile,
    worst_sites_explained,
)
from visitorflow.catalogue import Catalogue, Site, load_catalogue
from visitorflow.clock import local_day_range_utc, to_local
from visitorflow.limits import effective_limits, thresholds_of
from visitorflow.load import level_colour_hex, load_level, running_occupancy
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# What notebooks and tests reach as `va.<name>`: this module's own functions and, re-exported,
# the derived tables of visitorflow.analysis_tables and the map colour of a load level.
__all__ = [
    "BOUNDARY_ATTRIBUTION", "DISTRICTS_PATH", "HOURS_LEVELS", "HOURS_PER_WEEK",
    "TRAVEL_MATRIX_PATH", "WEEKDAY_NAMES", "Workspace", "acknowledgement_times", "alert_log",
    "analyst_store", "backtest_table", "boundary_frame", "calendar_days", "counter_health",
    "daily_flows", "districts_frame", "error_summary", "festival_actual_vs_forecast",
    "festival_alerts", "festival_effects", "festival_occurrences", "festival_sites",
    "flow_lags", "forecast_errors", "hour_of_day_profile", "hourly_flows", "hours_per_level",
    "interval_flows", "latest_covered_occurrence", "level_colour_hex", "load_episodes",
    "month_profile", "occupancy_by_minute", "open_workspace", "plot_province",
    "residuals_by_hour", "sites_frame", "store_span_local_days", "strip_outputs",
    "travel_minutes", "visitors_by_district", "weekday_profile", "worst_sites_explained",
]

HOURS_PER_WEEK = 168


# -- the analysts' way into the store ---------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """Settings, catalogue and store of one notebook session, and each site's limits in
    force when it was opened. The store holds no connection: every method opens read-only,
    queries and closes (retrying a held lock with backoff)."""

    settings: Settings
    catalogue: Catalogue  # capacities in force (an admin's overrides included)
    store: Store
    # Per site (index site_id): capacity and busy / crowded / overload shares in force, as
    # visitorflow.limits.effective_limits gives them to the live map and the alerts.
    limits: pd.DataFrame = field(compare=False, repr=False)

    @property
    def tz(self) -> ZoneInfo:
        return self.settings.tz


def analyst_store(settings: Settings | None = None) -> Store:
    """The store for a notebook: read-only per call, closed at once. Never keep a
    `duckdb.connect()` open in a notebook: even a read-only one blocks the collector."""
    return Store.from_settings(settings or get_settings())


def open_workspace(settings: Settings | None = None) -> Workspace:
    """What a notebook's first cell calls: the settings in force (file and VISITORFLOW_*
    environment), the validated catalogue with the capacities in force and each site's load
    thresholds in force (an admin's overrides included, as the live map and the alerts use
    them), and the short-lived store. Reopen it to see overrides set since."""
    settings = settings or get_settings()
    store = analyst_store(settings)
    catalogue, limits = effective_limits(store, load_catalogue(settings.catalogue_path), settings)
    return Workspace(settings, catalogue, store, limits)


def store_span_local_days(ws: Workspace) -> tuple[date, date] | None:
    """The first and last local day with counts in the store, or None if it is empty."""
    first, last = ws.store.data_span()
    if first is None or last is None:
        return None
    days = to_local(pd.Series([first, last]), ws.tz).dt.date
    return days.iloc[0], days.iloc[1]


# -- flows --------------------------------------------------------------------------------------


def hourly_flows(
    ws: Workspace,
    start_utc: datetime | None = None,
    end_utc: datetime | None = None,
    site_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Arrivals and departures per site and hour, with local time columns: site_id,
    hour_utc, hour_local, date_local, weekday (0 = Monday), hour (local), arrivals,
    departures. Defaults to everything in the store."""
    if start_utc is None or end_utc is None:
        first, last = ws.store.data_span()
        if first is None or last is None:
            return pd.DataFrame(columns=["site_id", "hour_utc", "hour_local", "date_local",
                                         "weekday", "hour", "arrivals", "departures"])
        start_utc = start_utc or first
        end_utc = end_utc or last + timedelta(minutes=1)
    frame = ws.store.site_hourly_counts(start_utc, end_utc, site_ids)
    frame["hour_local"] = to_local(frame["hour_utc"], ws.tz)
    frame["date_local"] = frame["hour_local"].dt.date
    frame["weekday"] = frame["hour_local"].dt.weekday
    frame["hour"] = frame["hour_local"].dt.hour
    return frame


# -- festivals in the data ----------------------------------------------------------------------


def latest_covered_occurrence(ws: Workspace, festival_id: str) -> pd.Series:
    """The newest occurrence of a festival whose every day lies inside the store's data."""
    span = store_span_local_days(ws)
    if span is None:
        raise LookupError("the store holds no counts yet: run the backfill first")
    occ = festival_occurrences(festival_id, range(span[0].year, span[1].year + 1))
    covered = occ[(occ["first"] >= span[0]) & (occ["last"] <= span[1])]
    if covered.empty:
        raise LookupError(f"no occurrence of {festival_id} lies within the data "
                          f"({span[0]} to {span[1]})")
    return covered.iloc[-1]


def festival_sites(ws: Workspace, occurrence: pd.Series) -> list[str]:
    """The sites a festival occurrence concerns (all catalogue sites if province-wide)."""
    return list(occurrence["sites"]) or [s.id for s in ws.catalogue.sites]


def interval_flows(
    ws: Workspace, start_utc: datetime, end_utc: datetime, site_ids: Sequence[str],
    interval_s: int = 900,
) -> pd.DataFrame:
    """Arrivals and departures per site and interval (all gates): site_id, start_utc,
    start_local, arrivals, departures, on a complete grid (missing intervals 0)."""
    gates = ws.store.gate_interval_counts(start_utc, end_utc, interval_s, site_ids)
    sites = gates.groupby(["site_id", "start_utc"], as_index=False)[
        ["count_in", "count_out"]].sum()
    grid = pd.MultiIndex.from_product(
        [list(site_ids), pd.date_range(start_utc, end_utc, freq=f"{interval_s}s",
                                       inclusive="left")],
        names=["site_id", "start_utc"])
    sites = sites.set_index(["site_id", "start_utc"]).reindex(grid, fill_value=0).reset_index()
    sites = sites.rename(columns={"count_in": "arrivals", "count_out": "departures"})
    sites["start_local"] = to_local(sites["start_utc"], ws.tz)
    return sites


# -- maps ---------------------------------------------------------------------------------------


def plot_province(
    ws: Workspace, by_district: gpd.GeoDataFrame, ax: Axes | None = None
) -> Axes:
    """Choropleth of arrivals by former district, the province outline and the sites."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7))
    by_district.plot(column="arrivals", ax=ax, cmap="YlOrRd", legend=True, edgecolor="grey",
                     legend_kwds={"label": "arrivals", "shrink": 0.6})
    boundary_frame(ws.settings).boundary.plot(ax=ax, color="black", linewidth=1)
    sites_frame(ws.catalogue).plot(ax=ax, color="navy", markersize=12)
    ax.set_axis_off()
    ax.annotate(BOUNDARY_ATTRIBUTION, xy=(0.01, 0.01), xycoords="axes fraction", fontsize=7)
    return ax


# -- forecast quality ---------------------------------------------------------------------------


def backtest_table(store: Store) -> pd.DataFrame:
    """The newest rolling-origin backtest per site against the weekly seasonal-naive
    forecast, worst first; `beats_naive` is mae_ratio < 1. Empty if none was run."""
    table = store.latest_backtest()
    if table.empty:
        return table
    table["beats_naive"] = table["mae_ratio"] < 1
    return table.sort_values("mae_ratio", ascending=False, na_position="first").reset_index(
        drop=True)


def forecast_errors(ws: Workspace, site_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Every stored hourly forecast for an hour that has since been counted, against the
    count and against the weekly seasonal-naive forecast (the same hour a week before the
    run's history end, as forecasting.models.seasonal_naive_hourly does). Open hours only.
    Columns: run_id, site_id, hour_utc, hour_local, hour, lead_h, forecast, naive, actual,
    error (forecast − actual), naive_error, is_event (festival or holiday of the site)."""
    first, last = ws.store.data_span()
    columns = ["run_id", "site_id", "hour_utc", "hour_local", "hour", "lead_h", "forecast",
               "naive", "actual", "error", "naive_error", "is_event"]
    if first is None or last is None:
        return pd.DataFrame(columns=columns)
    fc = ws.store.forecast_hourly_range(first, last, site_ids)
    fc = fc[fc["is_open"] & (fc["ts_utc"] >= fc["history_end_utc"])]
    if fc.empty:
        return pd.DataFrame(columns=columns)
    actual = ws.store.site_hourly_counts(first - timedelta(hours=HOURS_PER_WEEK), last,
                                         site_ids)
    # Only hours counted by every gate in every minute-slot we expect are "actual": the
    # last, still-filling hour of the store is dropped.
    actual = actual[actual["hour_utc"] < pd.Timestamp(last).floor("h")]
    known = actual.set_index(["site_id", "hour_utc"])["arrivals"].astype(float)
    out = pd.DataFrame({"run_id": fc["run_id"], "site_id": fc["site_id"],
                        "hour_utc": fc["ts_utc"], "forecast": fc["arrivals"]})
    hist_end = pd.to_datetime(fc["history_end_utc"]).dt.floor("h")
    lead = (pd.to_datetime(fc["ts_utc"]) - hist_end) // pd.Timedelta(hours=1)
    out["lead_h"] = lead.to_numpy()
    # The naive forecast repeats the last observed week: hour h of the horizon takes the
    # same hour of the week before the history end (wrapping every 168 h).
    back = (lead // HOURS_PER_WEEK + 1) * HOURS_PER_WEEK
    source = pd.to_datetime(fc["ts_utc"]) - pd.to_timedelta(back, unit="h")
    out["naive"] = pd.MultiIndex.from_arrays([fc["site_id"], source]).map(known).to_numpy()
    out["actual"] = pd.MultiIndex.from_arrays([fc["site_id"], fc["ts_utc"]]).map(
        known).to_numpy()
    # Score only hours both forecasts can be judged on: counted now, and a naive source
    # inside the store's history (before it, the naive forecast does not exist).
    out = out[out["actual"].notna() & (source >= pd.Timestamp(first).floor("h")).to_numpy()]
    out = out.reset_index(drop=True)
    out["naive"] = out["naive"].fillna(0.0)  # an uncounted hour a week ago: closed, 0
    out["error"] = out["forecast"] - out["actual"]
    out["naive_error"] = out["naive"] - out["actual"]
    out["hour_local"] = to_local(out["hour_utc"], ws.tz)
    out["hour"] = out["hour_local"].dt.hour
    years = range(out["hour_local"].dt.year.min(), out["hour_local"].dt.year.max() + 1) \
        if len(out) else range(0)
    events = calendar_days(years, ws.catalogue)
    special = set(zip(events["site_id"], events["date"], strict=True))
    out["is_event"] = [(s, d) in special
                       for s, d in zip(out["site_id"], out["hour_local"].dt.date, strict=True)]
    return out[columns]


# -- festival after-action review ---------------------------------------------------------------


def festival_actual_vs_forecast(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """Per site and festival day: counted arrivals against the forecast planners had (the
    daily forecast of the newest run whose history ended before the festival began).
    Columns: site_id, date_local, actual, forecast, lower, upper, run_id, error_pct."""
    start_utc, end_utc = local_day_range_utc(first, last, ws.tz)
    hourly = hourly_flows(ws, start_utc, end_utc, site_ids)
    actual = daily_flows(hourly)[["site_id", "date_local", "arrivals"]].rename(
        columns={"arrivals": "actual"})
    fc = ws.store.forecast_daily_range(first, last, site_ids)
    # "Before the festival" by the data the run saw, not by its wall-clock time: a run over
    # back-filled or replayed history is created long after the days it forecasts.
    fc = fc[pd.to_datetime(fc["history_end_utc"]) <= pd.Timestamp(start_utc)]
    if len(fc):
        fc = fc.sort_values(["history_end_utc", "run_created_at_utc"])
        chosen = fc.groupby("site_id")["run_id"].last()
        fc = fc[fc["run_id"] == fc["site_id"].map(chosen)]
    fc = fc.rename(columns={"day_local": "date_local", "arrivals": "forecast",
                            "arrivals_lower": "lower", "arrivals_upper": "upper"})
    fc["date_local"] = pd.to_datetime(fc["date_local"]).dt.date
    out = actual.merge(fc[["site_id", "date_local", "forecast", "lower", "upper", "run_id"]],
                       on=["site_id", "date_local"], how="left")
    out["error_pct"] = 100 * (out["forecast"] - out["actual"]) / out["actual"].replace(0, np.nan)
    return out


def occupancy_by_minute(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """People on each site at every local minute of days first..last, as the live page
    computes it (visitorflow.load's running occupancy, from each local midnight), and the
    load level from the site's capacity and thresholds in force (`ws.limits`: an admin's
    overrides included, as on the live map). Columns: site_id, minute_local, occupancy,
    is_open, level."""
    start_utc, end_utc = local_day_range_utc(first, last, ws.tz)
    counts = ws.store.minute_counts(start_utc, end_utc, site_ids)
    counts["minute_local"] = to_local(counts["minute_utc"], ws.tz)
    grid = pd.date_range(pd.Timestamp(first), pd.Timestamp(last + timedelta(days=1)),
                         freq="min", inclusive="left")
    parts = []
    for site_id in site_ids:
        site = ws.catalogue.site(site_id)
        thresholds = thresholds_of(ws.limits, site_id)
        flows = (counts[counts["site_id"] == site_id]
                 .groupby("minute_local")[["count_in", "count_out"]].sum()
                 .reindex(grid, fill_value=0))
        # Every local day starts from nobody on site; people are counted whole.
        running = pd.concat([
            running_occupancy(day["count_in"], day["count_out"])
            for _, day in flows.groupby(flows.index.date)
        ]).astype(int)
        is_open = _open_minutes(site, grid)
        levels = [
            load_level(occ, site.capacity, thresholds, is_open=op).value
            for occ, op in zip(running.to_numpy(), is_open, strict=True)
        ]
        parts.append(pd.DataFrame({"site_id": site_id, "minute_local": grid,
                                   "occupancy": running.to_numpy(), "is_open": is_open,
                                   "level": levels}))
    return pd.concat(parts, ignore_index=True)


def _open_minutes(site: Site, grid: pd.DatetimeIndex) -> np.ndarray:
    """Whether the site is open at each minute, from its opening hours (one check per day
    and interval, not per minute)."""
    out = np.zeros(len(grid), dtype=bool)
    for day in sorted(set(grid.date)):
        for start, end in site.open_intervals(day):
            out |= (grid >= start) & (grid < end)
    return out


def alert_log(ws: Workspace) -> pd.DataFrame | None:
    """Alerts raised, if alerts were ever evaluated on the store; None when they were not
    (no alerting component has run on it), so a review can say so instead of reporting zero
    alerts."""
    return ws.store.alerts()


def festival_alerts(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame | None:
    """Alerts raised for the sites over local days first..last, one row per alert with how it
    was acknowledged: acks (how many), first_acked_by, first_acked_local and minutes_to_ack
    (raised → first acknowledgement; NaN while nobody did), raised/cleared in local time.
    None when the store has no alerts table (no alert evaluation ever ran on it)."""
    start_utc, end_utc = local_day_range_utc(first, last, ws.tz)
    audit = ws.store.alert_audit(since_utc=start_utc)
    if audit is None:
        return None
    audit = audit[(audit["raised_at_utc"] < end_utc) & audit["site_id"].isin(site_ids)]
    audit = audit.sort_values(["alert_id", "acked_at_utc"])
    first_ack = audit.groupby("alert_id", sort=False).agg(
        acks=("acked_at_utc", "count"), first_acked_at_utc=("acked_at_utc", "min"),
        first_acked_by=("acked_by", "first"))
    alerts = (audit.drop_duplicates("alert_id")
              .drop(columns=["acked_at_utc", "acked_by", "note"])
              .join(first_ack, on="alert_id"))
    alerts["minutes_to_ack"] = (
        (alerts["first_acked_at_utc"] - alerts["raised_at_utc"]).dt.total_seconds() / 60)
    for col in ("raised_at_utc", "cleared_at_utc", "first_acked_at_utc"):
        alerts[col.replace("_at_utc", "_local")] = to_local(alerts[col], ws.tz)
    return alerts[["alert_id", "site_id", "kind", "level", "raised_local", "cleared_local",
                   "occupancy", "capacity", "p_overload", "acks", "first_acked_by",
                   "first_acked_local", "minutes_to_ack", "message"]].sort_values(
        ["raised_local", "site_id"]).reset_index(drop=True)


def counter_health(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """Per catalogue gate of the sites over local days first..last: readings, share of the
    period covered by them, lowest battery, worst delivery delay, open seq gaps and
    recovered readings, counter resets/wraps, from the collector's quality tables."""
    start_utc, end_utc = local_day_range_utc(first, last, ws.tz)
    period_s = (end_utc - start_utc).total_seconds()
    cover = ws.store.gate_coverage(start_utc, end_utc, site_ids).set_index(
        ["site_id", "gate_id"])
    gates = pd.DataFrame([(s.id, g.id) for s in ws.catalogue.sites if s.id in site_ids
                          for g in s.gates], columns=["site_id", "gate_id"])
    out = gates.join(cover, on=["site_id", "gate_id"])
    out["readings"] = out["readings"].fillna(0).astype(int)
    out["coverage"] = out["seconds_counted"].fillna(0) / period_s
    gaps = ws.store.reading_gaps()
    gaps = gaps[(gaps["after_ts_utc"] < end_utc) & (gaps["before_ts_utc"] >= start_utc)]
    events = ws.store.counter_events()
    events = events[(events["ts_utc"] >= start_utc) & (events["ts_utc"] < end_utc)]
    key = ["site_id", "gate_id"]
    out = out.join(gaps[gaps["status"] == "open"].groupby(key)["missing_readings"].sum()
                   .rename("open_gap_readings"), on=key)
    out = out.join(gaps[gaps["status"] == "recovered"].groupby(key)["missing_readings"].sum()
                   .rename("recovered_readings"), on=key)
    out = out.join(events.groupby(key).size().rename("counter_events"), on=key)
    for col in ("open_gap_readings", "recovered_readings", "counter_events"):
        out[col] = out[col].fillna(0).astype(int)
    return out[["site_id", "gate_id", "readings", "coverage", "min_battery_pct",
                "max_delay_s", "open_gap_readings", "recovered_readings", "counter_events"]]


# -- committing notebooks -----------------------------------------------------------------------


def strip_outputs(paths: Iterable[Path]) -> list[Path]:
    """Clear outputs and execution counts (the team commits notebooks without outputs:
    they hold data and bloat diffs). Returns the files that changed."""
    import nbformat

    changed = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        dirty = False
        for cell in notebook.cells:
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
                cell.outputs, cell.execution_count, dirty = [], None, True
            # nbclient stamps run times into the metadata: noise in every diff.
            if cell.metadata.pop("execution", None) is not None:
                dirty = True
        if dirty:
            nbformat.write(notebook, path)
            changed.append(Path(path))
    return changed


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "strip-outputs":
        raise SystemExit("usage: python -m visitorflow.analysis strip-outputs NOTEBOOK...")
    for path in strip_outputs(Path(p) for p in sys.argv[2:]):
        print(f"stripped {path}")

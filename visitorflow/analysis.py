"""What the analysts' notebooks compute (issue 7): flows, festival effects, maps, forecast
quality and festival after-action reviews.

The notebooks in `notebooks/` only call these functions and draw; anything the product
might need again lives here, tested, instead of in a cell. All reads go through
`visitorflow.store.Store`, which opens the DuckDB file read-only per query and closes it at
once: a notebook left open for hours never holds the file, so it never stalls the collector
(a held connection would, see the README). Times come out of the store as naive UTC
(`*_utc`) and are shown here as naive Asia/Ho_Chi_Minh (`*_local`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import Point

from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.festivals import festival_days, national_holidays
from visitorflow.limits import effective_limits
from visitorflow.load import LEVEL_COLOURS, LoadLevel, load_level
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store

# Reference inputs (immutable copies, see data/README.md); only analysis reads them.
DISTRICTS_PATH = PROJECT_ROOT / "data" / "raw" / "lang_son_districts_pre2025_dvhcvn.geojson"
TRAVEL_MATRIX_PATH = PROJECT_ROOT / "data" / "raw" / "travel_matrix.csv"
BOUNDARY_ATTRIBUTION = "Ranh giới: gis.chinhphu.vn"
HOURS_PER_WEEK = 168
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# -- the analysts' way into the store ---------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """Settings, catalogue and store of one notebook session. The store holds no connection:
    every method opens read-only, queries and closes (retrying a held lock with backoff)."""

    settings: Settings
    catalogue: Catalogue
    store: Store

    @property
    def tz(self):  # noqa: ANN201 - a ZoneInfo
        return self.settings.tz


def analyst_store(settings: Settings | None = None) -> Store:
    """The store for a notebook: read-only per call, closed at once. Never keep a
    `duckdb.connect()` open in a notebook: even a read-only one blocks the collector."""
    return Store.from_settings(settings or get_settings())


def open_workspace(settings: Settings | None = None) -> Workspace:
    """What a notebook's first cell calls: the settings in force (file and VISITORFLOW_*
    environment), the validated catalogue with the capacities in force (an admin's overrides
    included, as the live map and the alerts use them), and the short-lived store."""
    settings = settings or get_settings()
    store = analyst_store(settings)
    catalogue = effective_limits(store, load_catalogue(settings.catalogue_path), settings)[0]
    return Workspace(settings, catalogue, store)


def to_local(utc: pd.Series, tz: str) -> pd.Series:
    """Naive UTC timestamps to naive local time (the province's clock, no DST)."""
    return pd.to_datetime(utc).dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)


def local_day_bounds_utc(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """Local days first..last (inclusive) as a half-open naive-UTC range."""
    start = pd.Timestamp(first).tz_localize(tz).tz_convert("UTC").tz_localize(None)
    end = pd.Timestamp(last + timedelta(days=1)).tz_localize(tz).tz_convert("UTC")
    return start.to_pydatetime(), end.tz_localize(None).to_pydatetime()


def store_span_local_days(ws: Workspace) -> tuple[date, date] | None:
    """The first and last local day with counts in the store, or None if it is empty."""
    first, last = ws.store.data_span()
    if first is None or last is None:
        return None
    days = to_local(pd.Series([first, last]), ws.settings.timezone).dt.date
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
    frame["hour_local"] = to_local(frame["hour_utc"], ws.settings.timezone)
    frame["date_local"] = frame["hour_local"].dt.date
    frame["weekday"] = frame["hour_local"].dt.weekday
    frame["hour"] = frame["hour_local"].dt.hour
    return frame


def daily_flows(hourly: pd.DataFrame) -> pd.DataFrame:
    """Arrivals per site and local day: site_id, date_local, weekday, month, arrivals."""
    daily = hourly.groupby(["site_id", "date_local"], as_index=False)["arrivals"].sum()
    stamps = pd.to_datetime(daily["date_local"])
    daily["weekday"] = stamps.dt.weekday
    daily["month"] = stamps.dt.month
    return daily


def hour_of_day_profile(hourly: pd.DataFrame) -> pd.DataFrame:
    """The daily pattern: share of a site's arrivals in each local hour (rows: sites,
    columns: hours 0–23), so sites of very different size compare on one scale."""
    table = hourly.pivot_table(index="site_id", columns="hour", values="arrivals",
                               aggfunc="sum", fill_value=0)
    table = table.reindex(columns=range(24), fill_value=0)
    return table.div(table.sum(axis=1).replace(0, np.nan), axis=0)


def weekday_profile(daily: pd.DataFrame) -> pd.DataFrame:
    """The weekly pattern: mean arrivals per weekday over the site's overall daily mean
    (1.0 = an average day); columns Mon..Sun."""
    table = daily.pivot_table(index="site_id", columns="weekday", values="arrivals",
                              aggfunc="mean").reindex(columns=range(7))
    table = table.div(daily.groupby("site_id")["arrivals"].mean(), axis=0)
    table.columns = list(WEEKDAY_NAMES)
    return table


def month_profile(daily: pd.DataFrame) -> pd.DataFrame:
    """The yearly pattern: mean daily arrivals per calendar month (only months with data)."""
    return daily.pivot_table(index="site_id", columns="month", values="arrivals",
                             aggfunc="mean")


# -- festivals and holidays (lunar rules, never typed dates) ------------------------------------


def calendar_days(years: Iterable[int], catalogue: Catalogue) -> pd.DataFrame:
    """Per site and date: the festivals (from their lunar rules in data/festivals.yaml) and
    national holidays (holidays VN) that concern it. Columns: site_id, date, event_id, kind
    (festival | holiday), is_peak."""
    years = sorted(set(years))
    site_ids = [s.id for s in catalogue.sites]
    rows: list[dict] = []
    fest = festival_days(years)
    for rec in fest.itertuples(index=False):
        for site_id in (rec.sites or site_ids):
            rows.append({"site_id": site_id, "date": rec.date, "event_id": rec.festival_id,
                         "kind": "festival", "is_peak": bool(rec.is_peak)})
    for rec in national_holidays(years).itertuples(index=False):
        for site_id in site_ids:
            rows.append({"site_id": site_id, "date": rec.date, "event_id": rec.name,
                         "kind": "holiday", "is_peak": False})
    return pd.DataFrame(rows, columns=["site_id", "date", "event_id", "kind", "is_peak"])


def festival_effects(
    daily: pd.DataFrame, catalogue: Catalogue, baseline_days: int = 28
) -> pd.DataFrame:
    """How much each festival and holiday lifts each concerned site: mean arrivals on its
    days against the median of the same weekdays within ±baseline_days that are no festival
    or holiday for the site. Only occurrences with data on every day are scored.
    Columns: event_id, kind, year, site_id, days, first_date, event_mean, baseline, uplift."""
    if daily.empty:
        return pd.DataFrame()
    years = range(min(daily["date_local"]).year, max(daily["date_local"]).year + 1)
    events = calendar_days(years, catalogue)
    special = set(zip(events["site_id"], events["date"], strict=True))
    by_site = {site: grp.set_index("date_local") for site, grp in daily.groupby("site_id")}
    rows = []
    for (event_id, kind, site_id), grp in events.groupby(["event_id", "kind", "site_id"]):
        frame = by_site.get(site_id)
        if frame is None:
            continue
        for year, occ in grp.groupby(pd.to_datetime(grp["date"]).dt.year):
            dates = sorted(occ["date"])
            if not all(d in frame.index for d in dates):
                continue
            baseline = [
                frame.at[d, "arrivals"] for d in frame.index
                if abs((d - dates[0]).days) <= baseline_days and (site_id, d) not in special
                and d.weekday() in {x.weekday() for x in dates}
            ]
            if not baseline:
                continue
            event_mean = float(frame.loc[dates, "arrivals"].mean())
            base = float(np.median(baseline))
            rows.append({"event_id": event_id, "kind": kind, "year": int(year),
                         "site_id": site_id, "days": len(dates), "first_date": dates[0],
                         "event_mean": event_mean, "baseline": base,
                         "uplift": event_mean / base if base > 0 else np.nan})
    out = pd.DataFrame(rows)
    return out.sort_values("uplift", ascending=False).reset_index(drop=True) if len(out) else out


def festival_occurrences(festival_id: str, years: Iterable[int]) -> pd.DataFrame:
    """The Gregorian dates of a festival in each year: year, first, last, peak_dates, sites."""
    days = festival_days(list(years))
    days = days[days["festival_id"] == festival_id]
    if days.empty:
        raise KeyError(f"unknown festival {festival_id!r} (see data/festivals.yaml)")
    rows = []
    for _, grp in days.groupby(pd.to_datetime(days["date"]).dt.year):
        rows.append({"year": grp["date"].min().year, "first": grp["date"].min(),
                     "last": grp["date"].max(),
                     "peak_dates": tuple(grp.loc[grp["is_peak"], "date"]),
                     "sites": grp["sites"].iloc[0]})
    return pd.DataFrame(rows)


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
    sites["start_local"] = to_local(sites["start_utc"], ws.settings.timezone)
    return sites


def travel_minutes(path: Path = TRAVEL_MATRIX_PATH) -> pd.DataFrame:
    """Walking and driving minutes between sites (data/raw/travel_matrix.csv)."""
    return pd.read_csv(path)[["from_id", "to_id", "walk_min", "drive_min", "basis"]]


def flow_lags(flows: pd.DataFrame, site_ids: Sequence[str], max_lag: int = 8) -> pd.DataFrame:
    """Where visitors go next, inferred from timing: for each ordered pair (A, B), the lag
    (in intervals) at which A's departures best correlate with B's arrivals, and that
    correlation. Counters do not follow people, so this is a hint, not a trip count: a high
    correlation at a lag near the walking time says the crowd moves A → B.
    Columns: from_id, to_id, best_lag, corr, corr_lag0."""
    wide_out = flows.pivot(index="start_utc", columns="site_id", values="departures")
    wide_in = flows.pivot(index="start_utc", columns="site_id", values="arrivals")
    rows = []
    for a in site_ids:
        for b in site_ids:
            if a == b:
                continue
            corrs = [wide_out[a].corr(wide_in[b].shift(-lag)) for lag in range(max_lag + 1)]
            corrs = [c if np.isfinite(c) else -np.inf for c in corrs]
            best = int(np.argmax(corrs))
            rows.append({"from_id": a, "to_id": b, "best_lag": best,
                         "corr": float(corrs[best]), "corr_lag0": float(corrs[0])})
    return pd.DataFrame(rows).sort_values("corr", ascending=False).reset_index(drop=True)


# -- maps ---------------------------------------------------------------------------------------


def sites_frame(catalogue: Catalogue, language: str = "en") -> gpd.GeoDataFrame:
    """The catalogue's sites as points (WGS84): site_id, name, kind, capacity."""
    return gpd.GeoDataFrame(
        {"site_id": [s.id for s in catalogue.sites],
         "name": [s.name.get(language) for s in catalogue.sites],
         "kind": [s.kind for s in catalogue.sites],
         "capacity": [s.capacity for s in catalogue.sites]},
        geometry=[Point(s.lon, s.lat) for s in catalogue.sites], crs="EPSG:4326")


def boundary_frame(settings: Settings) -> gpd.GeoDataFrame:
    """The province polygon (attribute BOUNDARY_ATTRIBUTION wherever it is shown)."""
    return gpd.read_file(settings.boundary_path)


def districts_frame(path: Path = DISTRICTS_PATH) -> gpd.GeoDataFrame:
    """The 11 former districts (abolished 1 July 2025; still how visitors are reported)."""
    return gpd.read_file(path)[["level2_id", "name", "geometry"]]


def visitors_by_district(
    daily: pd.DataFrame, catalogue: Catalogue, districts: gpd.GeoDataFrame
) -> gpd.GeoDataFrame:
    """Districts with the arrivals of the sites inside them (sites by point-in-polygon;
    a district without a counted site has 0) and the sites it holds."""
    sites = sites_frame(catalogue).to_crs(districts.crs)
    joined = gpd.sjoin(sites, districts, how="left", predicate="within")
    totals = daily.groupby("site_id")["arrivals"].sum()
    joined["arrivals"] = joined["site_id"].map(totals).fillna(0)
    per = joined.groupby("level2_id").agg(arrivals=("arrivals", "sum"),
                                         sites=("site_id", lambda s: ", ".join(sorted(s))))
    out = districts.merge(per, left_on="level2_id", right_index=True, how="left")
    out["arrivals"] = out["arrivals"].fillna(0)
    out["sites"] = out["sites"].fillna("")
    return out


def plot_province(ws: Workspace, by_district: gpd.GeoDataFrame, ax=None):  # noqa: ANN001, ANN201
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
    out["hour_local"] = to_local(out["hour_utc"], ws.settings.timezone)
    out["hour"] = out["hour_local"].dt.hour
    years = range(out["hour_local"].dt.year.min(), out["hour_local"].dt.year.max() + 1) \
        if len(out) else range(0)
    events = calendar_days(years, ws.catalogue)
    special = set(zip(events["site_id"], events["date"], strict=True))
    out["is_event"] = [(s, d) in special
                       for s, d in zip(out["site_id"], out["hour_local"].dt.date, strict=True)]
    return out[columns]


def error_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Per site: hours, mean actual, MAE, naive MAE, ratio (< 1 beats naive), bias (mean
    error; > 0 over-forecast), MAE and naive MAE on festival/holiday hours; worst first."""
    if errors.empty:
        return pd.DataFrame()
    abs_err = errors.assign(ae=errors["error"].abs(), nae=errors["naive_error"].abs())
    summary = abs_err.groupby("site_id").agg(
        hours=("ae", "size"), mean_actual=("actual", "mean"), mae=("ae", "mean"),
        mae_naive=("nae", "mean"), bias=("error", "mean"))
    event = abs_err[abs_err["is_event"]].groupby("site_id").agg(
        mae_event=("ae", "mean"), mae_naive_event=("nae", "mean"), event_hours=("ae", "size"))
    summary = summary.join(event)
    summary["event_hours"] = summary["event_hours"].fillna(0).astype(int)
    summary["mae_ratio"] = summary["mae"] / summary["mae_naive"].replace(0, np.nan)
    summary["relative_mae"] = summary["mae"] / summary["mean_actual"].replace(0, np.nan)
    return summary.sort_values("mae_ratio", ascending=False).reset_index()


def residuals_by_hour(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean error (forecast − actual) per site and local hour: a systematic shape (e.g.
    the morning peak always under-forecast) shows as a run of one sign."""
    return errors.pivot_table(index="site_id", columns="hour", values="error", aggfunc="mean")


def worst_sites_explained(
    summary: pd.DataFrame, catalogue: Catalogue, errors: pd.DataFrame
) -> pd.DataFrame:
    """The error summary with what usually explains a bad forecast: the site's kind and
    capacity basis, how spiky its hours are (coefficient of variation of actual arrivals),
    the share of its error on festival/holiday hours, and its bias."""
    if summary.empty:
        return summary
    spread = errors.groupby("site_id")["actual"].agg(lambda a: a.std() / a.mean()
                                                     if a.mean() else np.nan)
    event_share = errors.assign(ae=errors["error"].abs()).groupby("site_id").apply(
        lambda g: g.loc[g["is_event"], "ae"].sum() / g["ae"].sum() if g["ae"].sum() else 0.0,
        include_groups=False)
    out = summary.copy()
    out["kind"] = out["site_id"].map(lambda s: catalogue.site(s).kind)
    out["capacity_basis"] = out["site_id"].map(lambda s: catalogue.site(s).capacity_basis)
    out["actual_cv"] = out["site_id"].map(spread)
    out["event_error_share"] = out["site_id"].map(event_share)
    return out


# -- festival after-action review ---------------------------------------------------------------


def festival_actual_vs_forecast(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """Per site and festival day: counted arrivals against the forecast planners had (the
    daily forecast of the newest run whose history ended before the festival began).
    Columns: site_id, date_local, actual, forecast, lower, upper, run_id, error_pct."""
    start_utc, end_utc = local_day_bounds_utc(first, last, ws.settings.timezone)
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
    computes it: in − out since local midnight, never below 0. Columns: site_id,
    minute_local, occupancy, is_open, level."""
    start_utc, end_utc = local_day_bounds_utc(first, last, ws.settings.timezone)
    counts = ws.store.minute_counts_for_sites(start_utc, end_utc, site_ids)
    counts["minute_local"] = to_local(counts["minute_utc"], ws.settings.timezone)
    grid = pd.date_range(pd.Timestamp(first), pd.Timestamp(last + timedelta(days=1)),
                         freq="min", inclusive="left")
    parts = []
    for site_id in site_ids:
        site = ws.catalogue.site(site_id)
        mine = counts[counts["site_id"] == site_id]
        net = (mine.groupby("minute_local")["count_in"].sum()
               - mine.groupby("minute_local")["count_out"].sum()).reindex(grid, fill_value=0)
        running = net.groupby(net.index.date).cumsum().clip(lower=0)
        is_open = _open_minutes(site, grid)
        levels = [
            load_level(occ, site.capacity, ws.settings.load, is_open=op).value
            for occ, op in zip(running.to_numpy(), is_open, strict=True)
        ]
        parts.append(pd.DataFrame({"site_id": site_id, "minute_local": grid,
                                   "occupancy": running.to_numpy(), "is_open": is_open,
                                   "level": levels}))
    return pd.concat(parts, ignore_index=True)


def _open_minutes(site, grid: pd.DatetimeIndex) -> np.ndarray:  # noqa: ANN001 - a Site
    """Whether the site is open at each minute, from its opening hours (one check per day
    and interval, not per minute)."""
    out = np.zeros(len(grid), dtype=bool)
    for day in sorted(set(grid.date)):
        for start, end in site.open_intervals(day):
            out |= (grid >= start) & (grid < end)
    return out


LEVEL_ORDER = [LoadLevel.CLOSED.value, LoadLevel.NORMAL.value, LoadLevel.BUSY.value,
               LoadLevel.CROWDED.value, LoadLevel.OVERLOAD.value]


def hours_per_level(occupancy: pd.DataFrame) -> pd.DataFrame:
    """Hours each site spent in each load level (rows: sites, columns: levels)."""
    table = occupancy.pivot_table(index="site_id", columns="level", values="occupancy",
                                  aggfunc="size", fill_value=0) / 60
    return table.reindex(columns=LEVEL_ORDER, fill_value=0.0)


def load_episodes(occupancy: pd.DataFrame, levels: Sequence[str] = ("crowded", "overload")
                  ) -> pd.DataFrame:
    """Continuous spells at or above `crowded`: what the load thresholds would have alerted
    on. Columns: site_id, start_local, end_local, minutes, worst_level, peak_occupancy."""
    rows = []
    rank = {lvl: i for i, lvl in enumerate(LEVEL_ORDER)}
    for site_id, grp in occupancy.groupby("site_id"):
        hot = grp["level"].isin(levels).to_numpy()
        edges = np.flatnonzero(np.diff(np.r_[0, hot.astype(int), 0]))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            spell = grp.iloc[start:stop]
            rows.append({"site_id": site_id,
                         "start_local": spell["minute_local"].iloc[0],
                         "end_local": spell["minute_local"].iloc[-1] + timedelta(minutes=1),
                         "minutes": int(stop - start),
                         "worst_level": max(spell["level"], key=rank.__getitem__),
                         "peak_occupancy": int(spell["occupancy"].max())})
    return pd.DataFrame(rows, columns=["site_id", "start_local", "end_local", "minutes",
                                       "worst_level", "peak_occupancy"])


def alert_log(ws: Workspace) -> pd.DataFrame | None:
    """Alerts raised and their acknowledgement, if the store has an `alerts` table yet;
    None when it does not (no alerting component has written one), so a review can say so
    instead of reporting zero alerts."""
    if not ws.store.has_table("alerts"):
        return None
    return ws.store.alerts()


def festival_alerts(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame | None:
    """Alerts raised for the sites over local days first..last, one row per alert with how it
    was acknowledged: acks (how many), first_acked_by, first_acked_local and minutes_to_ack
    (raised → first acknowledgement; NaN while nobody did), raised/cleared in local time.
    None when the store has no alerts table (no alert evaluation ever ran on it)."""
    start_utc, end_utc = local_day_bounds_utc(first, last, ws.settings.timezone)
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
    tz = ws.settings.timezone
    for col in ("raised_at_utc", "cleared_at_utc", "first_acked_at_utc"):
        alerts[col.replace("_at_utc", "_local")] = to_local(alerts[col], tz)
    return alerts[["alert_id", "site_id", "kind", "level", "raised_local", "cleared_local",
                   "occupancy", "capacity", "p_overload", "acks", "first_acked_by",
                   "first_acked_local", "minutes_to_ack", "message"]].sort_values(
        ["raised_local", "site_id"]).reset_index(drop=True)


def acknowledgement_times(alerts: pd.DataFrame) -> pd.DataFrame:
    """Per site, kind and level: alerts raised, acknowledged, left unacknowledged, and the
    median and slowest minutes from raising to the first acknowledgement."""
    grouped = alerts.groupby(["site_id", "kind", "level"])
    out = grouped.agg(raised=("alert_id", "count"),
                      acknowledged=("minutes_to_ack", "count"),
                      median_minutes_to_ack=("minutes_to_ack", "median"),
                      max_minutes_to_ack=("minutes_to_ack", "max"))
    out.insert(2, "unacknowledged", out["raised"] - out["acknowledged"])
    return out.reset_index()


def counter_health(
    ws: Workspace, site_ids: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """Per catalogue gate of the sites over local days first..last: readings, share of the
    period covered by them, lowest battery, worst delivery delay, open seq gaps and
    recovered readings, counter resets/wraps, from the collector's quality tables."""
    start_utc, end_utc = local_day_bounds_utc(first, last, ws.settings.timezone)
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


def level_colour_hex(level: str) -> str:
    """The live map's colour of a load level, for charts that should match it."""
    r, g, b = LEVEL_COLOURS[LoadLevel(level)]
    return f"#{r:02x}{g:02x}{b:02x}"


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

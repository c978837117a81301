"""The analysts' derived tables: patterns, festival effects, movement between sites, maps,
forecast-quality summaries and load-level tables, as pure functions of the frames that
`visitorflow.analysis` reads from the store.

Notebooks reach these through `visitorflow.analysis`, which re-exports them; this module
never touches the store, so each function is tested on a hand-made frame
(tests/test_analysis.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import Point

from visitorflow.catalogue import Catalogue
from visitorflow.festivals import festival_days, national_holidays
from visitorflow.load import SEVERITY, LoadLevel, severity_rank
from visitorflow.settings import PROJECT_ROOT, Settings

# Reference inputs (immutable copies, see data/README.md); only the analysis reads them.
DISTRICTS_PATH = PROJECT_ROOT / "data" / "raw" / "lang_son_districts_pre2025_dvhcvn.geojson"
TRAVEL_MATRIX_PATH = PROJECT_ROOT / "data" / "raw" / "travel_matrix.csv"
BOUNDARY_ATTRIBUTION = "Ranh giới: gis.chinhphu.vn"
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# -- flows -------------------------------------------------------------------------------------


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


# -- movement between sites -------------------------------------------------------------------


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


# -- maps -------------------------------------------------------------------------------------


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


# -- forecast quality -------------------------------------------------------------------------


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


# -- festival after-action review -------------------------------------------------------------


# The columns of `hours_per_level`: closed (a load level only when nobody is on site), then
# the load levels calmest first.
HOURS_LEVELS: tuple[str, ...] = (LoadLevel.CLOSED.value, *(level.value for level in SEVERITY))


def hours_per_level(occupancy: pd.DataFrame) -> pd.DataFrame:
    """Hours each site spent in each load level (rows: sites, columns: HOURS_LEVELS)."""
    table = occupancy.pivot_table(index="site_id", columns="level", values="occupancy",
                                  aggfunc="size", fill_value=0) / 60
    return table.reindex(columns=list(HOURS_LEVELS), fill_value=0.0)


def load_episodes(occupancy: pd.DataFrame, levels: Sequence[str] = ("crowded", "overload")
                  ) -> pd.DataFrame:
    """Continuous spells at or above `crowded`: what the load thresholds would have alerted
    on. Columns: site_id, start_local, end_local, minutes, worst_level, peak_occupancy."""
    rows = []
    for site_id, grp in occupancy.groupby("site_id"):
        hot = grp["level"].isin(levels).to_numpy()
        edges = np.flatnonzero(np.diff(np.r_[0, hot.astype(int), 0]))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            spell = grp.iloc[start:stop]
            rows.append({"site_id": site_id,
                         "start_local": spell["minute_local"].iloc[0],
                         "end_local": spell["minute_local"].iloc[-1] + timedelta(minutes=1),
                         "minutes": int(stop - start),
                         "worst_level": max(spell["level"], key=severity_rank),
                         "peak_occupancy": int(spell["occupancy"].max())})
    return pd.DataFrame(rows, columns=["site_id", "start_local", "end_local", "minutes",
                                       "worst_level", "peak_occupancy"])


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

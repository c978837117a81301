"""Refit every site and write a forecast run to the store.

    python -m forecasting.run                      # all sites, local processes
    python -m forecasting.run --sites mau_son,tam_thanh --processes 2
    python -m forecasting.run --scheduler tcp://10.0.0.5:8786   # fits on a Dask cluster
    python -m forecasting.run --temperature-scenario cold_snap.csv  # ds_local,temp_c (°C)

Each run gets a run id, its creation time and its model settings; runs are kept, and
Store.latest_forecast() gives the dashboard each site's newest successful forecast.
A site whose fit fails is reported by name with the reason; the others are still written.
Exit code 0 when every site was forecast, 1 when some failed, 2 when none could be.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.calendar import SiteCalendar, festival_labels, site_calendar
from forecasting.candidates import (
    DEFAULT_MODEL,
    DEFAULT_PROPHET_SHARE,
    PREFERRED_MODEL,
    choose_model,
)
from forecasting.models import fit_and_forecast
from forecasting.parallel import map_tasks
from visitorflow.catalogue import Catalogue, Site, load_catalogue
from visitorflow.clock import to_local, to_utc, utc_now
from visitorflow.festivals import festival_days
from visitorflow.limits import effective_limits
from visitorflow.settings import ForecastSettings, Settings, get_settings
from visitorflow.store import Store

# Observed temperatures beat simulated ones for the same hour; scenarios are future only.
_SOURCE_PRIORITY = {"observed": 0, "simulated": 1}


@dataclass
class SiteTask:
    """Everything one site's fit needs, read by the parent: workers never open the store."""

    site: Site
    settings: ForecastSettings
    history: pd.DataFrame  # ds (local hour start), arrivals (people/hour)
    calendar: SiteCalendar  # the site's holidays, festivals, seasons, days off
    start_local: datetime  # first forecast hour (local)
    daily_days: int
    overload_share: float
    temperature: pd.DataFrame | None = None  # ds (local hour), temp_c: history + future
    model: str = DEFAULT_MODEL  # the forecaster of the hourly median (forecasting.candidates)
    # Each candidate's MAE / naive MAE in the newest backtest (the one used is reported).
    model_ratios: dict[str, float] = field(default_factory=dict)
    # Each candidate's band calibration in that backtest (forecasting.scoring.band_scale).
    band_scales: dict[str, float] = field(default_factory=dict)
    # Prophet's share in the preferred candidate that erred least in that backtest.
    prophet_share: float = DEFAULT_PROPHET_SHARE


@dataclass
class SiteResult:
    site_id: str
    ok: bool
    message: str = ""
    fit_s: float = 0.0
    regressors: str = ""
    model: str = DEFAULT_MODEL
    model_mae_ratio: float | None = None
    band_scale: float = 1.0
    prophet_share: float | None = None  # Prophet's share, when `model` is the preferred mix
    hourly: pd.DataFrame = field(default_factory=pd.DataFrame)
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class RunReport:
    run_id: str
    created_at_utc: datetime
    history_end_utc: datetime
    wall_s: float
    results: list[SiteResult]

    @property
    def failed(self) -> list[SiteResult]:
        return [r for r in self.results if not r.ok]


def forecast_site(task: SiteTask) -> SiteResult:
    """Fit the hourly and daily models of one site and forecast; never raises (a failure is a
    result with the reason, so the other sites carry on)."""
    started = time.perf_counter()
    site = task.site
    try:
        if task.history["arrivals"].notna().sum() == 0:
            raise ValueError("no arrivals in the history window (no counts stored yet?)")
        lead_in = lead_in_arrivals(task.history, task.start_local, site.dwell_min)
        hourly, daily = fit_and_forecast(
            task.history, site, task.settings, task.calendar, task.start_local,
            task.settings.hourly_horizon_days * 24, task.daily_days, task.overload_share,
            lead_in, task.temperature, task.model, task.band_scales, task.prophet_share,
        )
        used = hourly.attrs.get("model", DEFAULT_MODEL)
        return SiteResult(
            site.id, True, fit_s=time.perf_counter() - started,
            regressors="cold_c" if task.temperature is not None else "",
            model=used, model_mae_ratio=task.model_ratios.get(used),
            band_scale=hourly.attrs.get("band_scale", 1.0),
            prophet_share=task.prophet_share if used == PREFERRED_MODEL else None,
            hourly=hourly, daily=daily,
        )
    except Exception as exc:  # reported per site, the run goes on
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return SiteResult(
            site.id, False,
            message=f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})",
            fit_s=time.perf_counter() - started,
        )


def _lost(task: SiteTask, exc: BaseException) -> SiteResult:
    """A fit whose worker died under it (killed, out of memory, a lost Dask worker)."""
    return SiteResult(task.site.id, False, message=f"worker lost: {type(exc).__name__}: {exc}")


def lead_in_arrivals(history: pd.DataFrame, start_local: datetime, dwell_min: int) -> np.ndarray:
    """Actual arrivals of the hours just before the forecast, for occupancy at its start."""
    hours = int(np.ceil(dwell_min / 60)) + 1
    grid = pd.date_range(pd.Timestamp(start_local) - pd.Timedelta(hours=hours), periods=hours,
                         freq="h")
    known = history.drop_duplicates("ds").set_index("ds")["arrivals"]
    return known.reindex(grid).fillna(0.0).to_numpy(float)


# -- preparing the tasks (parent process, reads the store) ---------------------------------------

def daily_horizon_days(start_day: date, min_days: int) -> int:
    """Days to forecast daily: to the end of the next festival season (the festivals of the
    lunar month of the next festival day, e.g. Tết to Kỳ Cùng 1/27), and at least `min_days`."""
    days = festival_days(range(start_day.year, start_day.year + 3))
    ahead = days[days["date"] >= start_day].sort_values("date")
    if ahead.empty:
        return min_days
    first = ahead.iloc[0]
    season = ahead[(ahead["lunar_month"] == first["lunar_month"])
                   & (ahead["date"] <= first["date"] + timedelta(days=60))]
    return max(min_days, (season["date"].max() - start_day).days + 1)


def site_history(arrivals: pd.DataFrame, site_id: str, tz: str) -> pd.DataFrame:
    """One site's hourly arrivals from `Store.hourly_arrivals` as the models take them:
    `ds` (naive local hour start), `arrivals` (people in that hour)."""
    own = arrivals[arrivals["site_id"] == site_id]
    return pd.DataFrame({"ds": to_local(own["hour_utc"], tz),
                         "arrivals": own["arrivals"].to_numpy(float)})


def site_temperature(
    store: Store,
    site_id: str,
    history_start_utc: datetime,
    history_end_utc: datetime,
    future_end_utc: datetime,
    tz: str,
    scenario: pd.DataFrame | None = None,
    cold_threshold_c: float | None = None,
) -> pd.DataFrame | None:
    """Hourly temperatures (ds local, temp_c) over history and future, or None when the store
    has too little history for a regressor. The future is, by priority: the `scenario` frame
    (ds_local, temp_c), the store's `scenario` rows, else the normal weather of the history
    (mean by month and hour): "no cold snap unless the planner sets one"."""
    rows = store.temperature(site_id, history_start_utc, future_end_utc)
    past = rows[(rows["source"] != "scenario") & (rows["ts_utc"] < history_end_utc)].copy()
    history_hours = (history_end_utc - history_start_utc).total_seconds() / 3600
    if len(past) < 0.5 * history_hours:
        return None
    if cold_threshold_c is not None and (past["temp_c"] < cold_threshold_c).sum() < 24:
        # No cold in the history: the model could not learn what cold does, and a planner's
        # cold snap would move the forecast by a coefficient that only the prior chose.
        return None
    past["priority"] = past["source"].map(_SOURCE_PRIORITY).fillna(2)
    past = past.sort_values(["ts_utc", "priority"]).drop_duplicates("ts_utc")
    past_local = pd.DataFrame({"ds": to_local(past["ts_utc"], tz).dt.floor("h"),
                               "temp_c": past["temp_c"].to_numpy(float)})
    past_local = past_local.groupby("ds", as_index=False)["temp_c"].mean()
    start = to_local(history_end_utc, tz)
    future = pd.DataFrame({"ds": pd.date_range(pd.Timestamp(start).floor("h"),
                                               to_local(future_end_utc, tz), freq="h")})
    normal = past_local.groupby([past_local["ds"].dt.month, past_local["ds"].dt.hour])[
        "temp_c"].mean()
    keys = list(zip(future["ds"].dt.month, future["ds"].dt.hour, strict=True))
    overall = past_local["temp_c"].mean()
    future["temp_c"] = [normal.get(k, overall) for k in keys]
    stored = rows[rows["source"] == "scenario"]
    overrides = [pd.DataFrame({"ds": to_local(stored["ts_utc"], tz).dt.floor("h"),
                               "temp_c": stored["temp_c"].to_numpy(float)})]
    if scenario is not None:
        overrides.append(pd.DataFrame({"ds": pd.to_datetime(scenario["ds_local"]).dt.floor("h"),
                                       "temp_c": scenario["temp_c"].astype(float)}))
    for override in overrides:
        if len(override):
            values = override.groupby("ds")["temp_c"].mean()
            hit = future["ds"].isin(values.index)
            future.loc[hit, "temp_c"] = future.loc[hit, "ds"].map(values).to_numpy()
    return pd.concat([past_local, future], ignore_index=True).drop_duplicates("ds", keep="last")


def prepare_tasks(
    store: Store,
    catalogue: Catalogue,
    settings: Settings,
    history_end_utc: datetime,
    site_ids: list[str],
    temperature_scenario: pd.DataFrame | None = None,
) -> list[SiteTask]:
    fc = settings.forecast
    tz = settings.timezone
    # Capacities and overload shares in force when the run starts (admins' overrides).
    catalogue, limits = effective_limits(store, catalogue, settings)
    start_local = to_local(history_end_utc, tz)
    daily_days = daily_horizon_days(start_local.date(), fc.daily_min_horizon_days)
    history_days = max(fc.hourly_history_days, fc.daily_history_days)
    history_start_utc = history_end_utc - timedelta(days=history_days)
    arrivals = store.hourly_arrivals(None, history_start_utc, history_end_utc)
    scores = store.latest_model_scores()
    future_end_utc = history_end_utc + timedelta(days=max(daily_days, fc.hourly_horizon_days) + 1)
    years = range(history_start_utc.year - 1, (history_end_utc + timedelta(days=daily_days)).year
                  + 2)
    tasks = []
    for site_id in site_ids:
        site = catalogue.site(site_id)
        history = site_history(arrivals, site_id, tz)
        temperature = None
        if site_id in fc.temperature_sites:
            temperature = site_temperature(store, site_id, history_start_utc, history_end_utc,
                                           future_end_utc, tz, temperature_scenario,
                                           fc.cold_threshold_c)
        own = scores[scores["site_id"] == site_id].dropna(subset=["mae_ratio"])
        model = site_model(fc.model, own)
        scales = own.dropna(subset=["band_scale"])
        tasks.append(SiteTask(
            site=site, settings=fc, history=history,
            calendar=site_calendar(site_id, years, fc.festival_window_before_days,
                                   fc.festival_window_after_days, site.kind),
            start_local=start_local, daily_days=daily_days,
            overload_share=float(limits.at[site_id, "overload"]), temperature=temperature,
            model=model,
            model_ratios=dict(zip(own["model"], own["mae_ratio"].astype(float), strict=True)),
            band_scales=dict(zip(scales["model"], scales["band_scale"].astype(float),
                                 strict=True)),
            prophet_share=backtest_prophet_share(own),
        ))
    return tasks


def backtest_prophet_share(scores: pd.DataFrame) -> float:
    """Prophet's share in the preferred candidate that a site's newest backtest `scores`
    (model, prophet_share) chose; DEFAULT_PROPHET_SHARE when it chose none (a backtest from
    before the share was chosen, or one that could not train LightGBM)."""
    if "prophet_share" not in scores:
        return DEFAULT_PROPHET_SHARE
    chosen = scores.loc[scores["model"] == PREFERRED_MODEL, "prophet_share"].dropna()
    return float(chosen.iloc[0]) if len(chosen) else DEFAULT_PROPHET_SHARE


def site_model(setting: str, scores: pd.DataFrame) -> str:
    """The forecaster for a site: the setting's model when it names one, else ("auto") the
    choice from the site's newest backtest `scores` (model, mae_ratio; `choose_model`)."""
    return setting if setting != "auto" else choose_model(scores)[0]


# -- running and writing ---------------------------------------------------------------------------

def run_forecasts(
    settings: Settings,
    site_ids: list[str] | None = None,
    processes: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    history_end_utc: datetime | None = None,
    temperature_scenario: pd.DataFrame | None = None,
) -> RunReport:
    """Refit the sites, forecast, and write one run to the store (failed sites included, with
    their reason). The history ends at the start of the hour of the newest reading."""
    started = time.perf_counter()
    store = Store.from_settings(settings)
    store.initialise()  # creates the forecast tables in a store made before they existed
    catalogue = load_catalogue(settings.catalogue_path)
    site_ids = site_ids or [s.id for s in catalogue.sites]
    if history_end_utc is None:
        latest = store.latest_reading_utc()
        if latest is None:
            raise RuntimeError(f"the store at {store.path} has no readings to forecast from")
        history_end_utc = pd.Timestamp(latest).floor("h").to_pydatetime()
    tasks = prepare_tasks(store, catalogue, settings, history_end_utc, site_ids,
                          temperature_scenario)
    results = list(map_tasks(forecast_site, tasks, processes or settings.forecast.processes,
                             scheduler, progress, desc="forecast fits", on_error=_lost))
    results.sort(key=lambda r: r.site_id)
    created = utc_now()
    run_id = created.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    wall = time.perf_counter() - started
    _write(store, settings, run_id, created, history_end_utc, wall, results, tasks, scheduler)
    return RunReport(run_id, created, history_end_utc, wall, results)


def _write(
    store: Store, settings: Settings, run_id: str, created: datetime, history_end_utc: datetime,
    wall: float, results: list[SiteResult], tasks: list[SiteTask], scheduler: str | None,
) -> None:
    tz = settings.timezone
    hourly, daily = [], []
    for result in results:
        if not result.ok:
            continue
        h = result.hourly.assign(site_id=result.site_id)
        h["ts_utc"] = to_utc(h["ds"], tz).astype("datetime64[us]")
        hourly.append(h.drop(columns="ds"))
        d = result.daily.assign(site_id=result.site_id)
        d["day_local"] = pd.to_datetime(d["ds"]).dt.date
        labels = festival_labels(result.site_id, d["day_local"])
        d["festival"] = d["day_local"].map(labels)
        daily.append(d.drop(columns="ds"))
    # The newest backtest travels with the run, so whoever shows a forecast can say whether
    # it beat last week's pattern when it was last measured: the score of the forecaster
    # used, or for Prophet without candidate scores, the backtest's own row.
    backtest = store.latest_backtest()
    ratios = dict(zip(backtest["site_id"], backtest["mae_ratio"], strict=True))
    sites = pd.DataFrame([
        {"site_id": r.site_id, "status": "ok" if r.ok else "failed",
         "message": r.message or None, "fit_s": r.fit_s, "regressors": r.regressors or None,
         "backtest_mae_ratio": (r.model_mae_ratio if r.model_mae_ratio is not None
                                else ratios.get(r.site_id) if r.model == DEFAULT_MODEL
                                else None),
         "model": r.model if r.ok else None,
         "band_scale": r.band_scale if r.ok else None,
         "prophet_share": r.prophet_share if r.ok else None}
        for r in results
    ])
    run_settings = {
        "forecast": settings.forecast.model_dump(mode="json"),
        "overload_share": settings.load.overload,
        "timezone": tz,
        "daily_horizon_days": tasks[0].daily_days if tasks else None,
        "executor": scheduler or "local processes",
        "model": "prophet on log1p(arrivals), open hours only, daily profiles per "
                 "weekday/weekend and opening pattern, festival and festival-peak days, "
                 "lunar seasons, L-BFGS; per site the hourly median of the forecaster in "
                 "forecast_sites.model (forecasting/candidates.py)",
    }
    store.write_forecast_run(
        {"run_id": run_id, "created_at_utc": created, "history_end_utc": history_end_utc,
         "settings_json": json.dumps(run_settings), "wall_s": wall,
         "sites_ok": sum(r.ok for r in results),
         "sites_failed": sum(not r.ok for r in results)},
        sites,
        pd.concat(hourly, ignore_index=True) if hourly else pd.DataFrame(),
        pd.concat(daily, ignore_index=True) if daily else pd.DataFrame(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.run",
        description="Refit every site's Prophet models and write a forecast run to the store.",
    )
    parser.add_argument("--sites", help="comma-separated site ids (default: every site)")
    parser.add_argument("--processes", type=int, help="local worker processes "
                        "(default: forecast.processes in the settings)")
    parser.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786: "
                        "send the fits to that cluster instead of local processes")
    parser.add_argument("--history-end", help="forecast from this UTC time (ISO), default: the "
                        "hour of the newest reading")
    parser.add_argument("--temperature-scenario", type=Path, help="CSV with ds_local (local "
                        "time), temp_c (°C): the future temperatures to assume")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    settings = get_settings()
    scenario = pd.read_csv(args.temperature_scenario) if args.temperature_scenario else None
    end = None
    if args.history_end:
        parsed = datetime.fromisoformat(args.history_end)
        end = parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    try:
        report = run_forecasts(
            settings, args.sites.split(",") if args.sites else None, args.processes,
            args.scheduler, not args.no_progress, end, scenario,
        )
    except (RuntimeError, KeyError, ValueError) as exc:
        print(f"forecast run failed: {exc}", file=sys.stderr)
        return 2
    ok = len(report.results) - len(report.failed)
    print(f"run {report.run_id}: {ok}/{len(report.results)} sites forecast from "
          f"{report.history_end_utc:%Y-%m-%d %H:%M} UTC in {report.wall_s:.1f} s")
    for result in report.failed:
        print(f"  site {result.site_id}: fit failed: {result.message}", file=sys.stderr)
    if not ok:
        return 2
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Rolling-origin backtests of the hourly model against the weekly seasonal-naive forecast.

    python -m forecasting.backtest                      # every site, the last 4 weeks
    python -m forecasting.backtest --sites den_bac_le --festivals   # + folds on festivals
    python -m forecasting.backtest --origins 2026-02-10,2026-03-05 --horizon-days 7

For each origin (a local midnight) the model is refitted on the history before it (the same
window as a production run) and forecasts `horizon_days`; the seasonal-naive forecast repeats
the last week before the origin. Errors are pooled over the folds, on open hours only
(closed hours are 0 for both, and would flatter both). Reported per site: MAE (people/hour),
the naive MAE, their ratio (MASE against weekly naive: < 1 beats naive), MAPE on open hours
with arrivals, the MAE on the site's festival and national-holiday days, and the mean
relative error of festival-day totals. The table is printed and written to the store.

Temperature sites are backtested with the temperatures that happened (a perfect weather
forecast): their scores are an upper bound of what a real cold-snap forecast gives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import holidays
import numpy as np
import pandas as pd

from forecasting.calendar import (
    festival_labels,
    holiday_slug,
    site_festival_days,
    site_holidays,
)
from forecasting.models import (
    fit_daily,
    fit_hourly,
    forecast_daily,
    forecast_hourly,
    quiet_cmdstan,
    seasonal_naive_hourly,
)
from forecasting.parallel import map_tasks
from forecasting.run import site_history, site_temperature, to_local
from visitorflow.catalogue import WEEKDAYS, Gate, LocalizedName, OpeningRule, Site, load_catalogue
from visitorflow.settings import ForecastSettings, Settings, get_settings
from visitorflow.store import Store

RESULT_COLUMNS = [
    "site_id", "folds", "horizon_h", "open_hours", "mae", "mae_naive", "mae_ratio", "mape_open",
    "mae_festival", "mae_naive_festival", "festival_peak_err", "message",
]


@dataclass
class BacktestTask:
    site: Site
    settings: ForecastSettings
    history: pd.DataFrame  # ds (local hour start), arrivals
    holidays: pd.DataFrame
    origins: list[datetime]  # local midnights
    horizon_days: int
    festival_days: frozenset[date]
    temperature: pd.DataFrame | None = None


def backtest_site(task: BacktestTask) -> dict:
    """One site's pooled backtest row (RESULT_COLUMNS); never raises: a failure is a row with
    the message and no scores."""
    site = task.site
    hours = task.horizon_days * 24
    try:
        frames = []
        for origin in task.origins:
            origin_ts = pd.Timestamp(origin)
            train = task.history[(task.history["ds"] < origin_ts) & (
                task.history["ds"] >= origin_ts
                - pd.Timedelta(days=task.settings.hourly_history_days))]
            model = fit_hourly(train, site, task.settings, task.holidays, task.temperature)
            forecast = forecast_hourly(model, site, origin, hours, task.settings,
                                       temperature=task.temperature)
            naive = seasonal_naive_hourly(train, site, origin, hours)
            fold = forecast[["ds", "is_open", "arrivals"]].rename(columns={"arrivals": "model"})
            fold["naive"] = naive["arrivals"].to_numpy()
            actual = task.history.drop_duplicates("ds").set_index("ds")["arrivals"]
            fold["actual"] = fold["ds"].map(actual)
            frames.append(fold)
        scored = pd.concat(frames, ignore_index=True)
        return score(scored, task.festival_days, len(task.origins), hours, site.id)
    except Exception as exc:  # noqa: BLE001 - reported per site
        return {"site_id": site.id, "folds": len(task.origins), "horizon_h": hours,
                "open_hours": 0, "message": f"{type(exc).__name__}: {exc}"}


def score(
    scored: pd.DataFrame, festival_days: frozenset[date], folds: int, hours: int, site_id: str
) -> dict:
    """Pooled errors of `model` and `naive` against `actual` on open hours where all three
    are known. scored: ds, is_open, model, naive, actual."""
    ok = scored[scored["is_open"] & scored["actual"].notna() & scored["naive"].notna()]
    err = (ok["model"] - ok["actual"]).abs()
    err_naive = (ok["naive"] - ok["actual"]).abs()
    positive = ok["actual"] > 0
    on_festival = ok["ds"].dt.date.isin(festival_days)
    mae, mae_naive = _mean(err), _mean(err_naive)
    totals = ok[on_festival].groupby(ok.loc[on_festival, "ds"].dt.date)[["model", "actual"]].sum()
    totals = totals[totals["actual"] > 0]
    return {
        "site_id": site_id, "folds": folds, "horizon_h": hours, "open_hours": int(len(ok)),
        "mae": mae, "mae_naive": mae_naive,
        "mae_ratio": mae / mae_naive if mae_naive else None,
        "mape_open": _mean(err[positive] / ok.loc[positive, "actual"]),
        "mae_festival": _mean(err[on_festival]),
        "mae_naive_festival": _mean(err_naive[on_festival]),
        "festival_peak_err": _mean((totals["model"] - totals["actual"]).abs() / totals["actual"]),
        "message": None,
    }


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def default_origins(history_end_local: datetime, settings: ForecastSettings) -> list[datetime]:
    """The last `backtest_folds` origins, `backtest_step_days` apart, the latest one leaving a
    whole horizon of history after it."""
    last = pd.Timestamp(history_end_local).normalize() - pd.Timedelta(
        days=settings.backtest_horizon_days)
    return [(last - pd.Timedelta(days=settings.backtest_step_days * k)).to_pydatetime()
            for k in reversed(range(settings.backtest_folds))]


def festival_origins(
    site_id: str, history: pd.DataFrame, settings: ForecastSettings, before_days: int = 2
) -> list[datetime]:
    """An origin `before_days` before each of the site's own festivals (and Tết) that has a
    year of history before it and a whole horizon after it: how well festival crowds are
    forecast a couple of days ahead."""
    if history.empty:
        return []
    first, last = history["ds"].min(), history["ds"].max()
    days = site_festival_days(site_id, range(first.year, last.year + 1))
    if days.empty:
        return []
    starts = days.groupby(["festival_id", days["date"].map(lambda d: d.year)])["date"].min()
    origins = []
    for start in sorted(set(starts)):
        origin = pd.Timestamp(start) - pd.Timedelta(days=before_days)
        if (origin - first).days >= 365 and origin + pd.Timedelta(
                days=settings.backtest_horizon_days) <= last:
            origins.append(origin.to_pydatetime())
    return origins


def run_backtest(
    settings: Settings,
    site_ids: list[str] | None = None,
    origins: list[datetime] | None = None,
    festivals: bool = False,
    processes: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Backtest the sites on the store's history, write the table to the store, return it."""
    fc = settings.forecast
    tz = settings.timezone
    store = Store.from_settings(settings)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    site_ids = site_ids or [s.id for s in catalogue.sites]
    latest = store.latest_reading_utc()
    if latest is None:
        raise RuntimeError(f"the store at {store.path} has no readings to backtest")
    end_utc = pd.Timestamp(latest).floor("h").to_pydatetime()
    start_utc = end_utc - timedelta(days=max(fc.daily_history_days, fc.hourly_history_days))
    arrivals = store.hourly_arrivals(None, start_utc, end_utc)
    years = range(start_utc.year - 1, end_utc.year + 2)
    tasks = []
    for site_id in site_ids:
        site = catalogue.site(site_id)
        history = site_history(arrivals, site_id, tz)
        site_origins = list(origins or default_origins(to_local(end_utc, tz), fc))
        if festivals:
            site_origins += festival_origins(site_id, history, fc)
        temperature = None
        if site_id in fc.temperature_sites:
            temperature = site_temperature(store, site_id, start_utc, end_utc, end_utc, tz,
                                           cold_threshold_c=fc.cold_threshold_c)
        labels = festival_labels(site_id, pd.date_range(to_local(start_utc, tz),
                                                        to_local(end_utc, tz)).date)
        tasks.append(BacktestTask(
            site=site, settings=fc, history=history,
            holidays=site_holidays(site_id, years, fc.festival_window_before_days,
                                   fc.festival_window_after_days),
            origins=sorted(set(site_origins)), horizon_days=fc.backtest_horizon_days,
            festival_days=frozenset(labels), temperature=temperature,
        ))
    rows = list(map_tasks(
        backtest_site, tasks, processes or fc.processes, scheduler, progress,
        desc="backtest fits",
        on_error=lambda task, exc: {"site_id": task.site.id, "folds": len(task.origins),
                                    "horizon_h": task.horizon_days * 24, "open_hours": 0,
                                    "message": f"worker lost: {type(exc).__name__}: {exc}"},
    ))
    table = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS).sort_values("site_id")
    table = table.reset_index(drop=True)
    created = datetime.now(UTC).replace(tzinfo=None)
    stored = table.assign(
        backtest_id=created.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        created_at_utc=created,
        settings_json=json.dumps({"forecast": fc.model_dump(mode="json"),
                                  "festival_folds": festivals,
                                  "origins": [o.isoformat() for o in origins or []]}),
    )
    store.write_backtest(stored)
    return table


# -- bring your own history ---------------------------------------------------------------------

def always_open_site(site_id: str = "csv") -> Site:
    """A stand-in site for a CSV of counts: open around the clock, so every hour is scored."""
    name = LocalizedName(vi=site_id, en=site_id, zh=site_id)
    return Site(
        id=site_id, name=name, kind="town", lat=0.0, lon=0.0, coord_confidence="n/a",
        capacity=1, capacity_basis="placeholder", capacity_note="CSV history", dwell_min=60,
        opening_hours=(OpeningRule(days=WEEKDAYS, open="00:00", close="24:00"),),
        gates=(Gate(id="all", name=name, counter_id=f"csv-{site_id}"),),
    )


def csv_holidays(years: range, country: str | None, before: int, after: int) -> pd.DataFrame:
    """Prophet holidays of another country (a CSV from elsewhere), or none."""
    columns = ["holiday", "ds", "lower_window", "upper_window"]
    if not country:
        return pd.DataFrame(columns=columns)
    days = holidays.country_holidays(country, years=list(years))
    return pd.DataFrame(
        [{"holiday": f"h_{holiday_slug(name)}", "ds": pd.Timestamp(day),
          "lower_window": -before, "upper_window": after} for day, name in days.items()],
        columns=columns,
    )


def backtest_csv(
    frame: pd.DataFrame, settings: ForecastSettings, column: str = "y",
    country: str | None = None, label: str = "csv",
) -> pd.DataFrame:
    """Backtest a history of counts (ds, `column`), hourly or daily, the same way as a site:
    the last `backtest_folds` origins, `backtest_horizon_days` ahead, against weekly naive.
    Returns one row (RESULT_COLUMNS, site_id = label). Festival columns hold the country's
    holidays when `country` is given."""
    data = pd.DataFrame({"ds": pd.to_datetime(frame["ds"]),
                         "arrivals": pd.to_numeric(frame[column], errors="coerce")})
    data = data.dropna(subset=["ds"]).sort_values("ds").drop_duplicates("ds")
    step = data["ds"].diff().median()
    years = range(data["ds"].min().year - 1, data["ds"].max().year + 2)
    hol = csv_holidays(years, country, settings.festival_window_before_days,
                       settings.festival_window_after_days)
    fest_days = frozenset(pd.to_datetime(hol["ds"]).dt.date)
    # Origins with too little history before them measure the cold start, not the model.
    min_train = pd.Timedelta(days=14 if step == pd.Timedelta(hours=1) else 56)
    origins = [o for o in default_origins(data["ds"].max() + step, settings)
               if pd.Timestamp(o) - data["ds"].min() >= min_train]
    if not origins:
        raise ValueError(f"{label}: too short to backtest ({data['ds'].min()} to "
                         f"{data['ds'].max()}); needs {min_train.days} days + a horizon")
    if step == pd.Timedelta(hours=1):
        task = BacktestTask(always_open_site(label), settings, data, hol, origins,
                            settings.backtest_horizon_days, fest_days)
        row = backtest_site(task)
    elif step == pd.Timedelta(days=1):
        row = _backtest_daily(data, settings, hol, origins, fest_days, label)
    else:
        raise ValueError(f"{label}: rows are {step} apart; hourly or daily counts expected")
    return pd.DataFrame([row]).reindex(columns=RESULT_COLUMNS)


def _backtest_daily(
    data: pd.DataFrame, settings: ForecastSettings, hol: pd.DataFrame, origins: list[datetime],
    fest_days: frozenset[date], label: str,
) -> dict:
    """Daily counts: the daily model against the value 7 days earlier (weekly naive)."""
    days = settings.backtest_horizon_days
    known = data.set_index("ds")["arrivals"]
    frames = []
    for origin in origins:
        origin_ts = pd.Timestamp(origin)
        train = data[(data["ds"] < origin_ts)
                     & (data["ds"] >= origin_ts - pd.Timedelta(days=settings.daily_history_days))]
        model = fit_daily(train, settings, hol)
        fold = forecast_daily(model, origin, days, settings)
        fold = fold[["ds", "arrivals"]].rename(columns={"arrivals": "model"})
        lag = pd.to_timedelta(7 * (1 + (fold["ds"] - origin_ts).dt.days // 7), unit="D")
        fold["naive"] = (fold["ds"] - lag).map(known).to_numpy(float)
        fold["actual"] = fold["ds"].map(known).to_numpy(float)
        fold["is_open"] = True
        frames.append(fold)
    scored = pd.concat(frames, ignore_index=True)
    return score(scored, fest_days, len(origins), days * 24, label)


def format_table(table: pd.DataFrame) -> str:
    """The backtest table for a console."""
    shown = table.copy()
    for col in ("mae", "mae_naive", "mae_festival", "mae_naive_festival"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    for col in ("mae_ratio",):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    for col in ("mape_open", "festival_peak_err"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{100 * v:.0f}%")
    shown["message"] = shown["message"].fillna("")
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.backtest",
        description="Rolling-origin backtests of the hourly model against weekly seasonal naive.",
    )
    parser.add_argument("--sites", help="comma-separated site ids (default: every site)")
    parser.add_argument("--origins", help="comma-separated local dates to forecast from "
                        "(default: the last forecast.backtest_folds weeks)")
    parser.add_argument("--festivals", action="store_true",
                        help="add a fold starting 2 days before each festival of the site")
    parser.add_argument("--processes", type=int, help="local worker processes")
    parser.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--csv", type=Path, help="backtest this CSV of counts instead of the "
                        "store (ds plus a count column, hourly or daily; not written to the store)")
    parser.add_argument("--column", help="the CSV's count columns, comma-separated (default: y)")
    parser.add_argument("--country", help="the CSV's country for holidays, e.g. AU, VN")
    args = parser.parse_args(argv)
    if args.csv:
        return _main_csv(args)
    origins = None
    if args.origins:
        origins = [datetime.fromisoformat(o.strip()) for o in args.origins.split(",")]
    started = time.perf_counter()
    try:
        table = run_backtest(get_settings(), args.sites.split(",") if args.sites else None,
                             origins, args.festivals, args.processes, args.scheduler,
                             not args.no_progress)
    except (RuntimeError, KeyError, ValueError) as exc:
        print(f"backtest failed: {exc}", file=sys.stderr)
        return 2
    print(format_table(table))
    ratios = table["mae_ratio"].dropna()
    if len(ratios):
        print(f"median MAE ratio to weekly naive: {np.median(ratios):.2f} "
              f"({(ratios < 1).sum()}/{len(ratios)} sites beat naive); "
              f"{time.perf_counter() - started:.0f} s")
    return 0 if table["message"].isna().all() else 1


def _main_csv(args: argparse.Namespace) -> int:
    frame = pd.read_csv(args.csv)
    columns = args.column.split(",") if args.column else ["y"]
    missing = [c for c in ["ds", *columns] if c not in frame.columns]
    if missing:
        print(f"{args.csv}: missing columns {missing} (has {list(frame.columns)})",
              file=sys.stderr)
        return 2
    settings = get_settings().forecast
    quiet_cmdstan()
    table = pd.concat([backtest_csv(frame, settings, c, args.country, c) for c in columns],
                      ignore_index=True)
    print(format_table(table))
    return 0 if table["message"].isna().all() else 1


if __name__ == "__main__":
    sys.exit(main())

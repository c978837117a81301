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

Gaps: a fold with less than MIN_FOLD_SHARE of its open hours scorable (counted, with a naive
forecast) is not scored, and the row's message names it. The CSV backtest also chooses its
origins where the fold and the week before it were counted (`choose_origins`), moving back
over an outage, and prints the share of hours scored per fold.

Temperature sites are backtested with the temperatures that happened (a perfect weather
forecast): their scores are an upper bound of what a real cold-snap forecast gives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.calendar import (
    SiteCalendar,
    festival_labels,
    holiday_slug,
    plain_calendar,
    pool_days_off,
    region_holidays,
    site_calendar,
    site_festival_days,
)
from forecasting.candidates import MODELS, candidate_forecasts
from forecasting.csv_input import CsvInputError, read_counts_csv
from forecasting.dwell import occupancy_from_arrivals
from forecasting.models import (
    fit_and_forecast,
    fit_daily,
    forecast_daily,
    quiet_cmdstan,
    seasonal_naive_hourly,
)
from forecasting.parallel import map_tasks
from forecasting.run import lead_in_arrivals, site_history, site_temperature
from forecasting.scoring import score, score_models
from visitorflow.catalogue import WEEKDAYS, Gate, LocalizedName, OpeningRule, Site, load_catalogue
from visitorflow.clock import to_local, utc_now
from visitorflow.settings import ForecastSettings, Settings, get_settings
from visitorflow.store import Store

# A fold is scored only when at least this share of its open hours have a count (and a
# naive forecast to compare with): below it the fold's error says which few hours survived
# an outage (often its quiet edges), not how well the week was forecast.
MIN_FOLD_SHARE = 0.5

RESULT_COLUMNS = [
    "site_id", "folds", "horizon_h", "open_hours", "mae", "mae_naive", "mae_ratio", "mape_open",
    "mae_festival", "mae_naive_festival", "festival_day_err", "festival_peak_err",
    "festival_peak_max_err", "festival_peaks", "overload_hours", "overload_brier", "message",
]


@dataclass
class BacktestTask:
    site: Site
    settings: ForecastSettings
    history: pd.DataFrame  # ds (local hour start), arrivals
    calendar: SiteCalendar
    origins: list[datetime]  # local midnights
    horizon_days: int
    festival_days: frozenset[date]
    temperature: pd.DataFrame | None = None
    # The site's festival occurrences (festival_id, occurrence, date), for the peak-day error.
    occurrences: pd.DataFrame | None = None
    # Origins whose fold runs to the end of a festival (origin → days), beyond horizon_days.
    long_folds: dict[datetime, int] = field(default_factory=dict)
    overload_share: float = 1.0
    keep_scored: bool = False
    # Also score every candidate forecaster (forecasting.candidates) on the same folds.
    candidates: bool = True


def backtest_site(task: BacktestTask) -> dict:
    """One site's pooled backtest row (RESULT_COLUMNS); never raises: a failure is a row with
    the message and no scores. With `keep_scored`, the hourly folds ride along in `scored`."""
    site = task.site
    hours = task.horizon_days * 24
    try:
        frames = []
        shares: dict[pd.Timestamp, float] = {}
        actual = task.history.drop_duplicates("ds").set_index("ds")["arrivals"]
        for origin in task.origins:
            origin_ts = pd.Timestamp(origin)
            fold_hours = task.long_folds.get(origin, task.horizon_days) * 24
            # Only what was known at the origin: the models take their windows from it.
            past = task.history[task.history["ds"] < origin_ts]
            lead_in = lead_in_arrivals(past, origin, site.dwell_min)
            forecast, _ = fit_and_forecast(
                past, site, task.settings, task.calendar, origin, fold_hours,
                -(-fold_hours // 24), task.overload_share, lead_in, task.temperature)
            naive = seasonal_naive_hourly(past, site, origin, fold_hours)
            fold = forecast[["ds", "is_open", "arrivals", "p_overload"]].rename(
                columns={"arrivals": "model"})
            if task.candidates:
                points = candidate_forecasts(past, site, task.calendar, origin, fold_hours,
                                             forecast["arrivals"].to_numpy(float), MODELS,
                                             task.temperature)
                for model in MODELS:
                    if model in points:
                        fold[f"candidate_{model}"] = points[model].to_numpy()
            fold["naive"] = naive["arrivals"].to_numpy()
            fold["actual"] = fold["ds"].map(actual)
            # Occupancy the counted arrivals imply (the model's own dwell convolution), so
            # p_overload is scored on the uncertainty of arrivals, not on the dwell model.
            occ = occupancy_from_arrivals(fold["actual"].fillna(0.0).to_numpy(float),
                                          fold["is_open"].to_numpy(), site.dwell_min, lead_in)
            fold["overloaded"] = occ >= task.overload_share * site.capacity
            fold["origin"] = origin_ts
            if "arrivals_lower" in forecast:
                fold["model_lower"] = forecast["arrivals_lower"].to_numpy()
                fold["model_upper"] = forecast["arrivals_upper"].to_numpy()
            shares[origin_ts] = scored_share(fold)
            frames.append(fold)
        kept = [f for f in frames if shares[f["origin"].iloc[0]] >= MIN_FOLD_SHARE]
        refused = [o for o, share in shares.items() if share < MIN_FOLD_SHARE]
        if not kept:
            return {"site_id": site.id, "folds": 0, "horizon_h": hours, "open_hours": 0,
                    "fold_shares": shares,
                    "message": f"no fold scored: every fold has less than "
                               f"{MIN_FOLD_SHARE:.0%} of its open hours counted"}
        scored = pd.concat(kept, ignore_index=True)
        row = score(scored, task.festival_days, len(kept), hours, site.id, task.occurrences)
        row["fold_shares"] = shares
        if task.candidates:
            row["model_scores"] = score_models(scored)
        if refused:
            row["message"] = (f"{len(refused)} fold(s) not scored (less than "
                              f"{MIN_FOLD_SHARE:.0%} of the hours counted): "
                              + ", ".join(f"{o:%Y-%m-%d}" for o in refused))
        if task.keep_scored:
            row["scored"] = pd.concat(frames, ignore_index=True).assign(site_id=site.id)
        return row
    except Exception as exc:  # reported per site
        return {"site_id": site.id, "folds": len(task.origins), "horizon_h": hours,
                "open_hours": 0, "message": f"{type(exc).__name__}: {exc}"}


def default_origins(history_end_local: datetime, settings: ForecastSettings) -> list[datetime]:
    """The last `backtest_folds` origins, `backtest_step_days` apart, the latest one leaving a
    whole horizon of history after it."""
    last = pd.Timestamp(history_end_local).normalize() - pd.Timedelta(
        days=settings.backtest_horizon_days)
    return [(last - pd.Timedelta(days=settings.backtest_step_days * k)).to_pydatetime()
            for k in reversed(range(settings.backtest_folds))]


def scored_share(fold: pd.DataFrame) -> float:
    """The share of a fold's open hours that can be scored: counted, with a naive forecast.
    fold: is_open, actual, naive."""
    open_hours = fold["is_open"].to_numpy(bool)
    if not open_hours.any():
        return 0.0
    ok = open_hours & fold["actual"].notna().to_numpy() & fold["naive"].notna().to_numpy()
    return float(ok.sum() / open_hours.sum())


def counted_share(
    history: pd.DataFrame, start: datetime, hours: int, is_open: np.ndarray | None = None
) -> float:
    """The share of the (open) hours from `start` for `hours` hours that `history` (ds,
    arrivals) has a count for. `is_open`: a 7 × 24 (weekday, hour) table; default: always."""
    grid = pd.date_range(pd.Timestamp(start), periods=hours, freq="h")
    wanted = (np.ones(len(grid), bool) if is_open is None
              else is_open[grid.day_of_week, grid.hour])
    if not wanted.any():
        return 0.0
    counted = set(history.loc[history["arrivals"].notna(), "ds"])
    hit = np.fromiter((ts in counted for ts in grid), bool, len(grid))
    return float((hit & wanted).sum() / wanted.sum())


def choose_origins(
    history: pd.DataFrame, last_origin: datetime, folds: int, step_days: int,
    horizon_days: int, min_train_days: int, is_open: np.ndarray | None = None,
) -> list[datetime]:
    """Up to `folds` origins on the grid `last_origin`, `last_origin − step_days`, … whose
    fold (`horizon_days` from the origin) and the week before it (the naive forecast's
    source) each have at least MIN_FOLD_SHARE of their (open) hours counted, and with at least
    `min_train_days` of history before them; oldest first. An outage's weeks are skipped:
    the folds move further back rather than score a week nobody counted."""
    if history.empty:
        return []
    first = pd.Timestamp(history["ds"].min())
    chosen: list[datetime] = []
    origin = pd.Timestamp(last_origin)
    hours = horizon_days * 24
    while len(chosen) < folds and origin - first >= pd.Timedelta(days=min_train_days):
        before = origin - pd.Timedelta(days=7)
        if (counted_share(history, origin, hours, is_open) >= MIN_FOLD_SHARE
                and counted_share(history, before, 7 * 24, is_open) >= MIN_FOLD_SHARE):
            chosen.append(origin.to_pydatetime())
        origin -= pd.Timedelta(days=step_days)
    return sorted(chosen)


def festival_origins(
    site_id: str, history: pd.DataFrame, settings: ForecastSettings, before_days: int = 2
) -> dict[datetime, int]:
    """An origin `before_days` before each of the site's own festivals (and Tết) that has a
    year of history before it and its whole fold after it: how well festival crowds are
    forecast a couple of days ahead. Origin → fold days: the horizon, or longer to reach the
    festival's last day (Kỳ Cùng's scramble on its 6th day), within the hourly horizon."""
    if history.empty:
        return {}
    occ = festival_occurrences(site_id, history)
    if occ.empty:
        return {}
    first, last = history["ds"].min(), history["ds"].max()
    spans = occ.groupby(["festival_id", "occurrence"])["date"].agg(["min", "max"])
    origins: dict[datetime, int] = {}
    for start, end in sorted(set(zip(spans["min"], spans["max"], strict=True))):
        origin = pd.Timestamp(start) - pd.Timedelta(days=before_days)
        days = min(max(settings.backtest_horizon_days, (end - start).days + 1 + before_days),
                   settings.hourly_horizon_days)
        if (origin - first).days >= 365 and origin + pd.Timedelta(days=days) <= last:
            key = origin.to_pydatetime()
            origins[key] = max(days, origins.get(key, 0))
    return origins


def festival_occurrences(site_id: str, history: pd.DataFrame) -> pd.DataFrame:
    """The site's festival days over the years of `history`: festival_id, occurrence (its
    lunar year), date."""
    if history.empty:
        return pd.DataFrame(columns=["festival_id", "occurrence", "date"])
    first, last = history["ds"].min(), history["ds"].max()
    days = site_festival_days(site_id, range(first.year - 1, last.year + 1))
    if days.empty:
        return pd.DataFrame(columns=["festival_id", "occurrence", "date"])
    # Every festival of the calendar falls within one solar year: the year names it.
    days = days.assign(occurrence=days["date"].map(lambda d: d.year))
    return days[["festival_id", "occurrence", "date"]].reset_index(drop=True)


def run_backtest(
    settings: Settings,
    site_ids: list[str] | None = None,
    origins: list[datetime] | None = None,
    festivals: bool = False,
    processes: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    scored_path: Path | None = None,
) -> pd.DataFrame:
    """Backtest the sites on the store's history, write the table to the store, return it.
    `scored_path`: also write every fold's hours (forecast, naive, actual, p_overload) there
    as Parquet, for analysis."""
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
    window = timedelta(days=max(fc.daily_history_days, fc.hourly_history_days))
    start_utc = end_utc - window
    # Folds start within the last window; each fold's models see a whole window before its
    # origin, as a forecast run would (the daily model's 1,100 days, for a fold a year back).
    first_utc = start_utc - window
    arrivals = store.hourly_arrivals(None, first_utc, end_utc)
    # The temperature regressor needs half its span covered: span it over the stored history.
    if len(arrivals):
        first_utc = max(first_utc, pd.Timestamp(arrivals["hour_utc"].min()).to_pydatetime())
    years = range(first_utc.year - 1, end_utc.year + 2)
    tasks = []
    for site_id in site_ids:
        site = catalogue.site(site_id)
        history = site_history(arrivals, site_id, tz)
        recent = history[history["ds"] >= pd.Timestamp(to_local(start_utc, tz))]
        site_origins = list(origins or default_origins(to_local(end_utc, tz), fc))
        long_folds = festival_origins(site_id, recent, fc) if festivals else {}
        temperature = None
        if site_id in fc.temperature_sites:
            temperature = site_temperature(store, site_id, first_utc, end_utc, end_utc, tz,
                                           cold_threshold_c=fc.cold_threshold_c)
        labels = festival_labels(site_id, pd.date_range(to_local(start_utc, tz),
                                                        to_local(end_utc, tz)).date)
        tasks.append(BacktestTask(
            site=site, settings=fc, history=history,
            calendar=site_calendar(site_id, years, fc.festival_window_before_days,
                                   fc.festival_window_after_days, site.kind),
            origins=sorted(set(site_origins) | set(long_folds)),
            horizon_days=fc.backtest_horizon_days, festival_days=frozenset(labels),
            temperature=temperature, occurrences=festival_occurrences(site_id, history),
            long_folds=long_folds, overload_share=settings.load.overload,
            keep_scored=scored_path is not None,
        ))
    rows = list(map_tasks(
        backtest_site, tasks, processes or fc.processes, scheduler, progress,
        desc="backtest fits",
        on_error=lambda task, exc: {"site_id": task.site.id, "folds": len(task.origins),
                                    "horizon_h": task.horizon_days * 24, "open_hours": 0,
                                    "message": f"worker lost: {type(exc).__name__}: {exc}"},
    ))
    model_scores = [row.pop("model_scores").assign(site_id=row["site_id"])
                    for row in rows if isinstance(row.get("model_scores"), pd.DataFrame)]
    if scored_path is not None:
        scored = [row.pop("scored") for row in rows if "scored" in row]
        if scored:
            pd.concat(scored, ignore_index=True).to_parquet(scored_path)
    table = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS).sort_values("site_id")
    table = table.reset_index(drop=True)
    created = utc_now()
    stored = table.assign(
        backtest_id=created.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        created_at_utc=created,
        settings_json=json.dumps({"forecast": fc.model_dump(mode="json"),
                                  "festival_folds": festivals,
                                  "origins": [o.isoformat() for o in origins or []]}),
    )
    store.write_backtest(stored)
    if model_scores:
        scores = pd.concat(model_scores, ignore_index=True)
        store.write_backtest_models(scores.assign(backtest_id=stored["backtest_id"].iloc[0]))
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
    """Prophet holidays of another country or region (a CSV from elsewhere: `country` as
    `forecasting.calendar.region_holidays` takes it, "NZ" or "NZ-AUK"), or none."""
    columns = ["holiday", "ds", "lower_window", "upper_window"]
    if not country:
        return pd.DataFrame(columns=columns)
    days = region_holidays(country, years)
    frame = pd.DataFrame(
        [{"holiday": f"h_{holiday_slug(name)}", "ds": pd.Timestamp(day),
          "lower_window": -before, "upper_window": after} for day, name in days.items()],
        columns=columns,
    )
    # One shared effect of a day off, each holiday's own as a deviation (as a site's).
    return pool_days_off(frame, days, set(frame["holiday"]), "h_", before, after)


def backtest_csv(
    frame: pd.DataFrame, settings: ForecastSettings, column: str = "y",
    country: str | None = None, label: str = "csv",
    fold_shares: dict[pd.Timestamp, float] | None = None,
) -> pd.DataFrame:
    """Backtest a history of counts (ds, `column`), hourly or daily, the same way as a site:
    the last `backtest_folds` origins, `backtest_horizon_days` ahead, against weekly naive.
    Returns one row (RESULT_COLUMNS, site_id = label). Festival columns hold the country's
    holidays when `country` is given. `fold_shares`, if given, receives the share of hours
    scored per fold origin (hourly counts)."""
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
    last = default_origins(data["ds"].max() + step, settings)[-1]
    if step == pd.Timedelta(hours=1):
        origins = choose_origins(data, last, settings.backtest_folds,
                                 settings.backtest_step_days, settings.backtest_horizon_days,
                                 min_train.days)
    else:
        origins = [o for o in default_origins(data["ds"].max() + step, settings)
                   if pd.Timestamp(o) - data["ds"].min() >= min_train]
    if not origins:
        raise ValueError(f"{label}: too short or too sparse to backtest ({data['ds'].min()} "
                         f"to {data['ds'].max()}); needs {min_train.days} days + a horizon "
                         f"with at least {MIN_FOLD_SHARE:.0%} of the hours counted")
    if step == pd.Timedelta(hours=1):
        task = BacktestTask(always_open_site(label), settings, data, plain_calendar(hol),
                            origins, settings.backtest_horizon_days, fest_days)
        row = backtest_site(task)
        shares = row.pop("fold_shares", {})
        if fold_shares is not None:
            fold_shares.update(shares)
        # A CSV of counts has no capacity (the stand-in site says 1, basis "placeholder"):
        # there is no overload to score.
        row.update(overload_hours=None, overload_brier=None)
    elif step == pd.Timedelta(days=1):
        row = _backtest_daily(data, settings, plain_calendar(hol), origins, fest_days, label)
    else:
        raise ValueError(f"{label}: rows are {step} apart; hourly or daily counts expected")
    return pd.DataFrame([row]).reindex(columns=RESULT_COLUMNS)


def _backtest_daily(
    data: pd.DataFrame, settings: ForecastSettings, calendar: SiteCalendar,
    origins: list[datetime], fest_days: frozenset[date], label: str,
) -> dict:
    """Daily counts: the daily model against the value 7 days earlier (weekly naive)."""
    days = settings.backtest_horizon_days
    known = data.set_index("ds")["arrivals"]
    frames = []
    for origin in origins:
        origin_ts = pd.Timestamp(origin)
        train = data[(data["ds"] < origin_ts)
                     & (data["ds"] >= origin_ts - pd.Timedelta(days=settings.daily_history_days))]
        model = fit_daily(train, settings, calendar)
        fold = forecast_daily(model, origin, days)
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
    for col in ("mape_open", "festival_day_err", "festival_peak_err", "festival_peak_max_err"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{100 * v:.0f}%")
    shown["overload_brier"] = shown["overload_brier"].map(
        lambda v: "" if pd.isna(v) else f"{v:.3f}")
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
    parser.add_argument("--scored-out", type=Path, help="also write every backtested hour "
                        "(forecast, naive, actual, p_overload) to this Parquet file")
    parser.add_argument("--csv", type=Path, help="backtest this CSV of counts instead of the "
                        "store (not written to the store): a ds column, or a date column "
                        "and an hour column (6, 06:00 or 6:00-6:59), local time; one or more "
                        "count columns (a wide file: one per sensor)")
    parser.add_argument("--column", help="the CSV's count columns, comma-separated (default: "
                        "y if there is one, else every count column)")
    parser.add_argument("--country", help="the CSV's country for holidays, e.g. VN, AU; with "
                        "a subdivision for its own holidays too, e.g. AU-VIC, NZ-AUK")
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
                             not args.no_progress, args.scored_out)
    except (RuntimeError, KeyError, ValueError) as exc:
        print(f"backtest failed: {exc}", file=sys.stderr)
        return 2
    print(format_table(table))
    ratios = table["mae_ratio"].dropna()
    if len(ratios):
        print(f"median MAE ratio to weekly naive: {np.median(ratios):.2f} "
              f"({(ratios <= 0.8).sum()}/{len(ratios)} sites ≤ 0.8, {(ratios < 1).sum()} "
              f"beat naive); {time.perf_counter() - started:.0f} s")
    peaks = table["festival_peak_err"].dropna()
    if len(peaks):
        print(f"festival-day peak error (mean per site): median {peaks.median():.0%}, "
              f"{(peaks <= 0.2).sum()}/{len(peaks)} sites within 20 %")
    return 0 if table["message"].isna().all() else 1


def _main_csv(args: argparse.Namespace) -> int:
    columns = args.column.split(",") if args.column else None
    try:
        counts = read_counts_csv(args.csv, columns)
        if args.country:  # an unknown code is said before any fit, not after the first
            region_holidays(args.country, sorted(set(counts.frame["ds"].dt.year)))
    except (CsvInputError, ValueError) as exc:
        print(f"cannot backtest: {exc}", file=sys.stderr)
        return 2
    for note in counts.notes:
        print(f"{args.csv}: {note}", file=sys.stderr)
    settings = get_settings().forecast
    quiet_cmdstan()
    rows = []
    shares: dict[str, dict[pd.Timestamp, float]] = {}
    for column in counts.series:
        shares[column] = {}
        try:
            rows.append(backtest_csv(counts.frame, settings, column, args.country, column,
                                     shares[column]))
        except ValueError as exc:
            rows.append(pd.DataFrame([{"site_id": column, "message": str(exc)}]).reindex(
                columns=RESULT_COLUMNS))
    table = pd.concat(rows, ignore_index=True)
    print(format_table(table))
    for column, per_fold in shares.items():
        if per_fold:
            listed = ", ".join(f"{o:%Y-%m-%d} {share:.0%}" for o, share in per_fold.items())
            print(f"{column}: hours scored per fold: {listed}")
    return 0 if table["message"].isna().all() else 1


if __name__ == "__main__":
    sys.exit(main())

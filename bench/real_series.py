"""Real-data benchmark: the forecasters side by side on real hourly counter series.

    python -m bench.real_series                     # every series, a year of weekly folds
    python -m bench.real_series --folds 4 --series akl_107_quay
    python -m bench.real_series --no-prophet        # the quick forecasters only
    python -m bench.real_series --series "akl:261 Queen Street"   # a sensor kept apart
    python -m bench.real_series --rescore scored.parquet  # a --scored-out file, no fit
    make bench-real

Series (`forecasting/real_series.py`, files and licences in `data/real/README.md`): three
Auckland pedestrian sensors, Melbourne's Princes Bridge, Birrarung Marr (a festival park with
gaps) and Washington DC's casual bike-share riders. Rolling origins at local midnights,
`--step-days` apart, each forecasting `--horizon-days`; the origins are chosen where the fold
and the week before it are counted (`forecasting.backtest.choose_origins`), and a fold with
less than `MIN_FOLD_SHARE` of its hours scored is not scored.

Forecasters, each with an 80 % band: weekly seasonal naive (`naive`), the mean of the last 4
same weekday-hours (`mean4w`), LightGBM on calendar + lag features (`lgbm`, the plain outside
reference), its average with the 4-week mean (`lgbm_mean4w`), the shipped candidates'
LightGBM (`lgbm_pair`, `forecasting.baselines.gradient_boosted_pair`: the mean of a model of
the counts and one of the counts relative to their recent level, both also given the days
just before the origin, `origin_features`, and each day's offset from the series' nearest
holiday, `forecasting.calendar.holiday_offsets`), the project's Prophet model as
the CSV backtest runs it (`prophet`: `forecasting.models.fit_and_forecast` on a stand-in site
open around the clock, with the holidays of the series' country and region, as `--country
NZ-AUK` gives them), the average of Prophet and the plain
LightGBM (`prophet_lgbm`) and the shipped model (`shipped`, `forecasting/candidates.py`
replayed by `forecasting/hybrid.py`: per series, the candidate a forecast run would choose
from a backtest of the last 8 finished folds — the preferred mix of the LightGBM pair and
Prophet, at the share of Prophet that erred least over those folds, unless another candidate
erred at least 10 % less or it lost to naive — each
candidate Prophet's on a calendar's festivals (these series have none), with Prophet's band
moved to its median and scaled to have covered 80 % of those folds' hours). Washington adds
`lgbm_weather`: LightGBM with the hour's weather as it happened (an upper bound of what a
weather forecast gives).

Scores on hours where the count and every forecast are known: MAE and its ratio to the naive
MAE, MASE (MAE over the in-sample weekly-naive MAE of the year before the first origin),
coverage of the 80 % band, the MAE ratio on holiday hours and on the busiest 10 % of hours.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from forecasting.backtest import (
    MIN_FOLD_SHARE,
    BacktestTask,
    always_open_site,
    backtest_site,
    choose_origins,
    csv_holidays,
)
from forecasting.baselines import (
    gradient_boosted,
    gradient_boosted_pair,
    mean_of_weeks,
    weekly_naive,
)
from forecasting.calendar import holiday_offsets, plain_calendar
from forecasting.candidates import (
    DEFAULT_PROPHET_SHARE,
    MODELS,
    PREFERRED_MODEL,
    mix,
    moved_band,
)
from forecasting.hybrid import replay_shipped
from forecasting.models import quiet_cmdstan
from forecasting.real_series import AUCKLAND_PREFIX, SERIES, RealSeries, load_series
from forecasting.scoring import band_coverage
from visitorflow.settings import ForecastSettings, get_settings

log = logging.getLogger("bench.real_series")

# Folds need this much history before them: LightGBM's lags and a yearly cycle, and Prophet's
# hourly window (400 days) mostly filled.
MIN_TRAIN_DAYS = 365
# The busiest hours scored apart: the top decile of counted hours, where crowding happens.
BUSIEST_SHARE = 0.10


def _fold_forecasts(series: RealSeries, origin: pd.Timestamp, hours: int,
                    settings: ForecastSettings, with_prophet: bool) -> pd.DataFrame:
    """One fold's forecasts (ds, actual, and per method point/_lower/_upper)."""
    y = series.y
    fold = pd.DataFrame({"ds": pd.date_range(origin, periods=hours, freq="h")})
    fold["actual"] = y.reindex(fold["ds"]).to_numpy(float)
    fold["origin"] = origin

    def put(name: str, frame: pd.DataFrame) -> None:
        fold[name] = frame["point"].to_numpy(float)
        fold[f"{name}_lower"] = frame["lower"].to_numpy(float)
        fold[f"{name}_upper"] = frame["upper"].to_numpy(float)

    put("naive", weekly_naive(y, origin, hours))
    put("mean4w", mean_of_weeks(y, origin, hours))
    put("lgbm", gradient_boosted(y, origin, hours, series.holidays))
    put("lgbm_pair", gradient_boosted_pair(y, origin, hours, _holiday_offsets(series, settings)))
    if series.exog is not None:
        put("lgbm_weather", gradient_boosted(y, origin, hours, series.holidays, series.exog))
    _average(fold, "lgbm_mean4w", "lgbm", "mean4w")
    if with_prophet:
        fold = fold.merge(_prophet_fold(series, origin, hours, settings), on="ds", how="left")
        _average(fold, "prophet_lgbm", "prophet", "lgbm")
    return fold


def _holiday_offsets(series: RealSeries, settings: ForecastSettings) -> pd.Series:
    """The series' holidays with the windows a forecast run gives them, as day offsets."""
    return holiday_offsets(pd.DataFrame({
        "holiday": "holiday", "ds": pd.to_datetime(sorted(series.holidays)),
        "lower_window": -settings.festival_window_before_days,
        "upper_window": settings.festival_window_after_days}))


def _average(fold: pd.DataFrame, name: str, a: str, b: str) -> None:
    for suffix in ("", "_lower", "_upper"):
        fold[f"{name}{suffix}"] = (fold[f"{a}{suffix}"] + fold[f"{b}{suffix}"]) / 2


def _prophet_fold(series: RealSeries, origin: pd.Timestamp, hours: int,
                  settings: ForecastSettings) -> pd.DataFrame:
    """The project's Prophet model on one fold, as `python -m forecasting.backtest --csv`
    runs it (open around the clock, the holidays of the series' country and region)."""
    history = series.y.dropna().rename("arrivals").rename_axis("ds").reset_index()
    years = range(history["ds"].min().year - 1, history["ds"].max().year + 2)
    hol = csv_holidays(years, series.country, settings.festival_window_before_days,
                       settings.festival_window_after_days)
    task = BacktestTask(always_open_site(series.series_id), settings, history,
                        plain_calendar(hol), [origin.to_pydatetime()], -(-hours // 24),
                        frozenset(), keep_scored=True)
    row = backtest_site(task)
    if "scored" not in row:
        raise RuntimeError(f"Prophet failed: {row.get('message')}")
    scored = row["scored"]
    out = pd.DataFrame({"ds": scored["ds"], "prophet": scored["model"],
                        "prophet_lower": scored["model_lower"],
                        "prophet_upper": scored["model_upper"]})
    # The shipped model's candidates exactly as a forecast run makes them (Prophet on the
    # festivals), each with Prophet's band moved to its median (`moved_band`).
    band = out["prophet_lower"], out["prophet"], out["prophet_upper"]
    for model in MODELS[1:]:
        column = f"candidate_{model}"
        if column not in scored:
            continue
        point = scored[column].to_numpy(float)
        name = f"shipped_{model}"
        out[name] = point
        out[f"{name}_lower"], out[f"{name}_upper"] = moved_band(*band, point)
    return out


def mase_scale(y: pd.Series, first_origin: pd.Timestamp) -> float:
    """The in-sample weekly-naive MAE over the year before the first origin."""
    year = y[(y.index < first_origin) & (y.index >= first_origin - pd.Timedelta(days=365))]
    return float((year - year.shift(168, freq="h").reindex(year.index)).abs().mean())


def score_methods(scored: pd.DataFrame, methods: list[str], holidays: frozenset,
                  scale: float) -> pd.DataFrame:
    """One row per method: hours, mae, ratio (to naive), mase, coverage80, holiday_ratio,
    busiest_ratio, on hours where the count and every method's forecast are known."""
    ok = scored["actual"].notna() & scored[methods].notna().all(axis=1)
    frame = scored[ok]
    actual = frame["actual"]
    on_holiday = frame["ds"].dt.normalize().isin(pd.to_datetime(list(holidays)))
    busiest = actual >= actual.quantile(1 - BUSIEST_SHARE)
    naive_err = (frame["naive"] - actual).abs()
    rows = []
    for method in methods:
        err = (frame[method] - actual).abs()
        rows.append({
            "method": method, "hours": int(len(frame)), "mae": err.mean(),
            "ratio": err.mean() / naive_err.mean(),
            "mase": err.mean() / scale if scale else np.nan,
            "coverage80": band_coverage(actual, frame[f"{method}_lower"],
                                        frame[f"{method}_upper"]),
            "holiday_ratio": (err[on_holiday].mean() / naive_err[on_holiday].mean()
                              if on_holiday.any() else np.nan),
            "busiest_ratio": err[busiest].mean() / naive_err[busiest].mean(),
        })
    return pd.DataFrame(rows)


def run_series(series: RealSeries, folds: int, step_days: int, horizon_days: int,
               settings: ForecastSettings, with_prophet: bool, progress: bool
               ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Backtest one series: (scores per method, every scored hour, facts about the folds)."""
    hours = horizon_days * 24
    y = series.y
    last = y.last_valid_index().normalize() - pd.Timedelta(days=horizon_days)
    history = y.rename("arrivals").rename_axis("ds").reset_index()
    origins = [pd.Timestamp(o) for o in choose_origins(
        history, last, folds, step_days, horizon_days, MIN_TRAIN_DAYS)]
    if not origins:
        raise ValueError(f"{series.series_id}: no origin with its week counted")
    frames, failed = [], []
    bar = tqdm(origins, desc=series.series_id, unit="fold", disable=not progress,
               file=sys.stderr)
    for origin in bar:
        try:
            frames.append(_fold_forecasts(series, origin, hours, settings, with_prophet))
        except Exception as exc:  # one failed fold is reported, the others still scored
            failed.append(f"{origin:%Y-%m-%d}: {type(exc).__name__}: {exc}")
            log.warning("%s fold %s failed: %s", series.series_id, origin.date(), exc)
    if not frames:
        raise RuntimeError(f"{series.series_id}: every fold failed: {failed[:3]}")
    return score_series(series, pd.concat(frames, ignore_index=True), origins, hours, failed)


def score_series(series: RealSeries, scored: pd.DataFrame, origins: list[pd.Timestamp],
                 hours: int, failed: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score one series' fold forecasts (`_fold_forecasts` frames, concatenated): the shipped
    model replayed over them, then every method on the hours all of them forecast."""
    y = series.y
    with_prophet = "prophet" in scored
    methods = ["naive", "mean4w", "lgbm", "lgbm_mean4w"]
    methods += [m for m in ("lgbm_pair", "lgbm_weather") if m in scored]  # not in older files
    shipped = None
    if with_prophet:
        methods += ["prophet", "prophet_lgbm"]
        columns = {"prophet": "prophet"} | {
            m: f"shipped_{m}" for m in MODELS[1:] if f"shipped_{m}" in scored}
        # The busy hours lean as this machine's settings say (VISITORFLOW_FORECAST__CROWD_LEAN).
        scored, shipped = replay_shipped(scored, columns, hours,
                                         crowd_lean=get_settings().forecast.crowd_lean)
        methods.append("shipped")
    known = scored["actual"].notna() & scored[methods].notna().all(axis=1)
    share = known.groupby(scored["origin"]).mean()
    refused = share[share < MIN_FOLD_SHARE].index
    scored = scored.assign(scored=known & ~scored["origin"].isin(refused))
    table = score_methods(scored[scored["scored"]], methods, series.holidays,
                          mase_scale(y, origins[0]))
    facts = {"series": series.series_id, "title": series.title, "folds": len(origins),
             "folds_scored": int(len(share) - len(refused)), "failed": failed,
             "first_origin": origins[0], "last_origin": origins[-1],
             "share_scored": float(scored["scored"].sum() / (len(origins) * hours)),
             "share_min_fold": float(share.min()), "notes": series.notes,
             "shipped": None if shipped is None else shipped.value_counts().to_dict()}
    return table.assign(series=series.series_id), scored.assign(series=series.series_id), facts


def markdown(table: pd.DataFrame, facts: list[dict]) -> str:
    """The results as Markdown: one table of every series × method, then the folds."""
    lines = ["| series | method | MAE | MAE / naive | MASE | 80 % band coverage | "
             "holiday hours MAE / naive | busiest 10 % MAE / naive |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| {row.series} | {row.method} | {row.mae:.1f} | {row.ratio:.2f} | "
                     f"{row.mase:.2f} | {row.coverage80:.0%} | "
                     + ("" if pd.isna(row.holiday_ratio) else f"{row.holiday_ratio:.2f}")
                     + f" | {row.busiest_ratio:.2f} |")
    lines += ["", "| series | folds (scored) | origins | hours scored | worst fold | shipped "
              "model's choices |", "|---|---|---|---:|---:|---|"]
    for f in facts:
        shipped = ", ".join(f"{k} {v}" for k, v in (f["shipped"] or {}).items())
        lines.append(f"| {f['series']} | {f['folds']} ({f['folds_scored']}) | "
                     f"{f['first_origin']:%Y-%m-%d} → {f['last_origin']:%Y-%m-%d} | "
                     f"{f['share_scored']:.1%} | {f['share_min_fold']:.0%} | {shipped} |")
    return "\n".join(lines)


def _add_preferred(frame: pd.DataFrame) -> None:
    """The preferred candidate (`shipped_lgbm_prophet`) added to fold forecasts written before
    it existed: the same mix of the stored LightGBM and Prophet forecasts that
    `candidate_forecasts` makes, Prophet's band moved to it as `_prophet_fold` moves it."""
    name = f"shipped_{PREFERRED_MODEL}"
    if name in frame or not {"shipped_lgbm", "prophet"} <= set(frame):
        return
    frame[name] = mix(frame["shipped_lgbm"], frame["prophet"], DEFAULT_PROPHET_SHARE)
    frame[f"{name}_lower"], frame[f"{name}_upper"] = moved_band(
        frame["prophet_lower"], frame["prophet"], frame["prophet_upper"], frame[name])


def rescore(path: Path, hours: int) -> tuple[list[pd.DataFrame], list[dict], list[pd.DataFrame]]:
    """Score again the fold forecasts a run wrote with `--scored-out` (no model is fitted):
    the shipped model's rule replayed by this code, every table recomputed. A file from before
    the preferred candidate existed gets it from its stored parts (`_add_preferred`)."""
    stored = pd.read_parquet(path)
    derived = ["shipped", "shipped_lower", "shipped_upper", "scored"]
    tables, facts, scored = [], [], []
    for series_id, frame in stored.groupby("series", sort=False):
        series = load_series(str(series_id))
        frame = frame.drop(columns=[c for c in [*derived, "series"] if c in frame])
        frame = frame.dropna(axis=1, how="all")  # another series' method (lgbm_weather)
        _add_preferred(frame)
        origins = sorted(pd.Timestamp(o) for o in frame["origin"].unique())
        table, rows, fact = score_series(series, frame.reset_index(drop=True), origins, hours,
                                         [])
        tables.append(table)
        facts.append(fact)
        scored.append(rows)
    return tables, facts, scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_series",
                                     description="Forecasters side by side on real counts.")
    parser.add_argument("--series", help=f"comma-separated, default all: {', '.join(SERIES)}; "
                        f"or another Auckland sensor as {AUCKLAND_PREFIX}<its column>")
    parser.add_argument("--folds", type=int, default=52, help="folds per series (default 52)")
    parser.add_argument("--step-days", type=int, default=7, help="days between origins")
    parser.add_argument("--horizon-days", type=int, default=7, help="days forecast per fold")
    parser.add_argument("--no-prophet", action="store_true", help="skip the Prophet models")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--markdown-out", type=Path, help="also write the Markdown tables here")
    parser.add_argument("--scored-out", type=Path, help="write every scored hour (Parquet)")
    parser.add_argument("--rescore", type=Path, metavar="PARQUET",
                        help="score again a run's --scored-out file instead of fitting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 1 <= args.horizon_days <= 7:
        print("--horizon-days must be 1-7 (the lag features look a week back)", file=sys.stderr)
        return 2
    ids = args.series.split(",") if args.series else list(SERIES)
    unknown = [s for s in ids if s not in SERIES and not s.startswith(AUCKLAND_PREFIX)]
    if unknown:
        print(f"unknown series {unknown}; known: {', '.join(SERIES)}", file=sys.stderr)
        return 2
    quiet_cmdstan()
    settings = get_settings().forecast
    tables, facts, scored = [], [], []
    started = time.perf_counter()
    if args.rescore:
        tables, facts, scored = rescore(args.rescore, args.horizon_days * 24)
        ids = []
    for series_id in ids:
        t0 = time.perf_counter()
        series = load_series(series_id)
        try:
            table, rows, fact = run_series(series, args.folds, args.step_days,
                                           args.horizon_days, settings, not args.no_prophet,
                                           not args.no_progress)
        except (ValueError, RuntimeError) as exc:
            print(f"{series_id}: {exc}", file=sys.stderr)
            continue
        tables.append(table)
        facts.append(fact)
        scored.append(rows)
        log.info("%s: %d folds in %.0f s", series_id, fact["folds"], time.perf_counter() - t0)
    if not tables:
        return 1
    text = markdown(pd.concat(tables, ignore_index=True), facts)
    print(text)
    print(f"\n{time.perf_counter() - started:.0f} s wall; folds {args.folds}, step "
          f"{args.step_days} d, horizon {args.horizon_days} d")
    for f in facts:
        for line in f["failed"]:
            print(f"{f['series']}: failed fold {line}")
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")
    if args.scored_out:
        pd.concat(scored, ignore_index=True).to_parquet(args.scored_out)
    return 0 if all(not f["failed"] for f in facts) else 1


if __name__ == "__main__":
    sys.exit(main())

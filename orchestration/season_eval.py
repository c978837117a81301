"""Early-warning evaluation over a simulated festival season, end to end.

    python -m orchestration.season_eval --seed 7 --out data/generated/early_warning/seed7.json
    python -m orchestration.season_eval --seed 7 --quick --out /tmp/quick.json   # ~1-2 min
    python -m orchestration.season_eval --seed 7 --rescore --out …   # re-score a finished run
    python -m orchestration.season_eval --seed 7 --rescore --tune --out …   # + a tuning grid

What it does, in a work folder of its own (`--work-dir`, default
data/generated/early_warning/seed<N>/; the product's store is never touched):

1. history: the simulator's backfill (15-min readings, same seed) straight into a fresh
   store, up to local midnight of the season's first day;
2. the season: a real Mosquitto on a free port, the real collector (in this process), and
   the live simulator publishing every gate's minute readings as fast as the broker
   acknowledges (accelerated), with its ground truth (true occupancy per site and minute);
3. refits on the product's schedule (`schedule.refit_hours_local`, local hours, every day of
   the season and the day before), each with the history stored before that simulated time
   (`forecasting.run.run_forecasts(history_end_utc=…)`); a run counts from its history end
   plus the refit's measured wall time;
4. the product's forecast-alert logic (`visitorflow.alerts.forecast_alerts`: threshold,
   hysteresis, nowcast) stepped every `--step-min` simulated minutes with the run in force
   and the hourly arrivals stored before each step;
5. episodes, lead times, false alarms and miss reasons (`forecasting/early_warning.py`),
   written as JSON to `--out`, shown by the dashboard's early-warning page.

It lives here, above every layer, because it starts the broker, the collector (`ingest`) and
the simulator's process and drives the forecasts (`forecasting`), and `forecasting` imports
nothing from `ingest`.

Steps 2 and 3 are done one after the other (ingest the season, then refit at each
simulated time): the store then holds exactly what it would have held at each refit,
because the refit reads only the history before its simulated time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from forecasting.early_warning import Run, evaluation_steps, overload_episodes, score
from forecasting.run import run_forecasts
from visitorflow.alerts import site_thresholds
from visitorflow.catalogue import Catalogue, CatalogueError, load_catalogue
from visitorflow.clock import to_utc
from visitorflow.settings import (
    PROJECT_ROOT,
    AlertSettings,
    Settings,
    SettingsError,
    get_settings,
)
from visitorflow.store import Store, StoreError

log = logging.getLogger("season_eval")

LEAD_GOAL_H = 2.0
GOAL_SHARE = 0.9
FALSE_MAX = 0.2
# Tết 2026 (17 Feb), Chùa Tiên (1/18 = 6 Mar), Kỳ Cùng–Tả Phủ (1/22–27 = 10–15 Mar) and
# the last weeks of the Mẫu Sơn cold-surge season (to 28 Feb).
SEASON = (date(2026, 2, 10), date(2026, 3, 17))
# --quick: Kỳ Cùng's opening day (procession at both temples) and the day before.
QUICK = (date(2026, 3, 9), date(2026, 3, 11))
QUICK_SITES = ("den_ky_cung", "den_ta_phu")
# The tuning grid: what the product controls. Nowcast off, or over 3 h with the ratio capped
# at 3 or 6; three probability thresholds; then, for the best point, a 12 h horizon, a wider
# hysteresis and a sparser refit schedule (every other day's runs).
TUNE_P = (0.3, 0.5, 0.7)
TUNE_NOWCAST = ({"nowcast_hours": 0}, {"nowcast_hours": 3, "nowcast_ratio_max": 3.0},
                {"nowcast_hours": 3, "nowcast_ratio_max": 6.0})
TUNE_STEP_MIN = 30
TUNE_KEYS = ("forecast_p", "nowcast_hours", "nowcast_ratio_max", "forecast_horizon_h",
             "forecast_p_margin")


@dataclass
class Season:
    seed: int
    start: date
    end: date  # exclusive
    sites: list[str]
    work_dir: Path
    history_days: int
    interval_s: int
    step_min: int


def local_midnight_utc(day: date, settings: Settings) -> datetime:
    """Local midnight starting `day`, as naive UTC."""
    return to_utc(datetime.combine(day, datetime.min.time()), settings.tz)


def season_settings(base: Settings, season: Season, port: int) -> Settings:
    """The product's settings with the season's own store, broker port and seed."""
    s = base.model_copy(deep=True)
    s.store.path = season.work_dir / "store.duckdb"
    s.mqtt.port = port
    s.mqtt.collector_client_id = f"season-eval-{season.seed}"
    s.simulator.seed = season.seed
    s.simulator.interval_s = season.interval_s
    return s


# -- 1-2: history and the season through MQTT -------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ingest(settings: Settings, catalogue: Catalogue, season: Season, progress: bool) -> dict:
    from ingest.broker import start_broker
    from ingest.collector import Collector
    from ingest.sim_backfill import backfill

    marker = season.work_dir / "history.json"
    if marker.exists():  # an interrupted evaluation resumes after its history
        timing = json.loads(marker.read_text())
    else:
        started = time.perf_counter()
        stats = backfill(settings, catalogue, season.start - timedelta(days=season.history_days),
                         season.start, truth_dir=None, progress=progress)
        timing = {"backfill_s": round(time.perf_counter() - started, 1),
                  "history_readings": stats.readings}
        marker.write_text(json.dumps(timing))
        log.info("history: %s", stats)

    broker = start_broker(season.work_dir / "broker", settings.mqtt.port)
    store = Store.from_settings(settings)
    store.initialise()  # tables added since the history was written
    collector = Collector(settings, catalogue, store, max_future_s=10 ** 9)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    gates = len(catalogue.gates())
    minutes = (season.end - season.start).days * 1440
    expected = gates * minutes // (season.interval_s // 60)
    bar = tqdm(total=expected, unit="msg", disable=not progress, desc="season via MQTT")
    done = threading.Event()

    def follow() -> None:
        while not done.wait(0.5):
            bar.n = collector.stats.stored + collector.stats.duplicates
            bar.refresh()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    started = time.perf_counter()
    sent = 0
    sim = None
    try:
        if not collector.connected.wait(10):
            raise ConnectionError("the collector could not connect to the season's broker")
        # The simulator in its own process, as in the product: it also writes each simulated
        # day's temperature to the store, which DuckDB refuses from a second connection of
        # one process while the collector holds the file.
        start_utc = local_midnight_utc(season.start, settings)
        env = dict(os.environ, VISITORFLOW_STORE__PATH=str(settings.store.path),
                   VISITORFLOW_MQTT__PORT=str(settings.mqtt.port),
                   VISITORFLOW_SIMULATOR__SEED=str(season.seed),
                   VISITORFLOW_SIMULATOR__INTERVAL_S=str(season.interval_s))
        sim = subprocess.Popen(
            [sys.executable, "-m", "ingest.simulator", "--start",
             f"{start_utc.isoformat()}+00:00", "--minutes", str(minutes), "--speed", "max",
             "--truth-dir", str(season.work_dir / "truth")],
            env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
            stderr=(season.work_dir / "simulator.log").open("w"))
        if sim.wait() != 0:
            raise RuntimeError(f"the simulator failed: see {season.work_dir / 'simulator.log'}")
        sim = None
        sent = expected
        deadline = time.monotonic() + 300
        while (collector.stats.stored + collector.stats.duplicates < sent
               and time.monotonic() < deadline):
            time.sleep(0.2)
        timing["season_ingest_s"] = round(time.perf_counter() - started, 1)
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(30)
        done.set()
        follower.join()
        bar.n = collector.stats.stored + collector.stats.duplicates
        bar.close()
        collector.stop()
        stop.set()
        thread.join(30)
        broker.terminate()
        broker.wait(10)
    # Readings already stored by an interrupted run come back as duplicates (stored once).
    stored = collector.stats.stored + collector.stats.duplicates
    timing.update(messages_sent=sent, readings_stored=stored,
                  quarantined=collector.stats.quarantined)
    if stored < sent:
        log.warning("only %d of %d readings reached the store", stored, sent)
    return timing


# -- 3: refits on the product's schedule ------------------------------------------------------

def refit_times(season: Season, settings: Settings) -> list[datetime]:
    """The product's refits in simulated time: every `schedule.refit_hours_local` of the day
    before the season and of each season day (naive UTC)."""
    times = []
    day = season.start - timedelta(days=1)
    while day < season.end:
        for hour in sorted(settings.schedule.refit_hours_local):
            local = datetime.combine(day, datetime.min.time()) + timedelta(hours=hour)
            times.append(to_utc(local, settings.tz))
        day += timedelta(days=1)
    return times


def refit_season(settings: Settings, season: Season, progress: bool) -> float:
    """One forecast run per refit time, history up to it. Returns total wall seconds."""
    started = time.perf_counter()
    done = {pd.Timestamp(t) for t in Store.from_settings(settings).forecast_runs(10_000)[
        "history_end_utc"]}
    for at in tqdm(refit_times(season, settings), desc="refits", unit="run",
                   disable=not progress):
        if pd.Timestamp(at) in done:  # an interrupted evaluation resumes
            continue
        report = run_forecasts(settings, season.sites, progress=False, history_end_utc=at)
        if report.failed:
            log.warning("refit at %s: %s", at, "; ".join(f"{r.site_id}: {r.message}"
                                                         for r in report.failed))
    return time.perf_counter() - started


def load_runs(store: Store, sites: list[str]) -> list[Run]:
    """Every run of the season's store with its hourly forecast (the evaluated sites)."""
    runs = []
    for r in store.forecast_runs(10_000).itertuples():
        hourly = store.latest_forecast(granularity="hourly", run_id=r.run_id)
        hourly = hourly[hourly["site_id"].isin(sites)]
        end = pd.Timestamp(r.history_end_utc).to_pydatetime()
        runs.append(Run(r.run_id, end, end + timedelta(seconds=float(r.wall_s)), hourly))
    return sorted(runs, key=lambda r: r.in_force_utc)


# -- 4-5: scoring ----------------------------------------------------------------------------

def every_other_day(runs: list[Run]) -> list[Run]:
    """A sparser refit schedule from the daily runs: the runs of every other day."""
    first = min(r.history_end_utc for r in runs).date()
    return [r for r in runs if (r.history_end_utc.date() - first).days % 2 == 0]


def tune(inputs: dict, base: AlertSettings, progress: bool) -> pd.DataFrame:
    """Score the grid, then variations of its best point; one row per point. Alert steps
    every TUNE_STEP_MIN minutes (the final scoring uses --step-min): 3× cheaper, and a
    choice between settings does not hinge on lead times to the 10 minutes."""
    start, end = inputs["steps"][0], inputs["steps"][-1]
    inputs = dict(inputs, steps=evaluation_steps(start, end + timedelta(minutes=1),
                                                 TUNE_STEP_MIN))
    points = [{"forecast_p": p, **nowcast} for nowcast in TUNE_NOWCAST for p in TUNE_P]
    bar = tqdm(total=len(points) + 3, desc="tuning", disable=not progress)
    rows = []
    for point in points:
        rows.append(_score_row(inputs, base.model_copy(update=point), "daily"))
        bar.update(1)
    best = pick_best(pd.DataFrame(rows))
    point = {k: best[k] for k in TUNE_KEYS}
    for change, schedule in (({"forecast_horizon_h": 12}, "daily"),
                             ({"forecast_p_margin": 0.25}, "daily"), ({}, "every other day")):
        these = dict(inputs, runs=every_other_day(inputs["runs"])) if schedule != "daily" \
            else inputs
        rows.append(_score_row(these, base.model_copy(update={**point, **change}), schedule))
        bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    # The settings to ship: the same rule over every point scored.
    return table.assign(chosen=table.index == pick_best(table).name)


def _score_row(inputs: dict, cfg: AlertSettings, schedule: str) -> dict:
    result = score(cfg=cfg, lead_goal_h=LEAD_GOAL_H, **inputs)
    overall = result["summary"].set_index("site_id").loc["all"]
    return {**{k: getattr(cfg, k) for k in TUNE_KEYS}, "refit": schedule,
            "episodes": int(overall["episodes"]),
            "share_goal": overall["share_goal"], "false_share": overall["false_share"],
            "alerts": int(overall["alerts"]), "lead_median_h": overall["lead_median_h"]}


def pick_best(table: pd.DataFrame) -> pd.Series:
    """The point with the most episodes flagged ≥ 2 h ahead among those with ≤ 20 % false
    alarms (else the fewest false alarms), then fewer false alarms, then longer leads."""
    ok = table[table["false_share"].fillna(0) <= FALSE_MAX]
    pool = ok if len(ok) else table
    ranked = pool.assign(fs=pool["false_share"].fillna(0)).sort_values(
        ["share_goal", "fs", "lead_median_h"], ascending=[False, True, False])
    return ranked.iloc[0]


def season_inputs(settings: Settings, catalogue: Catalogue, season: Season) -> dict:
    """What scoring needs: truth episodes, runs, stored arrivals, steps, thresholds."""
    store = Store.from_settings(settings)
    thresholds = site_thresholds(catalogue, settings.load, store.alert_thresholds())
    limits = (thresholds["capacity"] * thresholds["overload"]).to_dict()
    truth = pd.read_parquet(season.work_dir / "truth" / "site_minutes.parquet")
    start_utc = local_midnight_utc(season.start, settings)
    end_utc = local_midnight_utc(season.end, settings)
    minute = pd.to_datetime(truth["minute_utc"])
    truth = truth[truth["site_id"].isin(season.sites) & (minute >= start_utc)
                  & (minute < end_utc)]
    episodes = overload_episodes(truth, limits, 1.0, min_minutes=15)
    arrivals = store.hourly_arrivals(None, start_utc - timedelta(days=1), end_utc)
    arrivals = arrivals[arrivals["site_id"].isin(season.sites)]
    return {"episodes": episodes, "runs": load_runs(store, season.sites), "arrivals": arrivals,
            "steps": evaluation_steps(start_utc, end_utc, season.step_min),
            "thresholds": thresholds, "site_ids": season.sites,
            "interval_width": settings.forecast.interval_width}


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="s"))


def write_results(path: Path, season: Season, settings: Settings, result: dict, timing: dict,
                  runs: list[Run], tuning: pd.DataFrame | None) -> None:
    """The season's results as one JSON file (the dashboard page reads it)."""
    cfg = settings.alerts
    doc = {
        "seed": season.seed, "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "season": {"start_local": season.start.isoformat(), "end_local": season.end.isoformat(),
                   "sites": season.sites, "history_days": season.history_days,
                   "interval_s": season.interval_s, "alert_step_min": season.step_min},
        "goal": {"lead_h": LEAD_GOAL_H, "share": GOAL_SHARE, "false_share_max": FALSE_MAX},
        "settings": {"forecast_p": cfg.forecast_p, "forecast_p_margin": cfg.forecast_p_margin,
                     "forecast_horizon_h": cfg.forecast_horizon_h,
                     "nowcast_hours": cfg.nowcast_hours,
                     "nowcast_prior_people": cfg.nowcast_prior_people,
                     "nowcast_ratio_max": cfg.nowcast_ratio_max,
                     "refit_hours_local": list(settings.schedule.refit_hours_local)},
        "timing": timing,
        "summary": _records(result["summary"]),
        "episodes": _records(result["episodes"]),
        "alerts": _records(result["spells"]),
        "runs": [{"run_id": r.run_id, "history_end_utc": r.history_end_utc.isoformat(),
                  "in_force_utc": r.in_force_utc.isoformat(timespec="seconds"),
                  "sites": int(r.hourly["site_id"].nunique())} for r in runs],
        "tuning": _records(tuning) if tuning is not None else [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")


def evaluate(base: Settings, season: Season, out: Path, progress: bool = True,
             rescore: bool = False, tuning: bool = False, score_now: bool = True) -> dict:
    """The whole evaluation; returns the summary and timings."""
    catalogue = load_catalogue(base.catalogue_path)
    season.work_dir.mkdir(parents=True, exist_ok=True)
    timing_path = season.work_dir / "timing.json"
    settings = season_settings(base, season, _free_port())
    if not rescore:
        if timing_path.exists():
            raise ValueError(f"{season.work_dir} holds an evaluated season: delete it to run "
                             "the season again, or pass --rescore to score it again")
        ingested = season.work_dir / "ingest.json"
        if ingested.exists():  # an interrupted evaluation resumes after the season's ingest
            timing = json.loads(ingested.read_text())
        else:
            timing = _ingest(settings, catalogue, season, progress)
            ingested.write_text(json.dumps(timing), encoding="utf-8")
        timing["refits_s"] = round(refit_season(settings, season, progress), 1)
        timing_path.write_text(json.dumps(timing), encoding="utf-8")
        if not score_now:
            return {"summary": pd.DataFrame(), "timing": timing, "tuning": None}
    elif not settings.store.path.exists():
        raise ValueError(f"nothing to re-score: {settings.store.path} does not exist")
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    inputs = season_inputs(settings, catalogue, season)
    started = time.perf_counter()
    bar = tqdm(total=len(inputs["steps"]), desc="alert steps", disable=not progress)
    result = score(cfg=settings.alerts, lead_goal_h=LEAD_GOAL_H,
                   progress=lambda i: bar.update(1), **inputs)
    bar.close()
    timing["scoring_s"] = round(time.perf_counter() - started, 1)
    table = tune(inputs, settings.alerts, progress) if tuning else None
    write_results(out, season, settings, result, timing, inputs["runs"], table)
    return {"summary": result["summary"], "timing": timing, "tuning": table}


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Early-warning evaluation over a simulated festival season.")
    parser.add_argument("--seed", type=int, required=True, help="the simulator's seed")
    parser.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    parser.add_argument("--start", type=date.fromisoformat, default=None,
                        help=f"first local day of the season (default {SEASON[0]})")
    parser.add_argument("--end", type=date.fromisoformat, default=None,
                        help=f"local day after the season (default {SEASON[1]})")
    parser.add_argument("--sites", default=None, help="comma-separated site ids (default all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK[0]}..{QUICK[1]}, sites {','.join(QUICK_SITES)}, "
                        "400 days of history")
    parser.add_argument("--history-days", type=int, default=None,
                        help="days of backfilled history before the season (default 1100)")
    parser.add_argument("--interval-s", type=int, default=60,
                        help="counter reporting interval during the season (default 60)")
    parser.add_argument("--step-min", type=int, default=10,
                        help="simulated minutes between alert evaluations (default 10)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for the season's store and truth")
    parser.add_argument("--rescore", action="store_true",
                        help="score an evaluated season again (e.g. with other settings)")
    parser.add_argument("--tune", action="store_true",
                        help="also score the tuning grid (alert settings, refit schedule)")
    parser.add_argument("--no-score", action="store_true",
                        help="stop after the refits (score later with --rescore)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the broker, collector and simulator are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("cmdstanpy", "prophet", "paho", "collector", "simulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        base = get_settings()
        catalogue = load_catalogue(base.catalogue_path)
        start, end = QUICK if args.quick else SEASON
        start, end = args.start or start, args.end or end
        if start >= end:
            raise ValueError(f"--start {start} is not before --end {end}")
        sites = (args.sites.split(",") if args.sites else
                 list(QUICK_SITES) if args.quick else [s.id for s in catalogue.sites])
        for site_id in sites:
            catalogue.site(site_id)
        work = args.work_dir or base.alerts.early_warning_dir / (
            f"seed{args.seed}{'-quick' if args.quick else ''}")
        season = Season(args.seed, start, end, sites, work,
                        args.history_days or (400 if args.quick else 1100), args.interval_s,
                        args.step_min)
        result = evaluate(base, season, args.out, not args.no_progress, args.rescore, args.tune,
                          not args.no_score)
    except (SettingsError, CatalogueError, StoreError, ValueError, KeyError, OSError,
            ConnectionError, RuntimeError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: run the same command again to resume after the history")
        return 130
    print(result["summary"].to_string(index=False))
    if result["tuning"] is not None:
        print(result["tuning"].to_string(index=False))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

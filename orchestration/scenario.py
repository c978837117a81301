"""The demo's scenario mode: one festival (or frost) day played on a simulated clock.

    make demo SCENARIO=ky-cung              # or tet, mau-son-frost (data/scenarios.yaml)
    make demo SCENARIO=ky-cung SPEED=300    # simulated seconds per wall second
    python -m orchestration.scenario ky-cung --play-from 09:30 --speed 60 --stop-at-end

What it does, in a work folder of its own (`data/generated/scenarios/<name>/`; the demo's
own store is never touched):

1. history: the simulator's bulk backfill (`ingest.sim_backfill.backfill`, the season
   evaluation's too) of `history_days` up to local midnight of the scenario's day, into
   `history.duckdb`; then one refit (`python -m forecasting.run`) on a simulated clock set
   to that midnight, as the product's nightly refit would have run. Kept between runs
   (`history.json` records what it holds); `--fresh` builds it again.
2. the day: a copy of that store (each run starts the day afresh), then the demo's
   processes (`orchestration.demo.run_stack`: a real Mosquitto, the collector, the live
   simulator, the dashboard, the public pages), every one on the same simulated clock
   (`visitorflow.clock.simulated_clock_env`) starting at the scenario's `play_from`: the
   simulator first sends the night from local midnight over MQTT, then follows the clock
   with the scenario's crowd factors (`--crowd`, see data/scenarios.yaml).
3. a demo operator account (`operator.demo`) in the scenarios' own users file, its
   password in `operator-password.txt` beside it (readable by you only; an `admin` too, in
   `first-admin-password.txt`): the newcomer signs in and acknowledges alerts.

While it plays, a line every few wall seconds gives the scenario's local time and each
alert as it is raised (a forecast alert with its lead time). `summary.json` in the work
folder records the timings and the alerts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pandas as pd
import yaml

from ingest.sim_backfill import backfill
from orchestration.demo import run_stack
from orchestration.season_eval import local_midnight_utc
from visitorflow.catalogue import Catalogue, CatalogueError, load_catalogue
from visitorflow.clock import simulated_clock_env, to_local, to_utc, utc_now
from visitorflow.festivals import festival_days
from visitorflow.settings import (
    PROJECT_ROOT,
    CollectorSettings,
    ScheduleSettings,
    Settings,
    SettingsError,
    get_settings,
)
from visitorflow.store import Store, StoreError
from visitorflow.users import (
    UsersError,
    add_user,
    ensure_first_admin,
    load_users,
    write_private,
)

SCENARIOS_PATH = PROJECT_ROOT / "data" / "scenarios.yaml"
WORK_ROOT = PROJECT_ROOT / "data" / "generated" / "scenarios"
# The default speed plays a scenario's day (play_from..play_to) in about this many wall
# seconds: ten minutes, what a newcomer watches before clicking around.
DAY_WALL_S = 600
# The operator account the scenario creates, so that a newcomer can acknowledge alerts.
DEMO_OPERATOR = "operator.demo"
# Wall seconds between progress lines: often enough to follow, rare enough to read.
PROGRESS_EVERY_S = 10
DEFAULT_DASHBOARD_PORT = 8501
# Wall seconds a reading may take to reach a page on a loaded machine (the collector's
# commit, the dashboard's refresh and cache, the public server's cache). A gate counts as
# silent after `dashboard.silent_intervals` of its (simulated) intervals: at N times the wall
# clock that allowance must cover N times this, or every site shows "no data".
PIPELINE_WALL_S = 30
# The dashboard's refresh in the scenario: at the default speed a simulated minute is under
# a wall second, and the usual 5 s refresh would show the map minutes behind.
SCENARIO_REFRESH_S = 2


class ScenarioError(Exception):
    """A scenario that cannot be loaded or played; the message says what to fix."""


@dataclass(frozen=True)
class Scenario:
    name: str
    day: date
    festival: str | None
    play_from: clock_time
    play_to: clock_time
    history_days: int
    watch: tuple[str, ...]
    crowd: dict[str, float] = field(default_factory=dict)
    story: dict[str, str] = field(default_factory=dict)

    def default_speed(self) -> float:
        """Simulated seconds per wall second that play the day in about DAY_WALL_S."""
        span = (datetime.combine(self.day, self.play_to)
                - datetime.combine(self.day, self.play_from)).total_seconds()
        return round(span / DAY_WALL_S, 1)

    def play_utc(self, settings: Settings) -> tuple[datetime, datetime]:
        """The played span [play_from, play_to) of the day as naive UTC."""
        return tuple(to_utc(datetime.combine(self.day, t), settings.tz)
                     for t in (self.play_from, self.play_to))  # type: ignore[return-value]

    def simulator_args(self) -> list[str]:
        """The live simulator's arguments: from local midnight (the night is sent over
        MQTT first), the crowd factors on the scenario's day only."""
        args = ["--start", "midnight"]
        for site_id, factor in sorted(self.crowd.items()):
            args += ["--crowd", f"{site_id}={factor:g}"]
        if self.crowd:
            args += ["--crowd-on", self.day.isoformat()]
        return args


def _shown(path: Path) -> str:
    """A path as the reader finds it: relative to the project when inside it."""
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _hhmm(value: object, what: str) -> clock_time:
    try:
        return clock_time.fromisoformat(str(value))
    except ValueError:
        raise ScenarioError(f"{what}: {value!r} is not a local time HH:MM") from None


def load_scenarios(catalogue: Catalogue, path: Path = SCENARIOS_PATH) -> dict[str, Scenario]:
    """Every scenario of `path`, checked against the catalogue and the festival calendar."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))["scenarios"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ScenarioError(f"cannot read the scenarios in {path}: {exc}") from None
    out = {}
    for name, spec in raw.items():
        where = f"{path.name}, scenario {name!r}"
        try:
            day = spec["date"] if isinstance(spec["date"], date) else date.fromisoformat(
                str(spec["date"]))
            scenario = Scenario(
                name=name, day=day, festival=spec.get("festival"),
                play_from=_hhmm(spec["play_from"], f"{where}, play_from"),
                play_to=_hhmm(spec["play_to"], f"{where}, play_to"),
                history_days=int(spec["history_days"]),
                watch=tuple(spec.get("watch") or ()),
                crowd={k: float(v) for k, v in (spec.get("crowd") or {}).items()},
                story=dict(spec.get("story") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ScenarioError(f"{where}: missing or bad field {exc}") from None
        if scenario.play_from >= scenario.play_to:
            raise ScenarioError(f"{where}: play_from must be before play_to")
        if scenario.history_days < 1:
            raise ScenarioError(f"{where}: history_days must be at least 1")
        for site_id in (*scenario.watch, *scenario.crowd):
            if site_id not in catalogue.by_id:
                raise ScenarioError(f"{where}: no site {site_id!r} in the catalogue")
        if any(f <= 0 for f in scenario.crowd.values()):
            raise ScenarioError(f"{where}: crowd factors must be above 0")
        if scenario.festival is not None:
            days = festival_days([day.year])
            ours = days[days["festival_id"] == scenario.festival]
            if ours.empty:
                raise ScenarioError(f"{where}: no festival {scenario.festival!r} in "
                                    "data/festivals.yaml")
            if day not in set(ours["date"]):
                raise ScenarioError(f"{where}: {day} is not a day of {scenario.festival} "
                                    f"in {day.year}")
        out[name] = scenario
    return out


def ensure_demo_operator(users_path: Path, name: str = DEMO_OPERATOR) -> Path | None:
    """The scenario's operator account: created with a random password, written to
    `operator-password.txt` beside the users file (mode 0600, never printed: a demo screen
    is often shared). Returns that file, or None if the account already existed."""
    if users_path.exists() and name in load_users(users_path):
        return None
    password = secrets.token_urlsafe(12)
    add_user(users_path, name, "operator", password)
    secret = users_path.with_name("operator-password.txt")
    write_private(secret, f"user: {name}\npassword: {password}\n")
    return secret


# -- 1: history and the refit -------------------------------------------------------------


def prepare_history(settings: Settings, catalogue: Catalogue, scenario: Scenario,
                    work_dir: Path, history_days: int, fresh: bool, progress: bool,
                    refit_sites: list[str] | None = None) -> dict:
    """`work_dir/history.duckdb`: `history_days` of backfill up to the scenario's day and
    one refit (of `refit_sites`, default every site) stamped at its local midnight. Reused
    when `history.json` says it holds the same; returns its timings."""
    store_path = work_dir / "history.duckdb"
    marker = work_dir / "history.json"
    wanted = {"day": scenario.day.isoformat(), "history_days": history_days,
              "seed": settings.simulator.seed, "refit_sites": refit_sites}
    if marker.exists() and not fresh:
        done = json.loads(marker.read_text(encoding="utf-8"))
        if {k: done.get(k) for k in wanted} == wanted and store_path.exists():
            print(f"history: reusing {_shown(store_path)} "
                  f"({history_days} days, refit done)", flush=True)
            return done
    marker.unlink(missing_ok=True)
    for stale in (store_path, store_path.with_name(store_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    history = settings.model_copy(deep=True)
    history.store.path = store_path
    first = scenario.day - timedelta(days=history_days)
    print(f"history: back-filling {first} .. {scenario.day - timedelta(days=1)} "
          f"({history_days} days) into {_shown(store_path)} …", flush=True)
    started = time.perf_counter()
    stats = backfill(history, catalogue, first, scenario.day, truth_dir=None,
                     progress=progress)
    backfill_s = time.perf_counter() - started
    print(f"history: {stats}", flush=True)
    # The refit on a clock set to the scenario's midnight: its run is stamped then (the
    # dashboard judges a run's age by it), as the product's nightly refit would be.
    midnight = local_midnight_utc(scenario.day, settings)
    env = {**os.environ, "VISITORFLOW_STORE__PATH": str(store_path),
           **simulated_clock_env(midnight, 1.0)}
    print("refit: every site's forecast on that history (python -m forecasting.run) …",
          flush=True)
    started = time.perf_counter()
    refit = subprocess.run([sys.executable, "-m", "forecasting.run",
                            *(["--sites", ",".join(refit_sites)] if refit_sites else []),
                            *([] if progress else ["--no-progress"])],
                           cwd=PROJECT_ROOT, env=env)
    if refit.returncode != 0:
        raise ScenarioError(f"the refit failed (exit {refit.returncode}, see above)")
    done = {**wanted, "backfill_s": round(backfill_s, 1),
            "refit_s": round(time.perf_counter() - started, 1),
            "history_readings": stats.readings}
    marker.write_text(json.dumps(done), encoding="utf-8")
    return done


def fresh_day_store(work_dir: Path) -> Path:
    """`store.duckdb`: a copy of the history, so that each run plays the day afresh (no
    readings, alerts or acknowledgements of an earlier run)."""
    target = work_dir / "store.duckdb"
    for stale in (target, target.with_name(target.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(work_dir / "history.duckdb", target)
    return target


# -- 2: the day ---------------------------------------------------------------------------


def play_env(store_path: Path, users_path: Path, start_utc: datetime, speed: float,
             mqtt_port: int | None, public_port: int | None,
             interval_s: int = 60) -> dict[str, str]:
    """The settings every process of the day shares: the day's store, the scenarios'
    accounts, the ports, one simulated clock, and the "no data" allowance and refresh that
    suit its speed (`interval_s`: the counters' reporting interval)."""
    silent = max(3, math.ceil(PIPELINE_WALL_S * speed / interval_s))
    env = {"VISITORFLOW_STORE__PATH": str(store_path),
           "VISITORFLOW_AUTH__USERS_PATH": str(users_path),
           "VISITORFLOW_DASHBOARD__SILENT_INTERVALS": str(silent),
           "VISITORFLOW_DASHBOARD__REFRESH_S": str(SCENARIO_REFRESH_S),
           "PYTHONUNBUFFERED": "1",
           **simulated_clock_env(start_utc, speed)}
    # The broker's accounts of its own: refreshing them must not touch those of a demo or
    # service running beside (unless the caller chose a folder).
    env.setdefault("VISITORFLOW_MQTT__SECRETS_DIR", os.environ.get(
        "VISITORFLOW_MQTT__SECRETS_DIR", str(store_path.parent / "secrets")))
    if mqtt_port:
        env["VISITORFLOW_MQTT__PORT"] = str(mqtt_port)
    if public_port:
        env["VISITORFLOW_PUBLIC__PORT"] = str(public_port)
    # Health endpoints on fixed ports would clash with a demo or service running beside.
    for section, model in (("COLLECTOR", CollectorSettings), ("SCHEDULE", ScheduleSettings)):
        if "health_port" in model.model_fields:
            env[f"VISITORFLOW_{section}__HEALTH_PORT"] = "0"
    return env


class Narrator:
    """The progress lines while the day plays: the scenario's local time, each alert as it
    is raised (a forecast alert with how far ahead of its hour), and the end of the day."""

    def __init__(self, settings: Settings, catalogue: Catalogue, end_utc: datetime,
                 stop_at_end: bool, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.end_utc = end_utc
        self.stop_at_end = stop_at_end
        self.say = say
        self.seen: dict[str, dict] = {}
        self.next_line = 0.0
        self.ended = False

    def local(self, utc: object) -> str:
        return to_local(pd.Timestamp(utc), self.settings.tz).strftime("%H:%M")

    def describe(self, row: pd.Series) -> dict:
        site = self.catalogue.site(row["site_id"]).name.get("en")
        raised = pd.Timestamp(row["raised_at_utc"])
        item = {"alert_id": row["alert_id"], "site_id": row["site_id"], "kind": row["kind"],
                "level": row["level"], "raised_local": self.local(raised)}
        if row["kind"] == "forecast" and pd.notna(row["from_utc"]):
            lead_h = (pd.Timestamp(row["from_utc"]) - raised).total_seconds() / 3600
            item.update(from_local=self.local(row["from_utc"]), lead_h=round(lead_h, 1),
                        p_overload=round(float(row["p_overload"]), 2))
            # The alert looks from the hour under way: raised within it, it is no lead.
            ahead = f"{lead_h:.1f} h ahead" if lead_h > 0 else "in the hour under way"
            item["text"] = (f"forecast alert: {site} likely over capacity from "
                            f"{item['from_local']} (p = {item['p_overload']:.2f}), raised at "
                            f"{item['raised_local']}, {ahead}")
        else:
            item["text"] = (f"live alert: {site} {row['level']} since {item['raised_local']} "
                            f"({row['occupancy']}/{row['capacity']})")
        return item

    def tick(self) -> bool:
        """Called twice a second by the demo's loop; False ends the run."""
        if time.monotonic() < self.next_line:
            return True
        self.next_line = time.monotonic() + PROGRESS_EVERY_S
        now = utc_now()
        try:
            alerts = Store.from_settings(self.settings).open_alerts()
        except StoreError:
            alerts = None  # the collector is committing: next line
        news = []
        if alerts is not None:
            for _, row in alerts.iterrows():
                if row["alert_id"] not in self.seen:
                    self.seen[row["alert_id"]] = self.describe(row)
                    news.append(self.seen[row["alert_id"]]["text"])
        opened = "–" if alerts is None else str(len(alerts))
        self.say(f"scenario {self.local(now)} local · open alerts: {opened}")
        for text in news:
            self.say(f"  {text}")
        if now >= self.end_utc and not self.ended:
            self.ended = True
            self.say("the scenario's day is over" + ("" if self.stop_at_end else
                                                     " (Ctrl-C stops the demo)"))
            return not self.stop_at_end
        return True


def guide(scenario: Scenario, settings: Settings, speed: float, dashboard_port: int,
          users_path: Path, start_utc: datetime) -> list[str]:
    """What the newcomer reads at the start: the story, where to sign in, the clock."""
    end = datetime.combine(scenario.day, scenario.play_to)
    begin = to_local(start_utc, settings.tz)
    wall_min = (end - begin).total_seconds() / speed / 60
    return [
        f"scenario {scenario.name}: {scenario.day} — {scenario.story.get('en', '')}",
        f"clock: {begin:%H:%M} → {scenario.play_to:%H:%M} local (Asia/Ho_Chi_Minh) at "
        f"{speed:g}× (about {wall_min:.0f} wall minutes); every process shares it",
        f"watch: {', '.join(scenario.watch)}",
        f"dashboard: http://localhost:{dashboard_port}/ — sign in as {DEMO_OPERATOR}; the "
        f"password is in {users_path.with_name('operator-password.txt')} (readable by you "
        "only)",
    ]


def play(settings: Settings, catalogue: Catalogue, scenario: Scenario, work_dir: Path,
         args: argparse.Namespace, speed: float) -> int:
    store_path = fresh_day_store(work_dir)
    users_path = args.users_path
    users_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ensure_first_admin(users_path)
        ensure_demo_operator(users_path)
    except (UsersError, OSError) as exc:
        raise ScenarioError(f"cannot create the scenario's dashboard accounts: {exc}") from None
    start_utc, end_utc = scenario.play_utc(settings)
    if args.play_from is not None:
        start_utc = to_utc(datetime.combine(scenario.day, args.play_from), settings.tz)
    run_dir = work_dir / "run"
    shutil.rmtree(run_dir / "broker", ignore_errors=True)  # no session of an earlier run
    env = play_env(store_path, users_path, start_utc, speed, args.mqtt_port, args.public_port,
                   settings.simulator.interval_s)
    # This process reads the same settings as its children (the broker's port, the clock).
    os.environ.update(env)
    get_settings.cache_clear()
    day_settings = get_settings()
    for line in guide(scenario, day_settings, speed, args.dashboard_port, users_path,
                      start_utc):
        print(line, flush=True)
    narrator = Narrator(day_settings, catalogue, end_utc, args.stop_at_end,
                        lambda text: print(text, flush=True))
    started = time.perf_counter()
    code = run_stack(day_settings, run_dir, args.dashboard_port, scenario.simulator_args(),
                     refit=False, on_tick=narrator.tick)
    summary = {"scenario": scenario.name, "speed": speed,
               "play_from_local": f"{to_local(start_utc, settings.tz):%H:%M}",
               "play_wall_s": round(time.perf_counter() - started, 1),
               "day_over": narrator.ended, "alerts": list(narrator.seen.values())}
    (work_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False),
                                           encoding="utf-8")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="a scenario of data/scenarios.yaml (e.g. ky-cung)")
    parser.add_argument("--speed", type=float, default=None,
                        help="simulated seconds per wall second (default: the day in about "
                             f"{DAY_WALL_S // 60} minutes)")
    parser.add_argument("--play-from", type=lambda v: _hhmm(v, "--play-from"), default=None,
                        help="local time the clock starts at (default: the scenario's)")
    parser.add_argument("--history-days", type=int, default=None,
                        help="days of history before the day (default: the scenario's)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="the scenario's stores and logs (default "
                             "data/generated/scenarios/<name>)")
    parser.add_argument("--users-path", type=Path, default=WORK_ROOT / "users.json",
                        help="the scenarios' dashboard accounts")
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    parser.add_argument("--public-port", type=int, default=None,
                        help="the public pages' port (default: the settings')")
    parser.add_argument("--mqtt-port", type=int, default=None,
                        help="the broker's port (default: the settings')")
    parser.add_argument("--refit-sites", default=None, metavar="ID,ID",
                        help="refit only these sites (default every site; the tests use "
                             "the scenario's watched sites to save minutes)")
    parser.add_argument("--fresh", action="store_true",
                        help="back-fill and refit the history again")
    parser.add_argument("--stop-at-end", action="store_true",
                        help="stop everything when the clock reaches the day's play_to")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        scenarios = load_scenarios(catalogue)
        if args.scenario not in scenarios:
            raise ScenarioError(f"no scenario {args.scenario!r}; choose among "
                                f"{', '.join(scenarios)} (data/scenarios.yaml)")
        scenario = scenarios[args.scenario]
        speed = args.speed or scenario.default_speed()
        if speed <= 0:
            raise ScenarioError("--speed must be above 0")
        work_dir = (args.work_dir or WORK_ROOT / scenario.name).resolve()
        args.users_path = args.users_path.resolve()
        started = time.perf_counter()
        refit_sites = args.refit_sites.split(",") if args.refit_sites else None
        for site_id in refit_sites or ():
            if site_id not in catalogue.by_id:
                raise ScenarioError(f"--refit-sites: no site {site_id!r} in the catalogue")
        prepare_history(settings, catalogue, scenario, work_dir,
                        args.history_days or scenario.history_days, args.fresh,
                        not args.no_progress, refit_sites)
        print(f"history ready in {time.perf_counter() - started:.0f} s", flush=True)
        return play(settings, catalogue, scenario, work_dir, args, speed)
    except (SettingsError, CatalogueError, ScenarioError, StoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again (the history is kept once built)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

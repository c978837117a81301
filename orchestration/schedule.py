"""The product's periodic jobs, in local time from the settings (`schedule`):

- `backtest`: the last weeks' folds for every site and candidate forecaster, whose scores
  choose each site's forecaster in the next refit (`forecasting/candidates.py`);
- `refit`: every site's models and a new forecast run, at each of `refit_hours_local`;
- `export`: yesterday's open data (visitorflow.export) into `export_dir/<day>/`;
- `backup`: a consistent copy of the store, the newest N kept (visitorflow.backup);
- `retention`: raw readings older than `readings_kept_days` to Parquet (visitorflow.retention).

`python -m orchestration.schedule` runs until SIGTERM or SIGINT (`python -m
orchestration.serve` runs it as one of its supervised children). Each job runs as a
subprocess in a process group of its own (stopping the scheduler stops a job's workers with
it: SIGTERM to the group, SIGKILL after `JOB_STOP_GRACE_S`), its output appended to
`<log-dir>/<job>.log`. A job still running when it is next due is left to finish and that run
is skipped (logged): a job never overlaps itself. Different jobs may run at once; their
default hours are apart. Every run is recorded in the store (`job_runs`: when, ok or not,
its last output line), which the dashboard's status line and the health endpoint read. A run
missed while the scheduler was down is not made up; the next due hour runs.

The next run is computed here, not with croniter or APScheduler: "these hours of every
local day" is a few lines over `visitorflow.clock` (the one place that converts between UTC
and local time, and the one that knows a simulated clock), which a cron expression would only
re-encode, and jobs that are one subprocess each need none of APScheduler's threads,
executors and job stores.

`/healthz` and `/metrics` on `schedule.health_port`: each job's last run, outcome and
success, the age of the forecast in use and of the newest backup.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import subprocess
import sys
import time as wall
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from orchestration.supervisor import describe_exit, start_process, stop_group
from visitorflow.backup import latest_backup_utc
from visitorflow.clock import Zone, local_date, to_local, to_utc, utc_now, zone
from visitorflow.health import serve_health
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreError

log = logging.getLogger("schedule")

# How often the loop looks at the clock and the running jobs: a job starts at most this
# late, and a stop request is seen within it.
TICK_S = 1.0
# A running job gets this long to stop after SIGTERM before it is killed; it stays below
# the supervisor's stop grace (orchestration/supervisor.py) so the scheduler exits in time.
JOB_STOP_GRACE_S = 4.0
# The store's view (forecast age, job outcomes) for /metrics and /healthz is read at most
# this often: a scrape every few seconds must not keep taking the collector's file.
STORE_VIEW_TTL_S = 10.0

# A job's command, given the local day it is due (the export names yesterday's data).
Command = Callable[[datetime], list[str]]


def refit_command(_due_utc: datetime | None = None) -> list[str]:
    """The refit: every site's models, a new forecast run in the store."""
    return [sys.executable, "-m", "forecasting.run", "--no-progress"]


def job_commands(settings: Settings) -> dict[str, tuple[tuple[int, ...], Command]]:
    """Every scheduled job: its local hours and its command."""
    sched = settings.schedule

    def export(due_utc: datetime) -> list[str]:
        day = local_date(due_utc, settings.tz) - timedelta(days=1)
        return [sys.executable, "-m", "visitorflow.export", "--start", day.isoformat(),
                "--end", day.isoformat(), "--out", str(sched.export_dir / day.isoformat())]

    return {
        "backtest": ((sched.backtest_hour_local,),
                     lambda _due: [sys.executable, "-m", "forecasting.backtest",
                                   "--no-progress"]),
        "refit": (sched.refit_hours_local, refit_command),
        "export": ((sched.export_hour_local,), export),
        "backup": ((sched.backup_hour_local,),
                   lambda _due: [sys.executable, "-m", "visitorflow.backup", "create"]),
        "retention": ((sched.retention_hour_local,),
                      lambda _due: [sys.executable, "-m", "visitorflow.retention", "run"]),
    }


def next_refit_utc(now_utc: datetime, hours: Sequence[int], tz: Zone) -> datetime:
    """The first run strictly after `now_utc` (naive UTC) at one of the local `hours` of
    a day in zone `tz`, as naive UTC."""
    if not hours:
        raise ValueError("no hours to run at")
    today = local_date(now_utc, tz)
    # Today's hours, else tomorrow's; a third day only if a clock change swallowed one.
    for days in range(3):
        day = today + timedelta(days=days)
        for hour in sorted(hours):
            due = to_utc(datetime.combine(day, time(hour)), tz)
            if due > now_utc:
                return due
    raise ValueError(f"no run at hours {list(hours)} after {now_utc} UTC")


def _local(utc: datetime, tz: Zone) -> str:
    return f"{to_local(utc, tz):%Y-%m-%d %H:%M} {zone(tz).key}"


def _last_line(path: Path, limit: int = 300) -> str | None:
    """The last non-empty line of a log, shortened: a job's own account of how it went."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    return lines[-1][:limit] if lines else None


@dataclass(frozen=True)
class JobOutcome:
    job: str
    started_utc: datetime
    finished_utc: datetime
    ok: bool
    detail: str | None


class ScheduledJob:
    """One job: starts its command at each due hour, one run at a time; `tick(now)` does
    the work and returns the outcome of a run that ended since the last tick."""

    def __init__(self, name: str, hours: Sequence[int], tz: Zone, log_dir: Path,
                 now_utc: datetime, command: Command | Sequence[str] | None = None) -> None:
        self.name = name
        self.hours = tuple(hours)
        self.tz = tz
        self.log_dir = log_dir
        if command is None:
            command = refit_command
        self.command: Command = (command if callable(command)
                                 else (lambda _due, fixed=list(command): fixed))
        self.next_due_utc = next_refit_utc(now_utc, self.hours, tz)
        self.process: subprocess.Popen | None = None
        self._started_utc = now_utc
        self._started_wall = 0.0

    def tick(self, now_utc: datetime) -> JobOutcome | None:
        """Report a run that ended; start the due one unless the last is still running."""
        ended = self._reap(now_utc)
        if now_utc < self.next_due_utc:
            return ended
        due = self.next_due_utc
        self.next_due_utc = next_refit_utc(now_utc, self.hours, self.tz)
        if self.process is not None:
            log.warning("%s due at %s skipped: the previous one (pid %d) is still running; "
                        "next at %s", self.name, _local(due, self.tz), self.process.pid,
                        _local(self.next_due_utc, self.tz))
            return ended
        self.process = start_process(self.name, self.command(due), self.log_dir,
                                     own_group=True)
        self._started_utc, self._started_wall = now_utc, wall.monotonic()
        log.info("%s due at %s started (pid %d); next at %s", self.name, _local(due, self.tz),
                 self.process.pid, _local(self.next_due_utc, self.tz))
        return ended

    def _reap(self, now_utc: datetime) -> JobOutcome | None:
        if self.process is None or (code := self.process.poll()) is None:
            return None
        took = wall.monotonic() - self._started_wall
        last = _last_line(self.log_dir / f"{self.name}.log")
        if code == 0:
            log.info("%s finished in %.0f s", self.name, took)
            detail = last
        else:
            log.error("%s failed (%s) after %.0f s; see %s", self.name, describe_exit(code),
                      took, self.log_dir / f"{self.name}.log")
            detail = f"{describe_exit(code)}: {last}" if last else describe_exit(code)
        self.process = None
        return JobOutcome(self.name, self._started_utc, now_utc, code == 0, detail)

    def stop(self) -> None:
        """Stop a running job and its workers (its own process group)."""
        if self.process is None:
            return
        stop_group(self.process, JOB_STOP_GRACE_S)
        log.info("%s stopped (%s)", self.name, describe_exit(self.process.returncode))
        self.process = None


class ScheduleMetrics:
    """What `/metrics` and `/healthz` say about the jobs and the data they keep fresh."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store.from_settings(settings)
        self.registry = CollectorRegistry()
        self.runs = Counter("visitorflow_job_runs", "Scheduled job runs that ended",
                            ["job", "outcome"], registry=self.registry)
        self.last_ok = Gauge("visitorflow_job_last_ok", "1 if the job's last run succeeded, "
                             "0 if it failed", ["job"], registry=self.registry)
        self.last_success = Gauge("visitorflow_job_last_success_timestamp_seconds",
                                  "When the job last succeeded (Unix time)", ["job"],
                                  registry=self.registry)
        self.forecast_age = Gauge("visitorflow_forecast_age_seconds",
                                  "Age of the forecast run in use", registry=self.registry)
        self.backup_age = Gauge("visitorflow_backup_age_seconds",
                                "Age of the newest backup", registry=self.registry)
        self.forecast_age.set_function(lambda: self._ages()[0])
        self.backup_age.set_function(lambda: self._ages()[1])
        self._cache: tuple[float, tuple[float, float]] = (-1e9, (float("nan"),) * 2)
        self.last_tick_wall = wall.monotonic()

    def record(self, outcome: JobOutcome) -> None:
        self.runs.labels(outcome.job, "ok" if outcome.ok else "failed").inc()
        self.last_ok.labels(outcome.job).set(1 if outcome.ok else 0)
        if outcome.ok:
            self.last_success.labels(outcome.job).set(
                (outcome.finished_utc - datetime(1970, 1, 1)).total_seconds())

    def _ages(self) -> tuple[float, float]:
        """(forecast age, backup age) in seconds, NaN when there is none; cached briefly."""
        at, ages = self._cache
        if wall.monotonic() - at < STORE_VIEW_TTL_S:
            return ages
        now = utc_now()
        forecast = float("nan")
        with contextlib.suppress(StoreError):
            runs = self.store.forecast_runs(limit=1)
            if len(runs):
                forecast = (now - runs["created_at_utc"].iloc[0].to_pydatetime()
                            ).total_seconds()
        backup = latest_backup_utc(self.settings)
        ages = (forecast, float("nan") if backup is None else (now - backup).total_seconds())
        self._cache = (wall.monotonic(), ages)
        return ages

    def health(self) -> tuple[bool, dict]:
        """Unhealthy when the loop stalls, the forecast is stale or a job's last run failed."""
        problems = []
        if wall.monotonic() - self.last_tick_wall > 10 * TICK_S:
            problems.append("the scheduler's loop has stalled")
        forecast_age, backup_age = self._ages()
        stale_s = self.settings.forecast.stale_after_hours * 3600
        if not forecast_age <= stale_s:  # NaN (no forecast) fails too
            problems.append("no forecast run" if forecast_age != forecast_age else
                            f"the forecast in use is {forecast_age / 3600:.1f} h old")
        failed = [job for job, value in self._gauge_values(self.last_ok) if value == 0]
        problems += [f"the last {job} run failed" for job in failed]
        return not problems, {"problems": problems, "forecast_age_s": forecast_age,
                              "backup_age_s": backup_age}

    @staticmethod
    def _gauge_values(gauge: Gauge) -> list[tuple[str, float]]:
        return [(sample.labels["job"], sample.value)
                for metric in gauge.collect() for sample in metric.samples]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", type=Path, default=PROJECT_ROOT / "run" / "logs",
                        help="where each job's log goes (default: run/logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = get_settings()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    now = utc_now()
    jobs = [ScheduledJob(name, hours, settings.tz, args.log_dir, now, command)
            for name, (hours, command) in job_commands(settings).items()]
    metrics = ScheduleMetrics(settings)
    store = metrics.store
    try:
        store.initialise()  # the job table, in a store that predates it
    except StoreError as exc:
        log.error("the store cannot be prepared now (%s); job runs may go unrecorded", exc)
    server = (serve_health(settings.schedule.health_port, metrics.registry, metrics.health)
              if settings.schedule.health_port else None)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    for job in jobs:
        log.info("%s every day at %s (%s); next at %s", job.name,
                 ", ".join(f"{h:02d}:00" for h in job.hours), settings.timezone,
                 _local(job.next_due_utc, settings.tz))
    try:
        while not stopping:
            metrics.last_tick_wall = wall.monotonic()
            for job in jobs:
                outcome = job.tick(utc_now())
                if outcome is None:
                    continue
                metrics.record(outcome)
                try:
                    store.record_job(outcome.job, outcome.started_utc, outcome.finished_utc,
                                     outcome.ok, outcome.detail)
                except (StoreError, ValueError) as exc:  # the loop goes on: jobs still run
                    log.error("could not record the %s run in the store: %s", outcome.job, exc)
            wall.sleep(TICK_S)
    finally:
        for job in jobs:
            job.stop()
        if server is not None:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

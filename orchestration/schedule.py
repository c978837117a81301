"""Refit the forecasts on the product's schedule: every site, at `schedule.refit_hours_local`.

`python -m orchestration.schedule` runs until SIGTERM or SIGINT (`python -m
orchestration.serve` runs it as one of its supervised children). At each of those local
hours (the settings' `timezone`) it runs `python -m forecasting.run --no-progress` as a
subprocess, its output appended to `<log-dir>/refit.log`, and logs how it ended (a failed
refit with its exit code). A refit still running when the next one is due is left to finish
and that one is skipped (logged): two runs at once would double the load and race to write.
A refit missed while the scheduler was down is not made up; the next due hour runs (or
`make forecast` by hand).

The next run is computed here, not with croniter or APScheduler: "these hours of every
local day" is a few lines over `visitorflow.clock` (the one place that converts between UTC
and local time), which a cron expression would only re-encode, and one job that runs one
subprocess at a time needs none of APScheduler's threads, executors and job stores.

The refit runs in a process group of its own, so that stopping the scheduler stops the
run's worker processes with it (SIGTERM to the group, SIGKILL after `REFIT_STOP_GRACE_S`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time as wall
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from pathlib import Path

from orchestration.supervisor import describe_exit, start_process
from visitorflow.clock import Zone, local_date, to_local, to_utc, utc_now, zone
from visitorflow.settings import PROJECT_ROOT, SettingsError, get_settings

log = logging.getLogger("schedule")

# How often the loop looks at the clock and the running refit: a refit starts at most this
# late, and a stop request is seen within it.
TICK_S = 1.0
# A running refit gets this long to stop after SIGTERM before it is killed; it stays below
# the supervisor's stop grace (orchestration/supervisor.py) so the scheduler exits in time.
REFIT_STOP_GRACE_S = 4.0


def refit_command() -> list[str]:
    """The refit: every site's models, a new forecast run in the store."""
    return [sys.executable, "-m", "forecasting.run", "--no-progress"]


def next_refit_utc(now_utc: datetime, hours: Sequence[int], tz: Zone) -> datetime:
    """The first refit strictly after `now_utc` (naive UTC) at one of the local `hours` of
    a day in zone `tz`, as naive UTC."""
    if not hours:
        raise ValueError("no refit hours")
    today = local_date(now_utc, tz)
    # Today's hours, else tomorrow's; a third day only if a clock change swallowed one.
    for days in range(3):
        day = today + timedelta(days=days)
        for hour in sorted(hours):
            due = to_utc(datetime.combine(day, time(hour)), tz)
            if due > now_utc:
                return due
    raise ValueError(f"no refit at hours {list(hours)} after {now_utc} UTC")


def _local(utc: datetime, tz: Zone) -> str:
    return f"{to_local(utc, tz):%Y-%m-%d %H:%M} {zone(tz).key}"


class RefitScheduler:
    """Starts `command` at each due hour, one run at a time; `tick(now)` does the work."""

    def __init__(self, hours: Sequence[int], tz: Zone, log_dir: Path, now_utc: datetime,
                 command: Sequence[str] | None = None) -> None:
        self.hours = tuple(hours)
        self.tz = tz
        self.log_dir = log_dir
        self.command = list(command) if command is not None else refit_command()
        self.next_due_utc = next_refit_utc(now_utc, self.hours, tz)
        self.refit: subprocess.Popen | None = None
        self._refit_started = 0.0

    def tick(self, now_utc: datetime) -> None:
        """Report a refit that ended; start the due one unless the last is still running."""
        self._reap()
        if now_utc < self.next_due_utc:
            return
        due = self.next_due_utc
        self.next_due_utc = next_refit_utc(now_utc, self.hours, self.tz)
        if self.refit is not None:
            log.warning("refit due at %s skipped: the previous one (pid %d) is still "
                        "running; next at %s", _local(due, self.tz), self.refit.pid,
                        _local(self.next_due_utc, self.tz))
            return
        self.refit = start_process("refit", self.command, self.log_dir, own_group=True)
        self._refit_started = wall.monotonic()
        log.info("refit due at %s started (pid %d); next at %s", _local(due, self.tz),
                 self.refit.pid, _local(self.next_due_utc, self.tz))

    def _reap(self) -> None:
        if self.refit is None or (code := self.refit.poll()) is None:
            return
        took = wall.monotonic() - self._refit_started
        if code == 0:
            log.info("refit finished in %.0f s", took)
        else:
            log.error("refit failed (%s) after %.0f s; see %s", describe_exit(code), took,
                      self.log_dir / "refit.log")
        self.refit = None

    def stop(self) -> None:
        """Stop a running refit and its workers (its own process group)."""
        if self.refit is None:
            return
        for sig, grace in ((signal.SIGTERM, REFIT_STOP_GRACE_S), (signal.SIGKILL, 1.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.refit.pid, sig)
            try:
                self.refit.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        log.info("refit stopped (%s)", describe_exit(self.refit.returncode)
                 if self.refit.returncode is not None else "still running")
        self.refit = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", type=Path, default=PROJECT_ROOT / "run" / "logs",
                        help="where refit.log goes (default: run/logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = get_settings()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    hours = settings.schedule.refit_hours_local
    scheduler = RefitScheduler(hours, settings.tz, args.log_dir, utc_now())
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    log.info("refits every day at %s (%s); next at %s",
             ", ".join(f"{h:02d}:00" for h in hours), settings.timezone,
             _local(scheduler.next_due_utc, settings.tz))
    try:
        while not stopping:
            scheduler.tick(utc_now())
            wall.sleep(TICK_S)
    finally:
        scheduler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

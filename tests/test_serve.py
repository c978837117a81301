"""The supervised service (orchestration/serve.py): restarts with backoff, a clean stop that
leaves no process behind, and the refit schedule (orchestration/schedule.py)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from orchestration.schedule import ScheduledJob, job_commands, next_refit_utc
from orchestration.supervisor import (
    FIRST_RESTART_DELAY_S,
    MAX_RESTART_DELAY_S,
    STABLE_RUN_S,
    Child,
    Supervisor,
)
from tests.conftest import wait_until
from tests.serve_support import SUBSET, child_pids
from visitorflow.settings import (
    AlertSettings,
    ScheduleSettings,
    Settings,
    SettingsError,
    load_settings,
)
from visitorflow.store.jobs import JOBS

HANOI = "Asia/Ho_Chi_Minh"  # UTC+7 all year


# -- next_refit_utc: pure -----------------------------------------------------------------

@pytest.mark.parametrize(("now_utc", "hours", "expected_utc"), [
    # 17:00 local: today's 05:00 is past, tomorrow's (local) is next.
    (datetime(2026, 12, 3, 10, 0), (5,), datetime(2026, 12, 3, 22, 0)),
    # 04:30 local on Dec 4 while UTC still says Dec 3 21:30: 05:00 local is in half an hour,
    # on the UTC day before the local one.
    (datetime(2026, 12, 3, 21, 30), (5,), datetime(2026, 12, 3, 22, 0)),
    # Exactly at a due time: that run is the one just made; the next is a day later.
    (datetime(2026, 12, 3, 22, 0), (5,), datetime(2026, 12, 4, 22, 0)),
    # Several hours in any order: the first one still ahead today (06:00 local → 17:00).
    (datetime(2026, 12, 3, 23, 0), (17, 5), datetime(2026, 12, 4, 10, 0)),
    # After the last hour of the local day: the first hour of the next.
    (datetime(2026, 12, 4, 11, 0), (17, 5), datetime(2026, 12, 4, 22, 0)),
    # Midnight local, across a month and a year boundary (23:30 local on Dec 31).
    (datetime(2026, 12, 31, 16, 30), (0,), datetime(2026, 12, 31, 17, 0)),
    (datetime(2026, 12, 31, 16, 30), (5,), datetime(2026, 12, 31, 22, 0)),
])
def test_next_refit_utc(now_utc: datetime, hours: tuple[int, ...],
                        expected_utc: datetime) -> None:
    assert next_refit_utc(now_utc, hours, HANOI) == expected_utc


def test_next_refit_utc_is_always_ahead_and_within_a_day() -> None:
    start = datetime(2026, 12, 1, 0, 0)
    for step in range(0, 48 * 60, 17):
        now = start + timedelta(minutes=step)
        due = next_refit_utc(now, (5, 17), HANOI)
        assert now < due <= now + timedelta(hours=12)
        assert (due + timedelta(hours=7)).hour in (5, 17)


def test_next_refit_utc_needs_an_hour() -> None:
    with pytest.raises(ValueError):
        next_refit_utc(datetime(2026, 12, 3), (), HANOI)


# -- the schedule's settings ----------------------------------------------------------------

def test_schedule_settings_hold_the_refit_hours(settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.schedule.refit_hours_local == (5,)
    assert "refit_hours_local" not in AlertSettings.model_fields
    assert ScheduleSettings(refit_hours_local=(17, 5)).refit_hours_local == (5, 17)
    monkeypatch.setenv("VISITORFLOW_SCHEDULE__REFIT_HOURS_LOCAL", "[5, 17]")
    assert load_settings().schedule.refit_hours_local == (5, 17)


@pytest.mark.parametrize("hours", ["[24]", "[-1]", "[5, 5]", "[]"])
def test_schedule_settings_refuse_bad_hours(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                            hours: str) -> None:
    monkeypatch.setenv("VISITORFLOW_SCHEDULE__REFIT_HOURS_LOCAL", hours)
    with pytest.raises(SettingsError, match="schedule.refit_hours_local"):
        load_settings()


# -- the scheduler: one refit at a time, failures logged ------------------------------------

DUE = datetime(2026, 12, 3, 22, 0)  # 05:00 local on Dec 4


def test_refit_still_running_is_not_started_twice(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    scheduler = ScheduledJob("refit", (5, 6), HANOI, tmp_path, DUE - timedelta(minutes=1), slow)
    caplog.set_level(logging.INFO, logger="schedule")
    try:
        scheduler.tick(DUE - timedelta(seconds=1))
        assert scheduler.process is None  # not due yet
        scheduler.tick(DUE)
        first = scheduler.process
        assert first is not None and first.poll() is None
        scheduler.tick(DUE + timedelta(hours=1))  # 06:00 local: the 05:00 run still going
        assert scheduler.process is first
        assert "skipped: the previous one" in caplog.text
        assert sum(r.getMessage().startswith("refit due at") and "started" in r.getMessage()
                   for r in caplog.records) == 1
        assert scheduler.next_due_utc == DUE + timedelta(days=1)
    finally:
        scheduler.stop()
    assert first.poll() is not None


def test_failed_refit_is_logged_with_its_exit_code(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    failing = [sys.executable, "-c", "import sys; print('no history'); sys.exit(3)"]
    scheduler = ScheduledJob("refit", (5,), HANOI, tmp_path, DUE - timedelta(minutes=1), failing)
    caplog.set_level(logging.INFO, logger="schedule")
    scheduler.tick(DUE)
    assert scheduler.process is not None
    scheduler.process.wait(10)
    outcome = scheduler.tick(DUE + timedelta(minutes=1))
    assert scheduler.process is None
    assert outcome is not None and not outcome.ok and outcome.job == "refit"
    assert outcome.detail == "exit 3: no history"
    assert "refit failed (exit 3)" in caplog.text
    assert "no history" in (tmp_path / "refit.log").read_text()


# -- the supervisor's backoff ----------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_restart_backoff_doubles_to_its_cap_and_resets_after_a_stable_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Supervisor([child], tmp_path, clock=clock)
    caplog.set_level(logging.INFO, logger="serve")
    supervisor.start(child)
    delays = []
    try:
        for _ in range(7):
            child.proc.wait(10)
            supervisor.check()  # sees the exit: schedules the restart
            delays.append(child.restart_at - clock.now)
            clock.now = child.restart_at - 0.01
            pid = child.pid
            supervisor.check()  # not yet
            assert child.pid == pid
            clock.now += 0.01
            supervisor.check()  # restarted
            assert child.pid != pid
        expected, delay = [], FIRST_RESTART_DELAY_S
        for _ in range(7):
            expected.append(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
        assert delays == expected
        assert delays[-1] == MAX_RESTART_DELAY_S
        child.proc.wait(10)
        clock.now += STABLE_RUN_S  # this run lasted a minute: healthy again
        supervisor.check()
        assert child.restart_at - clock.now == FIRST_RESTART_DELAY_S
    finally:
        supervisor.stop()
    assert "crasher stopped (exit 3)" in caplog.text
    assert "restart 7 in 30 s" in caplog.text


# -- the service with real processes ---------------------------------------------------------

@pytest.mark.e2e
def test_serve_restarts_a_killed_collector(serve: tuple[subprocess.Popen, Path]) -> None:
    proc, run_dir = serve
    before = child_pids(proc)
    os.kill(before["collector"], signal.SIGKILL)
    wait_until(lambda: child_pids(proc).get("collector", before["collector"])
               != before["collector"], 5, "serve to start a new collector")
    after = child_pids(proc)
    log = (run_dir / "logs" / "serve.log").read_text()
    assert "collector stopped (killed by SIGKILL (exit -9))" in log
    assert "restart 1 in 1 s" in log
    assert f"collector started (pid {after['collector']})" in log
    # Only the dead one was restarted.
    assert after["broker"] == before["broker"]
    assert after["scheduler"] == before["scheduler"]


@pytest.mark.e2e
def test_sigterm_stops_every_process_and_frees_the_broker_port(
        serve: tuple[subprocess.Popen, Path], settings: Settings) -> None:
    proc, _ = serve
    family = psutil.Process(proc.pid).children(recursive=True)
    # Mosquitto runs under its launcher: a grandchild, which must go too.
    assert any(p.name() == "mosquitto" for p in family)
    assert len(family) >= len(SUBSET) + 1
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 10
    _, alive = psutil.wait_procs(family, timeout=1)
    assert alive == []
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.mqtt.host, settings.mqtt.port))  # nobody listens there any more
        sock.listen()


def test_every_scheduled_job_can_be_recorded_in_the_store(settings: Settings) -> None:
    """A job the store does not know would fail the scheduler's record of its every run."""
    assert set(job_commands(settings)) == set(JOBS)
    assert settings.schedule.backtest_hour_local < min(settings.schedule.refit_hours_local)

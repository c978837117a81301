"""Start the platform's processes and keep them running: restart with backoff, stop cleanly.

A small loop of our own rather than supervisord, honcho or a systemd unit per process:
- no extra daemon or config language to install and run offline on a province's server; the
  one service (`python -m orchestration.serve`) is what systemd or Docker then supervises;
- every child is one of our own `python -m …` commands, started with the venv's Python and
  the same settings environment, so a list of argument vectors is the whole configuration;
- what we need is per-child restart with exponential backoff, a log line with the exit code
  for each restart, and a stop that leaves no process behind: a few dozen lines here, where
  honcho stops everything when one process dies and supervisord is a daemon of its own.

Each child runs in its own session (so its own process group): a Ctrl-C in the terminal
reaches the supervisor only, which stops the children in order, and a stop or a clean-up
signals the whole group, so a grandchild (Mosquitto under its launcher) never outlives it.
The scheduler stops its own refit's group (orchestration/schedule.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from visitorflow.settings import PROJECT_ROOT

log = logging.getLogger("serve")

# First restart after a second: a crash from a passing cause (the store's lock held, the
# broker restarting) usually clears by then, and a crash loop still costs little.
FIRST_RESTART_DELAY_S = 1.0
# Each further restart in a row waits twice as long, up to this: a child that cannot start
# (a bad setting, a port taken) is retried twice a minute without filling its log.
MAX_RESTART_DELAY_S = 30.0
# A child that ran this long before dying was healthy: its next restart is fast again.
STABLE_RUN_S = 60.0
# SIGTERM first; whatever still runs this long after is killed (SIGKILL). Leaves the
# supervisor ~2 s of the 10 s Docker gives before it kills (deploy/'s unit gives 20 s).
STOP_GRACE_S = 8.0
# How often the loop looks at its children: a dead one is seen within this.
POLL_S = 0.2


def start_process(name: str, args: Sequence[str], log_dir: Path, *,
                  own_group: bool = False, env: dict[str, str] | None = None,
                  ) -> subprocess.Popen:
    """Start `args` from the project root with stdout and stderr appended to
    `log_dir/<name>.log`; `own_group` puts it in a session of its own (see the module's
    docstring). The process carries `name` as `proc.name`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(list(args), cwd=PROJECT_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=env,
                                start_new_session=own_group)
    proc.name = name  # type: ignore[attr-defined]
    return proc


def describe_exit(code: int) -> str:
    """An exit code as people read it: `exit 2`, or `killed by SIGKILL (exit -9)`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} (exit {code})"
        except ValueError:
            pass
    return f"exit {code}"


@dataclass
class Child:
    """One supervised process: its command, and what the loop knows of its runs."""

    name: str
    args: list[str]
    # Stopped after the others (the broker: the collector acknowledges on its way out).
    stop_last: bool = False
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    delay_s: float = FIRST_RESTART_DELAY_S
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal the child's whole process group (it leads it: own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """Stop a child started with `own_group` and its workers: SIGTERM to its group, SIGKILL
    to whatever of the group still runs `grace_s` later (or was left behind by a leader that
    stopped), then wait for the leader."""
    signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    signal_group(proc, signal.SIGKILL)
    proc.wait()


class Supervisor:
    """Keeps `children` running until `stop()`; `run()` is the loop."""

    def __init__(self, children: Sequence[Child], log_dir: Path,
                 env: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.log_dir = log_dir
        self.env = env
        self.clock = clock
        self._stopping = False
        self._stopped = False

    def start(self, child: Child) -> None:
        if child.proc is not None:
            # What the last run left in its group and ignored SIGTERM: it would hold the
            # port or the files the new one needs.
            signal_group(child.proc, signal.SIGKILL)
        child.proc = start_process(child.name, child.args, self.log_dir, own_group=True,
                                   env=self.env)
        child.started_at = self.clock()
        child.restart_at = None
        log.info("%s started (pid %s)", child.name, child.pid)

    def check(self) -> None:
        """One pass of the loop: schedule a restart for each child that died, and restart
        those whose backoff is over."""
        now = self.clock()
        for child in self.children:
            if child.proc is None:
                continue
            code = child.proc.poll()
            if code is not None and child.restart_at is None:
                ran_s = now - child.started_at
                if ran_s >= STABLE_RUN_S:
                    child.delay_s = FIRST_RESTART_DELAY_S
                # What the dead child left in its group (Mosquitto under a killed launcher)
                # would hold its port against the restarted one: asked to stop now (it may
                # save its state), killed at the restart if it has not.
                signal_group(child.proc, signal.SIGTERM)
                child.restarts += 1
                child.restart_at = now + child.delay_s
                log.warning("%s stopped (%s) after %.1f s; restart %d in %.0f s",
                            child.name, describe_exit(code), ran_s, child.restarts,
                            child.delay_s)
                child.delay_s = min(child.delay_s * 2, MAX_RESTART_DELAY_S)
            if child.restart_at is not None and now >= child.restart_at and not self._stopping:
                self.start(child)

    def run(self) -> None:
        """Supervise until `request_stop()` (a signal handler calls it), then stop all."""
        try:
            while not self._stopping:
                self.check()
                time.sleep(POLL_S)
        finally:
            self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self, *_: object) -> None:
        """Ask the loop to stop (safe in a signal handler: it only sets a flag)."""
        self._stopping = True

    def stop(self) -> None:
        """SIGTERM to every child's group (the broker's last), SIGKILL to what remains after
        STOP_GRACE_S, and wait for them all. Calling it again does nothing."""
        self._stopping = True
        if self._stopped:
            return
        self._stopped = True
        deadline = self.clock() + STOP_GRACE_S
        first = [c for c in self.children if not c.stop_last]
        last = [c for c in self.children if c.stop_last]
        for wave, wave_deadline in ((first, deadline - STOP_GRACE_S / 4), (last, deadline)):
            running = [c for c in wave if c.proc is not None and c.proc.poll() is None]
            for child in reversed(running):
                signal_group(child.proc, signal.SIGTERM)
            self._wait(running, wave_deadline)
        for child in self.children:
            if child.proc is None:
                continue
            if child.proc.poll() is None:
                log.warning("%s did not stop within %.0f s: killed", child.name, STOP_GRACE_S)
            # Also kills what a child that stopped by itself left in its group.
            signal_group(child.proc, signal.SIGKILL)
            child.proc.wait()
            log.info("%s stopped (%s)", child.name, describe_exit(child.proc.returncode))

    def _wait(self, children: list[Child], deadline: float) -> None:
        while any(c.proc.poll() is None for c in children) and self.clock() < deadline:
            time.sleep(0.05)

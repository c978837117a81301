"""The supervised service started for a test: `serve` runs `python -m orchestration.serve`
with a subset of the services, and everything it started is killed at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_until
from visitorflow.settings import PROJECT_ROOT, Settings

SUBSET = ("broker", "collector", "scheduler")
MODULES = {"broker": "ingest.broker", "collector": "ingest.collector",
           "scheduler": "orchestration.schedule"}


def child_pids(serve: subprocess.Popen) -> dict[str, int]:
    """The live (not zombie) direct children of serve, by service name."""
    found = {}
    for proc in psutil.Process(serve.pid).children():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        for name, module in MODULES.items():
            if module in cmdline:
                found[name] = proc.pid
    return found


def start_serve(tmp_path: Path, timeout_s: float = 20) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`python -m orchestration.serve --only broker,collector,scheduler` with the
    environment in force, once the collector is connected to the broker; everything it
    started is killed at the end whatever happens."""
    run_dir = tmp_path / "run"
    with (tmp_path / "serve.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.serve", "--only", ",".join(SUBSET),
             "--run-dir", str(run_dir)],
            cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    family: list[psutil.Process] = []
    try:
        collector_log = run_dir / "logs" / "collector.log"
        wait_until(lambda: set(child_pids(proc)) == set(SUBSET)
                   and collector_log.exists() and "connected to" in collector_log.read_text(),
                   timeout_s, "serve's broker, collector and scheduler, the collector connected")
        family = psutil.Process(proc.pid).children(recursive=True)
        yield proc, run_dir
    finally:
        if proc.poll() is None:
            family += psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for leftover in family:
            if leftover.is_running():
                leftover.kill()




@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """The service (broker, collector, scheduler) on the test's settings."""
    yield from start_serve(tmp_path)

"""Run the whole pipeline on this machine: history, broker, collector, simulator,
forecasts, dashboard, public visitor pages.

`make demo` (or `python -m orchestration.demo`) first back-fills a year of simulated history
into an empty store (so the forecasts have something to learn from), then starts each
stage as its own process, logs to `run/logs/`, and stops everything on Ctrl-C or when a
service dies. In the background, one after the other (BACKGROUND_JOBS): a forecast run, the
backtest, and a second forecast run that uses the backtest's per-site choice of model, so the
site pages show each site's error against a naive forecast within minutes, not after the
first night's backtest as under `make serve`. The live simulator
back-fills today from local midnight over MQTT, then follows the wall clock. `--scenario
NAME` plays a festival day of data/scenarios.yaml on a simulated clock instead
(orchestration/scenario.py). The broker
runs with accounts and ACL on (made from the catalogue in `mqtt.secrets_dir`; each
simulated counter logs in with its own account, the collector with its own).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ingest.broker import BrokerError, start_broker
from orchestration.supervisor import start_process, stop_group
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreError
from visitorflow.users import UsersError, ensure_first_admin

# The background jobs in order: their log name, module, and what the demo prints when one
# ends well. The first forecasts come first, so the dashboard has some within minutes.
BACKGROUND_JOBS = (
    ("forecast", "forecasting.run", "forecasts written"),
    ("backtest", "forecasting.backtest",
     "backtest written: each site's forecast error against a naive forecast"),
    ("refit", "forecasting.run", "forecasts refitted with each site's backtested model"),
)

# A background job asked to stop gets this long before it is killed (a backtest's workers
# only have to notice the signal; nothing of theirs is written until the parent's end).
JOB_STOP_GRACE_S = 15.0


def _start_job(job: tuple[str, str, str], python: str, log_dir: Path,
               env: dict[str, str] | None) -> tuple[subprocess.Popen, str]:
    """Start one of BACKGROUND_JOBS in its own process group (so a stop reaches the worker
    processes it starts); returns it and what to print when it ends well."""
    name, module, done = job
    return start_process(name, [python, "-m", module, "--no-progress"], log_dir,
                         own_group=True, env=env), done


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dashboard-port", type=int, default=8501)
    parser.add_argument("--sim-start", default="midnight",
                        help="simulator start: 'midnight' (back-fill today), 'now' or ISO time")
    parser.add_argument("--history-years", type=float, default=1.0,
                        help="years of simulated history to back-fill into an empty store "
                             "(0: none)")
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / "run",
                        help="logs and broker persistence (default: run/)")
    parser.add_argument("--scenario", default=None,
                        help="play a scenario of data/scenarios.yaml instead (e.g. ky-cung; "
                             "orchestration/scenario.py)")
    parser.add_argument("--speed", type=float, default=None,
                        help="with --scenario: simulated seconds per wall second (default: "
                             "the day in about 10 minutes)")
    args = parser.parse_args(argv)
    if args.scenario:
        # The scenario's own command in this process's place (orchestration/scenario.py
        # builds on this module's run_stack; importing it here would make a cycle).
        os.execv(sys.executable, [
            sys.executable, "-m", "orchestration.scenario", args.scenario,
            "--dashboard-port", str(args.dashboard_port),
            *(["--speed", str(args.speed)] if args.speed else [])])
    if args.speed is not None:
        parser.error("--speed goes with --scenario (the plain demo follows the wall clock)")
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The dashboard needs an account: a first admin if there is none. Its password goes to a
    # file only this user can read, not to the terminal: the demo's screen is often shared
    # (a meeting room projector, a screen recording, run/logs).
    try:
        first_admin = ensure_first_admin(settings.auth.users_path)
    except (UsersError, OSError) as exc:
        print(f"error: cannot create the first dashboard account: {exc}", file=sys.stderr)
        return 2
    if first_admin is not None:
        print(f"created the dashboard account 'admin' (role admin); its password is in "
              f"{first_admin} (readable by you only). Add officials with: python -m "
              "visitorflow.users add NAME --role operator", flush=True)
    # Resolved here: the children run from the project root, wherever the demo was started.
    run_dir = args.run_dir.resolve()
    python = sys.executable
    try:
        has_history = Store.from_settings(settings).latest_reading_utc() is not None
    except StoreError:
        has_history = False
    if not has_history and args.history_years > 0:
        print(f"back-filling {args.history_years:g} year(s) of simulated history "
              f"into {settings.store.path} …", flush=True)
        backfill = subprocess.run([python, "-m", "ingest.simulator", "--mode", "backfill",
                                   "--years", str(args.history_years)], cwd=PROJECT_ROOT)
        if backfill.returncode != 0:
            print("error: the history back-fill failed (see above)", file=sys.stderr)
            return 1
    return run_stack(settings, run_dir, args.dashboard_port,
                     ["--start", args.sim_start], refit=True)


def run_stack(settings: Settings, run_dir: Path, dashboard_port: int,
              simulator_args: list[str], *, refit: bool,
              env: dict[str, str] | None = None,
              on_tick: Callable[[], bool] | None = None) -> int:
    """The demo's processes: a broker on `settings.mqtt`, then the collector, the live
    simulator (`simulator_args`), the dashboard, the public pages and, with `refit`, the
    BACKGROUND_JOBS one after the other, each logging to `run_dir/logs/`, all with `env`
    (default: this process's).
    Runs until Ctrl-C or SIGTERM, a service dying, or `on_tick()` (called twice a second)
    returning False; then stops them all. Returns the exit code."""
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    try:
        broker = start_broker(run_dir / "broker", settings.mqtt.port, settings.mqtt.host)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    broker.name = "broker"  # type: ignore[attr-defined]
    procs = [broker]
    jobs = list(BACKGROUND_JOBS) if refit else []
    job: subprocess.Popen | None = None
    job_done = ""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        procs.append(start_process("collector", [python, "-m", "ingest.collector"], log_dir,
                                   env=env))
        procs.append(start_process("simulator", [python, "-m", "ingest.simulator",
                                                 *simulator_args], log_dir, env=env))
        procs.append(start_process("dashboard", [
            python, "-m", "streamlit", "run", "dashboard/app.py",
            "--server.port", str(dashboard_port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
        ], log_dir, env=env))
        # The visitors' pages behind the QR codes: a process of its own, on its own port.
        procs.append(start_process("public", [python, "-m", "public.server"], log_dir,
                                   env=env))
        if jobs:
            job, job_done = _start_job(jobs.pop(0), python, log_dir, env)
        print(f"broker on {settings.mqtt.host}:{settings.mqtt.port}, store {settings.store.path}")
        # start_broker made or refreshed the accounts: anonymous clients are refused.
        print(f"broker accounts and ACL (auth on) in {settings.mqtt.secrets_dir}"
              + (f", TLS on port {settings.mqtt.tls_port}" if settings.mqtt.tls else ""))
        print(f"logs in {log_dir}")
        print(f"visitors' pages and feed: http://localhost:{settings.public.port}/  "
              f"(QR codes: make qr)")
        print(f"dashboard: http://localhost:{dashboard_port}   (Ctrl-C stops everything)",
              flush=True)
        print(f"sign in with an account of {settings.auth.users_path}", flush=True)
        while not stopping:
            if job is not None and job.poll() is not None:
                name = job.name  # type: ignore[attr-defined]
                print(job_done if job.returncode == 0 else
                      f"the background {name} finished with errors (exit {job.returncode}, "
                      f"see {log_dir / name}.log)", flush=True)
                job, job_done = (_start_job(jobs.pop(0), python, log_dir, env) if jobs
                                 else (None, ""))
            for proc in procs:
                if proc.poll() is not None:
                    name = proc.name  # type: ignore[attr-defined]
                    log = run_dir / "broker" / "mosquitto.log" if name == "broker" else (
                        log_dir / f"{name}.log")
                    print(f"error: the {name} stopped (exit {proc.returncode}); "
                          f"last lines of {log}:\n{_tail(log)}", file=sys.stderr)
                    return 1
            if on_tick is not None and not on_tick():
                break
            time.sleep(0.5)
        return 0
    finally:
        if job is not None:
            stop_group(job, JOB_STOP_GRACE_S)
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("demo stopped", flush=True)

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

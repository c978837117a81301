"""Run the platform for a province as one supervised service.

`python -m orchestration.serve` (`make serve`) starts, each as its own process: the
Mosquitto broker (`python -m ingest.broker`), the collector, the officials' dashboard
(Streamlit), the visitors' public pages and the refit scheduler (orchestration/schedule.py,
forecasts at `schedule.refit_hours_local`). A process that dies is restarted with
exponential backoff, each restart logged with its exit code (orchestration/supervisor.py).
SIGTERM or SIGINT stops them all (SIGTERM, SIGKILL after a grace) and exits 0, so systemd,
Docker or a Ctrl-C stop the whole service and leave no process behind.

Unlike the demo, it back-fills nothing and starts no simulator: the counters publish to the
broker. Logs go to `<run-dir>/logs/<name>.log`, the supervisor's own to `serve.log` (and
stderr); the broker keeps its persistence in `<run-dir>/broker/`. `--only broker,collector`
runs a subset (tests; or a dashboard on another machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from ingest.broker import BrokerError, wait_for_port
from orchestration.supervisor import Child, Supervisor
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from visitorflow.users import UsersError, ensure_first_admin

log = logging.getLogger("serve")

# Streamlit's own default port; the public pages take `public.port` (8502).
DEFAULT_DASHBOARD_PORT = 8501
# How long the collector's first start waits for the broker's port: Mosquitto listens
# within a second; a broker that cannot start is restarted by the loop, and the collector
# (which reconnects by itself) is started anyway.
BROKER_WAIT_S = 10.0


# What `--only` may name, in start order.
SERVICES = ("broker", "collector", "dashboard", "public", "scheduler")


def service_children(settings: Settings, run_dir: Path, dashboard_port: int) -> list[Child]:
    """Every process of the service, in start order (the broker first)."""
    python = sys.executable
    return [
        Child("broker", [python, "-m", "ingest.broker", "--port", str(settings.mqtt.port),
                         "--run-dir", str(run_dir / "broker")], stop_last=True),
        Child("collector", [python, "-m", "ingest.collector"]),
        Child("dashboard", [python, "-m", "streamlit", "run", "dashboard/app.py",
                            "--server.headless", "true", "--server.port", str(dashboard_port),
                            "--browser.gatherUsageStats", "false"]),
        Child("public", [python, "-m", "public.server"]),
        Child("scheduler", [python, "-m", "orchestration.schedule",
                            "--log-dir", str(run_dir / "logs")]),
    ]


def _only(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in SERVICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown service(s) {', '.join(unknown) or '(none given)'}; "
            f"choose among {','.join(SERVICES)}")
    return names


def _log_to(log_dir: Path) -> None:
    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    log_dir.mkdir(parents=True, exist_ok=True)
    for handler in (logging.StreamHandler(), logging.FileHandler(log_dir / "serve.log")):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _wait_for_broker(settings: Settings, supervisor: Supervisor) -> None:
    """Wait until the broker listens (so the collector's first connection succeeds), in
    short steps so that a stop requested meanwhile is not held up."""
    deadline = time.monotonic() + BROKER_WAIT_S
    while not supervisor.stopping:
        try:
            wait_for_port(settings.mqtt.host, settings.mqtt.port, timeout_s=0.5)
            return
        except BrokerError:
            if time.monotonic() >= deadline:
                log.error("the broker does not listen on %s:%d after %.0f s; starting the "
                          "others anyway (see broker.log)", settings.mqtt.host,
                          settings.mqtt.port, BROKER_WAIT_S)
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=_only, default=SERVICES, metavar="NAME,NAME",
                        help=f"run only these services (of {','.join(SERVICES)})")
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / "run",
                        help="logs and broker persistence (default: run/)")
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    args = parser.parse_args(argv)
    # Resolved here: the children run from the project root, wherever serve was started.
    args.run_dir = args.run_dir.resolve()
    log_dir = args.run_dir / "logs"
    _log_to(log_dir)
    try:
        settings = get_settings()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    if "dashboard" in args.only:
        # The dashboard needs an account: a first admin if there is none, its password in a
        # file only this user can read (as the demo does; never in a log).
        try:
            first_admin = ensure_first_admin(settings.auth.users_path)
        except (UsersError, OSError) as exc:
            log.error("cannot create the first dashboard account: %s", exc)
            return 2
        if first_admin is not None:
            log.info("created the dashboard account 'admin'; its password is in %s",
                     first_admin)
    children = [c for c in service_children(settings, args.run_dir, args.dashboard_port)
                if c.name in args.only]
    # Children print as they go: their logs stay current, and a crash loses no last lines.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor(children, log_dir, env)
    # Before the first start: a stop requested while starting still stops everything.
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    log.info("serving %s; logs in %s", ", ".join(c.name for c in children), log_dir)
    try:
        for child in children:
            if supervisor.stopping:
                break
            supervisor.start(child)
            if child.name == "broker":
                _wait_for_broker(settings, supervisor)
        if "dashboard" in args.only:
            log.info("dashboard on http://localhost:%d", args.dashboard_port)
        if "public" in args.only:
            log.info("public pages on http://%s:%d", settings.public.host, settings.public.port)
        supervisor.run()
    finally:
        supervisor.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

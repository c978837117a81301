"""Start the project's Mosquitto broker with the configuration kept in the repo.

`python -m ingest.broker` runs it in the foreground on the settings' port; tests and the
demo use `start_broker()`, which returns the process once the port accepts connections.
Both first make or refresh the broker's accounts and ACL from the site catalogue
(ingest/broker_auth.py; existing passwords are kept): anonymous clients are refused.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ingest.broker_auth import BrokerAuthError, broker_config_lines, ensure_accounts
from visitorflow.settings import PROJECT_ROOT, Settings, SettingsError, get_settings

TEMPLATE = Path(__file__).with_name("mosquitto.conf")
INSTALL_HINT = (
    "Mosquitto is not installed. On Debian/Ubuntu: sudo apt-get install -y mosquitto "
    "mosquitto-clients (or run `make system-deps`)."
)


class BrokerError(RuntimeError):
    pass


def mosquitto_binary() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError(INSTALL_HINT)
    return found


def write_config(run_dir: Path, port: int, host: str = "127.0.0.1",
                 settings: Settings | None = None) -> Path:
    """Copy the repo's config into `run_dir` and add this run's listeners, accounts and
    folders (accounts from the settings' secrets folder, made if missing)."""
    settings = settings or get_settings()
    try:
        ensure_accounts(settings)
        auth = broker_config_lines(settings, host)
    except BrokerAuthError as exc:
        raise BrokerError(str(exc)) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "mosquitto.conf"
    lines = [
        TEMPLATE.read_text(encoding="utf-8"),
        "# --- added by ingest/broker.py for this run ---",
        f"listener {port} {host}",
        f"persistence_location {run_dir.resolve()}/",
        # Run as whoever started it: Mosquitto otherwise drops root to the `mosquitto` user,
        # which cannot write the run folder.
        f"user {getpass.getuser()}",
        *auth,
        "",
    ]
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"broker did not accept connections on {host}:{port} in {timeout_s} s")


def start_broker(run_dir: Path, port: int, host: str = "127.0.0.1",
                 settings: Settings | None = None) -> subprocess.Popen:
    """Start Mosquitto in the background; returns once it listens (on both ports with TLS)."""
    settings = settings or get_settings()
    config = write_config(run_dir, port, host, settings)
    log = (run_dir / "mosquitto.log").open("ab")
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(host, port)
        if settings.mqtt.tls:
            wait_for_port(host, settings.mqtt.tls_port)
    except BrokerError:
        proc.kill()
        tail = (run_dir / "mosquitto.log").read_text(errors="replace")[-2000:]
        raise BrokerError(f"Mosquitto failed to start: {tail}") from None
    return proc


def main(argv: list[str] | None = None) -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.mqtt.port)
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / "run" / "broker")
    args = parser.parse_args(argv)
    try:
        config = write_config(args.run_dir, args.port, settings.mqtt.host, settings)
        print(f"accounts and ACL from {settings.mqtt.secrets_dir}"
              + (f"; TLS on port {settings.mqtt.tls_port}" if settings.mqtt.tls else ""),
              flush=True)
        return run_foreground([mosquitto_binary(), "-c", str(config)])
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# How long Mosquitto gets to close its clients and persistence after a stop signal before
# it is killed: it normally takes well under a second.
STOP_GRACE_S = 10.0


def run_foreground(command: list[str]) -> int:
    """Run the broker as a child until it exits; SIGTERM or SIGINT to this launcher (what
    systemd, Docker, `kill` and Ctrl-C send) stops the child too, so no Mosquitto is left
    holding the port. Returns the child's exit code (0 after a requested stop)."""
    child = subprocess.Popen(command)
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        child.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = child.wait(timeout=STOP_GRACE_S if stopping else None)
                break
            except subprocess.TimeoutExpired:
                child.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else code


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures: settings pointed at a temporary store, a real Mosquitto broker on a free
port, and the project's processes started as real subprocesses."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.broker import BrokerError, start_broker
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings

# Fixtures kept in their own modules, shared by several test files.
pytest_plugins = ["tests.serve_support"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll until `predicate()` is true; fail the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for this test: a store in tmp_path, a free MQTT port, broker accounts in
    tmp_path/secrets (with the `test-fleet` account that may publish anywhere); exported
    to the environment so subprocesses see the same."""
    monkeypatch.setenv("VISITORFLOW_STORE__PATH", str(tmp_path / "visitorflow.duckdb"))
    monkeypatch.setenv("VISITORFLOW_MQTT__PORT", str(free_port()))
    monkeypatch.setenv("VISITORFLOW_PUBLIC__PORT", str(free_port()))
    monkeypatch.setenv("VISITORFLOW_MQTT__SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("VISITORFLOW_MQTT__TEST_ACCOUNT", "true")
    monkeypatch.setenv("VISITORFLOW_CONFIG", str(tmp_path / "none.toml"))
    # The long-running processes' health ports and the scheduler's folders, per test.
    monkeypatch.setenv("VISITORFLOW_COLLECTOR__HEALTH_PORT", str(free_port()))
    monkeypatch.setenv("VISITORFLOW_SCHEDULE__HEALTH_PORT", str(free_port()))
    for name in ("backup_dir", "archive_dir", "export_dir"):
        monkeypatch.setenv(f"VISITORFLOW_SCHEDULE__{name.upper()}", str(tmp_path / name))
    # Never the real accounts; a failed sign-in waits 0 s here (tests/test_dashboard_auth.py
    # sets the delay where it checks it).
    monkeypatch.setenv("VISITORFLOW_AUTH__USERS_PATH", str(tmp_path / "dashboard_users.json"))
    monkeypatch.setenv("VISITORFLOW_AUTH__FAILURE_DELAY_S", "0")
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def broker(settings: Settings, tmp_path: Path) -> Iterator[int]:
    """A real Mosquitto on the settings' port, with the project's config: accounts and
    ACL on (made from the catalogue in the settings' secrets folder), anonymous refused."""
    try:
        proc = start_broker(tmp_path / "broker", settings.mqtt.port)
    except BrokerError as exc:
        pytest.fail(str(exc))
    yield settings.mqtt.port
    proc.terminate()
    proc.wait(10)


class Processes:
    """Project processes started as `python -m module`, stopped at the end of the test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen] = []

    def start(self, module: str, *args: str) -> subprocess.Popen:
        log = (self.log_dir / f"{module}.{len(self.running)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
        )
        proc.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def wait_subscribed(collector: subprocess.Popen, timeout_s: float = 20) -> None:
    """Until the collector started by `Processes` has subscribed: the broker keeps a
    message for the collector's session only from then on."""
    log_path: Path = collector.log_path  # type: ignore[attr-defined]
    wait_until(lambda: "subscribed to" in log_path.read_text(errors="replace"), timeout_s,
               "the collector to subscribe")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def mosquitto_pub(broker: int) -> Callable[..., None]:
    """Publish with Mosquitto's own client (a client we did not write), as `test-fleet`."""
    from ingest.broker_auth import TEST_FLEET, cli_auth_args

    auth = cli_auth_args(get_settings(), TEST_FLEET)
    binary = shutil.which("mosquitto_pub")
    if binary is None:
        pytest.fail("mosquitto_pub missing: apt-get install -y mosquitto-clients")

    def publish(topic: str, payload: bytes | str, qos: int = 1) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        subprocess.run(
            [binary, "-h", "127.0.0.1", "-p", str(broker), *auth, "-q", str(qos), "-t", topic,
             "-s"],
            input=data, check=True, timeout=10,
        )

    return publish


# --- dashboard fixtures (tests/test_dashboard_*.py) -------------------------------------------


@pytest.fixture(autouse=True)
def keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest runs a page as a fresh `__main__` module and leaves it in
    sys.modules; a later test's `spawn` worker would then re-run that page (its
    `__main__.__file__`) on start-up. Put the real `__main__` back after every test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main

# site: (gate, people in, people out) → occupancy against capacity and load level.
DASHBOARD_LOADS = {
    "tam_thanh": ("main", 400, 20),  # 380 / 350 → overload
    "den_ky_cung": ("main", 290, 20),  # 270 / 300 → crowded
    "huu_nghi": ("checkpoint", 720, 20),  # 700 / 1000 → busy
    "den_bac_le": ("main", 60, 10),  # 50 / 500 → normal (away from the city cluster)
}


# How long before local midnight a dashboard test waits for the next day instead of starting:
# longer than a browser test takes on a loaded machine (its page waits are up to 60 s).
LOCAL_DAY_END_MARGIN_S = 240


@pytest.fixture
def dashboard_store(settings: Settings) -> Settings:
    """The settings' store holding one reading per gate of DASHBOARD_LOADS, ending now;
    the other 13 sites have none (no data)."""
    from datetime import datetime

    from visitorflow.clock import utc_now
    from visitorflow.contract import Reading
    from visitorflow.store import Store

    # A 60 s reading counts for the minute it began, and at local midnight the live page
    # starts a new day (sites closed, nothing arrived yet): keep the readings and the test
    # that reads them inside one local day. A test that began at 23:59:40 failed when the page
    # turned to 00:00 under it.
    local = datetime.now(settings.tz)
    since_midnight = (local - local.replace(hour=0, minute=0, second=0, microsecond=0)
                      ).total_seconds()
    to_midnight = 86_400 - since_midnight
    if to_midnight < LOCAL_DAY_END_MARGIN_S:
        time.sleep(to_midnight + 90)
    elif since_midnight < 90:
        time.sleep(90 - since_midnight)
    now = utc_now()
    store = Store.from_settings(settings)
    store.initialise()
    store.write_batch(
        [
            Reading(site, gate, f"lsn-{site}-{gate}", 1, now, 60, count_in, count_out)
            for site, (gate, count_in, count_out) in DASHBOARD_LOADS.items()
        ],
        now,
    )
    return settings


# -- shared by the store, alert and dashboard tests ---------------------------------------

_HOLD_LOCK = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold_store_lock(path: Path, seconds: float = 60) -> subprocess.Popen:
    """Another process holding the store read-write (as the collector does during a commit),
    which blocks every reader. Returns once the lock is held; terminate it to release."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# -- signing in to the dashboard --------------------------------------------------------
# Every AppTest and browser test of dashboard/app.py signs in first:
#     def test_x(signed_in_app): at = signed_in_app("operator")  # AppTest, signed in, page run
# or, with an AppTest of your own: sign_in(at, dashboard_users["viewer"]).

TEST_PASSWORD = "test-password-42"
DASHBOARD_APP = PROJECT_ROOT / "dashboard" / "app.py"
DASHBOARD_USERS = {"viewer": "viewer.an", "operator": "operator.binh", "admin": "admin.chi"}


@pytest.fixture
def dashboard_users(settings: Settings) -> dict[str, str]:
    """A users file at the settings' auth.users_path with one account per role (password
    TEST_PASSWORD); returns role → user name."""
    from visitorflow.users import ROLES, add_user

    for role in ROLES:
        add_user(settings.auth.users_path, DASHBOARD_USERS[role], role, TEST_PASSWORD)
    return DASHBOARD_USERS


def sign_in(at, name: str, password: str = TEST_PASSWORD):  # AppTest
    """Fill and submit the dashboard's sign-in form of an AppTest; returns it, run."""
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    return at.button(key="sign_in_submit").click().run()


@pytest.fixture
def signed_in_app(dashboard_users: dict[str, str]) -> Callable[..., object]:
    """`signed_in_app(role="operator")`: dashboard/app.py in an AppTest, signed in with that
    role's account, its default page run; fails on an exception."""
    from streamlit.testing.v1 import AppTest

    def open_app(role: str = "operator"):
        at = AppTest.from_file(DASHBOARD_APP, default_timeout=30).run()
        sign_in(at, dashboard_users[role])
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_app


def open_page(signed_in_app: Callable[..., object], page: str, lang: str = "vi",
              role: str = "viewer"):  # AppTest
    """`views/<page>.py` of the dashboard signed in with `role`, in `lang`; fails on an
    exception."""
    at = signed_in_app(role)
    at.switch_page(f"views/{page}.py").run()
    if lang != "vi":
        at.sidebar.selectbox(key="language").set_value(lang).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def fresh_streamlit_caches() -> Iterator[None]:
    """Streamlit's caches live per process: start and end a test with them empty."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()

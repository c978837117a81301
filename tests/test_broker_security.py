"""Broker lock-down with real components: accounts and ACL generated from the
catalogue, a real Mosquitto, the collector as its own process, the store read from the side.

MQTT 3.1.1 hides an ACL denial from the publisher (the broker still sends PUBACK), so the
tests read MQTT v5 reason codes where the client can see them, and check from the store
side that a refused message never arrives."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest

from ingest.broker import start_broker, wait_for_port
from ingest.broker_auth import (
    ACL_FILE,
    COLLECTOR,
    CREDENTIALS,
    DASHBOARD,
    PASSWORD_FILE,
    TTN_BRIDGE,
    configure_client,
    credentials,
    generate,
    hash_password,
    write_tls_files,
)
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import utc_now
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings
from visitorflow.store import Store, StoreError

from .conftest import Processes, free_port, wait_subscribed, wait_until
from .ingest_support import native

pytestmark = pytest.mark.e2e

OWN = "langson/v1/tam_thanh/main/counts"
OTHER = "langson/v1/den_ky_cung/main/counts"
COUNTER = "lsn-tam_thanh-main"


@dataclass
class Client:
    """A paho client that records what the broker answered (connect, each PUBACK)."""

    mqtt: mqtt.Client
    connack: str | None = None
    acks: dict[int, str] = field(default_factory=dict)
    connected: threading.Event = field(default_factory=threading.Event)

    def publish(self, topic: str, payload: bytes) -> str:
        """Publish QoS 1 and return the broker's PUBACK reason."""
        info = self.mqtt.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        wait_until(lambda: info.mid in self.acks, 5, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def connect(port: int, username: str | None, password: str | None, *,
            protocol: int = mqtt.MQTTv5, client_id: str = "", tls_ca: Path | None = None,
            expect_ok: bool = True) -> Client:
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client = Client(paho)
    if username is not None:
        paho.username_pw_set(username, password)
    if tls_ca is not None:
        paho.tls_set(ca_certs=str(tls_ca))

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        client.connack = str(reason_code)
        client.connected.set()

    def on_publish(c, userdata, mid, reason_code, properties) -> None:
        client.acks[mid] = str(reason_code)

    paho.on_connect, paho.on_publish = on_connect, on_publish
    paho.connect("127.0.0.1", port)
    paho.loop_start()
    assert client.connected.wait(5), "no CONNACK"
    if expect_ok:
        assert client.connack == "Success", client.connack
    return client


def password(settings: Settings, account: str) -> str:
    found = credentials(settings, account)
    assert found is not None, account
    return found[1]


def stored(store: Store) -> tuple[list[str], int]:
    try:
        frame = store.readings()
        return sorted(frame["device_id"]), store.table_counts()["quarantine"]
    except StoreError:
        return [], -1


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def test_generated_files_are_private_and_keep_passwords(settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    counts = generate(settings, catalogue)
    folder = settings.mqtt.secrets_dir
    for name in (CREDENTIALS, PASSWORD_FILE, ACL_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    accounts = json.loads((folder / CREDENTIALS).read_text())["accounts"]
    gates = catalogue.gates()
    assert counts == {"accounts": len(gates) + 6, "new": len(gates) + 6, "kept": 0}
    assert {g.counter_id for _, g in gates} | {COLLECTOR, DASHBOARD, TTN_BRIDGE} <= set(accounts)
    # The broker's file holds hashes only, never a password.
    hashed = (folder / PASSWORD_FILE).read_text()
    assert all(pw not in hashed for pw in accounts.values())
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in hashed.splitlines())
    acl = (folder / ACL_FILE).read_text()
    assert (f"user {COUNTER}\ntopic write {OWN}\n"
            "topic write langson/v1/tam_thanh/main/status\n") in acl
    assert "topic write" not in acl.split(f"user {DASHBOARD}\n")[1].split("\n\n")[0]
    # Generating again keeps what counters were given; --rotate replaces every password.
    generate(settings, catalogue)
    assert json.loads((folder / CREDENTIALS).read_text())["accounts"] == accounts
    generate(settings, catalogue, rotate=True)
    rotated = json.loads((folder / CREDENTIALS).read_text())["accounts"]
    assert all(rotated[user] != pw for user, pw in accounts.items())


def test_password_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    """Same PBKDF2 parameters: with mosquitto_passwd's salt we get its very line."""
    binary = shutil.which("mosquitto_passwd")
    assert binary, "mosquitto_passwd missing: apt-get install -y mosquitto"
    path = tmp_path / "passwd"
    subprocess.run([binary, "-c", "-b", str(path), "alice", "s3cret"], check=True)
    line = path.read_text().strip()
    salt = line.split("$")[3]
    assert line == "alice:" + hash_password("s3cret", base64.b64decode(salt))


def test_wrong_password_and_anonymous_are_refused(
    settings: Settings, broker: int, clients: list[Client]
) -> None:
    for username, pw in ((COUNTER, "not-the-password"), (None, None),
                         ("no-such-account", "x")):
        client = connect(broker, username, pw, expect_ok=False)
        clients.append(client)
        assert client.connack in ("Not authorized", "Bad user name or password"), username
    # MQTT 3.1.1 as well (the counters' and collector's protocol).
    old = connect(broker, COUNTER, "wrong", protocol=mqtt.MQTTv311, expect_ok=False)
    clients.append(old)
    assert old.connack == "Not authorized"
    clients.append(connect(broker, COUNTER, password(settings, COUNTER)))


def test_a_counter_cannot_publish_for_another_gate_and_nothing_reaches_the_store(
    settings: Settings, broker: int, processes: Processes, clients: list[Client]
) -> None:
    collector = processes.start("ingest.collector")
    store = Store.from_settings(settings)
    wait_until(lambda: stored(store)[1] == 0, 15, "the collector to create the store")
    wait_subscribed(collector)
    wait_until(lambda: b"connected to" in collector.log_path.read_bytes(), 15,
               "the collector to log in with its account")
    now = utc_now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    counter = connect(broker, COUNTER, password(settings, COUNTER))
    clients.append(counter)
    assert counter.publish(OWN, native(1, now, 5, 1, device=COUNTER)) == "Success"
    # A faked crowd at another gate, even with that gate's device id in the payload.
    fake = native(7, now, 900, 0, device="lsn-den_ky_cung-main")
    assert counter.publish(OTHER, fake) == "Not authorized"
    assert counter.publish("langson/v1/tam_thanh/main/../../den_ky_cung/main/counts",
                           fake) == "Not authorized"
    # MQTT 3.1.1 cannot tell the publisher (PUBACK says success): the broker drops it.
    old = connect(broker, COUNTER, password(settings, COUNTER), protocol=mqtt.MQTTv311,
                  client_id="tam-thanh-311")
    clients.append(old)
    assert old.publish(OTHER, fake) == "Success"
    # Read-only accounts may not publish at all.
    for account in (DASHBOARD, COLLECTOR):
        reader = connect(broker, account, password(settings, account))
        clients.append(reader)
        assert reader.publish(OWN, native(8, now, 900, 0, device=COUNTER)) == "Not authorized"
    # The counter's next reading is the marker: once it is stored, everything sent before
    # it has been through the collector.
    assert counter.publish(OWN, native(2, now + timedelta(minutes=1), 3, 0,
                                       device=COUNTER)) == "Success"
    wait_until(lambda: len(stored(store)[0]) >= 2, 15, "the counter's own readings")
    devices, quarantined = stored(store)
    assert devices == [COUNTER, COUNTER] and quarantined == 0
    assert store.readings()["count_in"].sum() == 8
    assert collector.poll() is None


def test_the_collector_with_a_wrong_password_logs_it_and_keeps_trying(
    settings: Settings, broker: int, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISITORFLOW_MQTT__USERNAME", COLLECTOR)
    monkeypatch.setenv("VISITORFLOW_MQTT__PASSWORD", "wrong")
    collector = processes.start("ingest.collector")
    wait_until(lambda: b"broker refused the connection" in collector.log_path.read_bytes(), 15,
               "the collector to report the refused login")
    log = collector.log_path.read_text()
    assert "Not authorized" in log and "Traceback" not in log
    assert "wrong" not in log  # the password is never logged
    assert collector.poll() is None  # still running, retrying


@pytest.fixture
def tls_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """TLS on, on a free port, with a CA and server certificate made for this test."""
    monkeypatch.setenv("VISITORFLOW_MQTT__TLS", "true")
    monkeypatch.setenv("VISITORFLOW_MQTT__TLS_PORT", str(free_port()))
    write_tls_files(settings.mqtt.secrets_dir / "tls", ["localhost", "127.0.0.1"])
    get_settings.cache_clear()
    return get_settings()


def test_tls_listener_needs_the_ca_and_carries_the_pipeline(
    tls_settings: Settings, tmp_path: Path, processes: Processes, clients: list[Client]
) -> None:
    settings = tls_settings
    broker = start_broker(tmp_path / "broker", settings.mqtt.port, settings=settings)
    try:
        tls_port, ca = settings.mqtt.tls_port, settings.mqtt.secrets_dir / "tls" / "ca.crt"
        store = Store.from_settings(settings)
        # The collector reads its account and the CA from the settings: it uses TLS.
        collector = processes.start("ingest.collector")
        wait_until(lambda: f"connected to 127.0.0.1:{tls_port}".encode()
                   in collector.log_path.read_bytes(), 15, "the collector over TLS")
        now = utc_now().replace(second=0, microsecond=0) - timedelta(minutes=5)
        # Mosquitto's own client, as the counter, trusting our CA.
        pub = shutil.which("mosquitto_pub") or "mosquitto_pub"
        base = [pub, "-h", "127.0.0.1", "-p", str(tls_port), "-u", COUNTER,
                "-P", password(settings, COUNTER), "-q", "1", "-t", OWN, "-s"]
        ok = subprocess.run([*base, "--cafile", str(ca)], capture_output=True, timeout=10,
                            input=native(1, now, 4, 0, device=COUNTER))
        assert ok.returncode == 0, ok.stderr
        # Without our CA the server's certificate is not trusted: no connection.
        untrusted = subprocess.run([*base, "--capath", "/etc/ssl/certs"], capture_output=True,
                                   timeout=10, input=native(2, now, 9, 0, device=COUNTER))
        assert untrusted.returncode != 0
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            connect(tls_port, COUNTER, password(settings, COUNTER), tls_ca=Path(
                "/etc/ssl/certs/ca-certificates.crt"))
        # Our client helper, as the collector would configure it, gets in with the CA.
        paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        assert configure_client(paho, settings, COUNTER) == ("127.0.0.1", tls_port)
        helper = Client(paho)
        paho.on_connect = lambda *a: helper.connected.set()
        paho.on_publish = lambda c, u, mid, rc, p: helper.acks.__setitem__(mid, str(rc))
        paho.connect("127.0.0.1", tls_port)
        paho.loop_start()
        clients.append(helper)
        assert helper.connected.wait(5)
        assert helper.publish(OWN, native(3, now + timedelta(minutes=1), 2, 0,
                                          device=COUNTER)) == "Success"
        wait_until(lambda: len(stored(store)[0]) == 2, 15, "both TLS readings stored")
        assert store.readings()["count_in"].sum() == 6  # 4 + 2; the untrusted 9 never came
    finally:
        broker.terminate()
        broker.wait(10)


def test_a_refused_subscription_is_logged_with_its_filter(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Unit test (Mosquitto 2.0 grants every subscription and filters deliveries, so no
    real broker refuses one): a SUBACK failure names the filter; the collector carries on."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from ingest.collector import Collector

    collector = Collector(settings, load_catalogue(settings.catalogue_path),
                          Store.from_settings(settings))
    filters = collector.topic_filters()
    codes = [ReasonCode(PacketTypes.SUBACK, identifier=1) for _ in filters]
    codes[1] = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    with caplog.at_level("ERROR", logger="collector"):
        collector._on_subscribe(collector.client, None, 1, codes, None)
    assert [r.getMessage() for r in caplog.records if r.name == "collector"] == [
        f"broker refused the subscription to {filters[1]}: Not authorized "
        "(the ACL of the 'collector' account)"]


def test_the_broker_launcher_stops_mosquitto_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    """`python -m ingest.broker` under systemd, Docker or `kill`: SIGTERM to the launcher
    must stop its Mosquitto too and free the port (it used to leave Mosquitto running)."""
    launcher = subprocess.Popen(
        [sys.executable, "-m", "ingest.broker", "--port", str(settings.mqtt.port),
         "--run-dir", str(tmp_path / "broker")],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        wait_for_port("127.0.0.1", settings.mqtt.port)
        children = psutil.Process(launcher.pid).children(recursive=True)
        assert [c.name() for c in children] == ["mosquitto"]
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(10) == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", settings.mqtt.port))  # the port is free again
    finally:  # whatever failed, leave no broker behind
        if launcher.poll() is None:
            launcher.kill()
        for child in children:
            if child.is_running():
                child.kill()

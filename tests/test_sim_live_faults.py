"""A live run with every fault switched on, through a real Mosquitto and the real collector
(separate processes), one gate speaking TTN v3: the store equals the simulator's truth except
for what the faults make unrecoverable, and that part is accounted for to the person."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ingest.sim_counters import read_truth_log
from ingest.sim_faults import LOST
from ingest.sim_ttn import NETWORK_DELAY
from visitorflow.catalogue import load_catalogue
from visitorflow.contract import PayloadError, parse_counts
from visitorflow.formats_ttn import dev_eui_index, parse_uplink
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store, StoreError

from .conftest import Processes, wait_subscribed, wait_until

pytestmark = pytest.mark.e2e

TTN_GATE = "lsn-huu_lien-reserve_gate"  # the only gate of huu_lien
TTN_EUI = "70B3D57ED0001234"
FAULTS = {
    "DROP_RATE": "0.02",
    "DUPLICATE_RATE": "0.03",
    "REORDER_RATE": "0.03",
    "MALFORMED_RATE": "0.01",
    "OFFLINE_PER_DAY": "3",
    "OFFLINE_HOURS_MIN": "0.25",
    "OFFLINE_HOURS_MAX": "1.5",
    "OFFLINE_BUFFER": "40",
    "RESET_PER_DAY": "3",
    "SKEW_PER_DAY": "3",
    "SKEW_S_MAX": "90",
    "SKEW_HOURS": "1",
    "TTN_GATES": json.dumps([TTN_GATE]),
}
KEY = ["device_id", "seq", "ts_utc", "count_in", "count_out", "in_total", "out_total"]


def stored_rows(store: Store) -> int:
    try:
        return len(store.readings())
    except StoreError:
        return -1


def catalogue_with_lorawan_gate(settings: Settings, path: Path) -> Path:
    """The catalogue, with a DevEUI on the gate that speaks TTN v3 (how the collector
    finds a LoRaWAN counter's gate, visitorflow/formats_ttn.py)."""
    raw = yaml.safe_load(settings.catalogue_path.read_text(encoding="utf-8"))
    for site in raw["sites"]:
        for gate in site["gates"]:
            if gate["counter_id"] == TTN_GATE:
                gate["dev_eui"] = TTN_EUI
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_live_run_with_faults_matches_truth(
    settings: Settings, broker: int, processes: Processes, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in FAULTS.items():
        monkeypatch.setenv(f"VISITORFLOW_SIMULATOR__FAULTS__{name}", value)
    monkeypatch.setenv("VISITORFLOW_CATALOGUE_PATH", str(
        catalogue_with_lorawan_gate(settings, tmp_path / "sites.yaml")))
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.simulator.faults.ttn_gates == [TTN_GATE]
    # The simulated LoRaWAN counter reports every simulator interval (60 s).
    collector = processes.start("ingest.collector", "--lorawan-interval-s", "60")
    store = Store.from_settings(settings)
    wait_until(lambda: stored_rows(store) == 0, 15, "the collector to create the store")
    wait_subscribed(collector)
    truth_dir, truth_log = tmp_path / "truth", tmp_path / "acked.jsonl"
    sim = processes.start(
        "ingest.simulator", "--start", "2026-02-21T08:00+07:00", "--minutes", "240",
        "--speed", "max", "--truth-log", str(truth_log), "--truth-dir", str(truth_dir),
    )
    assert sim.wait(120) == 0, sim.log_path.read_text()

    clean = pd.read_parquet(truth_dir / "readings.parquet")
    faults = pd.read_parquet(truth_dir / "faults.parquet")
    minutes = pd.read_parquet(truth_dir / "site_minutes.parquet")
    kinds = set(faults.kind)
    assert {"drop", "duplicate", "reorder", "malformed", "offline", "late", "reset",
            "skew"} <= kinds, kinds
    assert len(clean) == 23 * 240

    # What the store must hold: every clean reading except the lost ones; skewed ones under
    # their skewed time; the LoRaWAN gate's under its DevEUI, stamped by the network server.
    key = ["device_id", "seq", "ts_utc"]
    lost = faults[faults.kind.isin(LOST)][key].drop_duplicates()
    skew = faults[faults.kind == "skew"][[*key, "detail"]]
    expected = clean.merge(lost, on=key, how="left", indicator=True)
    unrecoverable = expected[expected._merge == "both"]
    expected = expected[expected._merge == "left_only"].drop(columns="_merge")
    expected = expected.merge(skew, on=key, how="left")
    shift = pd.to_timedelta(expected.detail.fillna("0").astype(int), unit="s")
    expected["ts_utc"] = expected.ts_utc + shift
    ttn = expected.device_id == TTN_GATE
    expected.loc[ttn, "ts_utc"] = expected.ts_utc[ttn] + NETWORK_DELAY
    expected.loc[ttn, "device_id"] = TTN_EUI
    assert len(unrecoverable) > 0 and skew.shape[0] > 0 and ttn.sum() > 200

    wait_until(lambda: stored_rows(store) >= len(expected), 60,
               f"{len(expected)} readings to be stored")
    stored = store.readings()
    as_set = lambda f: set(map(tuple, f[KEY].astype(str).to_numpy()))  # noqa: E731
    missing, extra = as_set(expected) - as_set(stored), as_set(stored) - as_set(expected)
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])

    # Every corrupted message the broker took is in quarantine, nothing else.
    catalogue = load_catalogue(settings.catalogue_path)
    broken = 0
    for message in read_truth_log(truth_log):
        try:
            if message["topic"].startswith("v3/"):
                parse_uplink(message["topic"], message["payload"].encode(),
                             dev_eui_index(catalogue), 60)
            else:
                parse_counts(message["topic"], message["payload"].encode(), catalogue,
                             settings.mqtt.topic_prefix)
        except PayloadError:
            broken += 1
    assert broken > 0
    wait_until(lambda: store.table_counts()["quarantine"] == broken, 20,
               f"{broken} malformed messages quarantined")

    # People: the store's arrivals are the truth minus those in lost readings, to the person.
    truth_in = minutes.arrivals.sum()
    lost_in = unrecoverable.count_in.sum()
    assert stored.count_in.sum() == truth_in - lost_in
    print(f"truth arrivals {truth_in}, stored {stored.count_in.sum()}, unrecoverable "
          f"{lost_in} in {len(unrecoverable)} lost readings "
          f"({faults.kind.value_counts().to_dict()})")
    # The live run stored the simulated Mẫu Sơn temperature of its day (24 hours).
    temps = store.temperature("mau_son", datetime(2026, 2, 20, 17), datetime(2026, 2, 21, 17),
                              source="simulated")
    assert len(temps) == 24
    # The outages were announced: the collector saw gates go offline (status changes are
    # upserted, so count them in the broker-acknowledged log of the faults instead).
    assert (faults.kind == "offline").sum() >= 1

"""Replay mode: a CSV of historical counts published over a real broker to the real
collector, and the file layouts it reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ingest.sim_replay import ReplayError, load_replay
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError

from .conftest import Processes, wait_subscribed, wait_until

EXPORT = """ts,site_id,gate_id,in,out
2026-02-21T08:00+07:00,tam_thanh,main,12,3
2026-02-21T08:15+07:00,tam_thanh,main,20,9
2026-02-21T08:30+07:00,tam_thanh,main,7,15
2026-02-21T08:00+07:00,ky_lua,market,40,10
2026-02-21T08:15+07:00,ky_lua,market,55,30
2026-02-21T08:00+07:00,ky_lua,north,4,1
2026-02-21T08:15+07:00,ky_lua,north,6,2
"""


def test_prophet_layout_needs_a_site_and_invents_departures_by_dwell(
    settings: Settings, tmp_path: Path
) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    path = tmp_path / "ds_y.csv"
    path.write_text("ds,y\n" + "".join(f"2026-02-21 {h:02d}:00:00,{h * 10}\n"
                                        for h in range(7, 12)), encoding="utf-8")
    with pytest.raises(ReplayError, match="--site"):
        load_replay(path, catalogue, settings)
    rows = load_replay(path, catalogue, settings, "nhi_thanh")  # dwell 60 min
    assert list(rows.interval_s.unique()) == [3600]
    assert list(rows.count_in) == [70, 80, 90, 100, 110]
    assert list(rows.count_out) == [0, 70, 80, 90, 100]  # one hour later
    # Local times (no offset) are Asia/Ho_Chi_Minh; a reading ends at start + period.
    assert rows.end_utc.iloc[0].to_pydatetime() == datetime(2026, 2, 21, 1, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("when,count\n1,2\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="needs columns"):
        load_replay(bad, catalogue, settings)


@pytest.mark.e2e
def test_replay_through_broker_and_collector(
    settings: Settings, broker: int, processes: Processes, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    collector = processes.start("ingest.collector")
    store = Store.from_settings(settings)

    def stored() -> int:
        try:
            return store.table_counts()["readings"]
        except StoreError:
            return -1

    wait_until(lambda: stored() == 0, 15, "the collector to create the store")
    wait_subscribed(collector)
    sim = processes.start("ingest.simulator", "--mode", "replay", "--replay", str(path),
                          "--truth-log", str(tmp_path / "acked.jsonl"))
    assert sim.wait(60) == 0, sim.log_path.read_text()
    wait_until(lambda: stored() == 7, 20, "the 7 replayed readings")
    readings = store.readings().sort_values(["site_id", "gate_id", "ts_utc"])
    assert list(readings.interval_s.unique()) == [900]
    tam = readings[readings.site_id == "tam_thanh"]
    assert list(tam.count_in) == [12, 20, 7] and list(tam.count_out) == [3, 9, 15]
    assert tam.ts_utc.iloc[0].to_pydatetime() == datetime(2026, 2, 21, 1, 15)
    assert list(tam.in_total) == [12, 32, 39]
    assert readings.count_in.sum() == 144

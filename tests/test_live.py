"""Load levels and the live state of the sites, as the dashboard and notebooks see it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from visitorflow.catalogue import load_catalogue
from visitorflow.clock import local_day_start_utc
from visitorflow.contract import GateStatus, Reading
from visitorflow.live import live_status
from visitorflow.load import LoadLevel, load_level
from visitorflow.settings import LoadThresholds, Settings
from visitorflow.store import Store

NOW = datetime(2026, 2, 18, 3, 30)  # 10:30 local, a Wednesday


@pytest.mark.parametrize(
    ("occupancy", "level"),
    [(0, "normal"), (59, "normal"), (60, "busy"), (84, "busy"), (85, "crowded"),
     (99, "crowded"), (100, "overload"), (250, "overload")],
)
def test_load_level_thresholds(occupancy: int, level: str) -> None:
    assert load_level(occupancy, 100, LoadThresholds()) == LoadLevel(level)


def test_silence_is_no_data_and_never_zero() -> None:
    assert load_level(0, 100, LoadThresholds(), has_data=False) == LoadLevel.NO_DATA
    assert load_level(0, 100, LoadThresholds(), is_open=False) == LoadLevel.CLOSED
    assert load_level(120, 100, LoadThresholds(), is_open=False) == LoadLevel.OVERLOAD


def test_local_day_starts_at_local_midnight(settings: Settings) -> None:
    assert local_day_start_utc(NOW, settings.tz) == datetime(2026, 2, 17, 17, 0)
    # 23:30 UTC is already the next day in Lạng Sơn (UTC+7)
    assert local_day_start_utc(datetime(2026, 2, 18, 23, 30), settings.tz) == datetime(
        2026, 2, 18, 17, 0)


def test_live_status_levels_and_silent_gates(settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    store = Store.from_settings(settings)
    store.initialise()
    ts = NOW - timedelta(minutes=1)
    rows = [
        Reading("tam_thanh", "main", "lsn-tam_thanh-main", 1, ts, 60, 400, 20),  # 380/350
        Reading("nhi_thanh", "main", "lsn-nhi_thanh-main", 1, ts, 60, 160, 0),  # 160/250
        # Kỳ Lừa: one of three gates reported, long ago
        Reading("ky_lua", "north", "lsn-ky_lua-north", 1, NOW - timedelta(hours=2), 60, 5, 0),
        Reading("chua_tien", "main", "lsn-chua_tien-main", 1, ts, 60, 10, 0),
    ]
    store.write_batch(rows, NOW, statuses=[(GateStatus("chua_tien", "main", "offline"), NOW)])
    status = live_status(store, catalogue, settings, NOW, language="zh").set_index("site_id")
    assert len(status) == len(catalogue.sites)
    assert status.at["tam_thanh", "level"] == "overload"
    assert status.at["tam_thanh", "occupancy"] == 380
    assert status.at["tam_thanh", "name"] == "三清洞"
    assert status.at["nhi_thanh", "level"] == "busy"
    assert status.at["ky_lua", "level"] == "no_data"  # all gates silent
    assert pd.isna(status.at["ky_lua", "occupancy"])  # silence is not 0 visitors
    assert status.at["chua_tien", "level"] == "no_data"  # its last will said offline
    assert status.at["mau_son", "level"] == "no_data"  # never reported
    assert status.at["tam_thanh", "data_age_s"] == 60

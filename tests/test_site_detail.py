"""One site in detail (visitorflow/site_detail.py) from a real store: today against the
forecast band, gate by gate, device health with recovered readings, the last 30 days."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from visitorflow.catalogue import load_catalogue
from visitorflow.contract import Reading
from visitorflow.settings import Settings
from visitorflow.site_detail import site_detail
from visitorflow.store import Store

# 10:00:30 in Lạng Sơn (UTC+7) on 21 Nov 2026.
NOW = datetime(2026, 11, 21, 3, 0, 30)


def _reading(seq: int, ts: datetime, cin: int, cout: int, total_in: int) -> Reading:
    return Reading("tam_thanh", "main", "lsn-tam_thanh-main", seq, ts, 60, cin, cout,
                   total_in, 0, 80.0 - seq)


@pytest.fixture
def store(settings: Settings) -> Store:
    store = Store.from_settings(settings)
    store.initialise()
    # 08:00 local: 100 in; 09:00: 50 in, 30 out (seq 2, 3 lost: their 20 people recovered
    # from the totals); 5 days ago: 70 in.
    store.write_batch([_reading(0, datetime(2026, 11, 21, 1, 1), 100, 0, 100)], NOW, heal=True)
    store.write_batch([_reading(1, datetime(2026, 11, 21, 2, 1), 50, 30, 150)], NOW, heal=True)
    store.write_batch([_reading(4, datetime(2026, 11, 21, 2, 10), 0, 0, 170)], NOW, heal=True)
    store.write_batch([_reading(0, datetime(2026, 11, 16, 2, 1), 70, 0, 70)], NOW)
    hours = [datetime(2026, 11, 20, 17) + timedelta(hours=h) for h in range(24)]
    store.write_forecast_run(
        {"run_id": "r1", "created_at_utc": NOW, "history_end_utc": NOW, "settings_json": "{}",
         "sites_ok": 1, "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame([{"site_id": "tam_thanh", "status": "ok", "message": None, "fit_s": 1.0,
                       "regressors": "", "backtest_mae_ratio": 0.8}]),
        pd.DataFrame({"site_id": "tam_thanh", "ts_utc": hours, "is_open": True,
                      "arrivals": 60.0, "arrivals_lower": 40.0, "arrivals_upper": 90.0,
                      "occupancy": 120.0, "occupancy_upper": 200.0, "capacity": 350,
                      "p_overload": 0.05}),
        pd.DataFrame(),
    )
    return store


def test_today_against_the_forecast_band(settings: Settings, store: Store) -> None:
    detail = site_detail(store, load_catalogue(settings.catalogue_path), settings, "tam_thanh",
                         NOW)
    today = detail.today
    assert len(today) == 24 and today.index[0] == pd.Timestamp("2026-11-21 00:00")
    assert today.loc[pd.Timestamp("2026-11-21 08:00"), "arrivals"] == 100
    # 09:00 holds 50 in and the 20 recovered from the lost readings.
    assert today.loc[pd.Timestamp("2026-11-21 09:00"), "arrivals"] == 70
    assert today.loc[pd.Timestamp("2026-11-21 09:00"), "occupancy"] == 140
    assert today.loc[pd.Timestamp("2026-11-21 10:00"), "occupancy"] == 140  # now
    assert pd.isna(today.loc[pd.Timestamp("2026-11-21 11:00"), "arrivals"])  # not yet
    assert today.loc[pd.Timestamp("2026-11-21 11:00"), "forecast_upper"] == 90


def test_gates_devices_and_the_last_30_days(settings: Settings, store: Store) -> None:
    detail = site_detail(store, load_catalogue(settings.catalogue_path), settings, "tam_thanh",
                         NOW)
    assert detail.gates.loc[pd.Timestamp("2026-11-21 08:00"), "main"] == 100
    device = detail.devices.set_index("gate_id").loc["main"]
    assert device["counter_id"] == "lsn-tam_thanh-main"
    assert device["recovered_readings"] == 2 and device["lost_readings"] == 0
    assert device["last_seen_local"] == datetime(2026, 11, 21, 9, 10)
    assert device["battery_pct"] == 76.0
    days = detail.days.set_index("day_local")["arrivals"]
    assert days.to_dict() == {pd.Timestamp("2026-11-16").date(): 70}

"""Shared by the redirect tests: a forecast run written to a real store from a few columns."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from visitorflow.catalogue import Catalogue
from visitorflow.store import Store


def write_hourly_run(
    store: Store, catalogue: Catalogue, hourly: pd.DataFrame, created_at_utc: datetime,
    run_id: str = "r1",
) -> None:
    """One successful forecast run of the sites in `hourly` (site_id, ts_utc, occupancy,
    p_overload); the columns the redirect advice does not read get plain values."""
    sites = sorted(set(hourly["site_id"]))
    hourly = hourly.assign(
        is_open=True, arrivals=10.0, arrivals_lower=5.0, arrivals_upper=20.0,
        occupancy_upper=hourly["occupancy"] * 1.2,
        capacity=[catalogue.site(s).capacity for s in hourly["site_id"]],
    )
    store.write_forecast_run(
        {"run_id": run_id, "created_at_utc": created_at_utc, "history_end_utc": created_at_utc,
         "settings_json": "{}", "sites_ok": len(sites), "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame([{"site_id": s, "status": "ok", "message": None, "fit_s": 1.0,
                       "regressors": "", "backtest_mae_ratio": 0.8} for s in sites]),
        hourly, pd.DataFrame(),
    )

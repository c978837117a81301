"""Hand-made forecast frames (the columns of Store.latest_forecast) for the planner's tests."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from visitorflow.clock import to_utc

TZ = "Asia/Ho_Chi_Minh"
CAPACITY = {"tam_thanh": 350, "den_ky_cung": 300}


def hourly_frame(first_day: date, days: int, peaks: dict[str, tuple[datetime, float]],
                 ) -> pd.DataFrame:
    """An hourly forecast (Store.latest_forecast columns) from local midnight of first_day:
    open 07–18 local with 20 arrivals an hour and occupancy 100 at 15:00 every day, except a
    peak per site at a local hour: (that hour, occupancy), with p_overload = occupancy/400."""
    local = pd.date_range(pd.Timestamp(first_day), periods=days * 24, freq="h")
    rows = []
    for site_id, (peak_at, peak_occ) in peaks.items():
        open_ = (local.hour >= 7) & (local.hour < 18)
        occupancy = np.where(local.hour == 15, 100.0, np.where(open_, 50.0, 0.0))
        occupancy[local == pd.Timestamp(peak_at)] = peak_occ
        rows.append(pd.DataFrame({
            "site_id": site_id,
            "ts_utc": to_utc(pd.Series(local), TZ).to_numpy(),
            "is_open": open_, "arrivals": np.where(open_, 20.0, 0.0),
            "arrivals_lower": 0.0, "arrivals_upper": 0.0,
            "occupancy": occupancy, "occupancy_upper": occupancy * 1.3,
            "capacity": CAPACITY[site_id], "p_overload": np.clip(occupancy / 400, 0, 1),
        }))
    return pd.concat(rows, ignore_index=True)


def daily_frame(first_day: date, days: int, peaks: dict[str, tuple[date, float]]) -> pd.DataFrame:
    """A daily forecast: 220 arrivals a day, except a peak day per site."""
    rows = []
    for site_id, (peak_day, arrivals) in peaks.items():
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            value = arrivals if day == peak_day else 220.0
            rows.append({"site_id": site_id, "day_local": day, "arrivals": value,
                         "arrivals_lower": 0.8 * value, "arrivals_upper": 1.2 * value,
                         "festival": None})
    return pd.DataFrame(rows)

"""A small synthetic hourly history for tests and benchmarks of the forecasting module:
opening hours, a weekday and a weekend daily profile, the site's festivals and national
holidays as bumps, and for the temperature sites a winter with cold snaps that draw crowds.

Shaped like the model, so cheaper and kinder than the simulator's backfill
(`python -m ingest.simulator --mode backfill`, see bench/results.md, "Histories"); it writes
through the same path as the collector (Store.write_batch with contract Readings), so the
forecasting code reads it exactly as it reads real counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from forecasting.calendar import site_festival_days
from forecasting.features import open_mask
from visitorflow.catalogue import Catalogue, Site
from visitorflow.clock import to_utc
from visitorflow.contract import Reading
from visitorflow.festivals import national_holidays
from visitorflow.store import Store

TZ = "Asia/Ho_Chi_Minh"


def synthetic_temperature(site_id: str, ds_local: pd.Series, seed: int) -> np.ndarray:
    """°C per local hour: a seasonal cycle (cold Jan, warm Jul), a daily cycle and cold snaps
    of a few days at a time in winter."""
    rng = np.random.default_rng(seed + 7)
    ds = pd.to_datetime(ds_local)
    doy = ds.dt.day_of_year.to_numpy()
    hour = ds.dt.hour.to_numpy()
    temp = 15 - 9 * np.cos(2 * np.pi * (doy - 20) / 365.25) + 3 * np.sin(
        2 * np.pi * (hour - 9) / 24
    )
    days = ds.dt.normalize()
    unique_days = days.unique()
    snap = pd.Series(0.0, index=unique_days)
    for i, day in enumerate(unique_days):
        if day.month in (11, 12, 1, 2) and rng.random() < 0.06:
            snap.iloc[i: i + 4] += 9.0  # a cold snap lasting about four days
    return temp - snap.reindex(days).to_numpy()


def synthetic_arrivals(
    site: Site, start_local: datetime, days: int, seed: int = 1,
    temperature: np.ndarray | None = None,
) -> pd.DataFrame:
    """Hourly arrivals for one site: ds (local hour start), arrivals (people/hour)."""
    rng = np.random.default_rng(seed + sum(map(ord, site.id)))
    ds = pd.Series(pd.date_range(start_local, periods=days * 24, freq="h"))
    hour = ds.dt.hour.to_numpy() + 0.5
    weekend = ds.dt.day_of_week.to_numpy() >= 5
    # Weekdays peak mid-morning, weekends mid-afternoon and broader.
    profile = np.where(
        weekend,
        np.exp(-0.5 * ((hour - 14.0) / 3.0) ** 2),
        np.exp(-0.5 * ((hour - 10.0) / 2.0) ** 2),
    )
    # Weekend peak occupancy about half of capacity: arrivals/hour × dwell/60 ≈ occupancy.
    peak = 0.5 * site.capacity / (site.dwell_min / 60.0)
    level = peak * np.where(weekend, 1.0, 0.55) * profile
    level *= 1 + 0.15 * np.sin(2 * np.pi * ds.dt.day_of_year.to_numpy() / 365.25)
    day = ds.dt.date
    years = sorted({d.year for d in day})
    fest = site_festival_days(site.id, years)
    boost = pd.Series(1.0, index=sorted(set(day)))
    for row in fest.itertuples():
        if row.date in boost.index:
            boost[row.date] = max(boost[row.date], 3.5 if row.is_peak else 2.5)
    for d in national_holidays(years)["date"]:
        if d in boost.index:
            boost[d] = max(boost[d], 1.8)
    level *= day.map(boost).to_numpy(float)
    if temperature is not None:
        level *= 1 + 0.35 * np.clip(3.0 - temperature, 0, None)
    level[~open_mask(site, ds)] = 0.0
    return pd.DataFrame({"ds": ds, "arrivals": rng.poisson(level).astype(float)})


def write_synthetic_history(
    store: Store,
    catalogue: Catalogue,
    site_ids: Iterable[str],
    end_local: datetime,
    days: int,
    seed: int = 1,
    temperature_sites: Iterable[str] = ("mau_son",),
) -> pd.DataFrame:
    """Write `days` of hourly readings ending at local midnight `end_local` for the sites (one
    reading per hour on each site's first gate) and, for `temperature_sites`, hourly
    temperatures with source 'simulated'. Returns the arrivals written (site_id, ds, arrivals).
    """
    store.initialise()
    start_local = (end_local - timedelta(days=days)).replace(tzinfo=None)
    frames = []
    temperature_sites = set(temperature_sites)
    for site_id in site_ids:
        site = catalogue.site(site_id)
        ds = pd.Series(pd.date_range(start_local, periods=days * 24, freq="h"))
        temp = None
        if site_id in temperature_sites:
            temp = synthetic_temperature(site_id, ds, seed)
            ts_utc = to_utc(ds, TZ)
            store.write_temperature(pd.DataFrame({
                "site_id": site_id, "ts_utc": ts_utc.astype("datetime64[us]"),
                "temp_c": temp, "source": "simulated",
            }))
        arrivals = synthetic_arrivals(site, start_local, days, seed, temp)
        frames.append(arrivals.assign(site_id=site_id))
        gate = site.gates[0]
        # A Reading's ts_utc is the END of its interval: the hour starting at ds ends at ds+1h.
        ends = to_utc(arrivals["ds"] + pd.Timedelta(hours=1), TZ)
        lag = max(int(round(site.dwell_min / 60)), 0)
        departures = arrivals["arrivals"].shift(lag, fill_value=0).to_numpy()
        readings = [
            Reading(site_id, gate.id, gate.counter_id, seq, end.to_pydatetime(), 3600, int(a),
                    int(d))
            for seq, (end, a, d) in enumerate(zip(ends, arrivals["arrivals"], departures,
                                                  strict=True))
        ]
        for i in range(0, len(readings), 50_000):
            batch = readings[i: i + 50_000]
            store.write_batch(batch, batch[-1].ts_utc)
    return pd.concat(frames, ignore_index=True)

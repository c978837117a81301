"""Shared by the public page tests: a store at a fixed moment (Saturday 21 Nov 2026, 10:00 in
Lạng Sơn) with live counts and a forecast run, and the public server on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import pandas as pd

from public.server import PublicApp, background_server
from public.status import StatusCache
from tests.conftest import DASHBOARD_LOADS
from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.clock import to_utc
from visitorflow.contract import Reading
from visitorflow.settings import Settings
from visitorflow.store import Store

NOW = datetime(2026, 11, 21, 3, 0)  # naive UTC: 10:00 local, a Saturday
# Forecast occupancy as a share of capacity. Tam Thanh is full until 15:00 today, then quiet;
# Nhị Thanh next door is crowded all day (no room); every other site is quiet.
QUIET_FROM_LOCAL_HOUR = 15
SHARES = {"nhi_thanh": 0.9}
DEFAULT_SHARE = 0.2


def _share(site_id: str, local: datetime) -> float:
    if site_id == "tam_thanh":
        today = local.date() == date(2026, 11, 21)
        return 1.1 if today and local.hour < QUIET_FROM_LOCAL_HOUR else 0.2
    # A little rise through the day, so the live correction of the redirect ranking (which
    # interpolates the forecast at now) and its tie-breaks on predicted share are exercised.
    rise = 0.03 * max(local.hour - 7, 0) + 0.001 * len(site_id)
    return SHARES.get(site_id, DEFAULT_SHARE) + rise


def seed_public_store(settings: Settings) -> Catalogue:
    """Live counts of DASHBOARD_LOADS two minutes before NOW (Tam Thanh 380 of 350: overload)
    and one forecast run for every site, hourly over three local days from midnight."""
    catalogue = load_catalogue(settings.catalogue_path)
    store = Store.from_settings(settings)
    store.initialise()
    at = NOW - timedelta(minutes=2)
    store.write_batch(
        [Reading(site, gate, f"lsn-{site}-{gate}", 1, at, 60, count_in, count_out)
         for site, (gate, count_in, count_out) in DASHBOARD_LOADS.items()],
        NOW,
    )
    midnight = datetime(2026, 11, 21, 0, 0)  # local
    rows = []
    for site in catalogue.sites:
        for h in range(72):
            local = midnight + timedelta(hours=h)
            share = _share(site.id, local)
            rows.append({
                "site_id": site.id, "ts_utc": to_utc(local, settings.tz),
                "is_open": site.is_open(local), "arrivals": 10.0, "arrivals_lower": 5.0,
                "arrivals_upper": 20.0, "occupancy": share * site.capacity,
                "occupancy_upper": 1.2 * share * site.capacity, "capacity": site.capacity,
                "p_overload": 0.9 if share > 1 else 0.05,
            })
    store.write_forecast_run(
        {"run_id": "r1", "created_at_utc": NOW - timedelta(hours=1),
         "history_end_utc": NOW - timedelta(hours=1), "settings_json": "{}",
         "sites_ok": len(catalogue.sites), "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame([{"site_id": s.id, "status": "ok", "message": None, "fit_s": 1.0,
                       "regressors": "", "backtest_mae_ratio": 0.8} for s in catalogue.sites]),
        pd.DataFrame(rows), pd.DataFrame(),
    )
    return catalogue


class Clock:
    """A settable clock for the status cache: the test decides what "now" is."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def serve(settings: Settings, clock: Clock) -> Iterator[str]:
    """The public app (the one `python -m public.server` runs) on a free port, in a thread,
    with the given clock; yields its base URL."""
    catalogue = load_catalogue(settings.catalogue_path)
    with background_server(PublicApp(settings, StatusCache(settings, catalogue, clock=clock))
                           ) as url:
        yield url

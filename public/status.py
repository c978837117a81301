"""The public status of a site: what a visitor's phone and the province's feed are told.

One function (`site_status`) builds it, language-neutral and JSON-ready, from the live state
(`visitorflow.live`), the latest hourly forecast and the officials' redirect advice
(`visitorflow.redirect`); the HTML page and the JSON feed both render this one dict, so they
cannot disagree. `StatusCache` reads the store at most once per `public.cache_s` for every
phone at once, opening it read-only and closing it at once (the Store's discipline).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from visitorflow import redirect
from visitorflow.catalogue import Catalogue, Site
from visitorflow.clock import local_day_start_utc, to_local, to_local_aware, utc_now
from visitorflow.limits import effective_limits, thresholds_of
from visitorflow.live import live_status
from visitorflow.load import LoadLevel, level_colour_hex, load_level, severity_rank
from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError, StoreMissing

log = logging.getLogger(__name__)

# The words a visitor reads, from the officials' load levels (same thresholds, plainer words).
PUBLIC_LEVELS: dict[LoadLevel, str] = {
    LoadLevel.NORMAL: "quiet",
    LoadLevel.BUSY: "busy",
    LoadLevel.CROWDED: "crowded",
    LoadLevel.OVERLOAD: "full",
    LoadLevel.CLOSED: "closed",
    LoadLevel.NO_DATA: "no_data",
}
NEARBY_SITES = 2


class StatusUnavailable(RuntimeError):
    """The store could not be read and no earlier status is cached."""


def public_level(level: LoadLevel | str) -> str:
    return PUBLIC_LEVELS[LoadLevel(level)]


def level_colour(level: LoadLevel | str) -> str:
    """The map's colour of a load level as CSS hex."""
    return level_colour_hex(level)


def iso_local(ts_utc: datetime | pd.Timestamp | None, settings: Settings) -> str | None:
    """A naive-UTC time as ISO 8601 in local time with its offset (…+07:00), to the second."""
    if ts_utc is None or pd.isna(ts_utc):
        return None
    local = to_local_aware(pd.Timestamp(ts_utc).to_pydatetime(), settings.tz)
    return local.isoformat(timespec="seconds")


@dataclass
class ProvinceReading:
    """One read of the store shared by every site's status: live state, hourly forecasts,
    thresholds in force and the travel matrix (what the redirect ranking needs)."""

    now_utc: datetime
    live: pd.DataFrame
    forecast: pd.DataFrame  # the latest hourly forecast of every site, as the redirect reads it
    thresholds: pd.DataFrame
    travel: pd.DataFrame | None  # None: the matrix is unusable, no nearby advice
    # each site's status, built on its first request within the cache period
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_province(
    store: Store, catalogue: Catalogue, settings: Settings, now_utc: datetime
) -> ProvinceReading:
    """Everything the public status needs, read once for every site. A store not created
    yet reads as no data, not as an error."""
    try:
        live = live_status(store, catalogue, settings, now_utc)
        forecast = store.latest_forecast(granularity="hourly")
    except StoreMissing:
        live = pd.DataFrame({"site_id": [s.id for s in catalogue.sites]}).assign(
            level=LoadLevel.NO_DATA.value, is_open=False, occupancy=None,
            last_reading_utc=None, data_age_s=None,
        )
        forecast = pd.DataFrame(columns=["site_id", "ts_utc", "is_open", "occupancy",
                                         "p_overload", "run_created_at_utc"])
    try:
        travel = redirect.load_travel_matrix(settings.redirect.matrix_path)
    except redirect.RedirectError as exc:
        log.error("no nearby-site advice: %s", exc)
        travel = None
    return ProvinceReading(
        now_utc, live, forecast.reset_index(drop=True),
        # Capacities and thresholds in force (an admin's overrides included), as the
        # officials' redirect page uses them: the two must never disagree.
        effective_limits(store, catalogue, settings)[1], travel,
    )


def nearby_with_room(
    reading: ProvinceReading, catalogue: Catalogue, settings: Settings, site_id: str
) -> list[dict[str, Any]]:
    """The first two sites with room in the officials' redirect ranking, as ranked (never
    re-ranked), so a visitor and an official are never told different things. The ranking
    is `redirect.rank_alternatives`, the function behind `redirect_options`, fed from this
    one read of the store instead of three reads per site."""
    if reading.travel is None:
        return []
    options = redirect.rank_alternatives(
        site_id, reading.live, reading.forecast, reading.travel, reading.thresholds,
        catalogue, settings, reading.now_utc,
    )
    with_room = options[options["has_room"].astype(bool)].head(NEARBY_SITES)
    nearby = []
    for row in with_room.itertuples(index=False):
        other = catalogue.site(row.site_id)
        nearby.append({
            "site_id": other.id,
            "name": other.name.model_dump(),
            "url": f"{settings.public.base_url}/site/{other.id}",
            "travel_min": int(round(float(row.travel_min))),
            "arrival": iso_local(row.arrival_utc, settings),
            "level": public_level(row.predicted_level),
            "colour": level_colour(row.predicted_level),
        })
    return nearby


def _hour_levels(site: Site, reading: ProvinceReading, settings: Settings) -> pd.DataFrame:
    """The site's open forecast hours, the rest of today and tomorrow (local days), with their
    expected level: predicted occupancy against capacity and the thresholds in force, as the
    redirect advice and the alerts judge them."""
    window_end = local_day_start_utc(reading.now_utc, settings.tz) + timedelta(days=2)
    forecast = reading.forecast
    start = pd.to_datetime(forecast["ts_utc"])
    hours = forecast[(forecast["site_id"] == site.id) & forecast["is_open"].astype(bool)
                     & (start >= pd.Timestamp(reading.now_utc).floor("h"))
                     & (start < pd.Timestamp(window_end))].copy()
    capacity = int(reading.thresholds.at[site.id, "capacity"])
    thresholds = thresholds_of(reading.thresholds, site.id)
    hours["level"] = [
        public_level(load_level(float(occ), capacity, thresholds))
        for occ in hours["occupancy"]
    ]
    return hours


def _best_hour(site: Site, hours: pd.DataFrame, settings: Settings) -> pd.Series | None:
    """The earliest hour with the lowest expected level, among hours after which the site
    stays open for a typical visit (its dwell time): an hour before closing is no advice."""
    def leaves_time(ts: pd.Timestamp) -> bool:
        end = to_local(ts.to_pydatetime(), settings.tz) + timedelta(minutes=site.dwell_min - 1)
        return site.is_open(end)

    usable = hours[[leaves_time(pd.Timestamp(t)) for t in hours["ts_utc"]]]
    if usable.empty:
        return None
    # Calmer is better (visitorflow.load.SEVERITY); the earliest of the calmest wins.
    rank = usable["level"].map(lambda word: severity_rank(_level_of(word)))
    ranked = usable.assign(rank=rank).sort_values(["rank", "ts_utc"])
    return ranked.iloc[0]


def site_status(
    reading: ProvinceReading,
    site: Site,
    settings: Settings,
    nearby: list[dict[str, Any]],
) -> dict[str, Any]:
    """The public status of one site: level now, data age, expected level per open hour for
    the rest of today and tomorrow, the best time to come and two nearby sites with room.
    Occupancy and capacity only if the province shows counts (`public.show_counts`)."""
    live = reading.live.set_index("site_id").loc[site.id]
    level = LoadLevel(live["level"])
    hours = _hour_levels(site, reading, settings)
    best = _best_hour(site, hours, settings)
    show_counts = settings.public.show_counts
    status: dict[str, Any] = {
        "site_id": site.id,
        "name": site.name.model_dump(),
        "url": f"{settings.public.base_url}/site/{site.id}",
        "level": public_level(level),
        "colour": level_colour(level),
        "is_open": bool(live["is_open"]),
        "data_time": iso_local(live["last_reading_utc"], settings),
        "data_age_s": None if pd.isna(live["data_age_s"]) else int(live["data_age_s"]),
    }
    if show_counts:
        has_count = not pd.isna(live["occupancy"])
        status["occupancy"] = int(live["occupancy"]) if has_count else None
        status["capacity"] = site.capacity
    status["hours"] = [
        {"start": iso_local(row.ts_utc, settings), "level": row.level,
         "colour": level_colour(_level_of(row.level))}
        | ({"occupancy": int(round(row.occupancy))} if show_counts else {})
        for row in hours.itertuples(index=False)
    ]
    status["best_time"] = None if best is None else {
        "start": iso_local(best["ts_utc"], settings),
        "end": iso_local(pd.Timestamp(best["ts_utc"]) + timedelta(hours=1), settings),
        "level": best["level"],
    }
    run_time = hours["run_created_at_utc"].max() if len(hours) else None
    status["forecast_time"] = iso_local(run_time, settings)
    status["nearby"] = nearby
    status["generated"] = iso_local(reading.now_utc, settings)
    return status


def _level_of(word: str) -> LoadLevel:
    return next(level for level, public in PUBLIC_LEVELS.items() if public == word)


class StatusCache:
    """Every site's public status, read from the store at most once per `public.cache_s`
    whatever the number of phones. If the store is briefly unreadable (held lock), the last
    status is served with its true data age; with none yet, StatusUnavailable."""

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.store = Store.from_settings(settings)
        self.clock = clock
        self._lock = threading.Lock()
        self._reading: ProvinceReading | None = None
        self._read_at = 0.0

    def _current(self) -> ProvinceReading:
        now = self.clock()
        fresh = self._reading is not None and (
            now.timestamp() - self._read_at < self.settings.public.cache_s
        )
        if not fresh:
            # A failed read waits for the next period too: phones never queue on a held lock.
            self._read_at = now.timestamp()
            try:
                self._reading = read_province(self.store, self.catalogue, self.settings, now)
            except StoreError as exc:
                if self._reading is None:
                    raise StatusUnavailable(str(exc)) from exc
                log.warning("store unreadable, serving the status of %s: %s",
                            self._reading.now_utc, exc)
        return self._reading

    def site(self, site_id: str) -> dict[str, Any]:
        """One site's status; KeyError for a site not in the catalogue."""
        site = self.catalogue.site(site_id)
        with self._lock:
            reading = self._current()
            if site_id not in reading.statuses:
                nearby = nearby_with_room(reading, self.catalogue, self.settings, site_id)
                reading.statuses[site_id] = site_status(reading, site, self.settings, nearby)
            return reading.statuses[site_id]

    def all_sites(self) -> list[dict[str, Any]]:
        return [self.site(site.id) for site in self.catalogue.sites]

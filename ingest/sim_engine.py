"""The simulator's visitor engine: people per gate and minute for any local day, and the
true occupancy they make.

Each (site, local day) is drawn from its own random stream, seeded by (seed, site, day), so a
day is the same whether it is reached by a live run started that morning, an accelerated
demo or a three-year backfill. A visitor who stays past midnight (always-open sites) leaves
on the next day: day D's departures are its own visitors' plus those carried over from D−1,
whose arrivals are recomputed from D−1's stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

from ingest.sim_profiles import MINUTES_PER_DAY, DayContext, ProfileModel, load_profiles
from visitorflow.catalogue import Catalogue, Site
from visitorflow.clock import to_local, to_utc
from visitorflow.settings import PROJECT_ROOT, Settings

MAX_STAY_MIN = MINUTES_PER_DAY - 1  # nobody stays longer, so carry-over spans one day
CLOSING_SPREAD_MIN = 10  # the last visitors file out over the final minutes before closing
DWELL_GAMMA_SHAPE = 2.0  # few very short visits, a long tail of long ones


def profile_model(catalogue: Catalogue, settings: Settings, seed: int) -> ProfileModel:
    """The per-site profiles of the settings' file, for this catalogue and seed."""
    path = settings.simulator.profiles_path
    path = path if path.is_absolute() else PROJECT_ROOT / path
    return ProfileModel(catalogue, settings.tz, seed, load_profiles(path))


@dataclass(frozen=True)
class Component:
    """One stream of arrivals: expected people that day, intraday curve, mean stay."""

    name: str
    expected: float
    curve: np.ndarray  # per local minute, zero where the site is closed
    dwell_min: float


@dataclass
class SiteDay:
    """One site's local day, per gate and minute (minute 0 = local midnight)."""

    site_id: str
    day: date
    arrivals: np.ndarray  # [gates, 1440] people in
    departures: np.ndarray  # [gates, 1440] people out, carry-over from the day before included
    occupancy_start: int  # people inside at local midnight
    expected: dict[str, float]  # expected entries per component, for calibration and tests

    @property
    def site_arrivals(self) -> np.ndarray:
        return self.arrivals.sum(axis=0)

    @property
    def site_departures(self) -> np.ndarray:
        return self.departures.sum(axis=0)

    @cached_property
    def occupancy(self) -> np.ndarray:
        """People inside at the end of each minute."""
        return self.occupancy_start + np.cumsum(self.site_arrivals - self.site_departures)


class Engine:
    """Draws site-days; keeps a small cache so that stepping minute by minute is cheap."""

    def __init__(self, catalogue: Catalogue, tz: ZoneInfo, seed: int,
                 model: ProfileModel | None = None,
                 crowd: dict[tuple[str, date], float] | None = None) -> None:
        self.catalogue = catalogue
        # A scenario's what-if (data/scenarios.yaml): (site, local day) -> factor on every
        # arrival stream's expected people that day. Empty: the profiles as they are.
        self.crowd = dict(crowd or {})
        self.tz = tz
        self.seed = seed
        self.model = model or ProfileModel(catalogue, tz, seed)
        self.sites = list(catalogue.sites)
        self.index = {s.id: i for i, s in enumerate(self.sites)}
        self._raw: dict[tuple[str, date], tuple[np.ndarray, np.ndarray, np.ndarray,
                                                dict[str, float]]] = {}
        self._days: dict[tuple[str, date], SiteDay] = {}
        self._contexts: dict[date, DayContext] = {}

    def context(self, day: date) -> DayContext:
        if day not in self._contexts:
            self._contexts[day] = self.model.calendar.context(day)
        return self._contexts[day]

    def day_start_utc(self, day: date) -> datetime:
        """Naive UTC of local midnight starting `day`."""
        return to_utc(datetime.combine(day, datetime.min.time()), self.tz)

    def gate_weights(self, site: Site) -> np.ndarray:
        weights = self.model.p.sites[site.id].gates
        if not weights:
            return np.full(len(site.gates), 1 / len(site.gates))
        w = np.array([weights.get(g.id, 0.0) for g in site.gates], dtype=float)
        return w / w.sum()

    # -- what a day holds --------------------------------------------------------------------

    def components(self, site: Site, day: date, rng: np.random.Generator) -> list[Component]:
        """The arrival streams of one site-day, with the day's random level drawn."""
        model, ev = self.model, self.model.p.events
        ctx = self.context(day)
        mask = model.open_mask(site, day)
        prof = model.p.sites[site.id]
        # Weather and coach tours move a whole day up or down; the province-wide part is
        # shared by all sites (same seed without the site).
        province = np.random.default_rng([self.seed, day.toordinal(), 99991])
        noise = float(np.exp(province.normal(0, model.p.noise_sigma_province)
                             + rng.normal(0, model.p.noise_sigma_site)))
        out = []
        base_curve = model.curve(prof.shape) * mask
        if site.id == "ky_lua":
            # The walking street is its own stream: keep the market's curve to daytime.
            base_curve = base_curve * (np.arange(MINUTES_PER_DAY) < 18 * 60)
        out.append(Component("base", model.expected_base(site.id, ctx) * noise, base_curve,
                             site.dwell_min))
        if site.id == "ky_lua" and day.weekday() in (4, 5):
            night = float(rng.uniform(ev.walking_street_min, ev.walking_street_max))
            curve = model.curve("walking_street") * mask * (np.arange(MINUTES_PER_DAY) >= 18 * 60)
            out.append(Component("walking_street", night, curve, ev.walking_street_dwell_min))
        kc = ctx.festivals.get("ky_cung_ta_phu")
        if kc is not None and ctx.lunar_day in (22, 27):
            if site.id in ("den_ky_cung", "den_ta_phu"):
                out.append(Component("procession", ev.procession_per_temple,
                                     model.curve("procession") * mask, 45))
            if site.id == "ky_lua" and ctx.lunar_day == 27:
                out.append(Component("firecracker_scramble", ev.firecracker_scramble,
                                     model.curve("scramble") * mask, 60))
        if site.id == "mau_son":
            extra = model.frost_extra(day)
            if extra > 0:
                out.append(Component("frost", extra * noise, model.curve("frost") * mask, 180))
        return out

    def _generate(self, site: Site, day: date) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         dict[str, float]]:
        """Arrivals [G,1440], departures within the day [G,1440], departures spilling into
        the next day [G,1440], expected entries per component."""
        key = (site.id, day)
        if key in self._raw:
            return self._raw[key]
        rng = np.random.default_rng([self.seed, self.index[site.id], day.toordinal()])
        close = self.model.close_minute(site, day)
        arrivals = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
        leave_minutes = []
        expected = {}
        factor = self.crowd.get(key, 1.0)
        for comp in self.components(site, day, rng):
            expected[comp.name] = comp.expected * factor
            total = comp.curve.sum()
            if total <= 0 or comp.expected <= 0:
                continue
            counts = rng.poisson(comp.curve * (comp.expected * factor / total))
            arrivals += counts
            minutes = np.repeat(np.arange(MINUTES_PER_DAY), counts)
            stay = rng.gamma(DWELL_GAMMA_SHAPE, comp.dwell_min / DWELL_GAMMA_SHAPE, len(minutes))
            leave = minutes + np.minimum(np.ceil(stay).astype(np.int64), MAX_STAY_MIN)
            closes = close[minutes]
            late = leave >= closes
            # At closing time the last visitors leave over the final minutes, never before
            # they came in.
            spread = rng.integers(1, CLOSING_SPREAD_MIN + 1, len(minutes))
            leave = np.where(late, np.maximum(closes - spread, minutes), leave)
            leave_minutes.append(leave)
        leave_all = np.concatenate(leave_minutes) if leave_minutes else np.zeros(0, np.int64)
        departures = np.bincount(leave_all, minlength=2 * MINUTES_PER_DAY)
        weights = self.gate_weights(site)
        arr_g = rng.multinomial(arrivals, weights).T
        # Visitors need not leave by the gate they came in by.
        dep_g = rng.multinomial(departures, weights).T
        result = (arr_g, dep_g[:, :MINUTES_PER_DAY], dep_g[:, MINUTES_PER_DAY:], expected)
        self._raw[key] = result
        return result

    def site_day(self, site: Site, day: date) -> SiteDay:
        key = (site.id, day)
        if key not in self._days:
            arr, dep, _, expected = self._generate(site, day)
            _, _, carried, _ = self._generate(site, day - timedelta(days=1))
            self._days[key] = SiteDay(site.id, day, arr, dep + carried, int(carried.sum()),
                                      expected)
            self._forget_before(day - timedelta(days=2))
        return self._days[key]

    def _forget_before(self, day: date) -> None:
        """Drop cached days older than `day` (live runs go on for months)."""
        if len(self._raw) < 8 * len(self.sites):
            return
        self._raw = {k: v for k, v in self._raw.items() if k[1] >= day}
        self._days = {k: v for k, v in self._days.items() if k[1] >= day}

    def local_minute(self, minute_utc: datetime) -> tuple[date, int]:
        """The local day and minute-of-day of a naive-UTC minute."""
        local = to_local(minute_utc, self.tz)
        return local.date(), local.hour * 60 + local.minute

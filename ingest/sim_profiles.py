"""Per-site visitor profiles for the simulator: how many people a site expects on a given
day, how they spread over the day, and the Mẫu Sơn temperature that drives frost rushes.

The parameters and their basis are in `data/sim_profiles.yaml`; opening hours, capacity and
dwell come from the catalogue. Festival dates come from `visitorflow.festivals` (lunar rules,
Vietnamese calendar) and national holidays from `holidays` (VN), computed for any year.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import vnlunar
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from visitorflow.catalogue import Catalogue, Site
from visitorflow.clock import to_utc
from visitorflow.festivals import VIETNAM_UTC_OFFSET_H, festival_days, national_holidays

DEFAULT_PROFILES = Path(__file__).resolve().parent.parent / "data" / "sim_profiles.yaml"
MINUTES_PER_DAY = 24 * 60
TEMPERATURE_SITE = "mau_son"

Bump = tuple[float, float, float]  # centre hour, sd hours, weight


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteProfile(_Strict):
    annual_entries: int = Field(gt=0)
    weekly: str
    monthly: str
    shape: str
    temple: bool = False
    border: bool = False
    long_tong_day: int | None = Field(None, ge=4, le=15)
    gates: dict[str, float] | None = None


class LunarEffects(_Strict):
    pre_tet: float
    tet_day_1: float
    tet_day_1_temple: float
    tet_peak: float
    tet_tail: float
    spring_season: float
    spring_season_month_2: float
    lunar_1_15_temple: float


class FestivalEffects(_Strict):
    long_tong: float
    chua_tien: float
    ky_cung_ta_phu: float
    ky_cung_ta_phu_peak: float
    bac_le: float
    bac_le_peak: float
    national_holiday: float
    national_holiday_border: float


class Events(_Strict):
    walking_street_min: int
    walking_street_max: int
    walking_street_dwell_min: float
    procession_per_temple: int
    firecracker_scramble: int
    frost_threshold_c: float
    frost_per_degree: float
    frost_weekend_factor: float
    frost_max_per_day: int


class TemperatureModel(_Strict):
    annual_mean_c: float
    seasonal_amplitude_c: float
    diurnal_amplitude_c: float
    anomaly_sd_c: float
    anomaly_phi: float = Field(ge=0, lt=1)
    cold_snaps_per_winter: float = Field(ge=0)
    cold_snap_depth_c: tuple[float, float]
    cold_snap_hold_days: tuple[int, int]


class Profiles(_Strict):
    province_share: float = Field(gt=0, le=1)
    reference_year: int
    growth_per_year: float
    noise_sigma_province: float = Field(ge=0)
    noise_sigma_site: float = Field(ge=0)
    weekly: dict[str, tuple[float, float, float, float, float, float, float]]
    monthly: dict[str, tuple[float, ...]]
    lunar: LunarEffects
    festivals: FestivalEffects
    events: Events
    temperature: TemperatureModel
    shapes: dict[str, tuple[Bump, ...]]
    sites: dict[str, SiteProfile]

    @model_validator(mode="after")
    def _keys_exist(self) -> Profiles:
        for site_id, p in self.sites.items():
            for kind, table in (("weekly", self.weekly), ("monthly", self.monthly),
                                ("shape", self.shapes)):
                if getattr(p, kind) not in table:
                    raise ValueError(f"site {site_id}: unknown {kind} {getattr(p, kind)!r}")
        for name, months in self.monthly.items():
            if len(months) != 12:
                raise ValueError(f"monthly {name!r} needs 12 weights")
        return self


@lru_cache(maxsize=4)
def load_profiles(path: Path = DEFAULT_PROFILES) -> Profiles:
    return Profiles.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@lru_cache(maxsize=8192)
def lunar_date(day: date) -> tuple[int, int, bool]:
    """(lunar day, lunar month, leap month?) in the Vietnamese calendar (UTC+7)."""
    lunar = vnlunar.convert_solar_to_lunar(day.day, day.month, day.year, VIETNAM_UTC_OFFSET_H)
    return lunar["day"], lunar["month"], bool(lunar["leap"])


def shape_curve(bumps: tuple[Bump, ...]) -> np.ndarray:
    """Relative arrival intensity for each minute of a local day (not normalised)."""
    hours = (np.arange(MINUTES_PER_DAY) + 0.5) / 60
    curve = np.zeros(MINUTES_PER_DAY)
    for centre, sd, weight in bumps:
        curve += weight * np.exp(-0.5 * ((hours - centre) / sd) ** 2)
    return curve


@dataclass(frozen=True)
class DayContext:
    """What the calendar says about one local date, shared by every site."""

    day: date
    lunar_day: int
    lunar_month: int
    tet_phase: str | None  # pre_tet | tet_day_1 | tet_peak | tet_tail | spring | spring_2
    festivals: dict[str, bool]  # festival id -> peak day? (site-specific ones filtered later)
    festival_sites: dict[str, tuple[str, ...]]
    national_holiday: str | None


class Calendar:
    """Festival and holiday facts per date, computed once per year."""

    def __init__(self) -> None:
        self._years: set[int] = set()
        self._festivals: dict[date, list[tuple[str, bool, tuple[str, ...]]]] = {}
        self._holidays: dict[date, str] = {}

    def _load_year(self, year: int) -> None:
        if year in self._years:
            return
        self._years.add(year)
        for row in festival_days([year]).itertuples(index=False):
            self._festivals.setdefault(row.date, []).append(
                (row.festival_id, bool(row.is_peak), tuple(row.sites))
            )
        for row in national_holidays([year]).itertuples(index=False):
            self._holidays[row.date] = row.name

    def context(self, day: date) -> DayContext:
        self._load_year(day.year)
        lday, lmonth, leap = lunar_date(day)
        phase = None
        if not leap:
            if lmonth == 12 and lday >= 26:
                phase = "pre_tet"
            elif lmonth == 1 and lday == 1:
                phase = "tet_day_1"
            elif lmonth == 1 and lday <= 5:
                phase = "tet_peak"
            elif lmonth == 1 and lday <= 8:
                phase = "tet_tail"
            elif lmonth == 1:
                phase = "spring"
            elif lmonth == 2:
                phase = "spring_2"
        fests = self._festivals.get(day, [])
        holiday = self._holidays.get(day)
        if holiday and ("Lunar New Year" in holiday or phase in ("pre_tet", "tet_day_1",
                                                                 "tet_peak")):
            holiday = None  # Tết is modelled by its lunar phase, not as an ordinary holiday
        return DayContext(
            day=day, lunar_day=lday, lunar_month=lmonth, tet_phase=phase,
            festivals={f: peak for f, peak, _ in fests},
            festival_sites={f: sites for f, _, sites in fests},
            national_holiday=holiday,
        )


class ProfileModel:
    """Expected entries per site and day, intraday shapes, temperatures: deterministic given
    the seed; the random draws around them are the engine's job."""

    def __init__(self, catalogue: Catalogue, tz: ZoneInfo, seed: int,
                 profiles: Profiles | None = None) -> None:
        self.catalogue = catalogue
        self.tz = tz
        self.seed = seed
        self.p = profiles or load_profiles()
        self.calendar = Calendar()
        missing = {s.id for s in catalogue.sites} - set(self.p.sites)
        if missing:
            raise ValueError(f"data/sim_profiles.yaml has no profile for {sorted(missing)}")
        self.site_index = {s.id: i for i, s in enumerate(catalogue.sites)}

    # -- calendar factors -------------------------------------------------------------------

    def long_tong_day(self, site_id: str, year: int) -> int | None:
        """The lunar day of a site's own Lồng Tồng (village by village, 1/4–1/15): the
        profile's sourced day, else one drawn per year from the seed."""
        prof = self.p.sites[site_id]
        if prof.long_tong_day is not None:
            return prof.long_tong_day
        rng = np.random.default_rng([self.seed, year, self.site_index[site_id], 41])
        return int(rng.integers(4, 15))

    def day_factor(self, site_id: str, ctx: DayContext) -> float:
        """Multiplier of a site's base daily entries on one date (before noise and growth)."""
        prof = self.p.sites[site_id]
        lunar, fest = self.p.lunar, self.p.festivals
        weekly = np.array(self.p.weekly[prof.weekly])
        factor = self.p.monthly[prof.monthly][ctx.day.month - 1]
        phase = ctx.tet_phase
        if phase in ("pre_tet", "tet_day_1", "tet_peak", "tet_tail"):
            # The Tết holiday overrides the week's rhythm: every day is a day off.
            if phase == "tet_day_1" and prof.temple:
                factor *= lunar.tet_day_1_temple
            else:
                factor *= getattr(lunar, phase)
        else:
            factor *= weekly[ctx.day.weekday()] / weekly.mean()
            if phase == "spring":
                factor *= lunar.spring_season
            elif phase == "spring_2":
                factor *= lunar.spring_season_month_2
        if prof.temple and ctx.lunar_day in (1, 15) and phase != "tet_day_1":
            factor *= lunar.lunar_1_15_temple
        if ctx.national_holiday:
            factor *= fest.national_holiday_border if prof.border else fest.national_holiday
        for fid, peak in ctx.festivals.items():
            if site_id not in ctx.festival_sites[fid]:
                continue
            if fid == "chua_tien":
                factor *= fest.chua_tien
            elif fid == "ky_cung_ta_phu":
                factor *= fest.ky_cung_ta_phu_peak if peak else fest.ky_cung_ta_phu
            elif fid == "bac_le":
                factor *= fest.bac_le_peak if peak else fest.bac_le
        if (ctx.lunar_month == 1 and "long_tong" in ctx.festivals
                and site_id in ctx.festival_sites["long_tong"]):
            own = self.long_tong_day(site_id, ctx.day.year)
            if own is not None and ctx.lunar_day in (own, own + 1):
                factor *= fest.long_tong
        return float(factor)

    def growth(self, day: date) -> float:
        years = (day - date(self.p.reference_year, 7, 1)).days / 365.25
        return (1 + self.p.growth_per_year) ** years

    @cached_property
    def base_daily(self) -> dict[str, float]:
        """Entries on a day of factor 1 per site, so that the reference year's expected base
        entries equal the profile's `annual_entries`."""
        year = self.p.reference_year
        days = [date(year, 1, 1) + timedelta(days=i)
                for i in range((date(year + 1, 1, 1) - date(year, 1, 1)).days)]
        contexts = [self.calendar.context(d) for d in days]
        out = {}
        for site in self.catalogue.sites:
            total = sum(self.day_factor(site.id, c) * self.growth(c.day) for c in contexts)
            out[site.id] = self.p.sites[site.id].annual_entries / total
        return out

    def expected_base(self, site_id: str, ctx: DayContext) -> float:
        return self.base_daily[site_id] * self.day_factor(site_id, ctx) * self.growth(ctx.day)

    # -- intraday ---------------------------------------------------------------------------

    def open_mask(self, site: Site, day: date) -> np.ndarray:
        """True for each local minute of `day` the site is open."""
        mask = np.zeros(MINUTES_PER_DAY, dtype=bool)
        midnight = datetime.combine(day, datetime.min.time())
        for start, end in site.open_intervals(day):
            a = int((start - midnight).total_seconds() // 60)
            b = int((end - midnight).total_seconds() // 60)
            mask[max(a, 0):min(b, MINUTES_PER_DAY)] = True
        return mask

    def close_minute(self, site: Site, day: date) -> np.ndarray:
        """For each local minute, the minute its opening window closes (visitors must be out
        by then); a large number for sites that never close."""
        far = 10 * MINUTES_PER_DAY
        close = np.full(MINUTES_PER_DAY, far, dtype=np.int64)
        midnight = datetime.combine(day, datetime.min.time())
        intervals = site.open_intervals(day)
        if any(s <= midnight and e >= midnight + timedelta(days=1) for s, e in intervals):
            return close
        for start, end in intervals:
            a = max(int((start - midnight).total_seconds() // 60), 0)
            b = min(int((end - midnight).total_seconds() // 60), MINUTES_PER_DAY)
            close[a:b] = b
        return close

    @lru_cache(maxsize=64)  # noqa: B019 - one model per run; shapes are few and small
    def curve(self, name: str) -> np.ndarray:
        return shape_curve(self.p.shapes[name])

    # -- temperature (Mẫu Sơn) --------------------------------------------------------------

    @lru_cache(maxsize=8)  # noqa: B019 - one model per run
    def _winter_snaps(self, winter: int) -> tuple[tuple[float, float, float], ...]:
        """Cold snaps of the winter starting in December of `winter`: (start as days after
        20 Dec, depth °C, hold days)."""
        t = self.p.temperature
        rng = np.random.default_rng([self.seed, winter, 7002])
        n = int(rng.poisson(t.cold_snaps_per_winter))
        season_days = (date(winter + 1, 2, 28) - date(winter, 12, 20)).days
        return tuple(
            (float(rng.uniform(0, season_days)), float(rng.uniform(*t.cold_snap_depth_c)),
             float(rng.integers(t.cold_snap_hold_days[0], t.cold_snap_hold_days[1] + 1)))
            for _ in range(n)
        )

    @lru_cache(maxsize=8)  # noqa: B019 - one model per run
    def _year_hourly(self, year: int) -> np.ndarray:
        """Hourly Mẫu Sơn temperature (°C) for every local hour of `year`."""
        t = self.p.temperature
        n_days = (date(year + 1, 1, 1) - date(year, 1, 1)).days
        hours = np.arange(n_days * 24) / 24.0  # days since 1 Jan, local
        # Coldest around 15 Jan, warmest mid-July.
        seasonal = t.annual_mean_c - t.seasonal_amplitude_c * np.cos(
            2 * math.pi * (hours - 14) / 365.25)
        # Warmest at 14:00, coldest in the small hours (a cosine with period 24 h).
        diurnal = t.diurnal_amplitude_c * np.cos(2 * math.pi * ((hours % 1) * 24 - 14) / 24)
        rng = np.random.default_rng([self.seed, year, 7001])
        anomaly = np.zeros(n_days + 1)
        innov = rng.normal(0, t.anomaly_sd_c * math.sqrt(1 - t.anomaly_phi ** 2), n_days + 1)
        anomaly[0] = rng.normal(0, t.anomaly_sd_c)
        for i in range(1, n_days + 1):
            anomaly[i] = t.anomaly_phi * anomaly[i - 1] + innov[i]
        anomaly_h = np.interp(hours, np.arange(n_days + 1), anomaly)
        snaps = np.zeros_like(hours)
        for winter in (year - 1, year):
            offset = (date(winter, 12, 20) - date(year, 1, 1)).days
            for start, depth, hold in self._winter_snaps(winter):
                rel = hours - (offset + start)
                ramp = np.clip(rel, 0, 1)
                decay = np.where(rel > 1 + hold, np.exp(-(rel - 1 - hold) / 1.5), 1.0)
                # Overlapping surges do not stack: the colder air mass wins.
                snaps = np.maximum(snaps, np.where(rel >= 0, depth * ramp * decay, 0.0))
        return seasonal + diurnal + anomaly_h - snaps

    def temperature_day(self, day: date) -> np.ndarray:
        """24 hourly temperatures at the Mẫu Sơn summit for a local date."""
        start = (day - date(day.year, 1, 1)).days * 24
        return self._year_hourly(day.year)[start:start + 24]

    def temperature_frame(self, start: date, end: date) -> pd.DataFrame:
        """Hourly simulated temperatures for local dates [start, end), in the shape
        `Store.write_temperature` takes (naive UTC, source 'simulated')."""
        rows_ts, rows_t = [], []
        day = start
        while day < end:
            base = to_utc(datetime.combine(day, datetime.min.time()), self.tz)
            rows_ts += [base + timedelta(hours=h) for h in range(24)]
            rows_t.append(self.temperature_day(day))
            day += timedelta(days=1)
        return pd.DataFrame({
            "site_id": TEMPERATURE_SITE,
            "ts_utc": pd.to_datetime(rows_ts).astype("datetime64[us]"),
            "temp_c": np.round(np.concatenate(rows_t) if rows_t else np.zeros(0), 2),
            "source": "simulated",
        })

    def frost_extra(self, day: date) -> float:
        """Expected extra Mẫu Sơn visitors on a frost day (0 on ordinary days)."""
        ev = self.p.events
        tmin = float(self.temperature_day(day).min())
        extra = ev.frost_per_degree * max(0.0, ev.frost_threshold_c - tmin)
        if day.weekday() >= 5:
            extra *= ev.frost_weekend_factor
        return min(extra, ev.frost_max_per_day)

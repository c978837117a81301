"""One typed settings object for every process: defaults < settings file < environment.

The settings file is TOML, `visitorflow.toml` at the project root or the path in
`VISITORFLOW_CONFIG`. Environment variables use the prefix `VISITORFLOW_` and `__` between
levels, e.g. `VISITORFLOW_MQTT__PORT=1884`. Relative paths are relative to the project root.
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ENV = "VISITORFLOW_CONFIG"


class SettingsError(RuntimeError):
    """The settings file or environment holds a value that cannot be used."""


class MqttSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "langson/v1"
    collector_client_id: str = "visitorflow-collector"
    keepalive_s: int = Field(30, ge=5)
    # Explicit account for every connection of this process; None: each client logs in
    # with its own account from `secrets_dir` (docs/mqtt-contract.md, "Security").
    username: str | None = None
    password: str | None = None
    # Broker accounts, ACL and TLS files made by `python -m ingest.broker_auth generate`
    # (git-ignored, mode 0600; relative paths: from the project root).
    secrets_dir: Path = Path("run/secrets")
    # Tests and benchmarks only: an account `test-fleet` that may read and write any topic.
    test_account: bool = False
    # TLS: the broker adds a listener on tls_port; clients connect there, trusting ca_file.
    # Files left None: the demo CA and server certificate under secrets_dir/tls/.
    tls: bool = False
    tls_port: int = Field(8883, ge=1, le=65535)
    ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _no_wildcards(cls, v: str) -> str:
        v = v.strip("/")
        if not v or any(c in v for c in "+#"):
            raise ValueError("topic_prefix must be a non-empty topic path without + or #")
        return v


class CollectorSettings(BaseModel):
    # Commit at least this often; every commit opens and closes the store (≈15 ms).
    commit_interval_s: float = Field(1.0, gt=0, le=10)
    # Commit early when this many messages are buffered; keep it well below the broker's
    # max_inflight_messages, because messages are acknowledged only after their commit.
    max_batch: int = Field(5000, ge=1)
    # Log throughput every this many seconds.
    report_every_s: float = Field(30.0, gt=0)
    # Pause after each commit with the store closed: a reader retrying every
    # `store.retry_max_s` finds the file free within it, even under a burst.
    reader_gap_s: float = Field(0.1, ge=0, le=1)
    # The collector's health and Prometheus metrics (`/healthz`, `/metrics`); 0: not served.
    health_port: int = Field(9101, ge=0, le=65535)


class StoreSettings(BaseModel):
    path: Path = Path("data/visitorflow.duckdb")
    # Readers and the writer retry a held lock with exponential backoff up to this long.
    lock_timeout_s: float = Field(5.0, gt=0)
    # Longest pause between two attempts at a held lock (backoff starts at 10 ms); keep it
    # below collector.reader_gap_s so a reader never sleeps through the writer's gap.
    retry_max_s: float = Field(0.05, gt=0)


class LoadThresholds(BaseModel):
    """Occupancy as a share of capacity at which a site enters each load level."""

    busy: float = Field(0.60, gt=0)
    crowded: float = Field(0.85, gt=0)
    overload: float = Field(1.00, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LoadThresholds:
        if not self.busy < self.crowded < self.overload:
            raise ValueError("load thresholds must rise: busy < crowded < overload")
        return self


class AlertSettings(BaseModel):
    """Alerts: the collector evaluates them once a minute; levels from `load`."""

    # A raised level clears only when occupancy falls this share of capacity below its
    # threshold (hysteresis in value: a site at the edge does not flap).
    clear_margin: float = Field(0.05, ge=0, lt=0.5)
    # A level must hold this many consecutive minutes before it is raised (in time).
    raise_after_min: int = Field(5, ge=1, le=120)
    # Forecast alerts: an open hour within this many hours ahead whose overload probability
    # reaches `forecast_p`; cleared when no hour reaches `forecast_p - forecast_p_margin`.
    # Horizon, threshold and nowcast were chosen on a simulated season (seed 101) and
    # checked on another (seed 202): docs/early-warning.md.
    forecast_horizon_h: int = Field(12, ge=1, le=48)
    forecast_p: float = Field(0.3, gt=0, le=1)
    forecast_p_margin: float = Field(0.1, ge=0, lt=1)
    # Nowcast (visitorflow/nowcast.py): the rest of today's open hours of the
    # forecast are scaled by (actual + prior) / (forecast + prior) arrivals of the last
    # `nowcast_hours` complete hours (0: off), the ratio kept within 1/max..max.
    nowcast_hours: int = Field(0, ge=0, le=12)
    nowcast_prior_people: float = Field(30.0, ge=0)
    nowcast_ratio_max: float = Field(3.0, ge=1)
    # Where `python -m orchestration.season_eval` writes its results (the dashboard shows
    # the newest file there).
    early_warning_dir: Path = Path("data/generated/early_warning")
    # Recommended actions per level, vi/en/zh, edited by the province.
    actions_path: Path = Path("data/alert_actions.yaml")


class ScheduleSettings(BaseModel):
    """The periodic jobs `python -m orchestration.serve` runs (orchestration/schedule.py)."""

    # Forecast runs the product makes in a day, at these local hours (`timezone`): each
    # refits every site. The early-warning evaluation refits on the same schedule.
    refit_hours_local: tuple[int, ...] = (5,)
    # Yesterday's open data (Parquet, CSV, NGSI-LD) written under `export_dir` at this
    # local hour: after midnight, so the day is complete.
    export_hour_local: int = Field(1, ge=0, le=23)
    export_dir: Path = Path("run/open-data")
    # Nightly copy of the store at this local hour (sites closed, the collector's load low),
    # the newest `backups_kept` kept in `backup_dir`. Keep that folder on another disk.
    backup_hour_local: int = Field(2, ge=0, le=23)
    backup_dir: Path = Path("run/backups")
    backups_kept: int = Field(7, ge=1)
    # Raw readings older than this many days move to Parquet files by month under
    # `archive_dir` at `retention_hour_local`; minute counts, forecasts, alerts and the
    # audit stay in the store. A year of raw readings is most of the store's size.
    readings_kept_days: int = Field(90, ge=1)
    retention_hour_local: int = Field(3, ge=0, le=23)
    archive_dir: Path = Path("run/archive")
    # Each night the last weeks are backtested (every candidate forecaster, each site), an
    # hour before the first refit, which then takes per site the one that erred least
    # (forecast.model "auto"). 17 sites: 2-4 minutes on two cores.
    backtest_hour_local: int = Field(4, ge=0, le=23)
    # The scheduler's health and metrics (`/healthz`, `/metrics`); 0: not served.
    health_port: int = Field(9102, ge=0, le=65535)

    @field_validator("refit_hours_local")
    @classmethod
    def _hours_of_a_day(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("refit_hours_local needs at least one hour (0..23)")
        if any(not 0 <= hour <= 23 for hour in v):
            raise ValueError("refit_hours_local must be hours of the day, 0..23")
        if len(set(v)) != len(v):
            raise ValueError("refit_hours_local must not name an hour twice")
        return tuple(sorted(v))


class ClockSettings(BaseModel):
    """A simulated clock, for the scenario demo and accelerated tests; unset: the wall clock.

    Every process of one run is given the same three values (orchestration/serve.py passes
    them on), so they all read the same simulated time (visitorflow/clock.py)."""

    # Simulated UTC time (naive) at the wall-clock moment `anchor_unix` (seconds since epoch).
    start_utc: datetime | None = None
    anchor_unix: float | None = None
    # Simulated seconds per wall second.
    speed: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _both_or_neither(self) -> ClockSettings:
        if (self.start_utc is None) != (self.anchor_unix is None):
            raise ValueError("clock.start_utc and clock.anchor_unix are set together")
        return self


class DashboardSettings(BaseModel):
    refresh_s: float = Field(5.0, ge=1)
    # A gate silent for this many of its reporting intervals counts as "no data".
    silent_intervals: int = Field(3, ge=1)
    # Optional online basemap (a MapLibre style URL). None draws the province from data/ only.
    basemap_style_url: str | None = None
    default_language: str = "vi"

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, v: str) -> str:
        if v not in ("vi", "en", "zh"):
            raise ValueError("default_language must be one of vi, en, zh")
        return v


class PublicSettings(BaseModel):
    """The public visitor pages behind the QR codes (public/): a separate read-only server."""

    # Loopback by default; the province binds 0.0.0.0 (or puts a proxy in front) to publish.
    host: str = "127.0.0.1"
    port: int = Field(8502, ge=1, le=65535)
    # The address phones reach; the QR codes point at {base_url}/site/{site_id}.
    base_url: str = "http://localhost:8502"
    # Internal figures the province chooses to show: occupancy and capacity (people).
    show_counts: bool = False
    # One store read serves every phone for this long (also the feed's Cache-Control max-age).
    cache_s: float = Field(10.0, ge=1, le=300)
    # When the phone's Accept-Language names none of vi, en, zh.
    default_language: Literal["vi", "en", "zh"] = "vi"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


class RedirectSettings(BaseModel):
    """Redirect advice (the dashboard's redirect page and the public pages' nearby sites):
    which sites to propose instead of a busy one (visitorflow.redirect)."""

    # Travel times between sites (from_id, to_id, road_km, drive_min, walk_min, basis);
    # data/travel_matrix.csv is derived from data/raw/travel_matrix.csv, edit it freely.
    matrix_path: Path = Path("data/travel_matrix.csv")
    # Sites further than this by road are not proposed.
    max_travel_min: int = Field(60, ge=1, le=600)
    # How many alternatives the advice lists at most, best first.
    alternatives: int = Field(5, ge=1, le=30)
    # An arrival within this many minutes is nudged by the live occupancy (weight 1 now,
    # fading linearly to 0 at this horizon); later arrivals take the forecast alone.
    live_blend_min: int = Field(60, ge=0, le=240)
    # A site that closes within this many minutes of the arrival is not proposed.
    min_open_min: int = Field(30, ge=0, le=240)
    # A pair missing from the matrix: straight line x 1.4 at 40 km/h (as the matrix's own
    # derived rows) when true; an error naming the pair when false.
    allow_fallback: bool = True


class AuthSettings(BaseModel):
    """Dashboard sign-in: officials' accounts in a users file outside git."""

    # Hashed passwords and roles (python -m visitorflow.users); git-ignored, mode 0600.
    users_path: Path = Path("data/secrets/users.json")
    # A signed-in session ends this long after sign-in, whatever the official does.
    session_hours: float = Field(8.0, gt=0, le=24 * 7)
    # Failed sign-ins: each waits `failure_delay_s`; after `max_failures` in a row, the name
    # is refused for `lockout_s` (slows guessing from many sessions at once).
    failure_delay_s: float = Field(1.0, ge=0, le=10)
    max_failures: int = Field(5, ge=1, le=100)
    lockout_s: float = Field(300.0, ge=0)
    # Signs the sign-in cookies (visitorflow/sessions.py). Unset: a secret made once beside
    # the users file. Set it (environment file, outside git) when several dashboard
    # processes serve one address, so that each accepts the others' cookies.
    session_secret: SecretStr | None = None


class SimulatorFaults(BaseModel):
    """Faults the simulator injects (all off by default); each is recorded as ground truth.
    Rates are per message; `*_per_day` are expected episodes per gate and day."""

    drop_rate: float = Field(0.0, ge=0, le=1)  # never sent: lost
    duplicate_rate: float = Field(0.0, ge=0, le=1)  # sent twice: the store keeps one
    reorder_rate: float = Field(0.0, ge=0, le=1)  # held back behind the gate's next message
    malformed_rate: float = Field(0.0, ge=0, le=1)  # corrupted payload: quarantined, lost
    offline_per_day: float = Field(0.0, ge=0)  # outages; readings buffered, sent late
    offline_hours_min: float = Field(1.0, gt=0)
    offline_hours_max: float = Field(6.0, gt=0)
    # Readings a counter keeps while offline; older ones are overwritten (lost).
    offline_buffer: int = Field(720, ge=0)
    reset_per_day: float = Field(0.0, ge=0)  # seq and totals back to 0
    skew_per_day: float = Field(0.0, ge=0)  # clock off by up to skew_s_max for skew_hours
    skew_s_max: int = Field(300, ge=1)
    skew_hours: float = Field(6.0, gt=0)
    # Counter ids that send The Things Stack v3 uplinks instead of the project's contract.
    ttn_gates: list[str] = []


class SimulatorSettings(BaseModel):
    interval_s: int = Field(60, ge=1)
    seed: int = 20260217
    # Messages a counter may have in flight unacknowledged (paho ids wrap at 65,535).
    max_inflight: int = Field(200, ge=1, le=10000)
    # Per-site visitor profiles with their basis (relative paths: from the project root).
    profiles_path: Path = Path("data/sim_profiles.yaml")
    # Where runs and backfills write their ground truth (Parquet, JSON lines).
    truth_dir: Path = Path("data/generated/sim")
    # Live runs store the simulated Mẫu Sơn temperature (source 'simulated') day by day.
    write_temperature: bool = True
    # Backfill resolution: one reading per gate and this many seconds (a multiple of 60).
    backfill_interval_s: int = Field(900, ge=60, le=86400)
    # Building the keys once at the end of a backfill into an empty store is the fast path,
    # but DuckDB builds a key in memory (it cannot spill): ~0.3 GiB per million readings
    # (3 years at 60 s, 36 M readings: 10.5 GiB peak). Above this budget the backfill keeps
    # the keys up to date batch by batch instead: ~1.4× slower, ~1.7 GiB (bench/results.md).
    backfill_key_memory_gib: float = Field(12.0, ge=0)
    faults: SimulatorFaults = SimulatorFaults()
    ttn_application_id: str = "langson-counters"
    ttn_tenant_id: str = "ttn"


class ForecastSettings(BaseModel):
    """Forecasting (forecasting/): model windows, festival windows, samples, parallelism."""

    # Hourly model: a year and a bit of open hours, so last year's festivals are in the
    # training window (one occurrence per festival is all a year holds).
    hourly_history_days: int = Field(400, ge=14)
    hourly_horizon_days: int = Field(14, ge=1, le=60)
    daily_history_days: int = Field(1100, ge=28)
    # On holiday days (festivals, national holidays, lunar seasons, their windows) the hourly
    # forecast's day total is the daily model's: it has seen two or three occurrences of each
    # festival where the hourly model's window holds one (bench/results.md, 2026-12-02).
    holiday_totals_from_daily: bool = True
    # The daily horizon runs to the end of the next festival season, and at least this far.
    daily_min_horizon_days: int = Field(120, ge=7)
    # Days before / after each festival or national holiday that Prophet may give an effect.
    festival_window_before_days: int = Field(2, ge=0, le=14)
    festival_window_after_days: int = Field(1, ge=0, le=14)
    # Predictive samples behind the bands and the overload probability.
    samples: int = Field(300, ge=20, le=5000)
    interval_width: float = Field(0.8, gt=0, lt=1)
    changepoint_prior_scale: float = Field(0.05, gt=0)
    # Sites whose visitors follow the cold (Mẫu Sơn frost): temperature regressor where the
    # store holds temperatures for them.
    temperature_sites: tuple[str, ...] = ("mau_son",)
    # Degrees below this count as "cold" (frost draws crowds to Mẫu Sơn below ~3 °C).
    cold_threshold_c: float = 3.0
    processes: int = Field(2, ge=1)
    # A forecast run older than this is stale: the dashboard says so instead of showing it
    # as current (a daily refit plus two hours' slack for a slow or retried run).
    stale_after_hours: float = Field(26.0, gt=0)
    # Rolling-origin backtests: folds of `backtest_horizon_days`, one every `backtest_step_days`.
    # Eight weekly folds choose each site's forecaster (forecasting/candidates.py): on real
    # series, a choice from four weeks fell back to naive after a few odd weeks and cost
    # Birrarung Marr 0.72 → 0.74 of naive (bench/results.md, "Preferred blend").
    backtest_folds: int = Field(8, ge=1)
    backtest_horizon_days: int = Field(7, ge=1)
    backtest_step_days: int = Field(7, ge=1)
    # Which forecaster sets each site's hourly median (forecasting/candidates.py): "auto"
    # takes per site the preferred mix of LightGBM and Prophet (Prophet's share chosen by the
    # newest backtest) unless that backtest found a clearly better one or the mix lost to
    # naive (`choose_model`); a model's name forces it for every site.
    model: Literal["auto", "prophet", "prophet_lgbm", "lgbm_prophet", "lgbm", "mean4w",
                   "naive"] = "auto"
    # On the hours a forecast expects busier than its usual open hour, the arrivals it stores
    # and shows lean this share of the way from the median to the band's upper edge
    # (forecasting.candidates.lean_to_crowd; 0: the median everywhere). A median pulls every
    # peak part of the way back to the usual, and an unseen crowd costs more than a ranger
    # sent for nothing: on nine real series 0.07 took the busiest tenth of hours from 0.89 to
    # 0.82 of naive's error and all hours from 0.741 to 0.746 (bench/results.md, "Leaning
    # toward the crowd"). The band, occupancy, p_overload and the alerts do not move.
    crowd_lean: float = Field(0.07, ge=0, le=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VISITORFLOW_", env_nested_delimiter="__", extra="forbid"
    )

    timezone: str = "Asia/Ho_Chi_Minh"
    catalogue_path: Path = Path("data/sites.yaml")
    boundary_path: Path = Path("data/boundary.geojson")
    store: StoreSettings = StoreSettings()
    mqtt: MqttSettings = MqttSettings()
    collector: CollectorSettings = CollectorSettings()
    load: LoadThresholds = LoadThresholds()
    dashboard: DashboardSettings = DashboardSettings()
    public: PublicSettings = PublicSettings()
    alerts: AlertSettings = AlertSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    auth: AuthSettings = AuthSettings()
    redirect: RedirectSettings = RedirectSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    forecast: ForecastSettings = ForecastSettings()
    clock: ClockSettings = ClockSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        ZoneInfo(v)  # raises for an unknown zone
        return v

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        self.catalogue_path = _from_root(self.catalogue_path)
        self.boundary_path = _from_root(self.boundary_path)
        self.store.path = _from_root(self.store.path)
        self.mqtt.secrets_dir = _from_root(self.mqtt.secrets_dir)
        self.alerts.actions_path = _from_root(self.alerts.actions_path)
        self.alerts.early_warning_dir = _from_root(self.alerts.early_warning_dir)
        self.auth.users_path = _from_root(self.auth.users_path)
        self.redirect.matrix_path = _from_root(self.redirect.matrix_path)
        self.schedule.export_dir = _from_root(self.schedule.export_dir)
        self.schedule.backup_dir = _from_root(self.schedule.backup_dir)
        self.schedule.archive_dir = _from_root(self.schedule.archive_dir)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)


def _from_root(path: Path) -> Path:
    return path if path.is_absolute() else PROJECT_ROOT / path


def config_file() -> Path:
    """The settings file in force: `$VISITORFLOW_CONFIG`, else `visitorflow.toml` at the root."""
    return _from_root(Path(os.environ.get(CONFIG_ENV, "visitorflow.toml")))


def load_settings(**overrides: object) -> Settings:
    """Read the settings afresh; a bad value raises SettingsError naming the field and fix."""
    path = config_file()
    if CONFIG_ENV in os.environ and not path.exists():
        raise SettingsError(f"{CONFIG_ENV} points at {path}, which does not exist")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(
            f"invalid settings ({problems}). Fix them in {path} or in the VISITORFLOW_* "
            "environment variables."
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        # A syntax error is not a field's: say where it is, not a traceback.
        raise SettingsError(f"{path} is not valid TOML ({exc}); fix that line") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text; save it as UTF-8") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()

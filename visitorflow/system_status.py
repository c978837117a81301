"""The system-status line every dashboard page shows: which clock is running, how old the
newest data and forecast are, how the last backup and refit ended, and whether the forecasts
are stale. Pure: the dashboard reads the store (dashboard/shared.py) and draws the texts; the
decisions (ages, stale or not) are here, where they are tested without Streamlit.

A forecast is stale when the newest run that fitted at least one site is older than
`forecast.stale_after_hours`: the daily refit did not happen or did not succeed. Alerts from
live counts do not depend on forecasts, so the warning says they still work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

# Ages below an hour in minutes, below two days in hours, then in days: what an operator
# reads at a glance ("25 h" is clearer than "1 d" for a forecast due daily).
MINUTES_UNTIL_S = 3600
HOURS_UNTIL_S = 48 * 3600


@dataclass(frozen=True)
class JobOutcome:
    """How a scheduled job's last run ended (from `Store.job_status()`)."""

    ok: bool
    finished_utc: datetime
    last_ok_utc: datetime | None
    detail: str | None


@dataclass(frozen=True)
class SystemStatus:
    """Everything the status line and its warning say, as of `now_utc` (naive UTC)."""

    now_utc: datetime
    scenario_speed: float | None  # simulated clock's speed; None on the wall clock
    latest_reading_utc: datetime | None
    forecast_utc: datetime | None  # creation of the newest forecast run in use
    backup: JobOutcome | None
    refit: JobOutcome | None
    stale_after_hours: float

    @property
    def data_age_s(self) -> float | None:
        return _age_s(self.now_utc, self.latest_reading_utc)

    @property
    def forecast_age_s(self) -> float | None:
        return _age_s(self.now_utc, self.forecast_utc)

    @property
    def stale_since_utc(self) -> datetime | None:
        """When the forecast in use became stale (None: no forecast yet)."""
        if self.forecast_utc is None:
            return None
        return self.forecast_utc + timedelta(hours=self.stale_after_hours)

    @property
    def forecast_stale(self) -> bool:
        """The forecast in use is older than the limit (no forecast at all is not "stale":
        the pages say there is none)."""
        since = self.stale_since_utc
        return since is not None and self.now_utc > since

    @property
    def refit_failed(self) -> bool:
        return self.refit is not None and not self.refit.ok

    @property
    def warn(self) -> bool:
        """Whether the page must warn that forecasts cannot be trusted as current."""
        return self.forecast_stale or self.refit_failed


def job_outcomes(frame: pd.DataFrame) -> dict[str, JobOutcome]:
    """`Store.job_status()` (one row per job that ever ran; may be empty) by job name."""
    outcomes = {}
    for row in frame.itertuples(index=False):
        outcomes[str(row.job)] = JobOutcome(
            ok=bool(row.last_ok),
            finished_utc=_naive(row.last_finished_utc),
            last_ok_utc=_naive(row.last_ok_utc),
            detail=None if _missing(row.last_detail) else str(row.last_detail),
        )
    return outcomes


def forecast_in_use_utc(runs: pd.DataFrame) -> datetime | None:
    """Creation time of the newest forecast run that fitted at least one site (`runs`:
    `Store.forecast_runs()`, newest first): a run where every site failed leaves the
    previous forecasts in use."""
    if runs.empty:
        return None
    usable = runs[runs["sites_ok"] > 0]
    if usable.empty:
        return None
    return _naive(usable["created_at_utc"].max())


def system_status(
    now_utc: datetime,
    latest_reading_utc: datetime | None,
    forecast_runs: pd.DataFrame,
    jobs: pd.DataFrame,
    stale_after_hours: float,
    scenario_speed: float | None = None,
) -> SystemStatus:
    """The status as of `now_utc` from the store's reads (see `job_outcomes`,
    `forecast_in_use_utc`); `scenario_speed` set when the clock is simulated."""
    outcomes = job_outcomes(jobs)
    return SystemStatus(
        now_utc=now_utc,
        scenario_speed=scenario_speed,
        latest_reading_utc=latest_reading_utc,
        forecast_utc=forecast_in_use_utc(forecast_runs),
        backup=outcomes.get("backup"),
        refit=outcomes.get("refit"),
        stale_after_hours=stale_after_hours,
    )


def age_parts(seconds: float) -> tuple[int, str]:
    """An age as a whole number and its unit ("min", "h" or "d"), rounded down so that
    "25 h" never reads as more than it is; a time in the future counts as 0 min."""
    seconds = max(0.0, seconds)
    if seconds < MINUTES_UNTIL_S:
        return math.floor(seconds / 60), "min"
    if seconds < HOURS_UNTIL_S:
        return math.floor(seconds / 3600), "h"
    return math.floor(seconds / 86400), "d"


def speed_text(speed: float) -> str:
    """A clock speed as the status line shows it: 144, 2.5."""
    return f"{speed:g}"


def _age_s(now_utc: datetime, then_utc: datetime | None) -> float | None:
    return None if then_utc is None else (now_utc - then_utc).total_seconds()


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _naive(value: object) -> datetime | None:
    """A store timestamp (pandas or datetime, naive UTC) as a datetime; None for NaT/None."""
    if _missing(value):
        return None
    return pd.Timestamp(value).to_pydatetime()

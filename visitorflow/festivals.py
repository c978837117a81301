"""Lạng Sơn's festival calendar: lunar-date rules (`data/festivals.yaml`) turned into
Gregorian dates for any year with the Vietnamese lunar calendar (vnlunar, UTC+7), and
Vietnam's national holidays from `holidays`.

The Vietnamese and Chinese lunar calendars differ in some years (Tết 2007, 2030), so the
conversion uses a library with Vietnamese rules; tests check it against holidays (VN).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import holidays
import pandas as pd
import vnlunar
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visitorflow.catalogue import LocalizedName

M = TypeVar("M", bound=BaseModel)
VIETNAM_UTC_OFFSET_H = 7.0
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "festivals.yaml"


class FestivalError(ValueError):
    """The festival calendar file cannot be used as it is."""


class Festival(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: LocalizedName
    lunar_month: int = Field(ge=1, le=12)
    first_day: int = Field(ge=1, le=30)
    last_day: int = Field(ge=1, le=30)
    peak_days: tuple[int, ...] = ()
    # The peak days hold scheduled events (processions) whose crowd comes for the event,
    # whatever the weekday; otherwise a peak day is the festival's busiest day, a crowd
    # that follows the weekday like any other.
    peak_events: bool = False
    # Public days off for everyone (the Tết holiday): the weekday does not shape the crowd.
    days_off: bool = False
    sites: tuple[str, ...] = ()  # empty: province-wide
    source: str


def lunar_to_solar(day: int, month: int, year: int, leap: bool = False) -> date:
    """A Vietnamese lunar date to its Gregorian date."""
    solar = vnlunar.convert_lunar_to_solar(day, month, year, int(leap), VIETNAM_UTC_OFFSET_H)
    if solar is None:
        raise ValueError(f"lunar {day}/{month}/{year} does not exist")
    d, m, y = solar
    return date(y, m, d)


def load_rules(path: Path, key: str, model: type[M], what: str) -> tuple[M, ...]:
    """The list under `key` of a YAML calendar file, each item validated as `model`; a
    FestivalError naming the file (`what` it is) and the problem when it is unusable."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return tuple(model.model_validate(item) for item in raw[key])
    except (OSError, KeyError, TypeError, yaml.YAMLError, ValidationError) as exc:
        raise FestivalError(f"{what} {path} is unusable: {exc}") from None


@lru_cache(maxsize=4)
def load_festivals(path: Path = DEFAULT_PATH) -> tuple[Festival, ...]:
    return load_rules(path, "festivals", Festival, "festival calendar")


def festival_days(years: Iterable[int], path: Path = DEFAULT_PATH) -> pd.DataFrame:
    """One row per festival day: festival_id, date, lunar_day, day_of_festival (0-based),
    is_peak, sites (tuple; empty = province-wide), and the names in vi/en/zh."""
    rows = []
    for year in years:
        for fest in load_festivals(path):
            start = lunar_to_solar(fest.first_day, fest.lunar_month, year)
            for offset in range(fest.last_day - fest.first_day + 1):
                lunar_day = fest.first_day + offset
                rows.append({
                    "festival_id": fest.id,
                    "date": start + timedelta(days=offset),
                    "lunar_day": lunar_day,
                    "lunar_month": fest.lunar_month,
                    "day_of_festival": offset,
                    "is_peak": lunar_day in fest.peak_days,
                    "sites": fest.sites,
                    "name_vi": fest.name.vi,
                    "name_en": fest.name.en,
                    "name_zh": fest.name.zh,
                })
    return pd.DataFrame(rows)


def national_holidays(years: Iterable[int]) -> pd.DataFrame:
    """Vietnam's public holidays (Tết and its days off included): date, name."""
    vn = holidays.country_holidays("VN", years=list(years))
    return pd.DataFrame(sorted(vn.items()), columns=["date", "name"])

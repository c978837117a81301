"""Real hourly counter series kept in `data/real/` (provenance and licences in its README):
Auckland's pedestrian sensors, Melbourne's Princes Bridge and Birrarung Marr, Washington DC's
casual bike-share riders with their weather. Each loads as a `RealSeries`: counts on a
complete local-hour grid (missing hours NaN), the country's holidays and, where the file has
them, hourly covariates (weather).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.baselines import regular_hours
from forecasting.calendar import region_holidays
from forecasting.csv_input import read_counts_csv

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "real"
AUCKLAND_FILE = "auckland_pedestrians_hourly_2019_2025.csv"
MELBOURNE_FILE = "melbourne_princes_bridge_birrarung_marr_2012_2015.csv"
WASHINGTON_FILE = "washington_dc_bikeshare_hourly_2011_2012.csv"
WASHINGTON_WEATHER = ("temp", "atemp", "hum", "windspeed", "weathersit")
# A whole local day of zeros at a city-centre pedestrian sensor is a dead counter, not an
# empty street (107 Quay Street reads 0 all day for weeks in 2019-2020 while its neighbours
# count thousands): such days are read as missing. Not applied to bike hire, whose quiet
# winter nights are real zeros (and no day there is all zeros).
ZERO_DAY_IS_OUTAGE = True


@dataclass
class RealSeries:
    """One real counter series: `y` counts per local hour start (complete grid, NaN where
    unknown), its `country` with the subdivision whose holidays it keeps ("NZ-AUK", as
    `forecasting.calendar.region_holidays` takes it) and those `holidays` (dates), optional
    hourly `exog` covariates, and `notes` on what loading repaired."""

    series_id: str
    title: str
    y: pd.Series
    country: str
    holidays: frozenset[date]
    exog: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def _holidays(region: str, index: pd.DatetimeIndex) -> frozenset[date]:
    return frozenset(region_holidays(region, range(index.min().year, index.max().year + 1)))


def _zero_days_missing(y: pd.Series) -> tuple[pd.Series, int]:
    """`y` with every local day whose hours are all 0 set to NaN; and how many days."""
    day = y.index.normalize()
    total = y.groupby(day).transform(lambda v: v.sum(min_count=1))
    dead = (total == 0).to_numpy()
    return y.where(~dead), int(len(np.unique(day[dead])))


def _auckland(sensor: str, data_dir: Path) -> tuple[pd.Series, None, list[str]]:
    table = read_counts_csv(data_dir / AUCKLAND_FILE, [sensor])
    y = regular_hours(table.frame.set_index("ds")[sensor])
    notes = list(table.notes)
    if ZERO_DAY_IS_OUTAGE:
        y, days = _zero_days_missing(y)
        notes.append(f"{days} all-zero days read as missing (a dead counter)")
    return y, None, notes


def _melbourne(sensor: str, data_dir: Path) -> tuple[pd.Series, None, list[str]]:
    raw = pd.read_csv(data_dir / MELBOURNE_FILE)
    own = raw[raw["sensor_name"] == sensor]
    ds = pd.to_datetime(own["ts"].str.strip(), format="%d-%b-%Y %H:%M")
    y = regular_hours(pd.Series(own["count"].to_numpy(float), index=ds))
    return y, None, []


def _washington(column: str, data_dir: Path) -> tuple[pd.Series, pd.DataFrame, list[str]]:
    table = read_counts_csv(data_dir / WASHINGTON_FILE, [column, *WASHINGTON_WEATHER])
    frame = table.frame.set_index("ds")
    y = regular_hours(frame[column])
    # Weather is known for every counted hour; an hour the file lacks takes its neighbours'.
    exog = frame[list(WASHINGTON_WEATHER)].reindex(y.index).interpolate(
        limit_direction="both")
    return y, exog, list(table.notes)


Loader = Callable[[str, Path], tuple[pd.Series, "pd.DataFrame | None", list[str]]]
# id → (title, loader, its column, country and subdivision for holidays)
SERIES: dict[str, tuple[str, Loader, str, str]] = {
    "akl_107_quay": ("Auckland, 107 Quay Street (waterfront)", _auckland, "107 Quay Street",
                     "NZ-AUK"),
    "akl_45_queen": ("Auckland, 45 Queen Street", _auckland, "45 Queen Street", "NZ-AUK"),
    "akl_150_k_road": ("Auckland, 150 K Road", _auckland, "150 K Road", "NZ-AUK"),
    "mel_princes_bridge": ("Melbourne, Princes Bridge", _melbourne, "Princes Bridge", "AU-VIC"),
    "mel_birrarung_marr": ("Melbourne, Birrarung Marr (festival park, gaps)", _melbourne,
                           "Birrarung Marr", "AU-VIC"),
    "dc_casual": ("Washington DC, casual bike-share riders", _washington, "casual", "US-DC"),
}


# Any other Auckland sensor by its column name: `akl:261 Queen Street`. The benchmark's six
# series chose the shipped model; the other sensors were never looked at, so they can judge it.
AUCKLAND_PREFIX = "akl:"


def _auckland_id(sensor: str) -> str:
    """`261 Queen Street` → `akl_261_queen_street`: an id a stand-in site can carry."""
    return "akl_" + re.sub(r"[^a-z0-9]+", "_", sensor.lower()).strip("_")


def load_series(series_id: str, data_dir: Path = DATA_DIR) -> RealSeries:
    """One of SERIES, or an Auckland sensor as `akl:<its column>` (or the id that gives it
    back, `akl_261_queen_street`), from the copies in `data_dir`."""
    if series_id not in SERIES and series_id.startswith("akl_"):  # an id given back
        header = pd.read_csv(data_dir / AUCKLAND_FILE, nrows=0).columns
        named = [c for c in header if _auckland_id(c) == series_id]
        series_id = AUCKLAND_PREFIX + named[0] if named else series_id
    if series_id.startswith(AUCKLAND_PREFIX):
        sensor = series_id.removeprefix(AUCKLAND_PREFIX)
        spec = (f"Auckland, {sensor}", _auckland, sensor, "NZ-AUK")
    elif series_id in SERIES:
        spec = SERIES[series_id]
    else:
        raise KeyError(f"unknown series {series_id!r}; known: {', '.join(SERIES)} or "
                       f"{AUCKLAND_PREFIX}<an Auckland sensor>")
    title, loader, column, country = spec
    y, exog, notes = loader(column, data_dir)
    if series_id.startswith(AUCKLAND_PREFIX):  # an id that can name a stand-in site
        series_id = _auckland_id(column)
    return RealSeries(series_id=series_id, title=title, y=y, country=country,
                      holidays=_holidays(country, y.index), exog=exog, notes=notes)

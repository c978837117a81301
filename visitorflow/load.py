"""Load: occupancy (people on site), load levels, their order and colours — one definition.

The live map, the alerts, the redirect advice, the public pages, the notebooks and the
store's SQL all take occupancy, levels, their severity order and their colours from here.
"""

from __future__ import annotations

from enum import StrEnum

import pandas as pd

from visitorflow.settings import LoadThresholds


class LoadLevel(StrEnum):
    NORMAL = "normal"
    BUSY = "busy"
    CROWDED = "crowded"
    OVERLOAD = "overload"
    CLOSED = "closed"  # outside opening hours and nobody counted on site
    NO_DATA = "no_data"  # no gate of the site has reported recently: never shown as 0 visitors


# RGB for the map; the colour scale of the live page (green → amber → orange → red, greys).
LEVEL_COLOURS: dict[LoadLevel, tuple[int, int, int]] = {
    LoadLevel.NORMAL: (46, 160, 67),
    LoadLevel.BUSY: (240, 180, 0),
    LoadLevel.CROWDED: (240, 110, 20),
    LoadLevel.OVERLOAD: (210, 30, 30),
    LoadLevel.CLOSED: (120, 140, 160),
    LoadLevel.NO_DATA: (150, 150, 150),
}

# Severity, calmest first: the order of a level table's columns, of "worst level" and of
# the alert list (most severe first is this reversed). CLOSED and NO_DATA are not loads.
SEVERITY: tuple[LoadLevel, ...] = (
    LoadLevel.NORMAL, LoadLevel.BUSY, LoadLevel.CROWDED, LoadLevel.OVERLOAD,
)
# Levels at which a site still has room to take visitors sent from elsewhere.
ROOM_LEVELS: frozenset[LoadLevel] = frozenset({LoadLevel.NORMAL, LoadLevel.BUSY})


def severity_rank(level: str) -> int:
    """A level's place in SEVERITY (0: normal); -1 for closed and no data."""
    try:
        return SEVERITY.index(LoadLevel(level))
    except ValueError:
        return -1


def level_colour_hex(level: str) -> str:
    """A level's map colour as `#rrggbb`, for charts and pages that should match the map."""
    r, g, b = LEVEL_COLOURS[LoadLevel(level)]
    return f"#{r:02x}{g:02x}{b:02x}"


# Occupancy is arrivals minus departures since the site's local midnight, never below 0
# (counters drift; a negative crowd is shown as empty). The SQL form is for the store's
# aggregate queries over `minute_counts`; `running_occupancy` is the same per minute.
OCCUPANCY_SQL = "greatest(sum(count_in) - sum(count_out), 0)"


def occupancy(arrivals: float, departures: float) -> float:
    """People on site from arrivals and departures since local midnight."""
    return max(arrivals - departures, 0)


def running_occupancy(count_in: pd.Series, count_out: pd.Series) -> pd.Series:
    """Occupancy after each minute of one site's day, minutes in order: the running sum of
    in − out, never below 0 at any minute."""
    net = (count_in.astype(float) - count_out.astype(float)).cumsum()
    return net.clip(lower=0)


LEVEL_LABELS: dict[LoadLevel, dict[str, str]] = {
    LoadLevel.NORMAL: {"vi": "Bình thường", "en": "Normal", "zh": "正常"},
    LoadLevel.BUSY: {"vi": "Đông", "en": "Busy", "zh": "较多"},
    LoadLevel.CROWDED: {"vi": "Rất đông", "en": "Crowded", "zh": "拥挤"},
    LoadLevel.OVERLOAD: {"vi": "Quá tải", "en": "Overload", "zh": "超载"},
    LoadLevel.CLOSED: {"vi": "Đóng cửa", "en": "Closed", "zh": "关闭"},
    LoadLevel.NO_DATA: {"vi": "Không có dữ liệu", "en": "No data", "zh": "无数据"},
}


def load_level(
    occupancy: float | None,
    capacity: int,
    thresholds: LoadThresholds,
    *,
    has_data: bool = True,
    is_open: bool = True,
) -> LoadLevel:
    """The level of a site now.

    `has_data` False (every gate silent) wins over everything, so that silence is never
    read as an empty site; a closed site with people still counted inside keeps its level.
    """
    if not has_data or occupancy is None:
        return LoadLevel.NO_DATA
    if not is_open and occupancy <= 0:
        return LoadLevel.CLOSED
    share = occupancy / capacity
    if share >= thresholds.overload:
        return LoadLevel.OVERLOAD
    if share >= thresholds.crowded:
        return LoadLevel.CROWDED
    if share >= thresholds.busy:
        return LoadLevel.BUSY
    return LoadLevel.NORMAL

"""Load levels: how full a site is, from its occupancy against its capacity."""

from __future__ import annotations

from enum import StrEnum

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

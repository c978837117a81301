"""The live state of every site: occupancy, arrivals, silent gates and load level.

One function shared by the dashboard, notebooks and tests, so that every view of "now"
agrees. A DataFrame out, one row per catalogue site.
"""

from __future__ import annotations

import math
import unicodedata
from datetime import datetime, timedelta

import pandas as pd

from visitorflow.catalogue import Catalogue
from visitorflow.clock import local_day_start_utc, to_local, utc_now
from visitorflow.limits import effective_limits, thresholds_of
from visitorflow.load import LEVEL_COLOURS, load_level
from visitorflow.settings import Settings
from visitorflow.store import Store


def silent_gates(
    health: pd.DataFrame, catalogue: Catalogue, settings: Settings, now_utc: datetime
) -> pd.DataFrame:
    """Catalogue gates with their last reading and whether they have gone silent.

    A gate is silent when it never reported, said `offline` in its last will, or sent
    nothing for `silent_intervals` of its own reporting intervals.
    """
    gates = pd.DataFrame(
        [(s.id, g.id, g.counter_id) for s, g in catalogue.gates()],
        columns=["site_id", "gate_id", "counter_id"],
    )
    merged = gates.merge(health, on=["site_id", "gate_id"], how="left")
    interval = merged["interval_s"].fillna(60).astype(float)
    allowed = pd.to_timedelta(interval * settings.dashboard.silent_intervals, unit="s")
    last = pd.to_datetime(merged["last_reading_utc"])
    merged["silent"] = (
        last.isna() | (last < pd.Timestamp(now_utc) - allowed) | (merged["status"] == "offline")
    )
    return merged


def live_status(
    store: Store,
    catalogue: Catalogue,
    settings: Settings,
    now_utc: datetime | None = None,
    language: str = "vi",
) -> pd.DataFrame:
    """One row per site: names, position, capacity, occupancy, arrivals today and in the last
    hour, last reading, silent gates, whether open, load level and its map colour."""
    return live_snapshot(store, catalogue, settings, now_utc, language)[0]


def live_snapshot(
    store: Store,
    catalogue: Catalogue,
    settings: Settings,
    now_utc: datetime | None = None,
    language: str = "vi",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`live_status` and, from the same queries, every gate with its last reading and
    whether it is silent (`silent_gates`): what a live page needs, read once."""
    now_utc = now_utc or utc_now()
    with store.session():  # one store connection for the refresh's reads
        # Capacities and thresholds in force (admins' overrides included).
        catalogue, limits = effective_limits(store, catalogue, settings)
        day_start = local_day_start_utc(now_utc, settings.tz)
        counts = store.site_counts(day_start, now_utc).set_index("site_id")
        health = store.gate_health()
    gates = silent_gates(health, catalogue, settings, now_utc)
    local_now = to_local(now_utc, settings.tz)
    rows = []
    for site in catalogue.sites:
        site_gates = gates[gates["site_id"] == site.id]
        reporting = site_gates[~site_gates["silent"]]
        has_data = len(reporting) > 0
        last = pd.to_datetime(site_gates["last_reading_utc"]).max()
        in_counts = site.id in counts.index
        occupancy = int(counts.at[site.id, "occupancy"]) if in_counts else 0
        is_open = site.is_open(local_now)
        level = load_level(
            occupancy, site.capacity, thresholds_of(limits, site.id), has_data=has_data,
            is_open=is_open,
        )
        rows.append(
            {
                "site_id": site.id,
                "name": site.name.get(language),
                "kind": site.kind,
                "lat": site.lat,
                "lon": site.lon,
                "capacity": site.capacity,
                "occupancy": occupancy if has_data else None,
                "load_share": occupancy / site.capacity if has_data else None,
                "arrivals_today": int(counts.at[site.id, "arrivals_today"]) if in_counts else 0,
                "arrivals_last_hour": (
                    int(counts.at[site.id, "arrivals_last_hour"]) if in_counts else 0
                ),
                "last_reading_utc": None if pd.isna(last) else last.to_pydatetime(),
                "data_age_s": None if pd.isna(last) else (now_utc - last).total_seconds(),
                "gates": len(site_gates),
                "silent_gates": ", ".join(site_gates.loc[site_gates["silent"], "gate_id"]),
                "is_open": is_open,
                "level": level.value,
                "colour": list(LEVEL_COLOURS[level]),
            }
        )
    return pd.DataFrame(rows), gates


def data_age(status: pd.DataFrame, now_utc: datetime) -> timedelta | None:
    """How old the newest reading behind a live view is."""
    last = pd.to_datetime(status["last_reading_utc"]).max()
    return None if pd.isna(last) else now_utc - last.to_pydatetime()


# -- silent gates: what a site shows instead of "0 visitors" --

_NO_DATA_SINCE = {
    "vi": "Không có dữ liệu từ {gate} từ {hhmm}",
    "en": "No data from {gate} since {hhmm}",
    "zh": "自 {hhmm} 起未收到 {gate} 的数据",
}
_NO_DATA_EVER = {
    "vi": "Chưa có dữ liệu từ {gate}",
    "en": "No data from {gate} yet",
    "zh": "尚未收到 {gate} 的数据",
}


def no_data_notices(
    store: Store,
    catalogue: Catalogue,
    settings: Settings,
    now_utc: datetime | None = None,
    language: str = "vi",
) -> pd.DataFrame:
    """One row per silent gate (see `silent_gates`): site_id, gate_id, since_utc (its last
    reading, or None if it never reported), reason (`offline` from its last will, `silent`
    for 3 missed intervals, `never`) and the message a site shows instead of "0 visitors":
    "No data from gate X since HH:MM" (local time)."""
    now_utc = now_utc or utc_now()
    gates = silent_gates(store.gate_health(), catalogue, settings, now_utc)
    return gate_notices(gates, catalogue, settings, language)


def gate_notices(
    gates: pd.DataFrame, catalogue: Catalogue, settings: Settings, language: str = "vi"
) -> pd.DataFrame:
    """`no_data_notices` from a `silent_gates` frame already read (e.g. by `live_snapshot`)."""
    rows = []
    for rec in gates[gates["silent"]].itertuples(index=False):
        gate = catalogue.gate(rec.site_id, rec.gate_id)
        name = gate.name.get(language) if gate else rec.gate_id
        last = None if pd.isna(rec.last_reading_utc) else pd.Timestamp(
            rec.last_reading_utc).to_pydatetime()
        if last is None:
            message = _NO_DATA_EVER.get(language, _NO_DATA_EVER["en"]).format(gate=name)
        else:
            hhmm = to_local(last, settings.tz).strftime("%H:%M")
            template = _NO_DATA_SINCE.get(language, _NO_DATA_SINCE["en"])
            message = template.format(gate=name, hhmm=hhmm)
        reason = "offline" if rec.status == "offline" else ("never" if last is None else "silent")
        rows.append({"site_id": rec.site_id, "gate_id": rec.gate_id, "since_utc": last,
                     "reason": reason, "message": message})
    return pd.DataFrame(rows, columns=["site_id", "gate_id", "since_utc", "reason", "message"])


# -- the map's layout: sites that would sit on top of each other -------------------------------

# Web Mercator as deck.gl draws it: the world is 512 px wide at zoom 0.
_WORLD_PX = 512.0


def world_px(lon: float, lat: float, zoom: float) -> tuple[float, float]:
    """A point's pixel on the Web Mercator world at `zoom`, as deck.gl places it: two points'
    difference is their distance on the screen."""
    scale = _WORLD_PX * 2**zoom
    phi = math.radians(lat)
    return ((lon + 180) / 360 * scale,
            (1 - math.log(math.tan(phi) + 1 / math.cos(phi)) / math.pi) / 2 * scale)


def _to_lonlat(x: float, y: float, zoom: float) -> tuple[float, float]:
    scale = _WORLD_PX * 2**zoom
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / scale))))
    return x / scale * 360 - 180, lat


def label_width_px(text: str, char_px: float) -> float:
    """A label's drawn width, roughly: wide (CJK) characters take about two Latin ones."""
    return sum(2 * char_px if unicodedata.east_asian_width(c) in "WF" else char_px
               for c in text)


def _overlaps(box: tuple[float, float, float, float],
              boxes: list[tuple[float, float, float, float]]) -> int:
    x0, y0, x1, y1 = box
    return sum(1 for a0, b0, a1, b1 in boxes if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1)


def map_layout(
    points: pd.DataFrame, zoom: float, near_px: float = 18.0, row_px: float = 22.0,
    side_px: float = 44.0, char_px: float = 7.0,
) -> pd.DataFrame:
    """Where to draw each site (columns site_id, lat, lon, label) at `zoom` so that sites
    and names do not sit on top of each other: sites closer than `near_px` are moved into a
    column of dots `row_px` apart, `side_px` beside their group (a leader line shows where
    each really is); each name goes right of its dot, or left where that hides less.

    Returns, per site in the input's order: site_id, map_lon, map_lat (where to draw),
    moved (drawn away from its true point) and anchor ("start": name to the right of the
    dot, "end": to the left). The columns are placed for this one zoom: zoomed in, they
    spread further from their points, which the leader lines still join."""
    pts = [(r.site_id, *world_px(r.lon, r.lat, zoom), label_width_px(r.label, char_px))
           for r in points.itertuples()]
    # Groups of sites within near_px of each other (single linkage).
    group = list(range(len(pts)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, (_, xi, yi, _) in enumerate(pts):
        for j in range(i):
            if math.hypot(xi - pts[j][1], yi - pts[j][2]) < near_px:
                group[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(pts)):
        members.setdefault(root(i), []).append(i)

    half = row_px / 2
    place: dict[int, tuple[float, float, str]] = {}
    taken: list[tuple[float, float, float, float]] = [  # every true point, as a small box
        (x - 6, y - 6, x + 6, y + 6) for _, x, y, _ in pts]
    # Biggest groups first: they need the most room; lone sites fit around them.
    for ids in sorted(members.values(), key=len, reverse=True):
        if len(ids) == 1:
            i = ids[0]
            _, x, y, w = pts[i]
            right = (x + 8, y - half, x + 10 + w, y + half)
            left = (x - 10 - w, y - half, x - 8, y + half)
            others = [b for k, b in enumerate(taken) if k != i]
            anchor = "end" if _overlaps(left, others) < _overlaps(right, others) else "start"
            place[i] = (x, y, anchor)
            taken.append(right if anchor == "start" else left)
            continue
        ids = sorted(ids, key=lambda k: pts[k][2])  # north first: leader lines do not cross
        cx = sum(pts[k][1] for k in ids) / len(ids)
        cy = sum(pts[k][2] for k in ids) / len(ids)
        height = row_px * (len(ids) - 1)
        widest = max(pts[k][3] for k in ids)
        best = None
        for side in (1, -1):  # right, then left
            for top in (cy + row_px, cy - height / 2, cy - height - row_px):  # below, beside, above
                dot_x = cx + side * side_px
                label = ((dot_x + 8, top - half, dot_x + 10 + widest, top + height + half)
                         if side > 0 else
                         (dot_x - 10 - widest, top - half, dot_x - 8, top + height + half))
                dots = (dot_x - half, top - half, dot_x + half, top + height + half)
                # The group's own true points may lie under its column: not counted.
                others = [t for k, t in enumerate(taken) if k not in ids]
                score = sum(_overlaps(b, others) for b in (label, dots))
                if best is None or score < best[0]:
                    best = (score, dot_x, top, label, dots, "start" if side > 0 else "end")
        _, dot_x, top, label, dots, anchor = best
        for row, k in enumerate(ids):
            place[k] = (dot_x, top + row * row_px, anchor)
        taken.extend([label, dots])

    rows = []
    for i, ((site_id, x, y, _), true) in enumerate(zip(pts, points.itertuples(), strict=True)):
        px, py, anchor = place[i]
        moved = (px, py) != (x, y)
        lon, lat = _to_lonlat(px, py, zoom) if moved else (true.lon, true.lat)
        rows.append({"site_id": site_id, "map_lon": lon, "map_lat": lat, "moved": moved,
                     "anchor": anchor})
    return pd.DataFrame(rows, columns=["site_id", "map_lon", "map_lat", "moved", "anchor"])

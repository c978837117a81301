"""Redirect advice: for a busy site, the other sites ranked by their predicted load at the time
a visitor would arrive there, and a short message to copy (vi/en/zh).

One logic for every audience: the officials' redirect page (dashboard/views/redirect.py) and
the public visitor page (public/status.py) both rank with this module (`redirect_options`,
`rank_alternatives`, `redirect_message`), so they never disagree.

- Travel: `load_travel_matrix` (road km, driving and walking minutes per directed pair of
  sites, `redirect.matrix_path`); travel_min is the driving time. A pair missing from the
  matrix falls back to the straight line x 1.4 at 40 km/h (how the matrix derives its own
  estimated rows), or is an error if `redirect.allow_fallback` is false. Every pair between
  two sites is itself an estimate (`via_city` or `haversine_x1.4`; only distances to the city
  centre are sourced), and the matrix knows nothing of traffic: on Mẫu Sơn frost days its
  one mountain road has jammed for hours.
- Predicted occupancy at arrival: the latest hourly forecast's occupancy for the hour the
  visitor arrives in (occupancy at the end of that hour). An arrival within
  `redirect.live_blend_min` minutes is nudged by what the counters see now: the forecast's
  present error (live occupancy − the forecast occupancy of the current hour) is added with a
  weight falling linearly from 1 (arriving now) to 0 (at `live_blend_min`), so the
  forecast's rise or fall is kept while its present miss is corrected. Only hours from the
  current one on are used, so a caller may pass the forecast from now on and get the same
  answer. With no forecast for the arrival hour the live occupancy stands in (basis "live");
  with neither the site has no data.
- Levels from capacity and the thresholds in force (settings.load, or the site's own in the
  store), as the alerts use them. A site has room when its predicted level is normal or busy
  and its overload probability at that hour is below `alerts.forecast_p` (the level at which a
  forecast alert is raised). Sites closed at arrival, or closing within
  `redirect.min_open_min` of it, are not proposed; nor are sites beyond
  `redirect.max_travel_min`.
- Order: sites with room first; then the calmer level first (visitorflow.load.SEVERITY,
  then no data); then the nearer; then the lower predicted share. So an overloaded site
  next door never ranks above one with room further away.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import pandas as pd

from visitorflow.catalogue import LANGUAGES, Catalogue
from visitorflow.clock import to_local, utc_naive, utc_now
from visitorflow.limits import effective_limits, thresholds_of
from visitorflow.live import live_status
from visitorflow.load import ROOM_LEVELS, SEVERITY, load_level, severity_rank
from visitorflow.settings import Settings
from visitorflow.store import Store

log = logging.getLogger(__name__)

MATRIX_COLUMNS = ["from_id", "to_id", "road_km", "drive_min", "walk_min", "basis"]
OPTION_COLUMNS = [
    "rank", "site_id", "travel_min", "road_km", "walk_min", "travel_basis", "arrival_utc",
    "predicted_occupancy", "capacity", "predicted_share", "predicted_level", "p_overload",
    "has_room", "basis", "live_weight", "is_open",
]
# Reference points of the shared travel matrix that the catalogue knows under another id: the
# catalogue's `huu_nghi` stands at the Vietnamese-side point (data/README.md), so its rows win
# over those of the Chinese-side `huu_nghi` point.
POINT_ALIASES = {"huu_nghi_vn_side": "huu_nghi"}
# The matrix's own rule for pairs without a sourced figure.
FALLBACK_DETOUR = 1.4
FALLBACK_SPEED_KMH = 40.0
FALLBACK_BASIS = "fallback_haversine_x1.4"

# The message to copy; site names come from the catalogue in the same language. It names the
# chosen site without calling it busy: the official may prepare it before the site fills up,
# and a message read out while the site is calm must not say it is crowded.
MESSAGES = {
    "vi": {"go": "Các điểm gần {site} còn chỗ đón khách: {options}.",
           "option": "{site} (khoảng {minutes} phút đi xe)", "sep": ", ",
           "none": "Các điểm gần {site} hiện không còn chỗ; mời quý khách quay lại sau."},
    "en": {"go": "Sites near {site} with room for visitors: {options}.",
           "option": "{site} (about {minutes} min by road)", "sep": ", ",
           "none": "No site near {site} has room now; please come back later."},
    "zh": {"go": "{site}附近尚有空余的景点：{options}。",
           "option": "{site}（车程约{minutes}分钟）", "sep": "、",
           "none": "{site}附近的景点目前均已满员，请稍后再来。"},
}


class RedirectError(ValueError):
    """The redirect advice cannot be given as configured; the message says what to fix."""


# -- travel ----------------------------------------------------------------------------------


def load_travel_matrix(path: Path) -> pd.DataFrame:
    """Travel between sites, one row per directed pair: from_id, to_id, road_km, drive_min,
    walk_min (NaN where walking is not realistic), basis (how the row was obtained, e.g.
    `sourced`, `via_city`, `haversine_x1.4`), and `note` if the file has one.

    Reads the project's matrix (data/travel_matrix.csv) or the shared reference file
    (data/raw/travel_matrix.csv): point ids are mapped to catalogue site ids
    (`POINT_ALIASES`). Raises RedirectError naming the file and the problem."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise RedirectError(
            f"travel matrix not found at {path}; set redirect.matrix_path in the settings"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RedirectError(f"{path} is not a readable CSV: {exc}") from None
    if "walk_min" not in frame:
        frame["walk_min"] = float("nan")
    missing = [c for c in MATRIX_COLUMNS if c not in frame]
    if missing:
        raise RedirectError(f"{path} lacks the column(s) {', '.join(missing)}")
    for column in ("road_km", "drive_min", "walk_min"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    bad = frame[frame["road_km"].isna() | frame["drive_min"].isna() | (frame["drive_min"] < 0)
                | (frame["road_km"] < 0) | (frame["walk_min"] < 0)]
    if len(bad):
        row = bad.iloc[0]
        raise RedirectError(f"{path}: {row['from_id']} → {row['to_id']} needs road_km and "
                            f"drive_min as numbers ≥ 0 ({len(bad)} row(s) affected)")
    repeated = frame[frame.duplicated(["from_id", "to_id"])]
    if len(repeated):
        row = repeated.iloc[0]
        raise RedirectError(f"{path}: the pair {row['from_id']} → {row['to_id']} is given twice")
    columns = MATRIX_COLUMNS + (["note"] if "note" in frame else [])
    return _apply_aliases(frame[columns])


def _apply_aliases(frame: pd.DataFrame) -> pd.DataFrame:
    aliased = frame["from_id"].isin(POINT_ALIASES) | frame["to_id"].isin(POINT_ALIASES)
    renamed = frame.assign(
        from_id=frame["from_id"].replace(POINT_ALIASES),
        to_id=frame["to_id"].replace(POINT_ALIASES),
        _aliased=aliased,
    )
    renamed = renamed[renamed["from_id"] != renamed["to_id"]]
    # Where a pair is given for both the point and its alias, the alias (the catalogue's
    # point) wins.
    renamed = renamed.sort_values("_aliased", ascending=False, kind="stable")
    renamed = renamed.drop_duplicates(["from_id", "to_id"]).drop(columns="_aliased")
    return renamed.sort_values(["from_id", "to_id"], kind="stable").reset_index(drop=True)


def derive_travel_matrix(raw_path: Path, catalogue: Catalogue) -> pd.DataFrame:
    """The project's matrix (data/travel_matrix.csv) from the shared reference file: pairs of
    catalogue sites only, point ids mapped to site ids (reference anchors such as
    `lang_son_city` dropped)."""
    frame = load_travel_matrix(raw_path)
    ids = set(catalogue.by_id)
    return frame[frame["from_id"].isin(ids) & frame["to_id"].isin(ids)].reset_index(drop=True)


@lru_cache(maxsize=4)
def _matrix_at(path: str, mtime: float) -> pd.DataFrame:
    return load_travel_matrix(Path(path))


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((phi2 - phi1) / 2) ** 2
         + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def travel_from(
    matrix: pd.DataFrame, catalogue: Catalogue, site_id: str, allow_fallback: bool = True
) -> pd.DataFrame:
    """From one site to every other catalogue site: site_id (destination), travel_min
    (driving minutes), road_km, walk_min, travel_basis. A pair missing from the matrix takes
    the straight line x 1.4 at 40 km/h (basis `fallback_haversine_x1.4`) or, with
    `allow_fallback` false, raises RedirectError naming it."""
    origin = catalogue.site(site_id)
    rows = matrix[matrix["from_id"] == site_id].set_index("to_id")
    out = []
    for site in catalogue.sites:
        if site.id == site_id:
            continue
        if site.id in rows.index:
            row = rows.loc[site.id]
            out.append({"site_id": site.id, "travel_min": float(row["drive_min"]),
                        "road_km": float(row["road_km"]), "walk_min": row["walk_min"],
                        "travel_basis": row["basis"]})
            continue
        if not allow_fallback:
            raise RedirectError(
                f"the travel matrix has no row {site_id} → {site.id}; add it to the matrix "
                "(redirect.matrix_path) or set redirect.allow_fallback = true")
        road_km = _haversine_km(origin.lat, origin.lon, site.lat, site.lon) * FALLBACK_DETOUR
        log.warning("travel %s → %s missing from the matrix: straight line x %.1f", site_id,
                    site.id, FALLBACK_DETOUR)
        out.append({"site_id": site.id,
                    "travel_min": float(round(road_km / FALLBACK_SPEED_KMH * 60)),
                    "road_km": round(road_km, 2), "walk_min": float("nan"),
                    "travel_basis": FALLBACK_BASIS})
    return pd.DataFrame(out, columns=["site_id", "travel_min", "road_km", "walk_min",
                                      "travel_basis"])


# -- ranking (pure) --------------------------------------------------------------------------


def _predict(
    hours: pd.DataFrame | None, current: float | None, now: pd.Timestamp,
    arrival: pd.Timestamp, travel_min: float, blend_min: int,
) -> tuple[float | None, float, str, float]:
    """One site's predicted occupancy at arrival: (occupancy or None, p_overload or NaN,
    basis, live weight). `hours`: its forecast indexed by hour start; `current`: live
    occupancy now, None without data."""
    forecast = None if hours is None else hours["occupancy"].get(arrival.floor("h"))
    if forecast is None:
        if current is None:
            return None, float("nan"), "none", 0.0
        return current, float("nan"), "live", 1.0
    p_overload = float(hours["p_overload"].get(arrival.floor("h")))
    expected_now = hours["occupancy"].get(now.floor("h"))
    if current is None or expected_now is None or blend_min <= 0:
        return float(forecast), p_overload, "forecast", 0.0
    weight = max(0.0, 1.0 - travel_min / blend_min)
    return max(0.0, forecast + weight * (current - expected_now)), p_overload, "forecast", weight


def rank_alternatives(
    site_id: str,
    live: pd.DataFrame,
    forecast: pd.DataFrame,
    travel: pd.DataFrame,
    thresholds: pd.DataFrame,
    catalogue: Catalogue,
    settings: Settings,
    now_utc: datetime,
) -> pd.DataFrame:
    """The alternatives to `site_id`, best first (the rules are in the module docstring).

    live: site_id, occupancy (people now; None/NaN: no data) — `live_status`;
    forecast: site_id, ts_utc (start of hour), occupancy (people at its end), p_overload —
    `Store.latest_forecast(granularity="hourly")`, whole or from the current hour on;
    travel: the travel matrix (`load_travel_matrix`);
    thresholds: indexed by site_id: capacity, busy, crowded, overload in force —
    `visitorflow.limits.effective_limits(...)[1]` (or `alerts.site_thresholds`).
    Returns OPTION_COLUMNS: rank (1 = best), site_id, travel_min, road_km, walk_min,
    travel_basis, arrival_utc (naive UTC), predicted_occupancy, capacity, predicted_share,
    predicted_level, p_overload (NaN without a forecast), has_room, basis ("forecast",
    "live" when no forecast covers the arrival hour, "none" with no data at all),
    live_weight (0–1, the weight of the live nudge), is_open (true: closed sites are left
    out). At most `redirect.alternatives` rows."""
    cfg = settings.redirect
    now = pd.Timestamp(now_utc)
    if now.tzinfo is not None:  # the store's convention is naive UTC
        now = utc_naive(now)
    now = now.floor("s")
    live_occ = live.set_index("site_id")["occupancy"]
    by_site = {
        sid: rows.set_index(pd.to_datetime(rows["ts_utc"]))
        for sid, rows in forecast.groupby("site_id")
    } if len(forecast) else {}
    rows = []
    for trip in travel_from(travel, catalogue, site_id, cfg.allow_fallback).itertuples():
        if trip.travel_min > cfg.max_travel_min:
            continue
        site = catalogue.site(trip.site_id)
        arrival = now + pd.Timedelta(minutes=trip.travel_min)
        local = to_local(arrival.to_pydatetime(), settings.tz)
        stays_open = local + timedelta(minutes=max(cfg.min_open_min - 1, 0))
        if not (site.is_open(local) and site.is_open(stays_open)):
            continue
        current = live_occ.get(site.id)
        predicted, p_overload, basis, weight = _predict(
            by_site.get(site.id), None if current is None or pd.isna(current) else float(current),
            now, arrival, trip.travel_min, cfg.live_blend_min)
        capacity = int(thresholds.at[site.id, "capacity"])
        level = load_level(predicted, capacity, thresholds_of(thresholds, site.id))
        has_room = level in ROOM_LEVELS and not (
            p_overload >= settings.alerts.forecast_p)
        rows.append({
            "site_id": site.id, "travel_min": trip.travel_min, "road_km": trip.road_km,
            "walk_min": trip.walk_min, "travel_basis": trip.travel_basis,
            "arrival_utc": arrival.to_pydatetime(),
            "predicted_occupancy": float("nan") if predicted is None else predicted,
            "capacity": capacity,
            "predicted_share": float("nan") if predicted is None else predicted / capacity,
            "predicted_level": level.value, "p_overload": p_overload, "has_room": has_room,
            "basis": basis, "live_weight": weight, "is_open": True,
        })
    if not rows:
        return pd.DataFrame(columns=OPTION_COLUMNS)
    frame = pd.DataFrame(rows)
    frame = frame.assign(_room=~frame["has_room"],
                         _level=frame["predicted_level"].map(_calm_rank))
    frame = frame.sort_values(["_room", "_level", "travel_min", "predicted_share"],
                              kind="stable", na_position="last").head(cfg.alternatives)
    frame["rank"] = range(1, len(frame) + 1)
    return frame[OPTION_COLUMNS].reset_index(drop=True)


def _calm_rank(level: str) -> int:
    """A predicted level's place when ranking, calmest first: SEVERITY, then no data (a site
    nobody can vouch for is proposed after an overloaded one)."""
    rank = severity_rank(level)
    return len(SEVERITY) if rank < 0 else rank


# -- the store wrapper -----------------------------------------------------------------------


def redirect_options(
    store: Store,
    catalogue: Catalogue,
    settings: Settings,
    site_id: str,
    now_utc: datetime | None = None,
) -> pd.DataFrame:
    """The alternatives to `site_id`, best first, from the store now (live occupancy, the
    latest hourly forecast, the thresholds in force) and the travel matrix in the settings.
    Columns: see `rank_alternatives`. The two best sites with room are
    `options[options["has_room"]].head(2)` — what `redirect_message` names.

    Raises RedirectError for an unknown site or an unusable matrix, StoreError (and its
    StoreMissing / StoreBusy) when the store cannot be read."""
    if site_id not in catalogue.by_id:
        raise RedirectError(f"unknown site {site_id!r}")
    now_utc = now_utc or utc_now()
    path = settings.redirect.matrix_path
    try:
        matrix = _matrix_at(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        raise RedirectError(
            f"travel matrix not found at {path}; set redirect.matrix_path in the settings"
        ) from None
    live = live_status(store, catalogue, settings, now_utc)
    forecast = store.latest_forecast(granularity="hourly")
    # Capacities and thresholds in force, admins' overrides included (visitorflow.limits).
    thresholds = effective_limits(store, catalogue, settings)[1]
    return rank_alternatives(site_id, live, forecast, matrix, thresholds, catalogue, settings,
                             now_utc)


def busiest_site(live: pd.DataFrame) -> str | None:
    """The site with the highest load share now (a `live_status` frame); None if no site
    has data."""
    shares = pd.to_numeric(live["load_share"], errors="coerce")
    if shares.notna().sum() == 0:
        return None
    return str(live.loc[shares.idxmax(), "site_id"])


# -- the message -----------------------------------------------------------------------------


def redirect_message(
    catalogue: Catalogue, site_id: str, options: pd.DataFrame, lang: str, limit: int = 2
) -> str:
    """A short text to copy to the tourism app or loudspeakers, in `lang` (vi, en or zh),
    naming the chosen site and the first `limit` alternatives with room (from
    `redirect_options`) in that language, with their driving minutes: "Sites near Tam Thanh
    Cave with room for visitors: Nhị Thanh Cave (about 4 min by road), …". It does not call
    the chosen site busy (the page shows its level). With no alternative with room it says
    to come back later."""
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    words = MESSAGES[lang]
    site = catalogue.site(site_id).name.get(lang)
    chosen = options[options["has_room"].astype(bool)].head(limit) if len(options) else options
    if chosen.empty:
        return words["none"].format(site=site)
    listed = words["sep"].join(
        words["option"].format(site=catalogue.site(r.site_id).name.get(lang),
                               minutes=max(1, round(r.travel_min)))
        for r in chosen.itertuples()
    )
    return words["go"].format(site=site, options=listed)

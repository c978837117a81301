"""Alerts: load levels from each site's capacity with hysteresis, and forecast overloads.

Pure functions over DataFrames (unit-tested), and one evaluation step the collector runs
once a minute inside its own commit cycle (`run_alert_step`): the collector is the only
regular writer of the store, and the dashboard only reads alerts (and writes the rare
acknowledgement).

Live levels are recomputed each minute from local midnight, minute by minute, so the result
depends only on the stored counts (a restart or a late reading changes nothing else):

- in value: a level is entered at its threshold (a share of capacity, `settings.load` or the
  site's override in the store) and left only when occupancy falls `alerts.clear_margin`
  below it;
- in time: a level is raised only once occupancy has been at or above its threshold for
  `alerts.raise_after_min` consecutive minutes.

A site has at most one open live alert (its current level, busy and above) and one open
forecast alert (an open hour within `alerts.forecast_horizon_h` whose overload probability
reaches `alerts.forecast_p`; it clears when no hour reaches `forecast_p - forecast_p_margin`),
the forecast first corrected by the nowcast from the last hours' counts (visitorflow/nowcast.py;
settings and their evaluation: docs/early-warning.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from visitorflow.catalogue import LANGUAGES, Catalogue
from visitorflow.clock import local_day_start_utc, to_local
from visitorflow.limits import effective_limits, site_limits
from visitorflow.load import LEVEL_LABELS, SEVERITY, LoadLevel, running_occupancy
from visitorflow.nowcast import apply_nowcast, nowcast_ratios
from visitorflow.settings import AlertSettings, LoadThresholds, Settings
from visitorflow.store import Store, StoreError

log = logging.getLogger(__name__)

# Alert levels in rising order (visitorflow.load.SEVERITY); index 0 is "no alert".
LEVELS: tuple[str, ...] = tuple(level.value for level in SEVERITY)
ACTION_KEYS = ("busy", "crowded", "overload", "forecast_overload")

MESSAGES = {
    "live": {
        "vi": "{site}: {level} từ {time} ({occupancy}/{capacity} khách)",
        "en": "{site}: {level} since {time} ({occupancy}/{capacity} visitors)",
        "zh": "{site}：自 {time} 起{level}（{occupancy}/{capacity} 人）",
    },
    "forecast": {
        "vi": "{site} có khả năng quá tải từ {time} (xác suất {p:.0%})",
        "en": "{site} likely overloaded from {time} (probability {p:.0%})",
        "zh": "{site} 预计自 {time} 起超载（概率 {p:.0%}）",
    },
}


# -- recommended actions ---------------------------------------------------------------------


def load_actions(path: Path) -> dict:
    """The province's recommended actions: {"default": {key: {lang: text}}, "sites": {site:
    {key: {lang: text}}}}, checked to have every level in every language."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    default = raw.get("default") or {}
    for key in ACTION_KEYS:
        missing = [lang for lang in LANGUAGES if not (default.get(key) or {}).get(lang)]
        if missing:
            raise ValueError(f"{path}: default.{key} needs a text in {', '.join(missing)}")
    return {"default": default, "sites": raw.get("sites") or {}}


def with_action_edits(actions: dict, edits: pd.DataFrame) -> dict:
    """The file's actions with the texts operators edited in the dashboard (Store.action_texts:
    site_id '*' for the province default) in their place."""
    merged = {"default": {k: dict(v) for k, v in actions["default"].items()},
              "sites": {s: {k: dict(v or {}) for k, v in (keys or {}).items()}
                        for s, keys in actions["sites"].items()}}
    for row in edits.itertuples():
        target = (merged["default"] if row.site_id == "*"
                  else merged["sites"].setdefault(row.site_id, {}))
        target.setdefault(row.action_key, {})[row.lang] = row.text
    return merged


def recommended_action(actions: dict, site_id: str, kind: str, level: str, lang: str) -> str:
    """The action for a site's alert: the site's own text if the province gave one."""
    key = "forecast_overload" if kind == "forecast" else level
    own = (actions["sites"].get(site_id) or {}).get(key) or {}
    return own.get(lang) or actions["default"][key][lang]


def alert_message(
    site_name: str, kind: str, level: str, lang: str, time_text: str,
    occupancy: float | None = None, capacity: int | None = None, p: float | None = None,
) -> str:
    """'Tam Thanh Cave likely overloaded from 14:00 (p = 0.8)' and its live counterpart."""
    template = MESSAGES[kind][lang]
    if kind == "forecast":
        return template.format(site=site_name, time=time_text, p=p)
    return template.format(site=site_name, level=LEVEL_LABELS[LoadLevel(level)][lang].lower(),
                           time=time_text, occupancy=int(occupancy or 0), capacity=capacity)


# -- live levels -----------------------------------------------------------------------------


def site_thresholds(
    catalogue: Catalogue, defaults: LoadThresholds, overrides: pd.DataFrame
) -> pd.DataFrame:
    """Per catalogue site: capacity and the busy / crowded / overload shares in force
    (visitorflow.limits.site_limits, the one place they are worked out)."""
    return site_limits(catalogue, defaults, overrides)


def occupancy_by_minute(
    counts: pd.DataFrame, day_start_utc: datetime, now_utc: datetime
) -> pd.DataFrame:
    """People on site per site and minute since local midnight (visitorflow.load's
    `running_occupancy`), every minute up to now, from minute_counts rows (site_id,
    minute_utc, count_in, count_out, any gate). Sites with nothing counted today are absent
    (no data)."""
    if counts.empty:
        return pd.DataFrame(columns=["site_id", "minute_utc", "occupancy"])
    last = pd.Timestamp(now_utc).floor("min")
    minutes = pd.date_range(pd.Timestamp(day_start_utc), last, freq="min")
    per_minute = counts.groupby(["site_id", "minute_utc"])[["count_in", "count_out"]].sum()
    frames = []
    for site_id, flows in per_minute.groupby(level="site_id"):
        flows = flows.droplevel("site_id")
        flows.index = pd.DatetimeIndex(flows.index)
        flows = flows.reindex(minutes, fill_value=0)
        # People are counted whole: the running sum stays a whole number.
        occupancy = running_occupancy(flows["count_in"], flows["count_out"]).astype(int)
        frames.append(pd.DataFrame({"site_id": site_id, "minute_utc": minutes,
                                    "occupancy": occupancy.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def level_series(
    share: list[float] | pd.Series, thresholds: tuple[float, float, float],
    clear_margin: float, raise_after_min: int,
) -> list[int]:
    """Alert level (index into LEVELS) per minute of one site from its occupancy share, with
    hysteresis in value (`clear_margin`) and in time (`raise_after_min` minutes)."""
    current = 0
    runs = [0] * len(thresholds)  # consecutive minutes at or above each threshold
    out = []
    for value in share:
        for i, threshold in enumerate(thresholds):
            runs[i] = runs[i] + 1 if value >= threshold else 0
        # Down at once to the highest level whose threshold less the margin is still met.
        while current > 0 and value < thresholds[current - 1] - clear_margin:
            current -= 1
        # Up to the highest level held long enough.
        for i in range(len(thresholds) - 1, -1, -1):
            if i + 1 > current and runs[i] >= raise_after_min:
                current = i + 1
                break
        out.append(current)
    return out


def site_levels(
    occupancy: pd.DataFrame, thresholds: pd.DataFrame, cfg: AlertSettings
) -> pd.DataFrame:
    """occupancy (site_id, minute_utc, occupancy) with capacity, share and alert level."""
    frames = []
    for site_id, rows in occupancy.sort_values("minute_utc").groupby("site_id", sort=True):
        if site_id not in thresholds.index:
            continue
        t = thresholds.loc[site_id]
        share = rows["occupancy"].to_numpy() / t["capacity"]
        levels = level_series(list(share), (t["busy"], t["crowded"], t["overload"]),
                              cfg.clear_margin, cfg.raise_after_min)
        frames.append(rows.assign(capacity=int(t["capacity"]), share=share,
                                  level=[LEVELS[i] for i in levels]))
    if not frames:
        return pd.DataFrame(columns=["site_id", "minute_utc", "occupancy", "capacity", "share",
                                     "level"])
    return pd.concat(frames, ignore_index=True)


def current_live_alerts(levels: pd.DataFrame, thresholds: pd.DataFrame) -> pd.DataFrame:
    """Per site whose latest level is busy or above: the level, the minute it was raised
    (start of its current spell), the occupancy then, capacity and threshold."""
    rows = []
    for site_id, site in levels.sort_values("minute_utc").groupby("site_id", sort=True):
        level = site["level"].iloc[-1]
        if level == "normal":
            continue
        changed = site["level"].ne(site["level"].shift()).cumsum()
        spell = site[changed == changed.iloc[-1]]
        first = spell.iloc[0]
        rows.append({"site_id": site_id, "kind": "live", "level": level,
                     "raised_at_utc": first["minute_utc"], "occupancy": int(first["occupancy"]),
                     "capacity": int(first["capacity"]),
                     "threshold": float(thresholds.loc[site_id, level]),
                     "from_utc": pd.NaT, "p_overload": None, "run_id": None})
    return pd.DataFrame(rows, columns=_DESIRED_COLUMNS)


_DESIRED_COLUMNS = ["site_id", "kind", "level", "raised_at_utc", "occupancy", "capacity",
                    "threshold", "from_utc", "p_overload", "run_id"]


# -- forecast alerts -------------------------------------------------------------------------


def forecast_alerts(
    forecast: pd.DataFrame, now_utc: datetime, cfg: AlertSettings, open_sites: set[str],
    thresholds: pd.DataFrame, recent_arrivals: pd.DataFrame | None = None,
    interval_width: float = 0.8,
) -> pd.DataFrame:
    """Per site: the first open hour from the current one to `forecast_horizon_h` ahead whose
    p_overload reaches `forecast_p`. A site already in `open_sites` (an open forecast alert)
    keeps it while some hour reaches `forecast_p - forecast_p_margin` (hysteresis).
    With `recent_arrivals` (Store.hourly_arrivals of the last hours) and
    `cfg.nowcast_hours` > 0, today's remaining hours are first corrected by the nowcast
    (visitorflow/nowcast.py; `interval_width` is the forecast band's, for its spread)."""
    if forecast.empty:
        return pd.DataFrame(columns=_DESIRED_COLUMNS)
    now = pd.Timestamp(now_utc)
    ts = pd.to_datetime(forecast["ts_utc"])
    in_window = ((ts + pd.Timedelta(hours=1) > now)
                 & (ts < now + pd.Timedelta(hours=cfg.forecast_horizon_h))
                 & forecast["is_open"].astype(bool))
    if not in_window.any():  # every site closed over the horizon: nothing to flag
        return pd.DataFrame(columns=_DESIRED_COLUMNS)
    if cfg.nowcast_hours > 0 and recent_arrivals is not None and len(recent_arrivals):
        ratios = nowcast_ratios(forecast, recent_arrivals, now_utc, cfg.nowcast_hours,
                                cfg.nowcast_prior_people, cfg.nowcast_ratio_max)
        forecast = apply_nowcast(forecast, ratios, now_utc, interval_width)
    window = forecast[in_window.to_numpy()]
    rows = []
    for site_id, hours in window.sort_values("ts_utc").groupby("site_id", sort=True):
        keep_at = cfg.forecast_p - cfg.forecast_p_margin if site_id in open_sites else None
        risky = hours[hours["p_overload"] >= cfg.forecast_p]
        if risky.empty and keep_at is not None:
            risky = hours[hours["p_overload"] >= keep_at]
        if risky.empty:
            continue
        first = risky.iloc[0]
        rows.append({"site_id": site_id, "kind": "forecast", "level": "overload",
                     "raised_at_utc": now.floor("min"), "occupancy": None,
                     "capacity": int(first["capacity"]),
                     "threshold": float(thresholds.loc[site_id, "overload"])
                     if site_id in thresholds.index else 1.0,
                     "from_utc": pd.Timestamp(first["ts_utc"]),
                     "p_overload": float(first["p_overload"]), "run_id": first.get("run_id")})
    return pd.DataFrame(rows, columns=_DESIRED_COLUMNS)


# -- what changes ----------------------------------------------------------------------------


def alert_id(kind: str, site_id: str, level: str, raised_at_utc: datetime) -> str:
    return f"{kind}:{site_id}:{level}:{pd.Timestamp(raised_at_utc):%Y-%m-%dT%H:%M}"


def plan_changes(
    open_alerts: pd.DataFrame | None, desired: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """Compare the open alerts with what should be open now, matching on (site, kind,
    level): an alert already open stays as it is (never raised twice); returns the rows to
    raise (with alert_id) and the ids to clear."""
    key = ["site_id", "kind", "level"]
    open_keys = (set() if open_alerts is None or open_alerts.empty
                 else set(map(tuple, open_alerts[key].to_numpy())))
    wanted_keys = set(map(tuple, desired[key].to_numpy())) if len(desired) else set()
    # A boolean array, not a list: an empty list would select no columns, and the store
    # wants every alert column even when nothing is raised.
    new = np.array([tuple(k) not in open_keys for k in desired[key].to_numpy()], dtype=bool)
    raise_rows = desired[new]
    raise_rows = raise_rows.assign(alert_id=[
        alert_id(r.kind, r.site_id, r.level, r.raised_at_utc) for r in raise_rows.itertuples()
    ])
    cleared = [] if open_alerts is None or open_alerts.empty else [
        row.alert_id for row in open_alerts.itertuples()
        if (row.site_id, row.kind, row.level) not in wanted_keys
    ]
    return raise_rows, cleared


# -- the collector's step --------------------------------------------------------------------


def evaluate_alerts(
    store: Store, catalogue: Catalogue, settings: Settings, now_utc: datetime,
    actions: dict | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Evaluate every site now and store what changed and when it was evaluated (one short
    write). Returns the rows raised and the ids cleared."""
    cfg = settings.alerts
    actions = actions or load_actions(cfg.actions_path)
    # Capacities and thresholds in force (admins' overrides included), read once.
    catalogue, thresholds = effective_limits(store, catalogue, settings)
    actions = with_action_edits(actions, store.action_texts())
    day_start = local_day_start_utc(now_utc, settings.tz)
    occupancy = occupancy_by_minute(store.minute_counts(day_start, now_utc), day_start, now_utc)
    live = current_live_alerts(site_levels(occupancy, thresholds, cfg), thresholds)
    open_alerts = store.open_alerts()
    open_forecast = (set() if open_alerts is None else
                     set(open_alerts.loc[open_alerts["kind"] == "forecast", "site_id"]))
    recent = (store.hourly_arrivals(None, pd.Timestamp(now_utc).floor("h").to_pydatetime()
                                    - timedelta(hours=cfg.nowcast_hours), now_utc)
              if cfg.nowcast_hours > 0 else None)
    forecast = forecast_alerts(store.latest_forecast(granularity="hourly"), now_utc, cfg,
                               open_forecast, thresholds, recent,
                               settings.forecast.interval_width)
    desired = pd.concat([f for f in (live, forecast) if len(f)] or [live], ignore_index=True)
    raised, cleared = plan_changes(open_alerts, desired)
    lang = settings.dashboard.default_language
    raised = raised.assign(
        cleared_at_utc=pd.NaT,
        message=[_stored_message(r, catalogue, settings, lang) for r in raised.itertuples()],
        recommended_action=[recommended_action(actions, r.site_id, r.kind, r.level, lang)
                            for r in raised.itertuples()],
    )
    # Written even when nothing changed: the evaluation itself is recorded, so "no alert"
    # and "alerting never ran" stay different news (Store.last_alert_evaluation_utc).
    store.apply_alert_changes(raised, cleared, now_utc)
    return raised, cleared


def _stored_message(row: Any, catalogue: Catalogue, settings: Settings, lang: str) -> str:
    """The message of one alert to raise (`row`: an itertuples() row of `plan_changes`)."""
    at = row.from_utc if row.kind == "forecast" else row.raised_at_utc
    local = to_local(pd.Timestamp(at), settings.tz)
    return alert_message(catalogue.site(row.site_id).name.get(lang), row.kind, row.level, lang,
                         local.strftime("%H:%M"), row.occupancy, row.capacity, row.p_overload)


def run_alert_step(store: Store, catalogue: Catalogue, settings: Settings,
                   now_utc: datetime) -> None:
    """`evaluate_alerts` for the collector's loop: never stops the collector. A busy store
    defers the evaluation to the next minute; anything else is logged."""
    try:
        raised, cleared = evaluate_alerts(store, catalogue, settings, now_utc)
    except StoreError as exc:
        log.warning("alert evaluation deferred: %s", exc)
    except Exception:
        log.exception("alert evaluation failed; the collector carries on")
    else:
        for row in raised.itertuples():
            log.info("alert raised: %s", row.message)
        if cleared:
            log.info("alerts cleared: %s", ", ".join(cleared))


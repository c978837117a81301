"""The live state of every site: occupancy, arrivals, silent gates and load level.

One function shared by the dashboard, notebooks and tests, so that every view of "now"
agrees. A DataFrame out, one row per catalogue site.
"""

from __future__ import annotations

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

"""One site in detail: today against the forecast band, gate by gate, device health, and the
last 30 days. Frames for the dashboard's site page (and notebooks), times in local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from visitorflow.catalogue import Catalogue
from visitorflow.clock import local_day_start_utc, to_local
from visitorflow.live import silent_gates
from visitorflow.load import running_occupancy
from visitorflow.settings import Settings
from visitorflow.store import Store


@dataclass(frozen=True)
class SiteDetail:
    today: pd.DataFrame  # per local hour: arrivals, occupancy, forecast band
    gates: pd.DataFrame  # per local hour × gate: people in
    devices: pd.DataFrame  # per gate: counter, last seen, battery, status, gaps
    days: pd.DataFrame  # per local day of the last 30: arrivals


def _local(ts: pd.Series | pd.DatetimeIndex, settings: Settings) -> pd.Series:
    return to_local(pd.Series(ts), settings.tz)


def hourly_today(
    minutes: pd.DataFrame, forecast: pd.DataFrame, day_start_utc: datetime, now_utc: datetime,
    settings: Settings,
) -> pd.DataFrame:
    """Per local hour of today: arrivals and occupancy (people on site at the end of the
    hour, or now for the current hour) so far, and the forecast's arrivals band and
    occupancy. Hours still to come have forecasts only. `complete` is False for the current
    hour and those to come: the current hour's arrivals are a count so far, not an hour's."""
    hours = pd.date_range(pd.Timestamp(day_start_utc), periods=24, freq="h")
    frame = pd.DataFrame(index=hours)
    frame["complete"] = hours + pd.Timedelta(hours=1) <= pd.Timestamp(now_utc)
    if len(minutes):
        m = minutes.assign(hour=pd.to_datetime(minutes["minute_utc"]).dt.floor("h"))
        by_hour = (m.groupby("hour")[["count_in", "count_out"]].sum()
                   .reindex(hours, fill_value=0))
        done = hours <= pd.Timestamp(now_utc)
        frame["arrivals"] = by_hour["count_in"].where(done)
        # Summed by hour first: the running occupancy at each hour's end is the same as the
        # per-minute one at that minute (visitorflow.load clips the sum, not each step).
        frame["occupancy"] = running_occupancy(
            by_hour["count_in"], by_hour["count_out"]).where(done)
    else:
        frame["arrivals"] = float("nan")
        frame["occupancy"] = float("nan")
    if len(forecast):
        f = forecast.assign(ts_utc=pd.to_datetime(forecast["ts_utc"])).set_index("ts_utc")
        f = f.reindex(hours)
        frame["forecast_arrivals"] = f["arrivals"]
        frame["forecast_lower"] = f["arrivals_lower"]
        frame["forecast_upper"] = f["arrivals_upper"]
        frame["forecast_occupancy"] = f["occupancy"]
        frame["p_overload"] = f["p_overload"]
    frame.index = _local(frame.index, settings).to_numpy()
    frame.index.name = "hour_local"
    return frame


def gates_today(gate_counts: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """People in per local hour (rows) and gate (columns) from Store.gate_interval_counts."""
    if gate_counts.empty:
        return pd.DataFrame()
    table = gate_counts.assign(hour_local=_local(gate_counts["start_utc"], settings).to_numpy())
    return table.pivot_table(index="hour_local", columns="gate_id", values="count_in",
                             aggfunc="sum", fill_value=0)


def device_health(
    gates: pd.DataFrame, gaps: pd.DataFrame, site_id: str, since_utc: datetime,
    settings: Settings,
) -> pd.DataFrame:
    """Per catalogue gate of the site (from live.silent_gates): counter, last seen (local),
    battery, status, silent, and since a time: open gaps (readings lost), recovered readings."""
    own = gates[gates["site_id"] == site_id].copy()
    recent = gaps[(gaps["site_id"] == site_id)
                  & (pd.to_datetime(gaps["after_ts_utc"]) >= pd.Timestamp(since_utc))]
    per_gate = recent.pivot_table(index="gate_id", columns="status", values="missing_readings",
                                  aggfunc="sum", fill_value=0)
    for status in ("open", "recovered"):
        if status not in per_gate:
            per_gate[status] = 0
    own = own.merge(per_gate[["open", "recovered"]], left_on="gate_id", right_index=True,
                    how="left")
    last = pd.to_datetime(own["last_reading_utc"])
    return pd.DataFrame({
        "gate_id": own["gate_id"].to_numpy(),
        "counter_id": own["counter_id"].to_numpy(),
        "last_seen_local": [None if pd.isna(t) else to_local(t, settings.tz) for t in last],
        "battery_pct": own["battery_pct"].to_numpy(),
        "status": own["status"].fillna("–").to_numpy(),
        "silent": own["silent"].to_numpy(),
        "lost_readings": own["open"].fillna(0).astype(int).to_numpy(),
        "recovered_readings": own["recovered"].fillna(0).astype(int).to_numpy(),
    })


def daily_history(hourly_counts: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Arrivals per local day from Store.site_hourly_counts (days with nothing counted are
    absent: unknown, not zero)."""
    if hourly_counts.empty:
        return pd.DataFrame(columns=["day_local", "arrivals"])
    days = _local(hourly_counts["hour_utc"], settings).dt.date.to_numpy()
    return (hourly_counts.assign(day_local=days).groupby("day_local", as_index=False)
            ["arrivals"].sum())


def site_detail(
    store: Store, catalogue: Catalogue, settings: Settings, site_id: str, now_utc: datetime,
    days: int = 30,
) -> SiteDetail:
    """Everything the site page shows, read with a few short queries."""
    day_start = local_day_start_utc(now_utc, settings.tz)
    day_end = day_start + timedelta(days=1)
    since = day_start - timedelta(days=days)
    with store.session():  # one store connection for the page's few reads
        forecast = store.latest_forecast(site_id=site_id, granularity="hourly")
        health = store.gate_health()
        minutes = store.minute_counts(day_start, now_utc, site_id)
        gate_counts = store.gate_interval_counts(day_start, day_end, 3600, [site_id])
        gaps = store.reading_gaps()
        hourly_counts = store.site_hourly_counts(since, day_start, [site_id])
    forecast = forecast[(pd.to_datetime(forecast["ts_utc"]) >= pd.Timestamp(day_start))
                        & (pd.to_datetime(forecast["ts_utc"]) < pd.Timestamp(day_end))]
    gates = silent_gates(health, catalogue, settings, now_utc)
    return SiteDetail(
        today=hourly_today(minutes, forecast, day_start, now_utc, settings),
        gates=gates_today(gate_counts, settings),
        devices=device_health(gates, gaps, site_id, since, settings),
        days=daily_history(hourly_counts, settings),
    )

"""Replay: a CSV of historical counts published as if the counters were sending it live.

Two layouts are read:
- `ts, site_id, in, out` (optionally `gate_id`): a ticket office's or another counter's
  export; `ts` is the START of each counting period (how exports and Prophet label periods),
  with a UTC offset or in local time (Asia/Ho_Chi_Minh);
- `ds, y` (Prophet's layout) for one site (`--site`): `y` people in; nobody counted the way
  out, so departures are the arrivals shifted by the site's dwell time (keeps occupancy
  sensible), stated here because it is invented.

The period length is the most common gap between consecutive times of a gate. Each row
becomes one reading of its gate (the site's first gate unless `gate_id` says otherwise)
ending at `ts + period`, published over MQTT by one client per gate like the live mode.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC
from pathlib import Path

import pandas as pd

from ingest.sim_counters import CounterClient, GateCounter, TruthLog
from visitorflow.catalogue import Catalogue
from visitorflow.clock import to_utc
from visitorflow.settings import Settings


class ReplayError(ValueError):
    """The replay file cannot be used; the message says why."""


def load_replay(path: Path, catalogue: Catalogue, settings: Settings,
                site_id: str | None = None) -> pd.DataFrame:
    """Rows to publish: site_id, gate_id, end_utc (naive), interval_s, count_in, count_out,
    oldest first."""
    frame = pd.read_csv(path)
    cols = set(frame.columns)
    if {"ts", "site_id", "in", "out"} <= cols:
        out = pd.DataFrame({"site_id": frame["site_id"].astype(str), "ts": frame["ts"],
                            "count_in": frame["in"], "count_out": frame["out"]})
        out["gate_id"] = frame["gate_id"].astype(str) if "gate_id" in cols else None
    elif {"ds", "y"} <= cols:
        if not site_id:
            raise ReplayError(f"{path} has ds,y columns: name the site with --site")
        out = pd.DataFrame({"site_id": site_id, "ts": frame["ds"], "count_in": frame["y"],
                            "gate_id": None})
    else:
        raise ReplayError(f"{path} needs columns ts,site_id,in,out or ds,y; has {sorted(cols)}")
    known = catalogue.by_id
    unknown = sorted(set(out.site_id) - set(known))
    if unknown:
        raise ReplayError(f"{path}: sites not in the catalogue: {unknown}")
    ts = pd.to_datetime(out["ts"], utc=False, format="mixed")
    if ts.dt.tz is None:
        out["start_utc"] = to_utc(ts, settings.tz)
    else:
        out["start_utc"] = ts.dt.tz_convert(UTC).dt.tz_localize(None)
    first_gate = {sid: known[sid].gates[0].id for sid in set(out.site_id)}
    out["gate_id"] = out.gate_id.fillna(out.site_id.map(first_gate))
    out = out.sort_values(["site_id", "gate_id", "start_utc"]).reset_index(drop=True)
    parts = []
    for (sid, gid), rows in out.groupby(["site_id", "gate_id"], sort=False):
        site = known[sid]
        if gid not in {g.id for g in site.gates}:
            raise ReplayError(f"{path}: {gid!r} is not a gate of {sid}")
        gaps = rows.start_utc.diff().dropna().dt.total_seconds()
        interval = int(gaps.mode().iloc[0]) if len(gaps) else settings.simulator.interval_s
        if interval <= 0:
            raise ReplayError(f"{path}: gate {sid}/{gid} has repeated times")
        rows = rows.copy()
        rows["interval_s"] = interval
        if "count_out" not in rows or rows.count_out.isna().all():
            lag = max(1, round(site.dwell_min * 60 / interval))
            rows["count_out"] = rows.count_in.shift(lag, fill_value=0)
        parts.append(rows)
    result = pd.concat(parts).sort_values(["start_utc", "site_id", "gate_id"])
    result["end_utc"] = result.start_utc + pd.to_timedelta(result.interval_s, unit="s")
    for col in ("count_in", "count_out"):
        if (result[col] < 0).any() or result[col].isna().any():
            raise ReplayError(f"{path}: {col} must be counts ≥ 0")
        result[col] = result[col].astype(int)
    return result[["site_id", "gate_id", "end_utc", "interval_s", "count_in", "count_out"]]


def replay(settings: Settings, catalogue: Catalogue, rows: pd.DataFrame, speed: float,
           truth_path: Path | None = None, stop: threading.Event | None = None) -> int:
    """Publish the rows, `speed` simulated seconds per real second (math.inf: as fast as the
    broker acknowledges). Returns messages acknowledged (or published, without a log)."""
    stop = stop or threading.Event()
    truth = TruthLog(truth_path) if truth_path else None
    needed = set(zip(rows.site_id, rows.gate_id, strict=True))
    clients, counters = {}, {}
    for site, gate in catalogue.gates():
        if (site.id, gate.id) in needed:
            clients[(site.id, gate.id)] = CounterClient(settings, site, gate, truth)
            counters[(site.id, gate.id)] = GateCounter(site, gate)
    for client in clients.values():
        if not client.connected.wait(10):
            raise ConnectionError(f"{client.gate.counter_id} could not connect to the broker")
    first = rows.end_utc.min() if len(rows) else None
    real_start = time.monotonic()
    published = 0
    try:
        for row in rows.itertuples(index=False):
            if stop.is_set():
                break
            end = row.end_utc.to_pydatetime()
            if not math.isinf(speed):
                wait = real_start + (end - first).total_seconds() / speed - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
            key = (row.site_id, row.gate_id)
            reading = counters[key].report(end, int(row.interval_s), int(row.count_in),
                                           int(row.count_out))
            clients[key].publish(reading, end.replace(tzinfo=UTC).astimezone(settings.tz))
            published += 1
    finally:
        for client in clients.values():
            client.close()
        if truth:
            truth.close()
    return truth.count if truth else published

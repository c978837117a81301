"""What the collector writes: readings and their minute counts, quarantine, gate status,
temperatures, and the ingest-quality repairs (seq gaps, counter resets, closing re-zero).

Every writer of `readings` keeps `minute_counts` and `gate_last_reading` in the same
transaction, through `add_minute_counts` and `GATE_LAST_UPSERT`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import pandas as pd

from visitorflow.clock import utc_now
from visitorflow.contract import GateStatus, Reading
from visitorflow.ingest_quality import (
    MinuteCorrection,
    StoredGap,
    StoredReading,
    analyse_pairs,
    reconcile_gaps,
)
from visitorflow.store.connection import StoreConnection
from visitorflow.store.schema import GATE_LAST_UPSERT, READING_COLUMNS

log = logging.getLogger(__name__)

# The minute counts of readings in {source} (a table or view named from constants).
MINUTE_COUNTS_OF = """SELECT site_id, gate_id,
           date_trunc('minute', ts_utc - to_seconds(interval_s)),
           sum(count_in), sum(count_out)
    FROM {source} GROUP BY ALL"""
_MINUTE_COUNTS_ADD = """INSERT INTO {table} {rows}
    ON CONFLICT (site_id, gate_id, minute_utc) DO UPDATE SET
        count_in = count_in + EXCLUDED.count_in,
        count_out = count_out + EXCLUDED.count_out"""


def add_minute_counts(
    con: duckdb.DuckDBPyConnection, rows: str, *, upsert: bool = True,
    table: str = "minute_counts",
) -> None:
    """Add the people of `rows` (a SELECT of site_id, gate_id, minute_utc, count_in,
    count_out, written from constants) to the minute counts. `upsert=False` when no row can
    exist yet: a plain insert, which a backfill needs to be fast."""
    sql = (_MINUTE_COUNTS_ADD if upsert else "INSERT INTO {table} {rows}").format(
        table=table, rows=rows)
    con.execute(sql).fetchall()


def _add_corrections(con: duckdb.DuckDBPyConnection, fixes: Sequence[MinuteCorrection]) -> None:
    if not fixes:
        return
    frame = pd.DataFrame(
        [(f.site_id, f.gate_id, f.minute_utc, f.count_in, f.count_out) for f in fixes],
        columns=["site_id", "gate_id", "minute_utc", "count_in", "count_out"],
    )
    con.register("corrections", frame)
    try:
        # Summed first: one statement may not update the same minute twice (a gap filled
        # and a new one recovered often share their minute).
        add_minute_counts(con, "SELECT site_id, gate_id, minute_utc, sum(count_in), "
                               "sum(count_out) FROM corrections GROUP BY ALL")
    finally:
        con.unregister("corrections")


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    duplicates: int
    quarantined: int
    statuses: int
    lock_wait_s: float


@dataclass(frozen=True)
class Quarantined:
    received_at_utc: datetime
    topic: str
    payload: bytes
    reason: str


def readings_frame(
    readings: Sequence[Reading], received_at_utc: Sequence[datetime] | datetime
) -> pd.DataFrame:
    """Readings as a DataFrame with the `readings` table's columns and types."""
    received = (
        list(received_at_utc)
        if isinstance(received_at_utc, Sequence)
        else [received_at_utc] * len(readings)
    )
    return pd.DataFrame(
        {
            "device_id": pd.Series([r.device_id for r in readings], dtype="string"),
            "seq": pd.Series([r.seq for r in readings], dtype="int64"),
            "ts_utc": pd.to_datetime([r.ts_utc for r in readings]).astype("datetime64[us]"),
            "site_id": pd.Series([r.site_id for r in readings], dtype="string"),
            "gate_id": pd.Series([r.gate_id for r in readings], dtype="string"),
            "interval_s": pd.Series([r.interval_s for r in readings], dtype="int32"),
            "count_in": pd.Series([r.count_in for r in readings], dtype="int32"),
            "count_out": pd.Series([r.count_out for r in readings], dtype="int32"),
            "in_total": pd.Series([r.in_total for r in readings], dtype="Int64"),
            "out_total": pd.Series([r.out_total for r in readings], dtype="Int64"),
            "battery_pct": pd.Series([r.battery_pct for r in readings], dtype="Float64"),
            "received_at_utc": pd.to_datetime(received).astype("datetime64[us]"),
        }
    )


class IngestWrites(StoreConnection):
    """The collector's writes."""

    def write_batch(
        self,
        readings: Sequence[Reading],
        received_at_utc: Sequence[datetime] | datetime,
        quarantined: Sequence[Quarantined] = (),
        statuses: Sequence[tuple[GateStatus, datetime]] = (),
        heal: bool = False,
    ) -> BatchResult:
        """Store one micro-batch atomically: new readings (duplicates dropped), their minute
        counts, quarantined messages and gate status changes. With `heal` (the collector),
        also re-check the touched devices for seq gaps and counter resets."""
        frame = readings_frame(readings, received_at_utc)
        inserted = 0
        with self._writing() as con:
            wait = self.last_lock_wait_s
            if len(frame):
                con.register("batch", frame)
                new = con.execute(
                    f"INSERT OR IGNORE INTO readings SELECT {', '.join(READING_COLUMNS)} "
                    "FROM batch RETURNING site_id, gate_id, ts_utc, interval_s, "
                    "count_in, count_out, device_id, battery_pct"
                ).df()
                con.unregister("batch")
                inserted = len(new)
                if inserted:
                    con.register("new_readings", new)
                    add_minute_counts(con, MINUTE_COUNTS_OF.format(source="new_readings"))
                    con.execute(GATE_LAST_UPSERT.format(source="new_readings"))
                    con.unregister("new_readings")
                    if heal:
                        self._heal(con, frame)
            if quarantined:
                con.executemany(
                    "INSERT INTO quarantine VALUES (?, ?, ?, ?)",
                    [(q.received_at_utc, q.topic, q.payload, q.reason) for q in quarantined],
                )
            for status, at in statuses:
                con.execute(
                    """INSERT INTO gate_status VALUES (?, ?, ?, ?)
                    ON CONFLICT (site_id, gate_id) DO UPDATE SET
                        status = EXCLUDED.status, changed_at_utc = EXCLUDED.changed_at_utc""",
                    [status.site_id, status.gate_id, status.status, at],
                )
        return BatchResult(
            inserted=inserted,
            duplicates=len(frame) - inserted,
            quarantined=len(quarantined),
            statuses=len(statuses),
            lock_wait_s=wait,
        )

    def write_temperature(self, frame: pd.DataFrame) -> int:
        """Upsert temperatures: a DataFrame with site_id, ts_utc (naive UTC), temp_c, source."""
        with self._writing(temps=frame[["site_id", "ts_utc", "temp_c", "source"]]) as con:
            con.execute("INSERT OR REPLACE INTO temperature SELECT * FROM temps")
        return len(frame)

    # -- ingest quality --------------------------------------------------------------------

    def _heal(self, con: duckdb.DuckDBPyConnection, batch: pd.DataFrame) -> None:
        """Re-check the devices of a batch for seq gaps and counter resets, inside the write
        transaction. Only the pairs a new reading can change are looked at: from the reading
        just before each device's earliest new one onwards (a late reading re-opens its past).
        What to change is decided by `ingest_quality.reconcile_gaps`; this applies it."""
        touched = batch.groupby("device_id", as_index=False)["ts_utc"].min()
        con.register("touched", touched.rename(columns={"ts_utc": "min_ts"}))
        try:
            windows = con.execute(
                """SELECT t.device_id,
                       coalesce((SELECT max(r.ts_utc) FROM readings r
                                 WHERE r.device_id = t.device_id AND r.ts_utc < t.min_ts),
                                t.min_ts) AS since_utc
                FROM touched t"""
            ).df()
        finally:
            con.unregister("touched")
        con.register("windows", windows)
        try:
            # Only pairs of consecutive readings that can mean something: a seq that did not
            # go up by one, or a cumulative total that went down. Usually none.
            pairs = con.execute(
                """WITH w AS (
                    SELECT r.device_id, r.site_id, r.gate_id, r.seq, r.ts_utc, r.count_in,
                           r.count_out, r.in_total, r.out_total,
                           lag(r.seq) OVER d AS p_seq, lag(r.ts_utc) OVER d AS p_ts,
                           lag(r.count_in) OVER d AS p_in, lag(r.count_out) OVER d AS p_out,
                           lag(r.in_total) OVER d AS p_in_total,
                           lag(r.out_total) OVER d AS p_out_total
                    FROM readings r JOIN windows w
                      ON r.device_id = w.device_id AND r.ts_utc >= w.since_utc
                    WINDOW d AS (PARTITION BY r.device_id ORDER BY r.ts_utc, r.seq))
                SELECT device_id, site_id, gate_id, p_seq, p_ts, p_in, p_out, p_in_total,
                       p_out_total, seq, ts_utc, count_in, count_out, in_total, out_total
                FROM w
                -- HUGEINT: a seq may be 2^63 − 1, the contract's largest (no overflow)
                WHERE p_seq IS NOT NULL AND (seq <> p_seq::HUGEINT + 1 OR in_total < p_in_total
                                             OR out_total < p_out_total)"""
            ).fetchall()
            stored = con.execute(
                """SELECT g.device_id, g.after_seq, g.after_ts_utc, g.before_seq,
                       g.before_ts_utc, g.site_id, g.gate_id, g.status, g.minute_utc,
                       g.recovered_in, g.recovered_out
                FROM reading_gaps g JOIN windows w
                  ON g.device_id = w.device_id AND g.after_ts_utc >= w.since_utc
                WHERE g.status <> 'filled'"""
            ).fetchall()
        finally:
            con.unregister("windows")
        gaps, events = analyse_pairs(
            (StoredReading(d, s, g, *row[3:9]), StoredReading(d, s, g, *row[9:]))
            for row in pairs
            for d, s, g in [row[:3]]
        )
        changes = reconcile_gaps(gaps, (StoredGap(tuple(row[:5]), *row[5:]) for row in stored))
        for key in changes.filled:
            con.execute(
                """UPDATE reading_gaps SET status = 'filled'
                WHERE device_id = ? AND after_seq = ? AND after_ts_utc = ? AND before_seq = ?
                  AND before_ts_utc = ?""",
                list(key),
            )
        now = utc_now()
        for gap in changes.new:
            con.execute(
                """INSERT OR IGNORE INTO reading_gaps
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [gap.device_id, gap.site_id, gap.gate_id, gap.after_seq, gap.after_ts_utc,
                 gap.before_seq, gap.before_ts_utc, gap.missing_readings, gap.status,
                 gap.reason, gap.minute_utc, gap.recovered_in, gap.recovered_out, now],
            )
            log.warning("seq gap %s: %s readings missing between %s and %s, %s (%s)",
                        gap.device_id, gap.missing_readings, gap.after_seq, gap.before_seq,
                        gap.status, gap.reason)
        _add_corrections(con, changes.corrections)
        for event in events:
            con.execute(
                "INSERT OR IGNORE INTO counter_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                [event.device_id, event.site_id, event.gate_id, event.seq, event.ts_utc,
                 event.kind, event.detail],
            )

    def rezero_at_closing(
        self, site_id: str, local_date: date, day_start_utc: datetime, closing_utc: datetime
    ) -> int | None:
        """Re-zero a site's occupancy at its closing time, once per local day: store the
        residual (in − out from local midnight to closing) and book a positive one as
        departures at the closing minute. Returns the residual, None if already done."""
        minute = closing_utc.replace(second=0, microsecond=0)
        with self._writing() as con:
            done = con.execute(
                "SELECT count(*) FROM occupancy_corrections WHERE site_id = ? AND local_date = ?",
                [site_id, local_date],
            ).fetchone()[0]
            if done:
                return None
            arrivals, departures = con.execute(
                """SELECT coalesce(sum(count_in), 0)::BIGINT, coalesce(sum(count_out), 0)::BIGINT
                FROM minute_counts
                WHERE site_id = ? AND minute_utc >= ? AND minute_utc < ?""",
                [site_id, day_start_utc, minute],
            ).fetchone()
            residual = arrivals - departures
            applied = max(residual, 0)
            con.execute(
                "INSERT INTO occupancy_corrections VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [site_id, local_date, closing_utc, arrivals, departures, residual, applied,
                 utc_now()],
            )
            if applied:
                _add_corrections(con, [MinuteCorrection(site_id, "_closing", minute, 0, applied)])
        return residual

"""The DuckDB store: the schema and every query of it, in one place.

One process writes (the collector). DuckDB lets a process that holds a file read-write
block every other process, even read-only ones, so nobody holds it: the writer opens,
commits a micro-batch and closes; readers open read-only, query and close at once. Both
retry a held lock with backoff. All times are naive UTC (`*_utc` columns).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from visitorflow.contract import GateStatus, Reading

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Readings are unique on (device_id, seq, ts_utc): `seq` alone restarts at 0 after a device
# reset, so a genuine new reading may share a seq with an old one; a redelivery or a resend
# repeats all three.
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS schema_info (
        version INTEGER NOT NULL,
        created_at_utc TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS readings (
        device_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        ts_utc TIMESTAMP NOT NULL,          -- end of the counting interval
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        interval_s INTEGER NOT NULL,
        count_in INTEGER NOT NULL,
        count_out INTEGER NOT NULL,
        in_total BIGINT,
        out_total BIGINT,
        battery_pct DOUBLE,
        received_at_utc TIMESTAMP NOT NULL,
        PRIMARY KEY (device_id, seq, ts_utc))""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        received_at_utc TIMESTAMP NOT NULL,
        topic VARCHAR NOT NULL,
        payload BLOB NOT NULL,
        reason VARCHAR NOT NULL)""",
    # People through each gate per minute, keyed by the minute the counting interval began.
    # Maintained in the same transaction as `readings`, so a late reading corrects its minute.
    """CREATE TABLE IF NOT EXISTS minute_counts (
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        minute_utc TIMESTAMP NOT NULL,
        count_in BIGINT NOT NULL,
        count_out BIGINT NOT NULL,
        PRIMARY KEY (site_id, gate_id, minute_utc))""",
    """CREATE TABLE IF NOT EXISTS gate_status (
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,            -- online | offline (the counter's last will)
        changed_at_utc TIMESTAMP NOT NULL,
        PRIMARY KEY (site_id, gate_id))""",
    # Air temperature near a site (°C): observed or simulated history, and planners'
    # scenarios for the future (a Mẫu Sơn cold snap drives its frost rush).
    """CREATE TABLE IF NOT EXISTS temperature (
        site_id VARCHAR NOT NULL,
        ts_utc TIMESTAMP NOT NULL,
        temp_c DOUBLE NOT NULL,
        source VARCHAR NOT NULL,            -- simulated | observed | scenario
        PRIMARY KEY (site_id, ts_utc, source))""",
]

_READING_COLUMNS = [
    "device_id", "seq", "ts_utc", "site_id", "gate_id", "interval_s", "count_in", "count_out",
    "in_total", "out_total", "battery_pct", "received_at_utc",
]


class StoreError(RuntimeError):
    """The store cannot be used; the message says why and what to do."""


class StoreBusy(StoreError):
    """Another process held the store for longer than the lock timeout."""


class StoreMissing(StoreError):
    """The store file does not exist yet."""


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


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class Store:
    """The visitor-flow store at one DuckDB file."""

    def __init__(self, path: Path | str, lock_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s

    @classmethod
    def from_settings(cls, settings) -> Store:  # noqa: ANN001 - avoid an import cycle in hints
        return cls(settings.store.path, settings.store.lock_timeout_s)

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open, yield and close, retrying a held lock with exponential backoff."""
        if read_only and not self.path.exists():
            raise StoreMissing(
                f"no store at {self.path} yet: start the collector (make collector) "
                "or run the demo, which creates it"
            )
        started = time.monotonic()
        delay = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                waited = time.monotonic() - started
                if not _is_lock_error(exc):
                    raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
                if waited > self.lock_timeout_s:
                    # DuckDB's message names the holder's PID: pass it on to the operator.
                    raise StoreBusy(
                        f"store {self.path} still locked after {waited:.1f} s: {exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        self.last_lock_wait_s = time.monotonic() - started
        try:
            yield con
        finally:
            con.close()

    def _read(self, sql: str, params: Sequence[object] | dict | None = None) -> pd.DataFrame:
        with self._connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    # -- writing (the collector) -------------------------------------------------------------

    def initialise(self) -> None:
        """Create the file and tables if missing (idempotent)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            for ddl in SCHEMA:
                con.execute(ddl)
            if con.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
                con.execute(
                    "INSERT INTO schema_info VALUES (?, now()::TIMESTAMP)", [SCHEMA_VERSION]
                )

    def write_batch(
        self,
        readings: Sequence[Reading],
        received_at_utc: Sequence[datetime] | datetime,
        quarantined: Sequence[Quarantined] = (),
        statuses: Sequence[tuple[GateStatus, datetime]] = (),
    ) -> BatchResult:
        """Store one micro-batch atomically: new readings (duplicates dropped), their minute
        counts, quarantined messages and gate status changes."""
        frame = readings_frame(readings, received_at_utc)
        with self._connect(read_only=False) as con:
            wait = self.last_lock_wait_s
            con.execute("BEGIN TRANSACTION")
            try:
                inserted = 0
                if len(frame):
                    con.register("batch", frame)
                    new = con.execute(
                        f"INSERT OR IGNORE INTO readings SELECT {', '.join(_READING_COLUMNS)} "
                        "FROM batch RETURNING site_id, gate_id, ts_utc, interval_s, "
                        "count_in, count_out"
                    ).df()
                    con.unregister("batch")
                    inserted = len(new)
                    if inserted:
                        con.register("new_readings", new)
                        con.execute(
                            """INSERT INTO minute_counts
                            SELECT site_id, gate_id,
                                   date_trunc('minute', ts_utc - to_seconds(interval_s)),
                                   sum(count_in), sum(count_out)
                            FROM new_readings GROUP BY ALL
                            ON CONFLICT (site_id, gate_id, minute_utc) DO UPDATE SET
                                count_in = count_in + EXCLUDED.count_in,
                                count_out = count_out + EXCLUDED.count_out"""
                        )
                        con.unregister("new_readings")
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
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return BatchResult(
            inserted=inserted,
            duplicates=len(frame) - inserted,
            quarantined=len(quarantined),
            statuses=len(statuses),
            lock_wait_s=wait,
        )

    # -- reading (dashboard, forecasting, notebooks, tests) ---------------------------------

    def readings(
        self,
        start_utc: datetime | None = None,
        end_utc: datetime | None = None,
        site_id: str | None = None,
    ) -> pd.DataFrame:
        """Stored readings with `start_utc <= ts_utc < end_utc`, oldest first."""
        return self._read(
            """SELECT * FROM readings
            WHERE ($1::TIMESTAMP IS NULL OR ts_utc >= $1)
              AND ($2::TIMESTAMP IS NULL OR ts_utc < $2)
              AND ($3::VARCHAR IS NULL OR site_id = $3)
            ORDER BY ts_utc, site_id, gate_id, device_id, seq""",
            [start_utc, end_utc, site_id],
        )

    def quarantine(self, limit: int = 1000) -> pd.DataFrame:
        """The most recent quarantined messages, newest first."""
        return self._read(
            "SELECT * FROM quarantine ORDER BY received_at_utc DESC LIMIT $1", [limit]
        )

    def minute_counts(
        self, start_utc: datetime, end_utc: datetime, site_id: str | None = None
    ) -> pd.DataFrame:
        """People in and out per gate and minute in [start, end)."""
        return self._read(
            """SELECT * FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc < $2
              AND ($3::VARCHAR IS NULL OR site_id = $3)
            ORDER BY minute_utc, site_id, gate_id""",
            [start_utc, end_utc, site_id],
        )

    def site_counts(self, day_start_utc: datetime, now_utc: datetime) -> pd.DataFrame:
        """Per site since the start of its local day: people in, out, occupancy (in − out,
        never below 0), arrivals in the last hour. Sites with no count today are absent."""
        return self._read(
            """SELECT site_id,
                   sum(count_in)::BIGINT AS arrivals_today,
                   sum(count_out)::BIGINT AS departures_today,
                   greatest(sum(count_in) - sum(count_out), 0)::BIGINT AS occupancy,
                   coalesce(sum(count_in) FILTER (
                       WHERE minute_utc >= $2 - INTERVAL 1 HOUR), 0)::BIGINT
                       AS arrivals_last_hour
            FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc <= $2
            GROUP BY site_id ORDER BY site_id""",
            [day_start_utc, now_utc],
        )

    def gate_health(self) -> pd.DataFrame:
        """Per gate that ever reported: last reading, its interval, battery, status."""
        return self._read(
            """WITH last AS (
                SELECT site_id, gate_id, arg_max(device_id, ts_utc) AS device_id,
                       max(ts_utc) AS last_reading_utc,
                       arg_max(interval_s, ts_utc) AS interval_s,
                       arg_max(battery_pct, ts_utc) AS battery_pct,
                       count(*) AS readings
                FROM readings GROUP BY site_id, gate_id)
            SELECT coalesce(l.site_id, s.site_id) AS site_id,
                   coalesce(l.gate_id, s.gate_id) AS gate_id,
                   l.device_id, l.last_reading_utc, l.interval_s, l.battery_pct, l.readings,
                   s.status, s.changed_at_utc AS status_changed_at_utc
            FROM last l FULL OUTER JOIN gate_status s
              ON l.site_id = s.site_id AND l.gate_id = s.gate_id
            ORDER BY site_id, gate_id"""
        )

    def write_temperature(self, frame: pd.DataFrame) -> int:
        """Upsert temperatures: a DataFrame with site_id, ts_utc (naive UTC), temp_c, source."""
        with self._connect(read_only=False) as con:
            con.register("temps", frame[["site_id", "ts_utc", "temp_c", "source"]])
            con.execute("INSERT OR REPLACE INTO temperature SELECT * FROM temps")
            con.unregister("temps")
        return len(frame)

    def temperature(
        self, site_id: str, start_utc: datetime, end_utc: datetime, source: str | None = None
    ) -> pd.DataFrame:
        """Temperatures of a site in [start, end), oldest first."""
        return self._read(
            """SELECT * FROM temperature
            WHERE site_id = $1 AND ts_utc >= $2 AND ts_utc < $3
              AND ($4::VARCHAR IS NULL OR source = $4)
            ORDER BY ts_utc, source""",
            [site_id, start_utc, end_utc, source],
        )

    def latest_reading_utc(self) -> datetime | None:
        frame = self._read("SELECT max(ts_utc) AS latest FROM readings")
        value = frame["latest"].iloc[0]
        return None if pd.isna(value) else value.to_pydatetime()

    def table_counts(self) -> dict[str, int]:
        """Rows per table, for operators and tests."""
        with self._connect(read_only=True) as con:
            return {
                table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in ("readings", "quarantine", "minute_counts", "gate_status")
            }


def readings_frame(
    readings: Sequence[Reading], received_at_utc: Sequence[datetime] | datetime
) -> pd.DataFrame:
    """Readings as a DataFrame with the `readings` table's columns and types."""
    received = (
        list(received_at_utc)
        if isinstance(received_at_utc, Sequence)
        else [received_at_utc] * len(readings)
    )
    frame = pd.DataFrame(
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
    return frame

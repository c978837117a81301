"""The DuckDB store: the schema and every query of it, in one place.

One process writes (the collector). DuckDB lets a process that holds a file read-write
block every other process, even read-only ones, so nobody holds it: the writer opens,
commits a micro-batch and closes; readers open read-only, query and close at once. Both
retry a held lock with backoff. All times are naive UTC (`*_utc` columns).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from visitorflow.contract import GateStatus, Reading

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Readings are unique on (device_id, seq, ts_utc): `seq` alone restarts at 0 after a device
# reset, so a genuine new reading may share a seq with an old one; a redelivery or a resend
# repeats all three.
# The columns and keys of `readings` and `minute_counts` are named once: a backfill into an
# empty store loads key-less copies and adds these keys afterwards (history section below).
_READINGS_COLUMNS_DDL = """
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
        received_at_utc TIMESTAMP NOT NULL"""
_READINGS_KEY = "device_id, seq, ts_utc"
_MINUTE_COUNTS_COLUMNS_DDL = """
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        minute_utc TIMESTAMP NOT NULL,
        count_in BIGINT NOT NULL,
        count_out BIGINT NOT NULL"""
_MINUTE_COUNTS_KEY = "site_id, gate_id, minute_utc"
# Key-less copies a backfill into an empty store loads first (Store.history_writer).
_HISTORY_STAGING = [
    f"CREATE OR REPLACE TABLE history_readings ({_READINGS_COLUMNS_DDL})",
    f"CREATE OR REPLACE TABLE history_minute_counts ({_MINUTE_COUNTS_COLUMNS_DDL})",
]
# The minute counts of readings in {source} (a table or view named from constants).
_MINUTE_COUNTS_OF = """SELECT site_id, gate_id,
           date_trunc('minute', ts_utc - to_seconds(interval_s)),
           sum(count_in), sum(count_out)
    FROM {source} GROUP BY ALL"""
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS schema_info (
        version INTEGER NOT NULL,
        created_at_utc TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS readings ({_READINGS_COLUMNS_DDL},
        PRIMARY KEY ({_READINGS_KEY}))""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        received_at_utc TIMESTAMP NOT NULL,
        topic VARCHAR NOT NULL,
        payload BLOB NOT NULL,
        reason VARCHAR NOT NULL)""",
    # People through each gate per minute, keyed by the minute the counting interval began.
    # Maintained in the same transaction as `readings`, so a late reading corrects its minute.
    f"""CREATE TABLE IF NOT EXISTS minute_counts ({_MINUTE_COUNTS_COLUMNS_DDL},
        PRIMARY KEY ({_MINUTE_COUNTS_KEY}))""",
    """CREATE TABLE IF NOT EXISTS gate_status (
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,            -- online | offline (the counter's last will)
        changed_at_utc TIMESTAMP NOT NULL,
        PRIMARY KEY (site_id, gate_id))""",
    # -- dashboard speed (issue 6) --
    # Each gate's newest reading, kept by every writer of `readings` in the same transaction
    # (_GATE_LAST_UPSERT): the live and site pages ask for it every refresh, and finding it
    # in `readings` scans every row (10 s on a year of minute readings).
    """CREATE TABLE IF NOT EXISTS gate_last_reading (
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        device_id VARCHAR NOT NULL,
        last_reading_utc TIMESTAMP NOT NULL,
        interval_s INTEGER NOT NULL,
        battery_pct DOUBLE,
        readings BIGINT NOT NULL,
        PRIMARY KEY (site_id, gate_id))""",
    # Air temperature near a site (°C): observed or simulated history, and planners'
    # scenarios for the future (a Mẫu Sơn cold snap drives its frost rush).
    """CREATE TABLE IF NOT EXISTS temperature (
        site_id VARCHAR NOT NULL,
        ts_utc TIMESTAMP NOT NULL,
        temp_c DOUBLE NOT NULL,
        source VARCHAR NOT NULL,            -- simulated | observed | scenario
        PRIMARY KEY (site_id, ts_utc, source))""",
    # -- ingest quality (issue 3) --
    # A run of missing `seq` numbers between two stored readings of one device. `recovered`:
    # the people of the missing readings were worked out from the cumulative totals of the
    # readings either side and added to minute_counts at `minute_utc` (the minute the first
    # missing interval began); `open`: they could not be (no totals, or a counter reset), so
    # the gap is shown, never counted as zero; `filled`: the missing readings arrived late
    # and replaced the recovered estimate (kept so analysts see how good the counter is).
    """CREATE TABLE IF NOT EXISTS reading_gaps (
        device_id VARCHAR NOT NULL,
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        after_seq BIGINT NOT NULL,
        after_ts_utc TIMESTAMP NOT NULL,
        before_seq BIGINT NOT NULL,
        before_ts_utc TIMESTAMP NOT NULL,
        missing_readings BIGINT NOT NULL,
        status VARCHAR NOT NULL,            -- recovered | open | filled
        reason VARCHAR NOT NULL,
        minute_utc TIMESTAMP NOT NULL,
        recovered_in BIGINT NOT NULL,
        recovered_out BIGINT NOT NULL,
        detected_at_utc TIMESTAMP NOT NULL,
        PRIMARY KEY (device_id, after_seq, after_ts_utc, before_seq, before_ts_utc))""",
    # Cumulative totals that went down between consecutive readings (`wrap`: a 16-bit total
    # passed 65,535; `reset`: the device restarted its totals) or a `seq` that restarted.
    """CREATE TABLE IF NOT EXISTS counter_events (
        device_id VARCHAR NOT NULL,
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        ts_utc TIMESTAMP NOT NULL,
        kind VARCHAR NOT NULL,              -- wrap | reset | seq_restart
        detail VARCHAR NOT NULL,
        PRIMARY KEY (device_id, seq, ts_utc, kind))""",
    # Occupancy drift: at closing time in − out of the day should be 0. What is left
    # (`residual`) is how far the site's counters drifted that day; a positive residual is
    # booked as departures of the pseudo-gate `_closing` at the closing minute, so occupancy
    # is 0 after closing (`applied_out`). A negative one is only recorded (occupancy is
    # never shown below 0).
    """CREATE TABLE IF NOT EXISTS occupancy_corrections (
        site_id VARCHAR NOT NULL,
        local_date DATE NOT NULL,
        closing_utc TIMESTAMP NOT NULL,
        arrivals BIGINT NOT NULL,
        departures BIGINT NOT NULL,
        residual BIGINT NOT NULL,
        applied_out BIGINT NOT NULL,
        created_at_utc TIMESTAMP NOT NULL,
        PRIMARY KEY (site_id, local_date))""",
    # -- forecasting (issue 5) --
    # One row per forecast run, kept for comparison; the model settings as JSON.
    """CREATE TABLE IF NOT EXISTS forecast_runs (
        run_id VARCHAR PRIMARY KEY,
        created_at_utc TIMESTAMP NOT NULL,
        history_end_utc TIMESTAMP NOT NULL,  -- forecasts start here
        settings_json VARCHAR NOT NULL,
        sites_ok INTEGER NOT NULL,
        sites_failed INTEGER NOT NULL,
        wall_s DOUBLE)""",
    # Per run and site: ok or failed (with the message), fit seconds, regressors used.
    """CREATE TABLE IF NOT EXISTS forecast_sites (
        run_id VARCHAR NOT NULL,
        site_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,             -- ok | failed
        message VARCHAR,
        fit_s DOUBLE,
        regressors VARCHAR,
        -- the site's MAE / weekly-naive MAE in the newest backtest before the run (< 1: the
        -- model beat naive); NULL: never backtested. Planners should be told when it is ≥ 1.
        backtest_mae_ratio DOUBLE,
        PRIMARY KEY (run_id, site_id))""",
    # Hourly forecasts: arrivals (people in the hour starting at ts_utc), occupancy (people on
    # site at the end of the hour) and the probability that occupancy exceeds capacity.
    """CREATE TABLE IF NOT EXISTS forecast_hourly (
        run_id VARCHAR NOT NULL,
        site_id VARCHAR NOT NULL,
        ts_utc TIMESTAMP NOT NULL,           -- start of the hour
        is_open BOOLEAN NOT NULL,
        arrivals DOUBLE NOT NULL,
        arrivals_lower DOUBLE NOT NULL,
        arrivals_upper DOUBLE NOT NULL,
        occupancy DOUBLE NOT NULL,
        occupancy_upper DOUBLE NOT NULL,
        capacity INTEGER NOT NULL,
        p_overload DOUBLE NOT NULL,
        PRIMARY KEY (run_id, site_id, ts_utc))""",
    # Daily forecasts: arrivals (people per local day, Asia/Ho_Chi_Minh).
    """CREATE TABLE IF NOT EXISTS forecast_daily (
        run_id VARCHAR NOT NULL,
        site_id VARCHAR NOT NULL,
        day_local DATE NOT NULL,
        arrivals DOUBLE NOT NULL,
        arrivals_lower DOUBLE NOT NULL,
        arrivals_upper DOUBLE NOT NULL,
        festival VARCHAR,                    -- festival / holiday ids of the day, if any
        PRIMARY KEY (run_id, site_id, day_local))""",
    # Rolling-origin backtests per site against the weekly seasonal-naive forecast.
    """CREATE TABLE IF NOT EXISTS forecast_backtests (
        backtest_id VARCHAR NOT NULL,
        created_at_utc TIMESTAMP NOT NULL,
        site_id VARCHAR NOT NULL,
        folds INTEGER NOT NULL,
        horizon_h INTEGER NOT NULL,
        open_hours INTEGER NOT NULL,
        mae DOUBLE,                          -- people per hour, open hours
        mae_naive DOUBLE,
        mae_ratio DOUBLE,                    -- mae / mae_naive (MASE against weekly naive)
        mape_open DOUBLE,                    -- open hours with arrivals > 0
        mae_festival DOUBLE,                 -- open hours of the site's festival days
        mae_naive_festival DOUBLE,
        festival_peak_err DOUBLE,            -- |forecast − actual| / actual, festival peak days
        message VARCHAR,
        settings_json VARCHAR,
        PRIMARY KEY (backtest_id, site_id))""",
    # Added after the first backtests (forecasting/README.md defines them); ADD COLUMN keeps
    # stores made before readable and writable.
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS festival_day_err DOUBLE",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS festival_peak_max_err DOUBLE",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS festival_peaks INTEGER",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS overload_hours INTEGER",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS overload_brier DOUBLE",
]

# -- alerts (issue 6) --
# Created by the first alert write (Store.apply_alert_changes and the other alert writers),
# not by initialise(): a store that no alert evaluation ever ran on has no `alerts` table,
# so a review can say so instead of reporting zero alerts (analysis.alert_log).
ALERT_SCHEMA = [
    # Every alert ever raised, kept after it clears (audit). One open alert per site, kind
    # and level at most. `threshold`: the level's share of capacity in force when raised.
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id VARCHAR PRIMARY KEY,
        site_id VARCHAR NOT NULL,
        level VARCHAR NOT NULL,              -- busy | crowded | overload
        kind VARCHAR NOT NULL,               -- live | forecast
        raised_at_utc TIMESTAMP NOT NULL,
        cleared_at_utc TIMESTAMP,            -- NULL while open
        occupancy BIGINT,                    -- live: people on site when raised
        capacity INTEGER NOT NULL,
        threshold DOUBLE NOT NULL,
        from_utc TIMESTAMP,                  -- forecast: first hour at risk
        p_overload DOUBLE,                   -- forecast: its overload probability
        run_id VARCHAR,                      -- forecast: the run it came from
        message VARCHAR NOT NULL,            -- in the default language, as raised
        recommended_action VARCHAR NOT NULL)""",
    # Every acknowledgement: who, when, and their note (several per alert are kept).
    """CREATE TABLE IF NOT EXISTS alert_acks (
        alert_id VARCHAR NOT NULL,
        acked_at_utc TIMESTAMP NOT NULL,
        acked_by VARCHAR NOT NULL,
        note VARCHAR NOT NULL,
        PRIMARY KEY (alert_id, acked_at_utc, acked_by))""",
    # Per-site load thresholds (shares of capacity) replacing settings.load for that site.
    """CREATE TABLE IF NOT EXISTS alert_thresholds (
        site_id VARCHAR PRIMARY KEY,
        busy DOUBLE NOT NULL,
        crowded DOUBLE NOT NULL,
        overload DOUBLE NOT NULL,
        updated_at_utc TIMESTAMP NOT NULL,
        updated_by VARCHAR NOT NULL)""",
]
ALERT_COLUMNS = [
    "alert_id", "site_id", "level", "kind", "raised_at_utc", "cleared_at_utc", "occupancy",
    "capacity", "threshold", "from_utc", "p_overload", "run_id", "message",
    "recommended_action",
]

# -- administration (issue 8) --
# Created by the first administrative write (Store._ensure_admin_tables). Every change of a
# capacity, threshold or recommended action is also written to `change_log` in the same
# transaction: who, when, old → new.
ADMIN_SCHEMA = [
    # Per-site capacity (people on site at once) replacing the catalogue's (data/sites.yaml).
    """CREATE TABLE IF NOT EXISTS capacity_overrides (
        site_id VARCHAR PRIMARY KEY,
        capacity INTEGER NOT NULL,
        updated_at_utc TIMESTAMP NOT NULL,
        updated_by VARCHAR NOT NULL)""",
    # Recommended action texts edited by operators, replacing data/alert_actions.yaml's text
    # for one site (site_id '*': the province default), action key and language.
    """CREATE TABLE IF NOT EXISTS action_texts (
        site_id VARCHAR NOT NULL,
        action_key VARCHAR NOT NULL,         -- busy | crowded | overload | forecast_overload
        lang VARCHAR NOT NULL,               -- vi | en | zh
        text VARCHAR NOT NULL,
        updated_at_utc TIMESTAMP NOT NULL,
        updated_by VARCHAR NOT NULL,
        PRIMARY KEY (site_id, action_key, lang))""",
    """CREATE TABLE IF NOT EXISTS change_log (
        changed_at_utc TIMESTAMP NOT NULL,
        changed_by VARCHAR NOT NULL,
        what VARCHAR NOT NULL,               -- capacity | thresholds | action
        site_id VARCHAR NOT NULL,
        item VARCHAR,                        -- action: key.lang
        old_value VARCHAR,                   -- NULL: nothing in force before
        new_value VARCHAR)                   -- NULL: override removed""",
]
ADMIN_IDS = re.compile(r"^([a-z0-9][a-z0-9_]*|\*)$")
MAX_CAPACITY = 1_000_000

# New readings (a table or view with the readings columns, named by the caller from
# constants) into gate_last_reading: a late reading never replaces a newer one.
_GATE_LAST_UPSERT = """INSERT INTO gate_last_reading
    SELECT site_id, gate_id, arg_max(device_id, ts_utc), max(ts_utc),
           arg_max(interval_s, ts_utc), arg_max(battery_pct, ts_utc), count(*)
    FROM {source} GROUP BY site_id, gate_id
    ON CONFLICT (site_id, gate_id) DO UPDATE SET
        device_id = CASE WHEN EXCLUDED.last_reading_utc >= last_reading_utc
                         THEN EXCLUDED.device_id ELSE device_id END,
        interval_s = CASE WHEN EXCLUDED.last_reading_utc >= last_reading_utc
                          THEN EXCLUDED.interval_s ELSE interval_s END,
        battery_pct = CASE WHEN EXCLUDED.last_reading_utc >= last_reading_utc
                           THEN EXCLUDED.battery_pct ELSE battery_pct END,
        last_reading_utc = greatest(last_reading_utc, EXCLUDED.last_reading_utc),
        readings = readings + EXCLUDED.readings"""
# The same from all stored readings: fills gate_last_reading in a store made before it.
_GATE_LAST_FILL = _GATE_LAST_UPSERT.format(source="readings")

_READING_COLUMNS = [
    "device_id", "seq", "ts_utc", "site_id", "gate_id", "interval_s", "count_in", "count_out",
    "in_total", "out_total", "battery_pct", "received_at_utc",
]


@contextmanager
def _transaction_over(
    con: duckdb.DuckDBPyConnection, name: str, frame: object
) -> Iterator[None]:
    """A transaction in which `frame` is queryable as the table `name`: committed when the
    block ends, rolled back if it raises, the frame unregistered either way."""
    con.register(name, frame)
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister(name)


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

    def __init__(
        self, path: Path | str, lock_timeout_s: float = 5.0, retry_max_s: float = 0.05
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.retry_max_s = retry_max_s
        self._session = threading.local()  # the connection of this thread's session()

    def __getstate__(self) -> dict:  # a Store may travel to worker processes; no connection
        return {k: v for k, v in self.__dict__.items() if k != "_session"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _session=threading.local())

    @classmethod
    def from_settings(cls, settings) -> Store:  # noqa: ANN001 - avoid an import cycle in hints
        return cls(settings.store.path, settings.store.lock_timeout_s, settings.store.retry_max_s)

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
                delay = min(delay * 2, self.retry_max_s)
        self.last_lock_wait_s = time.monotonic() - started
        try:
            yield con
        finally:
            con.close()

    def _read(self, sql: str, params: Sequence[object] | dict | None = None) -> pd.DataFrame:
        with self._reading() as con:
            return con.execute(sql, params or []).df()

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection of the enclosing `session()`, or a read-only one just for this."""
        held = getattr(self._session, "con", None)
        if held is not None:
            yield held
            return
        with self._connect(read_only=True) as con:
            yield con

    @contextmanager
    def session(self) -> Iterator[Store]:
        """Several reads on one read-only connection, closed at the end of the block: a page
        refresh makes its few queries in one go (opening a year-long store costs ~0.1 s;
        field notes) and still holds the store only for milliseconds. Reads only."""
        if getattr(self._session, "con", None) is not None:
            yield self
            return
        with self._connect(read_only=True) as con:
            self._session.con = con
            try:
                yield self
            finally:
                self._session.con = None

    @staticmethod
    def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
        return bool(con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()[0])

    # -- writing (the collector) -------------------------------------------------------------

    def initialise(self) -> None:
        """Create the file and tables if missing (idempotent)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            had_gate_last = self._has_table(con, "gate_last_reading")
            for ddl in SCHEMA:
                con.execute(ddl)
            if not had_gate_last:  # a store made before the table: fill it once
                con.execute(_GATE_LAST_FILL)
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
        heal: bool = False,
    ) -> BatchResult:
        """Store one micro-batch atomically: new readings (duplicates dropped), their minute
        counts, quarantined messages and gate status changes. With `heal` (the collector),
        also re-check the touched devices for seq gaps and counter resets (issue 3)."""
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
                        "count_in, count_out, device_id, battery_pct"
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
                        con.execute(_GATE_LAST_UPSERT.format(source="new_readings"))
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
        with self._reading() as con:
            # A store no writer has opened since gate_last_reading came: the slow way.
            last = ("gate_last_reading" if self._has_table(con, "gate_last_reading") else
                    """(SELECT site_id, gate_id, arg_max(device_id, ts_utc) AS device_id,
                           max(ts_utc) AS last_reading_utc,
                           arg_max(interval_s, ts_utc) AS interval_s,
                           arg_max(battery_pct, ts_utc) AS battery_pct,
                           count(*) AS readings
                    FROM readings GROUP BY site_id, gate_id)""")
            return con.execute(
                f"""SELECT coalesce(l.site_id, s.site_id) AS site_id,
                       coalesce(l.gate_id, s.gate_id) AS gate_id,
                       l.device_id, l.last_reading_utc, l.interval_s, l.battery_pct,
                       l.readings, s.status, s.changed_at_utc AS status_changed_at_utc
                FROM {last} l FULL OUTER JOIN gate_status s
                  ON l.site_id = s.site_id AND l.gate_id = s.gate_id
                ORDER BY site_id, gate_id"""  # noqa: S608 - one of two constants
            ).df()

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

    # -- ingest quality (issue 3) --

    def _heal(self, con: duckdb.DuckDBPyConnection, batch: pd.DataFrame) -> None:
        """Re-check the devices of a batch for seq gaps and counter resets, inside the write
        transaction. Only the pairs a new reading can change are looked at: from the reading
        just before each device's earliest new one onwards (a late reading re-opens its past)."""
        from visitorflow.ingest_quality import StoredReading, analyse_pairs

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
            active = con.execute(
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
        wanted = {gap.key: gap for gap in gaps}
        existing = {tuple(row[:5]): row for row in active}
        now = pd.Timestamp.now("UTC").tz_localize(None).to_pydatetime()
        adjust: list[tuple[str, str, datetime, int, int]] = []
        # A gap no longer there was filled by late readings: its estimate gives way to them.
        for key, row in existing.items():
            if key in wanted:
                continue
            con.execute(
                """UPDATE reading_gaps SET status = 'filled'
                WHERE device_id = ? AND after_seq = ? AND after_ts_utc = ? AND before_seq = ?
                  AND before_ts_utc = ?""",
                list(key),
            )
            if row[7] == "recovered":
                adjust.append((row[5], row[6], row[8], -row[9], -row[10]))
        new_gaps = [gap for key, gap in wanted.items() if key not in existing]
        for gap in new_gaps:
            minute = gap.after_ts_utc.replace(second=0, microsecond=0)
            con.execute(
                """INSERT OR IGNORE INTO reading_gaps
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [gap.device_id, gap.site_id, gap.gate_id, gap.after_seq, gap.after_ts_utc,
                 gap.before_seq, gap.before_ts_utc, gap.missing_readings, gap.status,
                 gap.reason, minute, gap.recovered_in, gap.recovered_out, now],
            )
            if gap.status == "recovered" and (gap.recovered_in or gap.recovered_out):
                adjust.append((gap.site_id, gap.gate_id, minute, gap.recovered_in,
                               gap.recovered_out))
            log.warning("seq gap %s: %s readings missing between %s and %s, %s (%s)",
                        gap.device_id, gap.missing_readings, gap.after_seq, gap.before_seq,
                        gap.status, gap.reason)
        for site_id, gate_id, minute, d_in, d_out in adjust:
            con.execute(
                """INSERT INTO minute_counts VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (site_id, gate_id, minute_utc) DO UPDATE SET
                    count_in = count_in + EXCLUDED.count_in,
                    count_out = count_out + EXCLUDED.count_out""",
                [site_id, gate_id, minute, d_in, d_out],
            )
        for event in events:
            con.execute(
                "INSERT OR IGNORE INTO counter_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                [event.device_id, event.site_id, event.gate_id, event.seq, event.ts_utc,
                 event.kind, event.detail],
            )

    def reading_gaps(self, status: str | None = None) -> pd.DataFrame:
        """Seq gaps found by the collector (recovered, open or filled), oldest first."""
        return self._read(
            """SELECT * FROM reading_gaps WHERE ($1::VARCHAR IS NULL OR status = $1)
            ORDER BY after_ts_utc, device_id""",
            [status],
        )

    def counter_events(self) -> pd.DataFrame:
        """Counter wraps, resets and seq restarts the collector saw, oldest first."""
        return self._read("SELECT * FROM counter_events ORDER BY ts_utc, device_id, kind")

    def rezero_at_closing(
        self, site_id: str, local_date: date, day_start_utc: datetime, closing_utc: datetime
    ) -> int | None:
        """Re-zero a site's occupancy at its closing time, once per local day: store the
        residual (in − out from local midnight to closing) and book a positive one as
        departures at the closing minute. Returns the residual, None if already done."""
        minute = closing_utc.replace(second=0, microsecond=0)
        with self._connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                done = con.execute(
                    "SELECT count(*) FROM occupancy_corrections "
                    "WHERE site_id = ? AND local_date = ?",
                    [site_id, local_date],
                ).fetchone()[0]
                if done:
                    con.execute("ROLLBACK")
                    return None
                arrivals, departures = con.execute(
                    """SELECT coalesce(sum(count_in), 0)::BIGINT,
                           coalesce(sum(count_out), 0)::BIGINT
                    FROM minute_counts
                    WHERE site_id = ? AND minute_utc >= ? AND minute_utc < ?""",
                    [site_id, day_start_utc, minute],
                ).fetchone()
                residual = arrivals - departures
                applied = max(residual, 0)
                con.execute(
                    "INSERT INTO occupancy_corrections VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [site_id, local_date, closing_utc, arrivals, departures, residual, applied,
                     pd.Timestamp.now("UTC").tz_localize(None).to_pydatetime()],
                )
                if applied:
                    con.execute(
                        """INSERT INTO minute_counts VALUES (?, '_closing', ?, 0, ?)
                        ON CONFLICT (site_id, gate_id, minute_utc) DO UPDATE SET
                            count_out = count_out + EXCLUDED.count_out""",
                        [site_id, minute, applied],
                    )
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return residual

    def occupancy_corrections(self, site_id: str | None = None) -> pd.DataFrame:
        """The closing-time occupancy corrections (counter drift per site and day)."""
        return self._read(
            """SELECT * FROM occupancy_corrections WHERE ($1::VARCHAR IS NULL OR site_id = $1)
            ORDER BY local_date, site_id""",
            [site_id],
        )

    def device_frames(self, device_ids: Sequence[str], since_utc: datetime) -> pd.DataFrame:
        """device_id, seq and ts_utc of the stored readings of these devices since a time,
        oldest first: what the collector needs to recognise a LoRaWAN frame already stored,
        even one stored by another collector instance or before a restart."""
        return self._read(
            """SELECT device_id, seq, ts_utc FROM readings
            WHERE device_id IN (SELECT unnest($1::VARCHAR[])) AND ts_utc >= $2
            ORDER BY ts_utc, seq""",
            [list(device_ids), since_utc],
        )

    # -- forecasting (issue 5) --

    def hourly_arrivals(
        self, site_id: str | None, start_utc: datetime, end_utc: datetime
    ) -> pd.DataFrame:
        """People arriving per site and hour (all gates): site_id, hour_utc (start of the hour),
        arrivals. Hours with no minute counted at all are absent (unknown, not zero)."""
        return self._read(
            """SELECT site_id, date_trunc('hour', minute_utc) AS hour_utc,
                   sum(count_in)::DOUBLE AS arrivals
            FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc < $2
              AND ($3::VARCHAR IS NULL OR site_id = $3)
            GROUP BY ALL ORDER BY site_id, hour_utc""",
            [start_utc, end_utc, site_id],
        )

    def write_forecast_run(
        self, run: dict, sites: pd.DataFrame, hourly: pd.DataFrame, daily: pd.DataFrame
    ) -> None:
        """Store one forecast run atomically. `run`: run_id, created_at_utc, history_end_utc,
        settings_json, sites_ok, sites_failed, wall_s; the frames carry the columns of
        forecast_sites, forecast_hourly and forecast_daily (run_id is added here)."""
        tables = {"forecast_sites": sites, "forecast_hourly": hourly, "forecast_daily": daily}
        with self._connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(
                    "INSERT INTO forecast_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [run["run_id"], run["created_at_utc"], run["history_end_utc"],
                     run["settings_json"], run["sites_ok"], run["sites_failed"],
                     run.get("wall_s")],
                )
                for table, frame in tables.items():
                    if frame.empty:
                        continue
                    columns = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()]
                    con.register("staged", frame.assign(run_id=run["run_id"])[columns])
                    con.execute(f"INSERT INTO {table} SELECT * FROM staged")  # noqa: S608
                    con.unregister("staged")
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def forecast_runs(self, limit: int = 50) -> pd.DataFrame:
        """Forecast runs, newest first."""
        return self._read(
            "SELECT * FROM forecast_runs ORDER BY created_at_utc DESC, run_id DESC LIMIT $1",
            [limit],
        )

    def forecast_sites(self, run_id: str) -> pd.DataFrame:
        """Per site of one run: status (ok | failed), message, fit seconds, regressors,
        backtest_mae_ratio."""
        return self._read(
            "SELECT * FROM forecast_sites WHERE run_id = $1 ORDER BY site_id", [run_id]
        )

    def latest_forecast(
        self, site_id: str | None = None, granularity: str = "hourly", run_id: str | None = None
    ) -> pd.DataFrame:
        """Each site's forecast from the newest run in which its fit succeeded (a site whose
        latest fit failed keeps its previous forecast), or from `run_id` if given.
        hourly: site_id, ts_utc, is_open, arrivals(_lower/_upper), occupancy(_upper),
        capacity, p_overload; daily: site_id, day_local, arrivals(_lower/_upper), festival;
        both with run_id and run_created_at_utc."""
        if granularity not in ("hourly", "daily"):
            raise ValueError("granularity must be 'hourly' or 'daily'")
        table, time_col = (
            ("forecast_hourly", "ts_utc") if granularity == "hourly"
            else ("forecast_daily", "day_local")
        )
        return self._read(
            f"""WITH chosen AS (
                SELECT s.site_id, arg_max(s.run_id, r.created_at_utc) AS run_id,
                       max(r.created_at_utc) AS run_created_at_utc
                FROM forecast_sites s JOIN forecast_runs r USING (run_id)
                WHERE s.status = 'ok'
                  AND ($1::VARCHAR IS NULL OR s.site_id = $1)
                  AND ($2::VARCHAR IS NULL OR s.run_id = $2)
                GROUP BY s.site_id)
            SELECT f.*, c.run_created_at_utc
            FROM {table} f JOIN chosen c USING (site_id, run_id)
            ORDER BY f.site_id, f.{time_col}""",  # noqa: S608 - table names are constants
            [site_id, run_id],
        )

    def write_backtest(self, frame: pd.DataFrame) -> int:
        """Store backtest rows (the forecast_backtests columns)."""
        with self._connect(read_only=False) as con:
            columns = [c[0] for c in con.execute("DESCRIBE forecast_backtests").fetchall()]
            con.register("staged", frame[columns])
            con.execute("INSERT INTO forecast_backtests SELECT * FROM staged")
            con.unregister("staged")
        return len(frame)

    def latest_backtest(self) -> pd.DataFrame:
        """The rows of the newest backtest, one per site."""
        return self._read(
            """SELECT * FROM forecast_backtests
            WHERE backtest_id = (SELECT arg_max(backtest_id, created_at_utc)
                                 FROM forecast_backtests)
            ORDER BY site_id"""
        )

    # -- analysis and export (issue 7) --
    # Notebooks and the export read through these like every other reader: read-only, one
    # short-lived connection per call, so an analyst never stalls the collector. `site_ids`
    # None means every site; times are naive UTC, ranges half-open [start, end).

    def data_span(self) -> tuple[datetime | None, datetime | None]:
        """The first and last counted minute (naive UTC); (None, None) for an empty store."""
        row = self._read(
            "SELECT min(minute_utc) AS first, max(minute_utc) AS last FROM minute_counts"
        ).iloc[0]
        return (
            None if pd.isna(row["first"]) else row["first"].to_pydatetime(),
            None if pd.isna(row["last"]) else row["last"].to_pydatetime(),
        )

    def site_hourly_counts(
        self, start_utc: datetime, end_utc: datetime, site_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """People in and out per site and hour, all gates: site_id, hour_utc, arrivals,
        departures (incl. the `_closing` re-zeroing), minutes (counted gate-minutes). Hours
        with nothing counted are absent: unknown, not zero."""
        return self._read(
            """SELECT site_id, date_trunc('hour', minute_utc) AS hour_utc,
                   sum(count_in)::BIGINT AS arrivals, sum(count_out)::BIGINT AS departures,
                   count(*) FILTER (WHERE gate_id <> '_closing')::BIGINT AS minutes
            FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc < $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], site_id))
            GROUP BY ALL ORDER BY site_id, hour_utc""",
            [start_utc, end_utc, None if site_ids is None else list(site_ids)],
        )

    def minute_counts_for_sites(
        self, start_utc: datetime, end_utc: datetime, site_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The minute_counts rows of a set of sites in [start, end), oldest first."""
        return self._read(
            """SELECT * FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc < $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], site_id))
            ORDER BY minute_utc, site_id, gate_id""",
            [start_utc, end_utc, None if site_ids is None else list(site_ids)],
        )

    def readings_for_sites(
        self, start_utc: datetime, end_utc: datetime, site_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The stored readings of a set of sites whose counting interval began in [start,
        end), oldest first: the same people as minute_counts over the same range (a reading
        ending at midnight counted the day before)."""
        return self._read(
            """SELECT * FROM readings
            -- the plain ts_utc bounds let DuckDB skip row groups; intervals are at most a day
            WHERE ts_utc > $1 AND ts_utc <= $2 + INTERVAL 1 DAY
              AND ts_utc - to_seconds(interval_s) >= $1 AND ts_utc - to_seconds(interval_s) < $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], site_id))
            ORDER BY ts_utc, site_id, gate_id, device_id, seq""",
            [start_utc, end_utc, None if site_ids is None else list(site_ids)],
        )

    def gate_interval_counts(
        self,
        start_utc: datetime,
        end_utc: datetime,
        interval_s: int,
        site_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """People in and out per real gate (not the `_closing` pseudo-gate) and interval of
        `interval_s` seconds (aligned to midnight UTC): site_id, gate_id, start_utc, count_in,
        count_out, minutes (counted minutes in it). Intervals with nothing counted are absent."""
        return self._read(
            """SELECT site_id, gate_id,
                   time_bucket(to_seconds($3), minute_utc, TIMESTAMP '2000-01-01') AS start_utc,
                   sum(count_in)::BIGINT AS count_in, sum(count_out)::BIGINT AS count_out,
                   count(*)::BIGINT AS minutes
            FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc < $2 AND gate_id <> '_closing'
              AND ($4::VARCHAR[] IS NULL OR list_contains($4::VARCHAR[], site_id))
            GROUP BY ALL ORDER BY start_utc, site_id, gate_id""",
            [start_utc, end_utc, interval_s, None if site_ids is None else list(site_ids)],
        )

    def forecast_hourly_range(
        self,
        start_utc: datetime,
        end_utc: datetime,
        site_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Hourly forecasts of every run (or of `run_ids`) for hours in [start, end), with
        the run's created_at_utc and history_end_utc: what was forecast, and when."""
        return self._read(
            """SELECT f.*, r.created_at_utc AS run_created_at_utc, r.history_end_utc
            FROM forecast_hourly f JOIN forecast_runs r USING (run_id)
            WHERE f.ts_utc >= $1 AND f.ts_utc < $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], f.site_id))
              AND ($4::VARCHAR[] IS NULL OR list_contains($4::VARCHAR[], f.run_id))
            ORDER BY f.ts_utc, f.site_id, r.created_at_utc""",
            [start_utc, end_utc, None if site_ids is None else list(site_ids),
             None if run_ids is None else list(run_ids)],
        )

    def forecast_daily_range(
        self, first_day: date, last_day: date, site_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Daily forecasts of every run for local days first_day..last_day (inclusive)."""
        return self._read(
            """SELECT f.*, r.created_at_utc AS run_created_at_utc, r.history_end_utc
            FROM forecast_daily f JOIN forecast_runs r USING (run_id)
            WHERE f.day_local >= $1 AND f.day_local <= $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], f.site_id))
            ORDER BY f.day_local, f.site_id, r.created_at_utc""",
            [first_day, last_day, None if site_ids is None else list(site_ids)],
        )

    def gate_coverage(
        self, start_utc: datetime, end_utc: datetime, site_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Per gate that reported in [start, end): readings, seconds_counted (sum of their
        intervals), first/last reading, lowest battery, median and max delivery delay (s)."""
        return self._read(
            """SELECT site_id, gate_id, count(*)::BIGINT AS readings,
                   sum(interval_s)::BIGINT AS seconds_counted,
                   min(ts_utc) AS first_reading_utc, max(ts_utc) AS last_reading_utc,
                   min(battery_pct) AS min_battery_pct,
                   median(epoch(received_at_utc - ts_utc)) AS median_delay_s,
                   max(epoch(received_at_utc - ts_utc)) AS max_delay_s
            FROM readings
            WHERE ts_utc >= $1 AND ts_utc < $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], site_id))
            GROUP BY ALL ORDER BY site_id, gate_id""",
            [start_utc, end_utc, None if site_ids is None else list(site_ids)],
        )

    def has_table(self, name: str) -> bool:
        """Whether the store has a table of this name (a component may not have run yet)."""
        frame = self._read(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = $1", [name]
        )
        return bool(frame["n"].iloc[0])

    def alerts(self) -> pd.DataFrame:
        """Every row of the `alerts` table, whatever its columns (it belongs to the alerting
        component); check has_table("alerts") first."""
        return self._read("SELECT * FROM alerts ORDER BY ALL")

    # -- bulk history (issue 4) --
    # Backfill writes millions of readings: one Arrow table (or DataFrame) with the readings
    # columns per call, inserted and aggregated into minute_counts in SQL in one transaction.
    # Same result as write_batch (duplicates skipped, minute counts added), without per-row
    # Python. The common case (nothing stored yet in the table's time range) takes the plain
    # INSERT path; the anti-join and the upsert cost only when something overlaps.
    # Into an empty store (first start) `history_writer` does less work: keeping the two
    # primary keys (ART indexes) up to date row by row costs more than building them once, so
    # it loads key-less staging tables, adds the keys at the end and swaps the staging tables
    # in (~27 % less CPU, bench/results.md "Backfill"). Same tables, keys and rows afterwards.

    def write_history(self, readings: object) -> int:
        """Store readings (an Arrow table or DataFrame with the `readings` columns, unique on
        (device_id, seq, ts_utc)) and their minute counts atomically; rows already stored are
        skipped. Returns the number of readings inserted."""
        with self._connect(read_only=False) as con:
            return self._write_history(con, readings)

    @contextmanager
    def history_writer(
        self, on_keys: Callable[[str], None] | None = None, bulk: bool = True
    ) -> Iterator[Callable[[object], int]]:
        """`write_history` for many batches on one connection: saves the checkpoint every
        close makes. Holds the store for the whole run: for backfills, not the collector.

        If `readings` and `minute_counts` are both empty, the batches go to key-less staging
        tables (one transaction each; the batches must not repeat a reading nor share a gate
        and minute) and, when the block ends without an error, the keys are built once
        (`on_keys(table)` is called before each) and the staging tables replace the empty
        ones in one transaction. If anything fails, the staging tables are dropped and the
        store is as before. Otherwise (or with `bulk=False`, for benchmarks) every batch
        takes `write_history`'s path."""
        with self._connect(read_only=False) as con:
            if not (bulk and self._history_tables_empty(con)):
                yield lambda readings: self._write_history(con, readings)
                return
            for ddl in _HISTORY_STAGING:
                con.execute(ddl)
            try:
                yield lambda readings: self._load_history(con, readings)
                self._key_history(con, on_keys or (lambda table: None))
            finally:
                for table in ("history_readings", "history_minute_counts"):
                    con.execute(f"DROP TABLE IF EXISTS {table}")  # noqa: S608 - constant names

    @staticmethod
    def _history_tables_empty(con: duckdb.DuckDBPyConnection) -> bool:
        # fetchall: DuckDB refuses a register() while a result is left unfetched.
        return con.execute(
            """SELECT NOT EXISTS (SELECT 1 FROM readings)
                  AND NOT EXISTS (SELECT 1 FROM minute_counts)"""
        ).fetchall()[0][0]

    def _load_history(self, con: duckdb.DuckDBPyConnection, readings: object) -> int:
        """One batch into the key-less staging tables: the readings and their minute counts."""
        with _transaction_over(con, "history", readings):
            inserted = con.execute(
                f"INSERT INTO history_readings SELECT {', '.join(_READING_COLUMNS)} "  # noqa: S608
                "FROM history"
            ).fetchall()[0][0]
            con.execute(
                f"INSERT INTO history_minute_counts {_MINUTE_COUNTS_OF.format(source='history')}"
            ).fetchall()
        return int(inserted)

    def _key_history(self, con: duckdb.DuckDBPyConnection, on_keys: Callable[[str], None]) -> None:
        """Add the primary keys to the loaded staging tables and swap them in."""
        for table, staging, key in (("readings", "history_readings", _READINGS_KEY),
                                    ("minute_counts", "history_minute_counts",
                                     _MINUTE_COUNTS_KEY)):
            on_keys(table)
            try:
                con.execute(f"ALTER TABLE {staging} ADD PRIMARY KEY ({key})")
            except duckdb.ConstraintException as exc:
                raise StoreError(
                    f"the history holds the same {table} key ({key}) twice, so nothing was "
                    "stored: backfill batches must not overlap"
                ) from exc
            # Written out now, a built index may leave memory (~0.2 GB per million rows
            # while built) before the next one is built.
            con.execute("CHECKPOINT").fetchall()
        con.execute("BEGIN TRANSACTION")
        try:
            # The store was held since the emptiness check; checked again all the same.
            if not self._history_tables_empty(con):
                raise StoreError("readings were stored during the backfill: nothing was stored")
            for table in ("readings", "minute_counts"):
                con.execute(f"DROP TABLE {table}")
                con.execute(f"ALTER TABLE history_{table} RENAME TO {table}")
            for ddl in SCHEMA:  # anything else on those tables (e.g. a later index) again
                con.execute(ddl)
            # Kept by every writer of readings; one pass over the history.
            con.execute(_GATE_LAST_UPSERT.format(source="readings"))
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def _write_history(self, con: duckdb.DuckDBPyConnection, readings: object) -> int:
        columns = ", ".join(_READING_COLUMNS)
        with _transaction_over(con, "history", readings):
            lo, hi, longest = con.execute(
                "SELECT min(ts_utc), max(ts_utc), max(interval_s) FROM history"
            ).fetchone()
            if lo is None:
                return 0  # nothing to store: the empty transaction commits
            # Zone maps make these cheap: only row groups overlapping [lo, hi] are read.
            stored = con.execute(
                """SELECT count(*) FROM readings WHERE ts_utc >= $1 AND ts_utc <= $2
                AND device_id IN (SELECT DISTINCT device_id FROM history)""",
                [lo, hi],
            ).fetchone()[0]
            source = "history"
            if stored:
                con.execute(
                    f"""CREATE OR REPLACE TEMP TABLE history_new AS
                    SELECT {columns} FROM history h
                    WHERE NOT EXISTS (
                        SELECT 1 FROM readings r
                        WHERE r.ts_utc >= $1 AND r.ts_utc <= $2
                          AND r.device_id = h.device_id AND r.seq = h.seq
                          AND r.ts_utc = h.ts_utc)""",  # noqa: S608 - constant columns
                    [lo, hi],
                ).fetchall()
                source = "history_new"
            inserted = con.execute(
                f"INSERT INTO readings SELECT {columns} FROM {source}"  # noqa: S608
            ).fetchone()[0]
            if inserted:
                counted = con.execute(
                    """SELECT count(*) FROM minute_counts
                    WHERE minute_utc >= $1 - to_seconds($3) - INTERVAL 1 MINUTE
                      AND minute_utc <= $2""",
                    [lo, hi, longest],
                ).fetchone()[0]
                conflict = (
                    """ ON CONFLICT (site_id, gate_id, minute_utc) DO UPDATE SET
                        count_in = count_in + EXCLUDED.count_in,
                        count_out = count_out + EXCLUDED.count_out"""
                    if counted else ""
                )
                con.execute(
                    f"INSERT INTO minute_counts {_MINUTE_COUNTS_OF.format(source=source)}"
                    f"{conflict}"
                ).fetchall()
                con.execute(_GATE_LAST_UPSERT.format(source=source)).fetchall()
            if stored:
                con.execute("DROP TABLE history_new").fetchall()
        return int(inserted)

    # -- alerts (issue 6) --
    # The collector writes alerts: it evaluates them once a minute inside its own cycle
    # (visitorflow.alerts.run_alert_step). The dashboard writes only acknowledgements (and
    # per-site thresholds): rare writes that take the same short-lived, retried connection as
    # every writer. The store takes one writer at a time, so a click waits at most
    # store.lock_timeout_s for the collector's commit to finish; acceptable because it is rare.

    def _ensure_alert_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        for ddl in ALERT_SCHEMA:
            con.execute(ddl)

    def _read_alerts(self, sql: str, params: Sequence[object] | None = None) -> pd.DataFrame | None:
        """A query of the alert tables; None when no alert was ever evaluated in this store."""
        with self._connect(read_only=True) as con:
            present = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'"
            ).fetchone()[0]
            return con.execute(sql, params or []).df() if present else None

    def alert_thresholds(self) -> pd.DataFrame:
        """Per-site threshold overrides: site_id, busy, crowded, overload (shares of
        capacity), updated_at_utc, updated_by. Empty when there are none."""
        frame = self._read_alerts("SELECT * FROM alert_thresholds ORDER BY site_id")
        if frame is None:
            return pd.DataFrame(columns=["site_id", "busy", "crowded", "overload",
                                         "updated_at_utc", "updated_by"])
        return frame

    def set_alert_thresholds(
        self, site_id: str, busy: float, crowded: float, overload: float, updated_by: str,
        now_utc: datetime, baseline: tuple[float, float, float] | None = None,
    ) -> None:
        """Give one site its own thresholds (shares of capacity, rising), logged in
        change_log with the thresholds in force before (`baseline` if it had none)."""
        _check_admin_id(site_id)
        if not 0 < busy < crowded < overload <= 10:
            raise ValueError("thresholds must rise: 0 < busy < crowded < overload (≤ 10)")
        with self._admin_write(alert_tables=True) as con:
            before = con.execute(
                "SELECT busy, crowded, overload FROM alert_thresholds WHERE site_id = ?",
                [site_id],
            ).fetchone() or baseline
            con.execute(
                "INSERT OR REPLACE INTO alert_thresholds VALUES (?, ?, ?, ?, ?, ?)",
                [site_id, busy, crowded, overload, now_utc, updated_by],
            )
            _log_change(con, now_utc, updated_by, "thresholds", site_id, None,
                        _shares(before), _shares((busy, crowded, overload)))

    def open_alerts(self) -> pd.DataFrame | None:
        """Alerts not cleared yet, most severe and oldest first, with their acknowledgements
        counted and the latest one (acked_by, acked_at_utc, note); None: never evaluated."""
        return self._read_alerts(
            """WITH k AS (
                SELECT alert_id, count(*) AS acks, arg_max(acked_by, acked_at_utc) AS acked_by,
                       max(acked_at_utc) AS acked_at_utc, arg_max(note, acked_at_utc) AS ack_note
                FROM alert_acks GROUP BY alert_id)
            SELECT a.*, coalesce(k.acks, 0) AS acks, k.acked_by, k.acked_at_utc, k.ack_note
            FROM alerts a LEFT JOIN k USING (alert_id)
            WHERE a.cleared_at_utc IS NULL
            ORDER BY CASE a.level WHEN 'overload' THEN 0 WHEN 'crowded' THEN 1 ELSE 2 END,
                     a.raised_at_utc, a.site_id"""
        )

    def alert_audit(self, since_utc: datetime | None = None) -> pd.DataFrame | None:
        """Every alert raised since a time (all when None), newest first, one row per
        acknowledgement (ack columns NULL for an alert nobody acknowledged)."""
        return self._read_alerts(
            """SELECT a.*, k.acked_at_utc, k.acked_by, k.note
            FROM alerts a LEFT JOIN alert_acks k USING (alert_id)
            WHERE $1::TIMESTAMP IS NULL OR a.raised_at_utc >= $1
            ORDER BY a.raised_at_utc DESC, a.alert_id, k.acked_at_utc""",
            [since_utc],
        )

    def apply_alert_changes(
        self, raised: pd.DataFrame, cleared_ids: Sequence[str], now_utc: datetime
    ) -> None:
        """One evaluation's result, atomically: new alerts (ALERT_COLUMNS; an id already
        stored is kept as it is) and the ids of open alerts that cleared at `now_utc`."""
        with self._connect(read_only=False) as con:
            self._ensure_alert_tables(con)
            con.execute("BEGIN TRANSACTION")
            try:
                if len(raised):
                    con.register("raised", raised[ALERT_COLUMNS])
                    con.execute(
                        f"INSERT OR IGNORE INTO alerts SELECT {', '.join(ALERT_COLUMNS)} "  # noqa: S608
                        "FROM raised"
                    )
                    con.unregister("raised")
                if cleared_ids:
                    con.execute(
                        """UPDATE alerts SET cleared_at_utc = $2
                        WHERE list_contains($1::VARCHAR[], alert_id) AND cleared_at_utc IS NULL""",
                        [list(cleared_ids), now_utc],
                    )
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def acknowledge_alert(self, alert_id: str, acked_by: str, note: str, now_utc: datetime) -> None:
        """Record that an operator acknowledged an alert, with their note (kept for audit)."""
        with self._connect(read_only=False) as con:
            self._ensure_alert_tables(con)
            known = con.execute(
                "SELECT count(*) FROM alerts WHERE alert_id = ?", [alert_id]
            ).fetchone()[0]
            if not known:
                raise StoreError(f"no alert {alert_id!r} in the store")
            con.execute(
                "INSERT INTO alert_acks VALUES (?, ?, ?, ?)", [alert_id, now_utc, acked_by, note]
            )

    # -- administration (issue 8) --
    # The dashboard's admin and alerts pages write these (rare writes, same short-lived
    # connection as every writer); the collector, the live view and the forecaster read the
    # overrides through visitorflow.limits.effective_limits.

    def _ensure_admin_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        for ddl in ADMIN_SCHEMA:
            con.execute(ddl)

    @contextmanager
    def _admin_write(self, alert_tables: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One administrative change and its change_log row, in one transaction."""
        with self._connect(read_only=False) as con:
            if alert_tables:
                self._ensure_alert_tables(con)
            self._ensure_admin_tables(con)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def _read_optional(self, sql: str, tables: Sequence[str], columns: Sequence[str],
                       params: Sequence[object] | None = None) -> pd.DataFrame:
        """A query of tables that may not exist yet: an empty frame with `columns` if one is
        missing (nothing was ever changed) or the store does not exist."""
        if not self.path.exists():
            return pd.DataFrame(columns=list(columns))
        with self._connect(read_only=True) as con:
            present = con.execute(
                "SELECT count(DISTINCT table_name) FROM information_schema.tables "
                "WHERE list_contains($1::VARCHAR[], table_name)", [list(tables)],
            ).fetchone()[0]
            if present < len(set(tables)):
                return pd.DataFrame(columns=list(columns))
            return con.execute(sql, params or []).df()

    def site_overrides(self) -> pd.DataFrame:
        """Per site with any override: site_id, capacity (people), busy, crowded, overload
        (shares of capacity); NULL where that value is not overridden. One read."""
        columns = ["site_id", "capacity", "busy", "crowded", "overload"]
        if not self.path.exists():
            return pd.DataFrame(columns=columns)
        with self._reading() as con:
            present = {row[0] for row in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_name IN ('capacity_overrides', 'alert_thresholds')").fetchall()}
            capacity = ("SELECT site_id, capacity FROM capacity_overrides"
                        if "capacity_overrides" in present
                        else "SELECT NULL::VARCHAR AS site_id, NULL::INTEGER AS capacity LIMIT 0")
            shares = ("SELECT site_id, busy, crowded, overload FROM alert_thresholds"
                      if "alert_thresholds" in present
                      else "SELECT NULL::VARCHAR AS site_id, NULL::DOUBLE AS busy, "
                           "NULL::DOUBLE AS crowded, NULL::DOUBLE AS overload LIMIT 0")
            return con.execute(
                f"""SELECT coalesce(c.site_id, t.site_id) AS site_id, c.capacity, t.busy,
                       t.crowded, t.overload
                FROM ({capacity}) c FULL OUTER JOIN ({shares}) t ON c.site_id = t.site_id
                ORDER BY 1"""  # noqa: S608 - constant subqueries chosen above
            ).df()

    def capacity_overrides(self) -> pd.DataFrame:
        """site_id, capacity, updated_at_utc, updated_by of every capacity override."""
        return self._read_optional(
            "SELECT * FROM capacity_overrides ORDER BY site_id", ["capacity_overrides"],
            ["site_id", "capacity", "updated_at_utc", "updated_by"])

    def set_capacity(
        self, site_id: str, capacity: int | None, updated_by: str, now_utc: datetime,
        baseline: int | None = None,
    ) -> None:
        """Give a site its own capacity (None: back to the catalogue's), logged in change_log
        with the capacity in force before (`baseline`, the catalogue's, if it had none)."""
        _check_admin_id(site_id)
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                     or not 0 < capacity <= MAX_CAPACITY):
            raise ValueError(f"capacity must be a whole number of people in 1..{MAX_CAPACITY}")
        with self._admin_write() as con:
            row = con.execute("SELECT capacity FROM capacity_overrides WHERE site_id = ?",
                              [site_id]).fetchone()
            before = row[0] if row else baseline
            if capacity is None:
                con.execute("DELETE FROM capacity_overrides WHERE site_id = ?", [site_id])
            else:
                con.execute("INSERT OR REPLACE INTO capacity_overrides VALUES (?, ?, ?, ?)",
                            [site_id, capacity, now_utc, updated_by])
            after = baseline if capacity is None else capacity
            _log_change(con, now_utc, updated_by, "capacity", site_id, None,
                        None if before is None else str(before),
                        None if after is None else str(after))

    def action_texts(self) -> pd.DataFrame:
        """Recommended action texts edited in the dashboard: site_id ('*': default),
        action_key, lang, text, updated_at_utc, updated_by."""
        return self._read_optional(
            "SELECT * FROM action_texts ORDER BY site_id, action_key, lang", ["action_texts"],
            ["site_id", "action_key", "lang", "text", "updated_at_utc", "updated_by"])

    def set_action_text(
        self, site_id: str, action_key: str, lang: str, text: str, updated_by: str,
        now_utc: datetime, baseline: str | None = None,
    ) -> None:
        """Store an operator's recommended action text, logged in change_log with the text
        in force before (`baseline`, the file's, if none was edited)."""
        _check_admin_id(site_id, every_site=True)
        if action_key not in ("busy", "crowded", "overload", "forecast_overload"):
            raise ValueError(f"unknown action key {action_key!r}")
        if lang not in ("vi", "en", "zh"):
            raise ValueError(f"unknown language {lang!r}")
        text = text.strip()
        if not text or len(text) > 2000:
            raise ValueError("an action text needs 1–2000 characters")
        with self._admin_write() as con:
            row = con.execute(
                "SELECT text FROM action_texts WHERE site_id = ? AND action_key = ? "
                "AND lang = ?", [site_id, action_key, lang]).fetchone()
            con.execute("INSERT OR REPLACE INTO action_texts VALUES (?, ?, ?, ?, ?, ?)",
                        [site_id, action_key, lang, text, now_utc, updated_by])
            _log_change(con, now_utc, updated_by, "action", site_id,
                        f"{action_key}.{lang}", row[0] if row else baseline, text)

    def change_log(self, limit: int = 500) -> pd.DataFrame:
        """Changes of capacities, thresholds and actions, newest first: changed_at_utc,
        changed_by, what, site_id, item, old_value, new_value."""
        return self._read_optional(
            "SELECT * FROM change_log ORDER BY changed_at_utc DESC LIMIT $1", ["change_log"],
            ["changed_at_utc", "changed_by", "what", "site_id", "item", "old_value",
             "new_value"], [limit])


def _check_admin_id(site_id: object, every_site: bool = False) -> None:
    """Administrative writes name a catalogue site (snake_case), or '*' (every site) where
    `every_site` allows it; anything else is a bad id, never SQL."""
    if (not isinstance(site_id, str) or not ADMIN_IDS.match(site_id)
            or (site_id == "*" and not every_site)):
        raise ValueError(f"not a site id: {str(site_id)[:40]!r}")


def _shares(values: Sequence[float] | None) -> str | None:
    return None if values is None else " / ".join(f"{float(v):.2f}" for v in values)


def _log_change(
    con: duckdb.DuckDBPyConnection, now_utc: datetime, who: str, what: str, site_id: str,
    item: str | None, old: str | None, new: str | None,
) -> None:
    con.execute("INSERT INTO change_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                [now_utc, who, what, site_id, item, old, new])


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

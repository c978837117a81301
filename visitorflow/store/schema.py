"""Every table of the store, and the versioned migrations that create and change them.

`schema_info` holds one row per migration applied (its version and when). The writer's
`Store.initialise()` applies, in order and each in its own transaction, the migrations whose
version is above the store's; a reader refuses a store whose version is not `SCHEMA_VERSION`
(`check_version`), so old code never misreads a newer store nor new code an unmigrated one.
Stores written before versions were read say version 1 whatever they hold, so migrations 2
and up are idempotent (IF NOT EXISTS, a fill only into an empty table).

Tables are created here only: no writer creates a table on first write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

from visitorflow.store.base import StoreError, transaction

# Readings are unique on (device_id, seq, ts_utc): `seq` alone restarts at 0 after a device
# reset, so a genuine new reading may share a seq with an old one; a redelivery or a resend
# repeats all three. The columns and keys of `readings` and `minute_counts` are named once:
# a backfill into an empty store loads key-less copies and adds these keys afterwards
# (visitorflow/store/history.py).
READINGS_COLUMNS_DDL = """
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
READINGS_KEY = "device_id, seq, ts_utc"
READING_COLUMNS = [
    "device_id", "seq", "ts_utc", "site_id", "gate_id", "interval_s", "count_in", "count_out",
    "in_total", "out_total", "battery_pct", "received_at_utc",
]
MINUTE_COUNTS_COLUMNS_DDL = """
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        minute_utc TIMESTAMP NOT NULL,
        count_in BIGINT NOT NULL,
        count_out BIGINT NOT NULL"""
MINUTE_COUNTS_KEY = "site_id, gate_id, minute_utc"

# -- counting: what the collector writes ----------------------------------------------------
COUNTING_TABLES = [
    f"""CREATE TABLE IF NOT EXISTS readings ({READINGS_COLUMNS_DDL},
        PRIMARY KEY ({READINGS_KEY}))""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        received_at_utc TIMESTAMP NOT NULL,
        topic VARCHAR NOT NULL,
        payload BLOB NOT NULL,
        reason VARCHAR NOT NULL)""",
    # People through each gate per minute, keyed by the minute the counting interval began.
    # Maintained in the same transaction as `readings`, so a late reading corrects its minute.
    f"""CREATE TABLE IF NOT EXISTS minute_counts ({MINUTE_COUNTS_COLUMNS_DDL},
        PRIMARY KEY ({MINUTE_COUNTS_KEY}))""",
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

# -- ingest quality: what the collector found wrong with the counters -------------------------
INGEST_QUALITY_TABLES = [
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
]

# -- forecasts and backtests ---------------------------------------------------------------
FORECAST_TABLES = [
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
    # Daily forecasts: arrivals (people per local day, in the settings' zone).
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
]
# Festival-day, peak and overload scores (forecasting/README.md defines them).
BACKTEST_SCORE_COLUMNS = [
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS festival_day_err DOUBLE",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS festival_peak_max_err DOUBLE",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS festival_peaks INTEGER",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS overload_hours INTEGER",
    "ALTER TABLE forecast_backtests ADD COLUMN IF NOT EXISTS overload_brier DOUBLE",
]

# Which forecaster each site's forecast came from, and every candidate's backtest score: a
# run uses per site the candidate that erred least in the newest backtest (the weekly naive
# when none beat it), and says which one it used.
MODEL_CHOICE_TABLES = [
    "ALTER TABLE forecast_sites ADD COLUMN IF NOT EXISTS model VARCHAR",
    """CREATE TABLE IF NOT EXISTS forecast_backtest_models (
        backtest_id VARCHAR NOT NULL,
        site_id VARCHAR NOT NULL,
        model VARCHAR NOT NULL,              -- forecasting.candidates.MODELS
        folds INTEGER NOT NULL,
        open_hours INTEGER NOT NULL,
        mae DOUBLE,                          -- people per hour, open hours of the scored folds
        mae_ratio DOUBLE,                    -- mae / weekly-naive MAE on the same hours
        busiest_mae_ratio DOUBLE,            -- the same on the busiest 10 % of those hours
        PRIMARY KEY (backtest_id, site_id, model))""",
]
# How much each candidate's band had to widen (> 1) or narrow (< 1) to cover 80 % of the
# backtest's hours, and the factor a run applied to the band it stored.
BAND_SCALE_COLUMNS = [
    "ALTER TABLE forecast_backtest_models ADD COLUMN IF NOT EXISTS band_scale DOUBLE",
    "ALTER TABLE forecast_sites ADD COLUMN IF NOT EXISTS band_scale DOUBLE",
]
# Prophet's share in the preferred candidate that erred least in a backtest
# (forecasting.candidates.prophet_share), on that candidate's row: a run mixes with it.
PROPHET_SHARE_COLUMNS = [
    "ALTER TABLE forecast_backtest_models ADD COLUMN IF NOT EXISTS prophet_share DOUBLE",
]
# The share a run mixed with, per site (NULL when the site's forecast was not that candidate):
# the site page names it, and the backtest it came from may be replaced by the next one.
RUN_PROPHET_SHARE_COLUMNS = [
    "ALTER TABLE forecast_sites ADD COLUMN IF NOT EXISTS prophet_share DOUBLE",
]
# The median of each hour's arrivals, kept beside `arrivals` where that leans toward the crowd
# on busy hours (forecasting.candidates.lean_to_crowd): the nowcast compares the counts with
# the median. NULL in older runs, whose `arrivals` were the median.
ARRIVALS_MEDIAN_COLUMNS = [
    "ALTER TABLE forecast_hourly ADD COLUMN IF NOT EXISTS arrivals_median DOUBLE",
]

# -- dashboard speed -------------------------------------------------------------------------
# Each gate's newest reading, kept by every writer of `readings` in the same transaction
# (writes.GATE_LAST_UPSERT): the live and site pages ask for it every refresh, and finding it
# in `readings` scans every row (10 s on a year of minute readings, bench/results.md).
GATE_LAST_READING_TABLE = """CREATE TABLE IF NOT EXISTS gate_last_reading (
        site_id VARCHAR NOT NULL,
        gate_id VARCHAR NOT NULL,
        device_id VARCHAR NOT NULL,
        last_reading_utc TIMESTAMP NOT NULL,
        interval_s INTEGER NOT NULL,
        battery_pct DOUBLE,
        readings BIGINT NOT NULL,
        PRIMARY KEY (site_id, gate_id))"""

# -- alerts and administration -------------------------------------------------------------
ALERT_COLUMNS = [
    "alert_id", "site_id", "level", "kind", "raised_at_utc", "cleared_at_utc", "occupancy",
    "capacity", "threshold", "from_utc", "p_overload", "run_id", "message",
    "recommended_action",
]
ALERT_TABLES = [
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
    # When alerts were last evaluated, and how often: "no alert yet" and "alerting never ran"
    # are different news for an official, so the second is recorded, not guessed.
    """CREATE TABLE IF NOT EXISTS alert_evaluations (
        evaluator VARCHAR PRIMARY KEY,       -- collector
        first_evaluated_at_utc TIMESTAMP NOT NULL,
        last_evaluated_at_utc TIMESTAMP NOT NULL,
        evaluations BIGINT NOT NULL)""",
]
# Every change of a capacity, threshold or recommended action is also written to
# `change_log` in the same transaction: who, when, old → new.
ADMIN_TABLES = [
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

# New readings (a table or view with the readings columns, named by the caller from
# constants) into gate_last_reading: a late reading never replaces a newer one.
GATE_LAST_UPSERT = """INSERT INTO gate_last_reading
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


# -- the scheduler's jobs: refits, backups, retention, open-data exports -----------------------
JOB_TABLES = [
    """CREATE TABLE IF NOT EXISTS job_runs (
        job VARCHAR NOT NULL,                -- refit, backup, retention, export
        started_at_utc TIMESTAMP NOT NULL,
        finished_at_utc TIMESTAMP NOT NULL,
        ok BOOLEAN NOT NULL,
        detail VARCHAR,                      -- what it did, or why it failed
        PRIMARY KEY (job, started_at_utc))""",
]


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the store has a table of this name (for migrations only)."""
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()[0])


def _gate_last_reading(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(GATE_LAST_READING_TABLE)
    # A store whose readings came before the table: fill it once from them.
    if not con.execute("SELECT count(*) FROM gate_last_reading").fetchone()[0]:
        con.execute(GATE_LAST_UPSERT.format(source="readings"))


def _alert_evaluations(con: duckdb.DuckDBPyConnection) -> None:
    # Stores written before this table had alert tables only once an evaluation had run:
    # such a store has been evaluated, at the latest when its newest alert was raised.
    evaluated = has_table(con, "alerts")
    for ddl in ALERT_TABLES:
        con.execute(ddl)
    if evaluated:
        con.execute(
            """INSERT OR IGNORE INTO alert_evaluations
            SELECT 'collector', coalesce(min(raised_at_utc), now()::TIMESTAMP),
                   coalesce(max(raised_at_utc), now()::TIMESTAMP), 0 FROM alerts"""
        )


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def _statements(ddl: Sequence[str]) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def apply(con: duckdb.DuckDBPyConnection) -> None:
        for statement in ddl:
            con.execute(statement)
    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "counting, ingest quality and forecast tables",
              _statements(COUNTING_TABLES + INGEST_QUALITY_TABLES + FORECAST_TABLES)),
    Migration(2, "gate_last_reading, filled from the stored readings", _gate_last_reading),
    Migration(3, "festival, peak and overload scores of backtests",
              _statements(BACKTEST_SCORE_COLUMNS)),
    Migration(4, "alert tables and the record of alert evaluations", _alert_evaluations),
    Migration(5, "administrative overrides and their change log", _statements(ADMIN_TABLES)),
    Migration(6, "the scheduler's job runs and their outcomes", _statements(JOB_TABLES)),
    Migration(7, "the forecaster each site used and every candidate's backtest score",
              _statements(MODEL_CHOICE_TABLES)),
    Migration(8, "each candidate's band calibration and the one a run applied",
              _statements(BAND_SCALE_COLUMNS)),
    Migration(9, "Prophet's share in the preferred candidate chosen by each backtest",
              _statements(PROPHET_SHARE_COLUMNS)),
    Migration(10, "Prophet's share in the preferred candidate a run used",
              _statements(RUN_PROPHET_SHARE_COLUMNS)),
    Migration(11, "the median of the hourly arrivals beside the forecast shown",
              _statements(ARRIVALS_MEDIAN_COLUMNS)),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_SCHEMA_INFO = """CREATE TABLE IF NOT EXISTS schema_info (
    version INTEGER NOT NULL,
    created_at_utc TIMESTAMP NOT NULL)      -- when this version's migration was applied"""


def store_version(con: duckdb.DuckDBPyConnection) -> int:
    """The store's schema version: 0 for a file with no schema yet."""
    if not has_table(con, "schema_info"):
        return 0
    return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_info").fetchone()[0])


def check_version(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why this code cannot read the store, or None if it can."""
    version = store_version(con)
    if version == SCHEMA_VERSION:
        return None
    if version > SCHEMA_VERSION:
        return (f"its schema is version {version}, newer than this code's {SCHEMA_VERSION}: "
                "update the platform before reading it")
    return (f"its schema is version {version}, this code needs {SCHEMA_VERSION}: start the "
            "collector (make collector), whose start-up migrates the store")


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the migrations the store lacks, each in its own transaction with its
    `schema_info` row; returns the versions applied."""
    con.execute(_SCHEMA_INFO)
    version = store_version(con)
    if version > SCHEMA_VERSION:
        raise StoreError(str(check_version(con)))
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        with transaction(con):
            migration.apply(con)
            con.execute("INSERT INTO schema_info VALUES (?, now()::TIMESTAMP)",
                        [migration.version])
        applied.append(migration.version)
    return applied

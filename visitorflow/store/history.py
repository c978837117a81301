"""Bulk history: a backfill writes millions of readings at once.

One Arrow table (or DataFrame) with the readings columns per call, inserted and aggregated
into minute_counts in SQL in one transaction: the same result as `write_batch` (duplicates
skipped, minute counts added) without per-row Python. The common case (nothing stored yet in
the batch's time range) takes the plain INSERT path; the anti-join and the upsert cost only
when something overlaps.

Into an empty store (first start) `history_writer` does less work: keeping the two primary
keys (ART indexes) up to date row by row costs more than building them once, so it loads
key-less staging tables, adds the keys at the end and swaps the staging tables in (~27 % less
CPU, bench/results.md "Backfill"). Same tables, keys and rows afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import duckdb

from visitorflow.store.base import StoreError, transaction
from visitorflow.store.connection import StoreConnection
from visitorflow.store.schema import (
    GATE_LAST_UPSERT,
    MINUTE_COUNTS_COLUMNS_DDL,
    MINUTE_COUNTS_KEY,
    READING_COLUMNS,
    READINGS_COLUMNS_DDL,
    READINGS_KEY,
)
from visitorflow.store.writes import MINUTE_COUNTS_OF, add_minute_counts

# Key-less copies of `readings` and `minute_counts` a backfill into an empty store loads first.
_STAGING = {"readings": ("history_readings", READINGS_COLUMNS_DDL, READINGS_KEY),
            "minute_counts": ("history_minute_counts", MINUTE_COUNTS_COLUMNS_DDL,
                              MINUTE_COUNTS_KEY)}


def _history_tables_empty(con: duckdb.DuckDBPyConnection) -> bool:
    # fetchall: DuckDB refuses a register() while a result is left unfetched.
    return con.execute(
        """SELECT NOT EXISTS (SELECT 1 FROM readings)
              AND NOT EXISTS (SELECT 1 FROM minute_counts)"""
    ).fetchall()[0][0]


def _load_history(con: duckdb.DuckDBPyConnection, readings: object) -> int:
    """One batch into the key-less staging tables: the readings and their minute counts."""
    with transaction(con, history=readings):
        inserted = con.execute(
            f"INSERT INTO history_readings SELECT {', '.join(READING_COLUMNS)} "
            "FROM history"
        ).fetchall()[0][0]
        add_minute_counts(con, MINUTE_COUNTS_OF.format(source="history"), upsert=False,
                          table="history_minute_counts")
    return int(inserted)


def _key_history(con: duckdb.DuckDBPyConnection, on_keys: Callable[[str], None]) -> None:
    """Add the primary keys to the loaded staging tables and swap them in."""
    for table, (staging, _, key) in _STAGING.items():
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
    with transaction(con):
        # The store was held since the emptiness check; checked again all the same.
        if not _history_tables_empty(con):
            raise StoreError("readings were stored during the backfill: nothing was stored")
        for table, (staging, _, _) in _STAGING.items():
            con.execute(f"DROP TABLE {table}")
            con.execute(f"ALTER TABLE {staging} RENAME TO {table}")
        # Kept by every writer of readings; one pass over the history.
        con.execute(GATE_LAST_UPSERT.format(source="readings"))


def _write_history(con: duckdb.DuckDBPyConnection, readings: object) -> int:
    columns = ", ".join(READING_COLUMNS)
    with transaction(con, history=readings):
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
                      AND r.ts_utc = h.ts_utc)""",  # constant columns
                [lo, hi],
            ).fetchall()
            source = "history_new"
        inserted = con.execute(
            f"INSERT INTO readings SELECT {columns} FROM {source}"
        ).fetchone()[0]
        if inserted:
            counted = con.execute(
                """SELECT count(*) FROM minute_counts
                WHERE minute_utc >= $1 - to_seconds($3) - INTERVAL 1 MINUTE
                  AND minute_utc <= $2""",
                [lo, hi, longest],
            ).fetchone()[0]
            # Nothing counted in the range yet: a plain insert, no conflict to resolve.
            add_minute_counts(con, MINUTE_COUNTS_OF.format(source=source), upsert=bool(counted))
            con.execute(GATE_LAST_UPSERT.format(source=source)).fetchall()
        if stored:
            con.execute("DROP TABLE history_new").fetchall()
    return int(inserted)


class HistoryWrites(StoreConnection):
    """Backfills' bulk writes."""

    def write_history(self, readings: object) -> int:
        """Store readings (an Arrow table or DataFrame with the `readings` columns, unique on
        (device_id, seq, ts_utc)) and their minute counts atomically; rows already stored are
        skipped. Returns the number of readings inserted."""
        with self._connect(read_only=False) as con:
            return _write_history(con, readings)

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
            if not (bulk and _history_tables_empty(con)):
                yield lambda readings: _write_history(con, readings)
                return
            for staging, columns, _ in _STAGING.values():
                con.execute(f"CREATE OR REPLACE TABLE {staging} ({columns})")
            try:
                yield lambda readings: _load_history(con, readings)
                _key_history(con, on_keys or (lambda table: None))
            finally:
                for staging, _, _ in _STAGING.values():
                    con.execute(f"DROP TABLE IF EXISTS {staging}")  # constant names

"""Connections to the store file: open, retry a held lock, close at once; read sessions.

One process writes (the collector). DuckDB lets a process that holds a file read-write block
every other process, even read-only ones, so nobody holds it: the writer opens, commits a
micro-batch and closes; readers open read-only, query and close at once. Both retry a held
lock with backoff. All times are naive UTC (`*_utc` columns).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from visitorflow.store.base import StoreBusy, StoreError, StoreMissing, transaction
from visitorflow.store.schema import check_version


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class StoreConnection:
    """The file, its lock handling and the read session; every table group builds on it."""

    def __init__(
        self, path: Path | str, lock_timeout_s: float = 5.0, retry_max_s: float = 0.05
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.retry_max_s = retry_max_s
        self.last_lock_wait_s = 0.0
        self._session = threading.local()  # the connection of this thread's session()
        self._version_checked = False  # a store's schema only ever moves forward

    def __getstate__(self) -> dict:  # a Store may travel to worker processes; no connection
        return {k: v for k, v in self.__dict__.items() if k != "_session"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _session=threading.local())

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open, yield and close, retrying a held lock with exponential backoff. A reader
        is refused a store whose schema is not the one this code was written for."""
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
            if read_only and not self._version_checked:
                problem = check_version(con)
                if problem:
                    raise StoreError(f"store {self.path}: {problem}")
                self._version_checked = True
            yield con
        finally:
            con.close()

    @contextmanager
    def _writing(self, **frames: object) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection holding one transaction (see `transaction`)."""
        with self._connect(read_only=False) as con, transaction(con, **frames):
            yield con

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection of the enclosing `session()`, or a read-only one just for this."""
        held = getattr(self._session, "con", None)
        if held is not None:
            yield held
            return
        with self._connect(read_only=True) as con:
            yield con

    def _read(self, sql: str, params: Sequence[object] | dict | None = None) -> pd.DataFrame:
        with self._reading() as con:
            return con.execute(sql, params or []).df()

    @contextmanager
    def session(self) -> Iterator[StoreConnection]:
        """Several reads on one read-only connection, closed at the end of the block: a page
        refresh makes its few queries in one go (opening a year of minute data costs ~0.13 s,
        bench/results.md, dashboard pages) and still holds the store only for milliseconds.
        Reads only."""
        if getattr(self._session, "con", None) is not None:
            yield self
            return
        with self._connect(read_only=True) as con:
            self._session.con = con
            try:
                yield self
            finally:
                self._session.con = None

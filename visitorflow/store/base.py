"""The store's errors and its one transaction helper, used by every module of the package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


class StoreError(RuntimeError):
    """The store cannot be used; the message says why and what to do."""


class StoreBusy(StoreError):
    """Another process held the store for longer than the lock timeout."""


class StoreMissing(StoreError):
    """The store file does not exist yet."""


@contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, **frames: object
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A transaction on `con` in which each keyword's frame (DataFrame or Arrow table) is
    queryable under that name: committed when the block ends, rolled back if it raises, the
    frames unregistered either way."""
    for name, frame in frames.items():
        con.register(name, frame)
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in frames:
            con.unregister(name)

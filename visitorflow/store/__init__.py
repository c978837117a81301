"""The DuckDB store: one facade, `Store`, over one module per group of tables.

- `connection`: opening the file with lock retry, read sessions (the single-writer rule);
- `schema`: every table and the versioned migrations;
- `writes`: the collector's writes and ingest-quality repairs;
- `history`: backfills' bulk writes;
- `forecasts`: forecast runs and backtests;
- `admin`: alerts, acknowledgements, evaluations and administrative overrides;
- `archive`: raw readings leaving for the archive (retention);
- `jobs`: the scheduler's job runs (refit, backup, retention, export) and outcomes;
- `queries`: reads of counts, readings and their quality.

SQL lives in those modules only, parameterised; table and column names in it are constants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visitorflow.store.admin import MAX_CAPACITY, AlertAndAdminTables
from visitorflow.store.archive import ArchiveTables
from visitorflow.store.base import StoreBusy, StoreError, StoreMissing
from visitorflow.store.forecasts import ForecastTables
from visitorflow.store.history import HistoryWrites
from visitorflow.store.jobs import JOBS, JobTables
from visitorflow.store.queries import ReadQueries
from visitorflow.store.schema import ALERT_COLUMNS, SCHEMA_VERSION, migrate
from visitorflow.store.writes import BatchResult, IngestWrites, Quarantined, readings_frame

if TYPE_CHECKING:
    from visitorflow.settings import Settings

__all__ = [
    "ALERT_COLUMNS", "JOBS", "MAX_CAPACITY", "SCHEMA_VERSION", "BatchResult", "Quarantined",
    "Store",
    "StoreBusy", "StoreError", "StoreMissing", "readings_frame",
]


class Store(IngestWrites, HistoryWrites, ForecastTables, AlertAndAdminTables, JobTables,
            ArchiveTables, ReadQueries):
    """The visitor-flow store at one DuckDB file."""

    @classmethod
    def from_settings(cls, settings: Settings, lock_timeout_s: float | None = None) -> Store:
        """The store of the settings; `lock_timeout_s` overrides how long a held lock is
        waited for (background jobs wait longer than a page)."""
        return cls(settings.store.path, lock_timeout_s or settings.store.lock_timeout_s,
                   settings.store.retry_max_s)

    def initialise(self) -> list[int]:
        """Create the file if missing and bring its schema to this code's version
        (idempotent); returns the migration versions applied."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            return migrate(con)

    def schema_version(self) -> int:
        """The store's schema version (SCHEMA_VERSION once initialised)."""
        frame = self._read("SELECT max(version) AS version FROM schema_info")
        return int(frame["version"].iloc[0])


"""Raw readings leaving the store for the archive (visitorflow/retention.py), and the
checks around moving the store's file (visitorflow/backup.py).

Only rows already written to an archive file are deleted, matched on the readings' key
against that file: a late reading that arrived for the same days after the file was written
stays in the store and goes with the next run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from visitorflow.store.connection import StoreConnection
from visitorflow.store.schema import READINGS_KEY


class ArchiveTables(StoreConnection):
    """Retention of raw readings."""

    def oldest_reading_utc(self) -> datetime | None:
        """The oldest stored reading's time (naive UTC), None if there is none."""
        value = self._read("SELECT min(ts_utc) AS oldest FROM readings")["oldest"].iloc[0]
        return None if value is None or value != value else value.to_pydatetime()

    def delete_archived_readings(self, archive_file: Path, start_utc: datetime,
                                 end_utc: datetime) -> int:
        """Delete the readings with `start_utc <= ts_utc < end_utc` that `archive_file` (a
        Parquet file of readings) holds; returns rows deleted."""
        with self._writing() as con:
            return int(con.execute(
                f"""DELETE FROM readings USING (
                        SELECT {READINGS_KEY} FROM read_parquet($file)
                        WHERE ts_utc >= $start AND ts_utc < $end) AS archived
                    WHERE readings.ts_utc >= $start AND readings.ts_utc < $end
                      AND readings.device_id = archived.device_id
                      AND readings.seq = archived.seq
                      AND readings.ts_utc = archived.ts_utc""",  # constant key columns
                {"file": str(archive_file), "start": start_utc, "end": end_utc},
            ).fetchone()[0])

    def ensure_not_in_use(self) -> None:
        """Raise StoreBusy unless no other process holds the store (a writer's connection
        is refused while any other connection is open)."""
        with self._connect(read_only=False):
            pass

"""The scheduler's record of its jobs (refit, backup, retention, export): when each ran and
how it ended, so that the dashboard and the health endpoints can say "last backup 3 h ago" or
"the last refit failed" without reading logs. The scheduler writes one row per run, in a
short transaction like every other writer's."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from visitorflow.store.connection import StoreConnection

JOBS = ("backtest", "refit", "backup", "retention", "export")


class JobTables(StoreConnection):
    """Job runs."""

    def record_job(self, job: str, started_utc: datetime, finished_utc: datetime, ok: bool,
                   detail: str | None = None) -> None:
        """One run of a scheduled job and how it ended."""
        if job not in JOBS:
            raise ValueError(f"unknown job {job!r}: one of {', '.join(JOBS)}")
        with self._writing() as con:
            con.execute("INSERT OR REPLACE INTO job_runs VALUES (?, ?, ?, ?, ?)",
                        [job, started_utc, finished_utc, ok, detail])

    def job_status(self) -> pd.DataFrame:
        """Per job that ever ran: its last run (`last_started_utc`, `last_finished_utc`,
        `last_ok`, `last_detail`) and its last successful finish (`last_ok_utc`, NaT if none)."""
        return self._read(
            """SELECT job,
                   arg_max(started_at_utc, started_at_utc) AS last_started_utc,
                   arg_max(finished_at_utc, started_at_utc) AS last_finished_utc,
                   arg_max(ok, started_at_utc) AS last_ok,
                   arg_max(detail, started_at_utc) AS last_detail,
                   max(finished_at_utc) FILTER (WHERE ok) AS last_ok_utc
               FROM job_runs GROUP BY job ORDER BY job""")

    def job_runs(self, job: str, limit: int = 50) -> pd.DataFrame:
        """The newest runs of one job, newest first."""
        return self._read(
            "SELECT * FROM job_runs WHERE job = ? ORDER BY started_at_utc DESC LIMIT ?",
            [job, limit])

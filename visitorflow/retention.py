"""Retention: raw readings older than `schedule.readings_kept_days` move to Parquet by month.

    python -m visitorflow.retention run                      # what the scheduler runs daily
    python -m visitorflow.retention read --start 2025-01-01 --end 2025-01-31 --out jan.parquet

Raw readings are most of the store's size (a year of minute readings is ~1.7 GiB); the
minute counts, forecasts, alerts and the audit that every page reads stay in the store. The
archive is `<archive_dir>/readings/month=YYYY-MM/readings-<run>.parquet`, one file per month
and run (a late reading for an archived month goes into a new file of that month). Each day
is moved on its own: read it, then, once the month's file is written and renamed into place,
delete exactly the rows that file holds (visitorflow/store/archive.py). A day is a short
read and a short write, so the collector never waits long; a run stopped half-way leaves
every reading in the store or in a complete file, never in neither, and a reading in both
only until the next run deletes it (reading back drops such doubles).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from visitorflow.backup import JOB_LOCK_TIMEOUT_S
from visitorflow.clock import local_day_start_utc, to_utc, utc_now
from visitorflow.settings import Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreError
from visitorflow.store.schema import READING_COLUMNS, READINGS_KEY

ARCHIVE_TABLE = "readings"


@dataclass
class RetentionReport:
    cutoff_utc: datetime
    moved: dict[str, int] = field(default_factory=dict)  # month -> rows moved
    files: list[Path] = field(default_factory=list)
    longest_write_s: float = 0.0  # the longest the collector was kept out by one delete

    @property
    def rows(self) -> int:
        return sum(self.moved.values())


def cutoff_utc(settings: Settings, now_utc: datetime | None = None) -> datetime:
    """Readings before this (local midnight `readings_kept_days` ago, naive UTC) move."""
    today_start = local_day_start_utc(now_utc or utc_now(), settings.tz)
    return today_start - timedelta(days=settings.schedule.readings_kept_days)


def month_dir(archive_dir: Path, month: str) -> Path:
    return archive_dir / ARCHIVE_TABLE / f"month={month}"


def _days(start_utc: datetime, end_utc: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at each UTC midnight: the days moved one at a time."""
    spans, day = [], start_utc
    while day < end_utc:
        nxt = min(datetime.combine(day.date() + timedelta(days=1), datetime.min.time()),
                  end_utc)
        spans.append((day, nxt))
        day = nxt
    return spans


def run_retention(settings: Settings, now_utc: datetime | None = None) -> RetentionReport:
    """Move the readings older than the cutoff into the archive, month by month."""
    store = Store.from_settings(settings, JOB_LOCK_TIMEOUT_S)
    cutoff = cutoff_utc(settings, now_utc)
    report = RetentionReport(cutoff)
    oldest = store.oldest_reading_utc()
    if oldest is None or oldest >= cutoff:
        return report
    run_stamp = (now_utc or utc_now()).strftime("%Y%m%dT%H%M%SZ")
    # Months in UTC: the archive's partitions hold UTC timestamps, as the store does.
    month_start = datetime(oldest.year, oldest.month, 1)
    while month_start < cutoff:
        month_end = (month_start + timedelta(days=32)).replace(day=1)
        end = min(month_end, cutoff)
        days = _days(max(month_start, oldest), end)
        frames = [store.readings(a, b) for a, b in days]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(frame):
            month = f"{month_start:%Y-%m}"
            target = month_dir(settings.schedule.archive_dir, month)
            target.mkdir(parents=True, exist_ok=True)
            path = target / f"readings-{run_stamp}.parquet"
            partial = path.with_name(path.name + ".partial")
            pq.write_table(pa.Table.from_pandas(frame[READING_COLUMNS], preserve_index=False),
                           partial)
            os.replace(partial, path)
            moved = 0
            for a, b in days:
                started = time.perf_counter()
                moved += store.delete_archived_readings(path, a, b)
                report.longest_write_s = max(report.longest_write_s,
                                             time.perf_counter() - started)
            report.moved[month] = moved
            report.files.append(path)
        month_start = month_end
    return report


def read_archived(archive_dir: Path, start_utc: datetime | None = None,
                  end_utc: datetime | None = None, sites: list[str] | None = None
                  ) -> pd.DataFrame:
    """Archived readings with `start_utc <= ts_utc < end_utc` (naive UTC), oldest first;
    a reading archived twice (a run stopped between writing and deleting) appears once."""
    pattern = archive_dir / ARCHIVE_TABLE / "month=*" / "*.parquet"
    if not list(archive_dir.glob(f"{ARCHIVE_TABLE}/month=*/*.parquet")):
        return pd.DataFrame(columns=READING_COLUMNS)
    con = duckdb.connect()
    try:
        return con.execute(
            f"""SELECT DISTINCT ON ({READINGS_KEY}) {', '.join(READING_COLUMNS)}
                FROM read_parquet($pattern, hive_partitioning = false)
                WHERE ($start::TIMESTAMP IS NULL OR ts_utc >= $start)
                  AND ($end::TIMESTAMP IS NULL OR ts_utc < $end)
                  AND ($sites::VARCHAR[] IS NULL OR list_contains($sites, site_id))
                ORDER BY ts_utc, site_id, gate_id, device_id, seq""",  # constant columns
            {"pattern": str(pattern), "start": start_utc, "end": end_utc, "sites": sites},
        ).df()
    finally:
        con.close()


def _local_day(value: str) -> date:
    return date.fromisoformat(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visitorflow.retention",
                                     description="Move old raw readings to Parquet; read "
                                                 "them back.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="move readings older than schedule.readings_kept_days")
    read = commands.add_parser("read", help="archived readings of local days START..END "
                                            "(inclusive) into a Parquet or CSV file")
    read.add_argument("--start", type=_local_day, required=True)
    read.add_argument("--end", type=_local_day, required=True)
    read.add_argument("--sites", default=None, help="comma-separated site ids (default: all)")
    read.add_argument("--out", type=Path, required=True, help="a .parquet or .csv file")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        if args.command == "run":
            report = run_retention(settings)
            print(f"moved {report.rows} readings before {report.cutoff_utc:%Y-%m-%d %H:%M} "
                  f"UTC to {settings.schedule.archive_dir} ({', '.join(report.moved) or 'none'});"
                  f" longest delete {report.longest_write_s:.2f} s")
            return 0
        if args.out.suffix not in (".parquet", ".csv"):
            print("error: --out must end in .parquet or .csv", file=sys.stderr)
            return 2
        start = to_utc(datetime.combine(args.start, datetime.min.time()), settings.tz)
        end = to_utc(datetime.combine(args.end + timedelta(days=1), datetime.min.time()),
                     settings.tz)
        sites = args.sites.split(",") if args.sites else None
        frame = read_archived(settings.schedule.archive_dir, start, end, sites)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".csv":
            frame.to_csv(args.out, index=False)
        else:
            frame.to_parquet(args.out, index=False)
        print(f"{len(frame)} archived readings to {args.out}")
    except (StoreError, SettingsError, OSError, duckdb.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backups of the store: a consistent copy of the DuckDB file, the newest N kept, a restore.

    python -m visitorflow.backup create      # what the scheduler runs each night
    python -m visitorflow.backup list
    python -m visitorflow.backup restore FILE   # with the platform stopped

A backup copies the store's file (and its write-ahead log, if one is left) and then, while
holding a read-only connection, brings the copy up to date: DuckDB's file lock keeps the
collector out meanwhile, and since the collector releases the file between its commits, the
backup is the store as of one commit boundary. A file copy because it holds the lock the
shortest of the three ways measured (a file copy, `EXPORT DATABASE` to Parquet, `COPY FROM
DATABASE` into a new file: bench/results.md, "Backups and retention"); in two passes because
a whole copy under the lock kept the collector waiting for seconds on a busy disk, while
comparing the blocks of a file already in memory takes a fraction of that. The collector
waits that long for its next commit; nothing is lost (it acknowledges messages only after
they are committed, and the broker holds them meanwhile).

The copy is written as `<name>.partial` and renamed when complete, so a backup folder never
holds a half-written file under a backup's name; then it is opened and its tables counted
(outside the lock), so a backup that cannot be read fails now and not on the day it is needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from visitorflow.clock import utc_now
from visitorflow.settings import Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreBusy, StoreError

PREFIX = "visitorflow-"
SUFFIX = ".duckdb"
STAMP = "%Y%m%dT%H%M%SZ"
# A nightly job may wait this long for the store: with the collector committing back to
# back under a burst, readers get in only between commits, and nobody waits for a backup.
JOB_LOCK_TIMEOUT_S = 60.0
# The unit compared and rewritten under the lock: DuckDB writes its file in 256 KiB blocks.
COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_utc: datetime
    lock_held_s: float  # how long the collector was kept out
    lock_wait_s: float  # how long the backup waited for a commit in progress to end
    rows: dict[str, int]


def backup_name(taken_utc: datetime) -> str:
    return f"{PREFIX}{taken_utc.strftime(STAMP)}{SUFFIX}"


def backups(backup_dir: Path) -> list[tuple[datetime, Path]]:
    """The complete backups in `backup_dir`, oldest first, with the time each was taken."""
    found = []
    for path in backup_dir.glob(f"{PREFIX}*{SUFFIX}"):
        try:
            taken = datetime.strptime(path.name[len(PREFIX):-len(SUFFIX)], STAMP)
        except ValueError:
            continue  # not one of ours
        found.append((taken, path))
    return sorted(found)


def latest_backup_utc(settings: Settings) -> datetime | None:
    """When the newest complete backup was taken (naive UTC), None if there is none."""
    found = backups(settings.schedule.backup_dir)
    return found[-1][0] if found else None


def table_rows(path: Path) -> dict[str, int]:
    """Rows per table of a DuckDB file, opened read-only."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        # Table names come from the file's own catalogue, quoted as identifiers.
        return {name: int(con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
                for name in names}
    finally:
        con.close()


def copy_changed_blocks(source: Path, target: Path, block: int = COPY_BLOCK) -> int:
    """Make `target` byte-identical to `source`, writing only the blocks that differ (and
    cutting or extending it to length); returns the bytes written."""
    written = offset = 0
    with source.open("rb") as src, target.open("r+b") as dst:
        while chunk := src.read(block):
            if dst.read(len(chunk)) != chunk:
                dst.seek(offset)
                dst.write(chunk)
                written += len(chunk)
            offset += len(chunk)
            dst.seek(offset)
        dst.truncate(offset)
    return written


def create_backup(settings: Settings) -> Backup:
    """Copy the store into `schedule.backup_dir` at a commit boundary, check the copy, and
    keep the newest `schedule.backups_kept`."""
    store = Store.from_settings(settings, JOB_LOCK_TIMEOUT_S)
    if not store.path.exists():
        raise StoreError(f"no store at {store.path} to back up")
    backup_dir = settings.schedule.backup_dir
    backup_dir.mkdir(parents=True, exist_ok=True)
    taken = utc_now().replace(microsecond=0)
    final = backup_dir / backup_name(taken)
    partial = final.with_name(final.name + ".partial")
    wal = store.path.with_name(store.path.name + ".wal")
    # First a copy while the collector keeps writing (not consistent, but most of the
    # bytes), then, holding the lock, only the blocks that changed meanwhile: the collector
    # waits for a read of the file from memory, not for a whole copy to reach the disk.
    shutil.copyfile(store.path, partial)
    with store.session():  # the read-only connection whose lock keeps the collector out
        started = time.perf_counter()
        copy_changed_blocks(store.path, partial)
        if wal.exists():
            shutil.copyfile(wal, partial.with_name(final.name + ".wal"))
        held = time.perf_counter() - started
    if partial.with_name(final.name + ".wal").exists():
        # Merge the log into the copy: a backup is one self-contained file.
        con = duckdb.connect(str(partial))
        con.execute("CHECKPOINT")
        con.close()
        partial.with_name(final.name + ".wal").unlink(missing_ok=True)
    os.replace(partial, final)
    rows = table_rows(final)
    prune(backup_dir, settings.schedule.backups_kept)
    return Backup(final, taken, held, store.last_lock_wait_s, rows)


def prune(backup_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; returns what was deleted."""
    old = [path for _, path in backups(backup_dir)[:-keep]]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def restore_backup(settings: Settings, backup: Path) -> dict[str, int]:
    """Put `backup` in place of the store (the platform stopped: nothing may hold the
    store). The replaced store is kept beside it as `<store>.before-restore`."""
    if not backup.is_file():
        raise StoreError(f"no backup at {backup}")
    rows = table_rows(backup)  # refuse a file that is not a readable store before touching
    store = Store.from_settings(settings)
    try:
        store.ensure_not_in_use()
    except StoreBusy as exc:
        raise StoreBusy(f"the store is in use; stop the platform first ({exc})") from exc
    staged = store.path.with_name(store.path.name + ".restoring")
    shutil.copyfile(backup, staged)
    if store.path.exists():
        os.replace(store.path, store.path.with_name(store.path.name + ".before-restore"))
    store.path.with_name(store.path.name + ".wal").unlink(missing_ok=True)
    os.replace(staged, store.path)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visitorflow.backup",
                                     description="Back up and restore the store.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create", help="back up the store now (what the schedule runs)")
    commands.add_parser("list", help="the backups kept, oldest first")
    restore = commands.add_parser("restore", help="replace the store with a backup "
                                                  "(stop the platform first)")
    restore.add_argument("backup", type=Path)
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        if args.command == "create":
            made = create_backup(settings)
            print(f"backup {made.path} ({made.path.stat().st_size / 2**20:.0f} MiB, "
                  f"{sum(made.rows.values())} rows in {len(made.rows)} tables); the collector "
                  f"waited {made.lock_held_s:.2f} s")
        elif args.command == "list":
            for taken, path in backups(settings.schedule.backup_dir):
                print(f"{taken:%Y-%m-%d %H:%M:%S} UTC  {path}")
        else:
            rows = restore_backup(settings, args.backup)
            print(f"restored {args.backup} to {settings.store.path} "
                  f"({sum(rows.values())} rows in {len(rows)} tables); the previous store "
                  f"is at {settings.store.path}.before-restore")
    except (StoreError, SettingsError, OSError, duckdb.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backups (visitorflow/backup.py) and retention of raw readings (visitorflow/retention.py)
on real DuckDB stores: a backup restores to the same rows, retention moves old readings to
Parquet with every total unchanged, and neither holds the store while the collector writes."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ingest.sim_backfill import backfill
from tests.conftest import hold_store_lock
from visitorflow import backup, retention
from visitorflow.catalogue import load_catalogue
from visitorflow.settings import Settings, get_settings
from visitorflow.store import Store, StoreBusy
from visitorflow.store.schema import READING_COLUMNS

FIRST_DAY = date(2026, 1, 5)
DAYS = 12
NOW_UTC = datetime(2026, 1, 17, 3, 0)  # 10:00 local on the day after the history


@pytest.fixture
def history(settings: Settings) -> Store:
    """A store with 12 days of simulated readings (every site, 15-minute intervals)."""
    backfill(settings, load_catalogue(settings.catalogue_path), FIRST_DAY,
             FIRST_DAY + timedelta(days=DAYS), progress=False)
    return Store.from_settings(settings)


def totals(store: Store, archive_dir: Path) -> dict[str, int]:
    stored = store.readings()
    archived = retention.read_archived(archive_dir)
    both = pd.concat([stored[READING_COLUMNS], archived[READING_COLUMNS]])
    minutes = store.minute_counts(datetime(2000, 1, 1), datetime(2100, 1, 1))
    return {"readings": len(both), "unique": len(both.drop_duplicates(["device_id", "seq",
                                                                         "ts_utc"])),
            "in": int(both["count_in"].sum()), "out": int(both["count_out"].sum()),
            "minute_in": int(minutes["count_in"].sum()), "minute_rows": len(minutes)}


# -- backups ---------------------------------------------------------------------------------

def test_backup_restores_to_identical_rows(history: Store, settings: Settings,
                                           tmp_path: Path) -> None:
    before = backup.table_rows(history.path)
    made = backup.create_backup(settings)
    assert made.path.parent == settings.schedule.backup_dir
    assert made.rows == before and before["readings"] > 10_000
    assert not list(settings.schedule.backup_dir.glob("*.partial"))
    restored_at = tmp_path / "restored.duckdb"
    os.environ["VISITORFLOW_STORE__PATH"] = str(restored_at)
    get_settings.cache_clear()
    try:
        rows = backup.restore_backup(get_settings(), made.path)
    finally:
        os.environ["VISITORFLOW_STORE__PATH"] = str(history.path)
        get_settings.cache_clear()
    assert rows == before
    assert backup.table_rows(restored_at) == before
    assert Store(restored_at).readings().equals(history.readings())


def test_backups_keep_the_newest_n(history: Store, settings: Settings) -> None:
    folder = settings.schedule.backup_dir
    folder.mkdir(parents=True)
    for day in range(1, 10):  # nine older backups
        (folder / backup.backup_name(datetime(2025, 12, day))).write_bytes(b"old")
    (folder / "notes.txt").write_text("not a backup")
    made = backup.create_backup(settings)
    kept = [path for _, path in backup.backups(folder)]
    assert len(kept) == settings.schedule.backups_kept == 7
    assert kept[-1] == made.path
    assert (folder / "notes.txt").exists()
    assert backup.latest_backup_utc(settings) == made.taken_utc


def test_restore_refuses_while_the_store_is_in_use(history: Store, settings: Settings) -> None:
    made = backup.create_backup(settings)
    holder = hold_store_lock(history.path)
    try:
        with pytest.raises(StoreBusy, match="stop the platform first"):
            backup.restore_backup(settings.model_copy(
                update={"store": settings.store.model_copy(update={"lock_timeout_s": 0.3})}),
                made.path)
    finally:
        holder.terminate()
        holder.wait()
    assert backup.table_rows(history.path) == made.rows  # untouched


def test_restore_refuses_a_file_that_is_not_a_store(settings: Settings, tmp_path: Path) -> None:
    bogus = tmp_path / "visitorflow-20260101T000000Z.duckdb"
    bogus.write_bytes(b"not a database")
    assert backup.main(["restore", str(bogus)]) == 1


def test_backup_waits_for_a_commit_in_progress(history: Store, settings: Settings) -> None:
    """The copy starts only once the writer has let go (a commit boundary)."""
    holder = hold_store_lock(history.path, seconds=1.0)
    made = backup.create_backup(settings)
    holder.wait()
    assert made.lock_wait_s > 0.5  # it waited for the holder
    assert made.rows == backup.table_rows(history.path)


# -- retention --------------------------------------------------------------------------------

def test_retention_moves_old_readings_by_month_with_totals_unchanged(
        history: Store, settings: Settings) -> None:
    archive = settings.schedule.archive_dir
    before = totals(history, archive)
    settings.schedule.readings_kept_days = 5
    report = retention.run_retention(settings, NOW_UTC)
    cutoff = report.cutoff_utc
    assert cutoff == datetime(2026, 1, 11, 17, 0)  # local midnight 5 days before 17 Jan
    assert report.rows > 0 and list(report.moved) == ["2026-01"]
    assert history.readings()["ts_utc"].min() >= pd.Timestamp(cutoff)
    archived = retention.read_archived(archive)
    assert archived["ts_utc"].max() < pd.Timestamp(cutoff)
    assert len(archived) == report.rows
    assert totals(history, archive) == before
    # Minute counts stay whole in the store: every page reads them.
    assert before["minute_rows"] == totals(history, archive)["minute_rows"]
    # A second run has nothing left to move.
    assert retention.run_retention(settings, NOW_UTC).rows == 0
    assert totals(history, archive) == before


def test_a_late_reading_for_an_archived_month_goes_with_the_next_run(
        history: Store, settings: Settings) -> None:
    archive = settings.schedule.archive_dir
    settings.schedule.readings_kept_days = 5
    first = retention.run_retention(settings, NOW_UTC)
    late = retention.read_archived(archive).iloc[:1].copy()
    late["seq"] = 10**9  # a reading the store never had
    history.write_history(late[READING_COLUMNS])  # a late arrival for an archived day
    second = retention.run_retention(settings, NOW_UTC + timedelta(minutes=1))
    assert second.rows == 1 and len(second.files) == 1 and second.files[0] not in first.files
    assert len(retention.read_archived(archive)) == first.rows + 1


def test_reading_back_drops_a_reading_archived_twice(history: Store, settings: Settings) -> None:
    """A run stopped between writing a month's file and deleting its rows leaves them in
    both; the next run archives them again; reading back counts them once."""
    archive = settings.schedule.archive_dir
    settings.schedule.readings_kept_days = 5
    first = retention.run_retention(settings, NOW_UTC)
    copy = first.files[0].with_name("readings-copy.parquet")
    copy.write_bytes(first.files[0].read_bytes())
    assert len(retention.read_archived(archive)) == first.rows


def test_read_command_writes_local_days(history: Store, settings: Settings,
                                        tmp_path: Path) -> None:
    os.environ["VISITORFLOW_SCHEDULE__READINGS_KEPT_DAYS"] = "5"
    get_settings.cache_clear()
    try:
        retention.run_retention(get_settings(), NOW_UTC)
        out = tmp_path / "jan7.csv"
        assert retention.main(["read", "--start", "2026-01-07", "--end", "2026-01-07",
                               "--sites", "tam_thanh", "--out", str(out)]) == 0
    finally:
        del os.environ["VISITORFLOW_SCHEDULE__READINGS_KEPT_DAYS"]
        get_settings.cache_clear()
    frame = pd.read_csv(out, parse_dates=["ts_utc"])
    assert set(frame["site_id"]) == {"tam_thanh"}
    # 7 Jan local = [6 Jan 17:00, 7 Jan 17:00) UTC
    assert frame["ts_utc"].min() >= pd.Timestamp("2026-01-06 17:00")
    assert frame["ts_utc"].max() < pd.Timestamp("2026-01-07 17:00")
    expected = retention.read_archived(settings.schedule.archive_dir, datetime(2026, 1, 6, 17),
                                       datetime(2026, 1, 7, 17), ["tam_thanh"])
    assert len(frame) == len(expected) > 0


def test_copy_changed_blocks_makes_the_copy_identical(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    data = bytearray(os.urandom(5 * 1024 + 17))
    source.write_bytes(bytes(data))
    target.write_bytes(bytes(data[:3000]) + b"\0" * 9000)  # stale middle, too long
    data[100] ^= 0xFF
    source.write_bytes(bytes(data))
    written = backup.copy_changed_blocks(source, target, block=1024)
    assert target.read_bytes() == source.read_bytes()
    assert written < len(data)  # unchanged blocks were left alone
    assert backup.copy_changed_blocks(source, target, block=1024) == 0

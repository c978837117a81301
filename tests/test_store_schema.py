"""The store's schema: every table made by the migrations (none on first write), a version
that readers check, old stores migrated in place; and the pure gap reconciliation."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from visitorflow.ingest_quality import Gap, StoredGap, reconcile_gaps
from visitorflow.store import ALERT_COLUMNS, SCHEMA_VERSION, Store, StoreError
from visitorflow.store.schema import MIGRATIONS

T0 = datetime(2026, 11, 21, 3, 0)


def tables(store: Store) -> set[str]:
    with duckdb.connect(str(store.path), read_only=True) as con:
        return {row[0] for row in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store.duckdb")
    store.initialise()
    return store


def test_versions_rise_by_one_and_a_new_store_has_them_all(store: Store) -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert store.schema_version() == SCHEMA_VERSION
    assert store.initialise() == []  # idempotent: nothing left to apply


def test_no_writer_creates_a_table(store: Store) -> None:
    made = tables(store)
    assert {"alerts", "alert_acks", "alert_evaluations", "alert_thresholds",
            "capacity_overrides", "action_texts", "change_log"} <= made
    raised = pd.DataFrame([{
        "alert_id": "a1", "site_id": "tam_thanh", "level": "busy", "kind": "live",
        "raised_at_utc": T0, "cleared_at_utc": None, "occupancy": 10, "capacity": 20,
        "threshold": 0.5, "from_utc": None, "p_overload": None, "run_id": None,
        "message": "m", "recommended_action": "r"}])[ALERT_COLUMNS]
    store.apply_alert_changes(raised, [], T0)
    store.acknowledge_alert("a1", "op", "seen", T0)
    store.set_capacity("tam_thanh", 900, "admin", T0)
    store.set_alert_thresholds("tam_thanh", 0.5, 0.7, 0.9, "admin", T0)
    store.set_action_text("*", "busy", "en", "Walk on", "admin", T0)
    assert tables(store) == made


def test_never_evaluated_is_recorded_not_guessed_from_a_missing_table(store: Store) -> None:
    assert store.open_alerts() is None and store.last_alert_evaluation_utc() is None
    store.apply_alert_changes(pd.DataFrame(columns=ALERT_COLUMNS), [], T0)
    assert store.open_alerts().empty  # evaluated, nothing raised
    store.apply_alert_changes(pd.DataFrame(columns=ALERT_COLUMNS), [], T0 + timedelta(minutes=1))
    assert store.last_alert_evaluation_utc() == T0 + timedelta(minutes=1)


def as_before_versions(store: Store, alerts_table: bool) -> None:
    """Turn a store into one written before versions were read: version 1 whatever it
    held, no gate_last_reading nor admin tables, alert tables only if alerts had run."""
    with duckdb.connect(str(store.path)) as con:
        for table in ("gate_last_reading", "alert_evaluations", "capacity_overrides",
                      "action_texts", "change_log"):
            con.execute(f"DROP TABLE {table}")
        if not alerts_table:
            for table in ("alerts", "alert_acks", "alert_thresholds"):
                con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM schema_info WHERE version > 1")


def test_an_old_store_is_refused_by_readers_then_migrated_by_the_writer(store: Store) -> None:
    as_before_versions(store, alerts_table=False)
    reader = Store(store.path)
    with pytest.raises(StoreError, match="version 1, this code needs"):
        reader.table_counts()
    assert store.initialise() == list(range(2, SCHEMA_VERSION + 1))
    assert reader.table_counts()["readings"] == 0
    assert reader.open_alerts() is None  # it had no alert table: never evaluated


def test_an_old_store_whose_alerts_ran_stays_evaluated(store: Store) -> None:
    store.apply_alert_changes(pd.DataFrame(columns=ALERT_COLUMNS), [], T0)
    as_before_versions(store, alerts_table=True)
    store.initialise()
    assert store.open_alerts() is not None


def test_a_store_newer_than_the_code_is_refused(store: Store) -> None:
    with duckdb.connect(str(store.path)) as con:
        con.execute("INSERT INTO schema_info VALUES (?, now()::TIMESTAMP)", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="newer than this code"):
        Store(store.path).minute_counts(T0, T0)
    with pytest.raises(StoreError, match="newer than this code"):
        store.initialise()


# -- gap reconciliation (pure) --------------------------------------------------------------

def gap(after: int, before: int, rec_in: int, rec_out: int, status: str = "recovered") -> Gap:
    return Gap("dev", "tam_thanh", "main", after, T0 + timedelta(minutes=after), before,
               T0 + timedelta(minutes=before), before - after - 1, status, "totals", rec_in,
               rec_out)


def stored(g: Gap) -> StoredGap:
    return StoredGap(g.key, g.site_id, g.gate_id, g.status, g.minute_utc, g.recovered_in,
                     g.recovered_out)


def test_a_filled_gap_gives_back_its_estimate_and_new_gaps_add_theirs() -> None:
    old = gap(1, 5, 17, 4)
    found = [gap(1, 3, 7, 1), gap(3, 5, 6, 0)]
    changes = reconcile_gaps(found, [stored(old)])
    assert changes.filled == [old.key]
    assert changes.new == found
    assert [(c.minute_utc, c.count_in, c.count_out) for c in changes.corrections] == [
        (old.minute_utc, -17, -4), (found[0].minute_utc, 7, 1), (found[1].minute_utc, 6, 0)]


def test_gaps_found_again_change_nothing_and_open_ones_add_nobody() -> None:
    same = gap(1, 5, 17, 4)
    changes = reconcile_gaps([same, gap(7, 9, 0, 0, "open")], [stored(same)])
    assert changes.filled == [] and changes.corrections == []
    assert [g.status for g in changes.new] == ["open"]
    assert reconcile_gaps([], [stored(gap(2, 4, 0, 0, "open"))]).corrections == []

"""Gaps, late readings, counter resets and wraparounds, healed in the store's write
transaction (`write_batch(..., heal=True)`, what the collector calls), on a real DuckDB."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from visitorflow.catalogue import load_catalogue
from visitorflow.contract import GateStatus, Reading
from visitorflow.ingest_quality import total_delta
from visitorflow.live import no_data_notices
from visitorflow.settings import Settings
from visitorflow.store import Store

T0 = datetime(2026, 2, 18, 3, 0)  # 10:00 in Lạng Sơn
DAY = datetime(2026, 2, 17, 17, 0)  # its local midnight in UTC
NOW = T0 + timedelta(hours=2)


def r(seq: int, minute: int, n_in: int, n_out: int, in_total: int | None = None,
      out_total: int | None = None, device: str = "lsn-tam_thanh-main") -> Reading:
    return Reading("tam_thanh", "main", device, seq, T0 + timedelta(minutes=minute), 60,
                   n_in, n_out, in_total, out_total)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.duckdb")
    s.initialise()
    return s


def write(store: Store, *readings: Reading) -> None:
    store.write_batch(list(readings), NOW, heal=True)


def today(store: Store) -> tuple[int, int, int]:
    row = store.site_counts(DAY, NOW).iloc[0]
    return int(row.arrivals_today), int(row.departures_today), int(row.occupancy)


# The truth: five one-minute readings of one gate, with cumulative totals.
TRUTH = [r(1, 1, 10, 2, 110, 52), r(2, 2, 7, 1, 117, 53), r(3, 3, 4, 3, 121, 56),
         r(4, 4, 6, 0, 127, 56), r(5, 5, 3, 4, 130, 60)]


def test_missing_people_are_recovered_from_the_totals_and_marked(store: Store) -> None:
    write(store, TRUTH[0], TRUTH[4])  # seq 2, 3, 4 never arrive (yet)
    gap = store.reading_gaps().iloc[0]
    assert (gap.after_seq, gap.before_seq, gap.missing_readings, gap.status) == (
        1, 5, 3, "recovered")
    assert (gap.recovered_in, gap.recovered_out) == (17, 4)  # 130-110-3, 60-52-4
    assert today(store) == (30, 10, 20)  # exactly the truth's 10+7+4+6+3 in, 2+1+3+0+4 out
    assert store.table_counts()["readings"] == 2  # recovered people are not fake readings


def test_late_readings_replace_the_recovered_estimate_never_twice(store: Store) -> None:
    write(store, TRUTH[0], TRUTH[4])
    write(store, TRUTH[2])  # seq 3 arrives late: two smaller gaps, each recovered
    assert today(store) == (30, 10, 20)
    gaps = store.reading_gaps()
    assert sorted(gaps["status"]) == ["filled", "recovered", "recovered"]
    write(store, TRUTH[3], TRUTH[1])  # the rest arrives, out of order
    assert today(store) == (30, 10, 20)
    assert set(store.reading_gaps()["status"]) == {"filled"}
    minutes = store.minute_counts(DAY, NOW)
    # Every minute now holds exactly its own reading's people again.
    assert minutes["count_in"].tolist() == [10, 7, 4, 6, 3]


def test_a_gap_without_totals_is_recorded_open_not_zero(store: Store) -> None:
    write(store, r(1, 1, 10, 2), r(4, 4, 6, 0))
    gap = store.reading_gaps().iloc[0]
    assert (gap.status, gap.missing_readings, gap.recovered_in) == ("open", 2, 0)
    assert "no totals" in gap.reason
    assert len(store.reading_gaps("open")) == 1


def test_a_counter_reset_is_detected_and_never_gives_negative_counts(store: Store) -> None:
    # Totals fall from 5,000 to 12 across a gap: the device reset its counters.
    write(store, r(1, 1, 10, 2, 5000, 4000), r(3, 3, 12, 1, 12, 1))
    gap = store.reading_gaps().iloc[0]
    assert gap.status == "open" and "reset" in gap.reason
    assert (gap.recovered_in, gap.recovered_out) == (0, 0)
    assert set(store.counter_events()["kind"]) == {"reset"}
    minutes = store.minute_counts(DAY, NOW)
    assert (minutes["count_in"] >= 0).all() and (minutes["count_out"] >= 0).all()
    assert today(store) == (22, 3, 19)


def test_a_16_bit_total_wrapping_is_recovered_through_the_wrap(store: Store) -> None:
    # VS350-type: 2-byte totals. 65,530 → (wrap) → 10 means 16 people, 4 of them reported.
    write(store, r(1, 1, 2, 0, 65530, 100), r(3, 3, 4, 0, 10, 100))
    gap = store.reading_gaps().iloc[0]
    assert (gap.status, gap.recovered_in, gap.recovered_out) == ("recovered", 12, 0)
    assert set(store.counter_events()["kind"]) == {"wrap"}
    assert today(store)[0] == 2 + 12 + 4


def test_total_delta_rules() -> None:
    assert total_delta(100, 130, 1000) == (30, "ok")
    assert total_delta(65530, 10, 1000) == (16, "wrap")
    assert total_delta(5000, 12, 1000) == (None, "reset")
    assert total_delta(70000, 12, 1000) == (None, "reset")  # 32-bit totals do not wrap here
    assert total_delta(0, 10**9, 1000) == (None, "implausible jump")


def test_a_seq_restart_is_an_event_not_a_gap(store: Store) -> None:
    write(store, r(41, 1, 1, 0), r(42, 2, 1, 0), r(0, 3, 2, 0))  # device rebooted
    assert store.reading_gaps().empty
    assert store.counter_events()["kind"].tolist() == ["seq_restart"]


def test_a_reading_47_hours_late_corrects_its_own_day(store: Store) -> None:
    late = Reading("tam_thanh", "main", "lsn-tam_thanh-main", 7,
                   T0 - timedelta(hours=47), 60, 9, 4)
    write(store, r(100, 1, 5, 0))
    write(store, late)
    day_before = DAY - timedelta(days=2)
    counts = store.site_counts(day_before, day_before + timedelta(days=1)).iloc[0]
    assert (counts.arrivals_today, counts.occupancy) == (9, 5)
    assert today(store) == (5, 0, 5)  # today is untouched


def test_without_heal_nothing_changes_for_other_writers(store: Store) -> None:
    store.write_batch([TRUTH[0], TRUTH[4]], NOW)
    assert store.reading_gaps().empty
    assert today(store) == (13, 6, 7)


def test_silent_and_offline_gates_say_since_when(store: Store, settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    store.write_batch([Reading("tam_thanh", "main", "lsn-tam_thanh-main", 1,
                               datetime(2026, 2, 18, 3, 5), 60, 3, 0),
                       Reading("nhi_thanh", "main", "lsn-nhi_thanh-main", 1,
                               datetime(2026, 2, 18, 3, 29), 60, 3, 0)],
                      NOW, statuses=[(GateStatus("huu_nghi", "checkpoint", "offline"), NOW)])
    notices = no_data_notices(store, catalogue, settings, datetime(2026, 2, 18, 3, 30),
                              language="en").set_index(["site_id", "gate_id"])
    assert notices.loc[("tam_thanh", "main"), "message"] == "No data from Main gate since 10:05"
    assert notices.loc[("tam_thanh", "main"), "reason"] == "silent"
    assert ("nhi_thanh", "main") not in notices.index  # reported a minute ago
    assert notices.loc[("huu_nghi", "checkpoint"), "reason"] == "offline"
    vi = no_data_notices(store, catalogue, settings, datetime(2026, 2, 18, 3, 30))
    assert "Không có dữ liệu từ Cổng chính từ 10:05" in set(vi["message"])


def test_occupancy_is_re_zeroed_at_closing_and_the_drift_kept(
    settings: Settings, tmp_path: Path
) -> None:
    from ingest.collector import Collector

    catalogue = load_catalogue(settings.catalogue_path)
    store = Store(tmp_path / "store.duckdb")
    store.initialise()
    collector = Collector(settings, catalogue, store)  # not connected: only its clock job
    store.write_batch([
        Reading("tam_thanh", "main", "lsn-tam_thanh-main", 1, T0, 60, 30, 25),  # drift +5
        Reading("nhi_thanh", "main", "lsn-nhi_thanh-main", 1, T0, 60, 10, 12),  # drift −2
    ], T0)
    # Tam Thanh closes at 18:00 local = 11:00 UTC; nothing happens before closing + 5 min.
    assert "tam_thanh" not in collector.rezero_closed_sites(datetime(2026, 2, 18, 11, 4))
    after = datetime(2026, 2, 18, 11, 10)
    corrected = collector.rezero_closed_sites(after)
    assert corrected["tam_thanh"] == 5 and corrected["nhi_thanh"] == -2
    counts = store.site_counts(DAY, after).set_index("site_id")
    assert counts.loc["tam_thanh", "occupancy"] == 0
    assert counts.loc["tam_thanh", "arrivals_today"] == 30  # arrivals untouched
    rows = store.occupancy_corrections().set_index("site_id")
    assert (rows.loc["tam_thanh", "residual"], rows.loc["tam_thanh", "applied_out"]) == (5, 5)
    assert (rows.loc["nhi_thanh", "residual"], rows.loc["nhi_thanh", "applied_out"]) == (-2, 0)
    # Once per day, even from a restarted collector.
    assert Collector(settings, catalogue, store).rezero_closed_sites(after) == {}
    assert store.occupancy_corrections()["site_id"].is_unique

"""visitorflow.analysis on small hand-made stores, where the right answer is known:
local days, festival uplift on lunar dates, occupancy and load levels, forecast errors
against the seasonal-naive forecast, counter health, districts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from visitorflow import analysis as va
from visitorflow.catalogue import load_catalogue
from visitorflow.clock import local_day_range_utc
from visitorflow.contract import Reading
from visitorflow.live import live_status
from visitorflow.settings import Settings
from visitorflow.store import Store


def _workspace(settings: Settings) -> va.Workspace:
    Store.from_settings(settings).initialise()
    return va.open_workspace(settings)


def _utc(local: str) -> datetime:
    """A local (UTC+7) wall-clock time as naive UTC."""
    return datetime.fromisoformat(local) - timedelta(hours=7)


def test_local_days_are_utc_ranges() -> None:
    start, end = local_day_range_utc(date(2026, 3, 10), date(2026, 3, 11), "Asia/Ho_Chi_Minh")
    assert (start, end) == (datetime(2026, 3, 9, 17), datetime(2026, 3, 11, 17))


def test_festival_uplift_is_found_on_its_lunar_dates(settings: Settings) -> None:
    """Kỳ Cùng–Tả Phủ is lunar 22–27/1: 10–15 March in 2026 (never a typed date). A site it
    concerns at 5× its usual day shows an uplift of 5; a site it does not concern, none."""
    ws = _workspace(settings)
    days = pd.date_range("2026-02-25", "2026-03-31").date
    rows = [{"site_id": site, "date_local": d,
             "arrivals": 500.0 if site == "den_ky_cung" and date(2026, 3, 10) <= d
             <= date(2026, 3, 15) else 100.0}
            for site in ("den_ky_cung", "tam_thanh") for d in days]
    daily = pd.DataFrame(rows)
    effects = va.festival_effects(daily, ws.catalogue)
    ky_cung = effects[effects["event_id"] == "ky_cung_ta_phu"]
    assert ky_cung["site_id"].tolist() == ["den_ky_cung"]
    assert ky_cung["first_date"].iloc[0] == date(2026, 3, 10)
    assert ky_cung["days"].iloc[0] == 6
    assert ky_cung["uplift"].iloc[0] == pytest.approx(5.0)
    occurrences = va.festival_occurrences("ky_cung_ta_phu", [2026, 2027])
    assert occurrences["first"].tolist() == [date(2026, 3, 10), date(2027, 2, 27)]


def _visit_tam_thanh(store: Store, people: int) -> None:
    """`people` enter Tam Thanh's main gate at 10:00 local on 10 March 2026 and leave at 12:00."""
    store.write_batch([
        Reading("tam_thanh", "main", "lsn-tam_thanh-main", 1, _utc("2026-03-10T10:01"), 60,
                people, 0),
        Reading("tam_thanh", "main", "lsn-tam_thanh-main", 2, _utc("2026-03-10T12:01"), 60,
                0, people),
    ], _utc("2026-03-10T12:02"))


def test_occupancy_levels_and_alert_spells(settings: Settings) -> None:
    """400 people enter Tam Thanh (capacity 350) at 10:00 and leave at 12:00 local: two
    hours of overload, one spell; 07:00–18:00 open, the rest closed."""
    ws = _workspace(settings)
    store = ws.store
    _visit_tam_thanh(store, 400)
    day = date(2026, 3, 10)
    occupancy = va.occupancy_by_minute(ws, ["tam_thanh"], day, day)
    assert len(occupancy) == 24 * 60
    hours = va.hours_per_level(occupancy).loc["tam_thanh"]
    assert hours["overload"] == pytest.approx(2.0)
    assert hours["closed"] == pytest.approx(13.0)
    assert hours["normal"] == pytest.approx(9.0)
    spells = va.load_episodes(occupancy)
    assert len(spells) == 1
    spell = spells.iloc[0]
    assert spell["start_local"] == pd.Timestamp("2026-03-10T10:00")
    assert spell["minutes"] == 120 and spell["worst_level"] == "overload"
    assert spell["peak_occupancy"] == 400
    # An admin raises Tam Thanh's capacity to 500: the analysts' levels follow the capacity
    # in force (400 people are then busy, not overload), as the live map's do.
    store.set_capacity("tam_thanh", 500, "admin", _utc("2026-03-10T13:00"))
    raised = va.hours_per_level(
        va.occupancy_by_minute(va.open_workspace(settings), ["tam_thanh"], day, day))
    assert raised.loc["tam_thanh"].get("overload", 0.0) == pytest.approx(0.0)
    assert raised.loc["tam_thanh", "busy"] == pytest.approx(2.0)
    # No alerting component has written an alerts table: say so, never "0 alerts".
    assert va.alert_log(ws) is None
    assert va.festival_alerts(ws, ["tam_thanh"], day, day) is None


def test_occupancy_levels_follow_the_site_thresholds_an_admin_set(settings: Settings) -> None:
    """250 people in Tam Thanh (capacity 350, 0.71 of it) from 10:00 to 12:00 local are busy
    under the default thresholds (0.60 / 0.85 / 1.00). An admin gives the site its own
    0.40 / 0.70 / 0.90: the analysts' levels follow them (crowded), as the live map's do."""
    ws = _workspace(settings)
    store = ws.store
    _visit_tam_thanh(store, 250)
    day = date(2026, 3, 10)
    default = va.hours_per_level(va.occupancy_by_minute(ws, ["tam_thanh"], day, day))
    assert default.loc["tam_thanh", "busy"] == pytest.approx(2.0)
    assert default.loc["tam_thanh", "crowded"] == pytest.approx(0.0)

    store.set_alert_thresholds("tam_thanh", 0.4, 0.7, 0.9, "admin", _utc("2026-03-10T13:00"))
    ws = va.open_workspace(settings)
    occupancy = va.occupancy_by_minute(ws, ["tam_thanh"], day, day)
    own = va.hours_per_level(occupancy)
    assert own.loc["tam_thanh", "crowded"] == pytest.approx(2.0)
    assert own.loc["tam_thanh", "busy"] == pytest.approx(0.0)
    # The live map at 10:02 local, from the same store, says the same of that minute.
    at = occupancy.set_index("minute_local").loc[pd.Timestamp("2026-03-10T10:02")]
    live = live_status(store, load_catalogue(settings.catalogue_path), settings,
                       _utc("2026-03-10T10:02")).set_index("site_id")
    assert at["level"] == live.at["tam_thanh", "level"] == "crowded"


def test_festival_alerts_time_their_first_acknowledgement(settings: Settings) -> None:
    """Two alerts at Tam Thanh on 10 Mar (local): one acknowledged twice (the first after
    12 min counts), one never; an alert on another day and one at another site stay out."""
    from visitorflow.store import ALERT_COLUMNS

    ws = _workspace(settings)
    store = ws.store

    def alert(alert_id: str, site: str, raised_local: str) -> dict:
        return {"alert_id": alert_id, "site_id": site, "level": "overload", "kind": "live",
                "raised_at_utc": _utc(raised_local), "cleared_at_utc": pd.NaT,
                "occupancy": 400, "capacity": 350, "threshold": 1.0, "from_utc": pd.NaT,
                "p_overload": None, "run_id": None, "message": "m", "recommended_action": "a"}

    raised = pd.DataFrame([alert("a1", "tam_thanh", "2026-03-10T10:00"),
                           alert("a2", "tam_thanh", "2026-03-10T15:00"),
                           alert("a3", "tam_thanh", "2026-03-11T10:00"),
                           alert("a4", "nhi_thanh", "2026-03-10T10:00")])[ALERT_COLUMNS]
    store.apply_alert_changes(raised, [], _utc("2026-03-10T10:00"))
    store.acknowledge_alert("a1", "lan", "gate metered", _utc("2026-03-10T10:12"))
    store.acknowledge_alert("a1", "minh", "still full", _utc("2026-03-10T10:40"))
    store.acknowledge_alert("a4", "lan", "ok", _utc("2026-03-10T10:05"))

    day = date(2026, 3, 10)
    alerts = va.festival_alerts(ws, ["tam_thanh"], day, day)
    assert list(alerts["alert_id"]) == ["a1", "a2"]
    first = alerts.iloc[0]
    assert first["acks"] == 2 and first["first_acked_by"] == "lan"
    assert first["minutes_to_ack"] == pytest.approx(12.0)
    assert first["raised_local"] == pd.Timestamp("2026-03-10T10:00")
    assert pd.isna(alerts.iloc[1]["minutes_to_ack"]) and alerts.iloc[1]["acks"] == 0
    summary = va.acknowledgement_times(alerts).iloc[0]
    assert (summary["raised"], summary["acknowledged"], summary["unacknowledged"]) == (2, 1, 1)
    assert summary["median_minutes_to_ack"] == pytest.approx(12.0)


def _hourly_counts(store: Store, site: str, gate: str, first_local: datetime, days: int,
                   value: Callable[[datetime], int | None]) -> None:
    """value(local hour) people counted in each hour of `days` from `first_local`; None:
    nothing counted."""
    readings = []
    for h in range(days * 24):
        local = first_local + timedelta(hours=h)
        people = value(local)
        if people is None:
            continue
        readings.append(Reading(site, gate, f"lsn-{site}-{gate}", h, _utc(str(local)) +
                                timedelta(minutes=1), 60, people, 0))
    store.write_batch(readings, datetime(2026, 4, 1))


def test_forecast_errors_against_the_seasonal_naive_forecast(settings: Settings) -> None:
    """Tả Phủ (open 06–20) gets 10 + hour people an hour in the week before the run and
    15 + hour the week after; the run forecast 20 + hour. Forecast error +5, naive −5, so
    the MAE ratio is 1.0; the festival days (10–15 Mar) are flagged."""
    ws = _workspace(settings)
    store = ws.store
    week1 = datetime(2026, 3, 2)

    def people(local: datetime) -> int | None:
        if not 6 <= local.hour < 20:
            return None
        return (10 if local < week1 + timedelta(days=7) else 15) + local.hour

    _hourly_counts(store, "den_ta_phu", "main", week1, 14, people)
    history_end = _utc("2026-03-09T00:00")
    hours = pd.date_range(history_end, periods=7 * 24, freq="h")
    local_hours = hours + pd.Timedelta(hours=7)
    is_open = (local_hours.hour >= 6) & (local_hours.hour < 20)
    store.write_forecast_run(
        {"run_id": "r1", "created_at_utc": datetime(2026, 4, 1), "history_end_utc": history_end,
         "settings_json": "{}", "sites_ok": 1, "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame({"site_id": ["den_ta_phu"], "status": ["ok"], "message": [None],
                      "fit_s": [1.0], "regressors": [None], "backtest_mae_ratio": [None]}),
        pd.DataFrame({"site_id": "den_ta_phu", "ts_utc": hours.astype("datetime64[us]"),
                      "is_open": is_open, "arrivals": (20.0 + local_hours.hour).to_numpy(),
                      "arrivals_lower": 0.0, "arrivals_upper": 99.0, "occupancy": 0.0,
                      "occupancy_upper": 0.0, "capacity": 150, "p_overload": 0.0}),
        pd.DataFrame(),
    )
    errors = va.forecast_errors(ws)
    # Every open hour of the week but the last, still filling, hour of the store.
    assert len(errors) == 7 * 14 - 1
    assert errors["error"].eq(5).all() and errors["naive_error"].eq(-5).all()
    assert errors.loc[errors["hour_local"].dt.day.between(10, 15), "is_event"].all()
    assert not errors.loc[errors["hour_local"].dt.day == 9, "is_event"].any()
    summary = va.error_summary(errors).set_index("site_id")
    assert summary.loc["den_ta_phu", "mae_ratio"] == pytest.approx(1.0)
    assert summary.loc["den_ta_phu", "bias"] == pytest.approx(5.0)
    residuals = va.residuals_by_hour(errors)
    assert list(residuals.columns) == list(range(6, 20))


def test_counter_health_counts_coverage_and_gaps(settings: Settings) -> None:
    """Readings 0, 1, 2, 5, 6 with cumulative totals: the collector recovers the two
    missing readings (a gap), and the gate reported 5 of the day's 1,440 minutes."""
    ws = _workspace(settings)
    base = _utc("2026-03-10T08:00")
    readings = [Reading("den_bac_le", "main", "lsn-den_bac_le-main", seq,
                        base + timedelta(minutes=seq + 1), 60, 2, 1, 2 * (seq + 1), seq + 1,
                        80.0 - seq)
                for seq in (0, 1, 2, 5, 6)]
    ws.store.write_batch(readings, base + timedelta(minutes=10), heal=True)
    day = date(2026, 3, 10)
    health = va.counter_health(ws, ["den_bac_le"], day, day).set_index("gate_id")
    row = health.loc["main"]
    assert row["readings"] == 5
    assert row["coverage"] == pytest.approx(5 / 1440)
    assert row["recovered_readings"] == 2
    assert row["min_battery_pct"] == pytest.approx(74.0)


def test_visitors_by_former_district(settings: Settings) -> None:
    ws = _workspace(settings)
    daily = pd.DataFrame({"site_id": ["tam_thanh", "mau_son", "huu_nghi"],
                          "date_local": [date(2026, 3, 10)] * 3, "arrivals": [100, 40, 7]})
    districts = va.visitors_by_district(daily, ws.catalogue, va.districts_frame())
    by_name = districts.set_index("name")["arrivals"]
    assert by_name["Thành phố Lạng Sơn"] == 100
    assert by_name["Huyện Cao Lộc"] == 47  # Mẫu Sơn and the Hữu Nghị border gate
    assert by_name.sum() == 147
    assert len(districts) == 11


def test_readings_for_sites_by_interval_start(settings: Settings) -> None:
    """A reading that ends at local midnight counted the day before."""
    ws = _workspace(settings)
    midnight = _utc("2026-03-10T00:00")
    ws.store.write_batch([
        Reading("tam_thanh", "main", "d", 1, midnight, 900, 1, 0),
        Reading("tam_thanh", "main", "d", 2, midnight + timedelta(minutes=15), 900, 2, 0),
        Reading("mau_son", "road_checkpoint", "e", 1, midnight + timedelta(minutes=15), 900,
                3, 0),
    ], midnight)
    start, end = local_day_range_utc(date(2026, 3, 10), date(2026, 3, 10), "Asia/Ho_Chi_Minh")
    rows = ws.store.readings_for_sites(start, end, ["tam_thanh"])
    assert rows["seq"].tolist() == [2]
    assert len(ws.store.readings_for_sites(start, end, None)) == 2
    assert va.store_span_local_days(ws) == (date(2026, 3, 9), date(2026, 3, 10))

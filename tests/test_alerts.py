"""Alerts (visitorflow/alerts.py): hysteresis in value and time, forecast alerts, and the
evaluation step against a real store, with the audit of alerts and acknowledgements."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from visitorflow import alerts as va
from visitorflow.catalogue import LANGUAGES, load_catalogue
from visitorflow.contract import Reading
from visitorflow.settings import AlertSettings, LoadThresholds, Settings
from visitorflow.store import Store, StoreError

from .conftest import hold_store_lock

THRESHOLDS = (0.60, 0.85, 1.00)
# 10:00 in Lạng Sơn (UTC+7): every city site is open.
NOW = datetime(2026, 11, 21, 3, 0, 30)


def levels(shares: list[float], margin: float = 0.05, hold: int = 5) -> list[str]:
    return [va.LEVELS[i] for i in va.level_series(shares, THRESHOLDS, margin, hold)]


def test_a_level_is_raised_only_after_it_held_for_the_configured_minutes() -> None:
    assert levels([1.1] * 4) == ["normal"] * 4
    assert levels([1.1] * 6) == ["normal"] * 4 + ["overload"] * 2
    # Through busy and crowded on the way up, each raised when held long enough.
    out = levels([0.7] * 5 + [0.9] * 5)
    assert out[4] == "busy" and out[8] == "busy" and out[9] == "crowded"


def test_a_site_at_the_edge_does_not_flap() -> None:
    # Hovering around 100 %: raised once, then kept while within the 5 % margin below.
    edge = [1.01, 0.99] * 30
    out = levels([1.01] * 5 + edge)
    assert out[4] == "overload"
    assert set(out[4:]) == {"overload"}, "dips within the margin must not clear the level"
    assert sum(a != b for a, b in zip(out, out[1:], strict=False)) == 1
    # Crossing the threshold back and forth minute by minute never holds long enough.
    assert "crowded" not in levels([0.86, 0.84] * 30)


def test_a_level_clears_only_below_its_threshold_less_the_margin() -> None:
    out = levels([1.05] * 5 + [0.96] * 3 + [0.94] * 3 + [0.50] * 2)
    assert out[4:8] == ["overload"] * 4  # 0.96 ≥ 1.00 − 0.05
    assert out[8:11] == ["crowded"] * 3  # 0.94: below overload's band, still crowded
    assert out[11:] == ["normal"] * 2  # 0.50 < 0.60 − 0.05


def test_per_site_overrides_replace_the_default_thresholds(settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    overrides = pd.DataFrame([{"site_id": "mau_son", "busy": 0.5, "crowded": 0.7,
                               "overload": 0.9}])
    frame = va.site_thresholds(catalogue, LoadThresholds(), overrides)
    assert tuple(frame.loc["mau_son", ["busy", "crowded", "overload"]]) == (0.5, 0.7, 0.9)
    assert tuple(frame.loc["tam_thanh", ["busy", "crowded", "overload"]]) == (0.6, 0.85, 1.0)
    assert frame.loc["tam_thanh", "capacity"] == 350


def test_occupancy_by_minute_accumulates_from_midnight_and_never_goes_below_zero() -> None:
    start = datetime(2026, 11, 20, 17, 0)
    counts = pd.DataFrame({
        "site_id": ["a", "a", "a", "b"],
        "gate_id": ["g1", "g2", "g1", "g"],
        "minute_utc": [start, start, start + timedelta(minutes=2), start + timedelta(minutes=1)],
        "count_in": [10, 5, 0, 0],
        "count_out": [0, 0, 3, 4],
    })
    occ = va.occupancy_by_minute(counts, start, start + timedelta(minutes=3, seconds=20))
    a = occ[occ["site_id"] == "a"]["occupancy"].tolist()
    b = occ[occ["site_id"] == "b"]["occupancy"].tolist()
    assert a == [15, 15, 12, 12] and b == [0, 0, 0, 0]


def _forecast(p: list[float], start: datetime, is_open: bool = True) -> pd.DataFrame:
    return pd.DataFrame({
        "site_id": "tam_thanh", "ts_utc": [start + timedelta(hours=i) for i in range(len(p))],
        "is_open": is_open, "arrivals": 100.0, "arrivals_lower": 50.0, "arrivals_upper": 150.0,
        "occupancy": 300.0, "occupancy_upper": 400.0, "capacity": 350, "p_overload": p,
        "run_id": "r1",
    })


def test_forecast_alerts_take_the_first_risky_hour_and_clear_with_a_margin() -> None:
    cfg = AlertSettings(forecast_p=0.7, forecast_p_margin=0.1, forecast_horizon_h=6)
    thresholds = pd.DataFrame({"overload": [1.0]}, index=["tam_thanh"])
    hour = datetime(2026, 11, 21, 3, 0)
    # p by hour from the current one: 0.2, 0.5, 0.8 (05:00 UTC = 12:00 local), 0.9 ...
    fc = _forecast([0.2, 0.5, 0.8, 0.9, 0.95, 0.95, 0.95, 0.99], hour)
    found = va.forecast_alerts(fc, NOW, cfg, set(), thresholds)
    assert len(found) == 1
    assert found.iloc[0]["from_utc"] == pd.Timestamp(hour + timedelta(hours=2))
    assert found.iloc[0]["p_overload"] == pytest.approx(0.8)
    # 0.65 is below the threshold: no new alert, but an open one stays (within the margin) ...
    near = _forecast([0.65, 0.2], hour)
    assert va.forecast_alerts(near, NOW, cfg, set(), thresholds).empty
    assert len(va.forecast_alerts(near, NOW, cfg, {"tam_thanh"}, thresholds)) == 1
    # ... and goes below it.
    assert va.forecast_alerts(_forecast([0.55], hour), NOW, cfg, {"tam_thanh"}, thresholds).empty
    # Closed hours and hours beyond the horizon do not count.
    assert va.forecast_alerts(_forecast([0.9], hour, is_open=False), NOW, cfg, set(),
                              thresholds).empty
    late = _forecast([0.9], hour + timedelta(hours=7))
    assert va.forecast_alerts(late, NOW, cfg, set(), thresholds).empty


def test_forecast_message_in_three_languages() -> None:
    msg = {lang: va.alert_message("Tam Thanh", "forecast", "overload", lang, "14:00", p=0.8)
           for lang in LANGUAGES}
    assert msg["en"] == "Tam Thanh likely overloaded from 14:00 (probability 80%)"
    assert "14:00" in msg["vi"] and "14:00" in msg["zh"]


def test_actions_file_has_every_level_in_every_language(settings: Settings) -> None:
    actions = va.load_actions(settings.alerts.actions_path)
    for key in va.ACTION_KEYS:
        for lang in LANGUAGES:
            assert actions["default"][key][lang].strip()
    own = va.recommended_action(actions, "mau_son", "live", "crowded", "en")
    assert "traffic police" in own and "Mẫu Sơn" in own
    assert va.recommended_action(actions, "tam_thanh", "live", "crowded", "en") == (
        actions["default"]["crowded"]["en"])
    assert va.recommended_action(actions, "mau_son", "forecast", "overload", "vi") == (
        actions["default"]["forecast_overload"]["vi"])


# -- the evaluation step against a real store ------------------------------------------------


def _minutes(store: Store, site: str, gate: str, start: datetime, people: list[tuple[int, int]],
             seq0: int = 0) -> None:
    store.write_batch([
        Reading(site, gate, f"lsn-{site}-{gate}", seq0 + i, start + timedelta(minutes=i + 1), 60,
                cin, cout)
        for i, (cin, cout) in enumerate(people)
    ], start)


def test_the_collector_step_raises_once_clears_and_keeps_the_audit(settings: Settings) -> None:
    store = Store.from_settings(settings)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    assert store.open_alerts() is None, "no evaluation yet"
    # An evaluation that raises nothing is still recorded: "all normal", not "never ran".
    assert va.evaluate_alerts(store, catalogue, settings, NOW - timedelta(hours=3))[0].empty
    assert store.open_alerts().empty
    assert store.last_alert_evaluation_utc() == NOW - timedelta(hours=3)

    # Tam Thanh (capacity 350): 400 people arrive at 02:50 UTC and stay.
    start = datetime(2026, 11, 21, 2, 50)
    _minutes(store, "tam_thanh", "main", start, [(400, 0)] + [(0, 0)] * 9)
    raised, cleared = va.evaluate_alerts(store, catalogue, settings, NOW)
    assert cleared == [] and len(raised) == 1
    alert = store.open_alerts().iloc[0]
    assert (alert["site_id"], alert["kind"], alert["level"]) == ("tam_thanh", "live", "overload")
    # Raised once held for raise_after_min (5) minutes: 02:54 UTC, 09:54 local.
    assert alert["raised_at_utc"] == pd.Timestamp("2026-11-21 02:54")
    assert "09:54" in alert["message"] and "400/350" in alert["message"]
    assert alert["recommended_action"] == va.load_actions(settings.alerts.actions_path)[
        "default"]["overload"]["vi"]

    # Every minute the collector evaluates again: nothing new while it holds.
    again, cleared_again = va.evaluate_alerts(store, catalogue, settings,
                                              NOW + timedelta(minutes=1))
    assert again.empty and cleared_again == []
    assert len(store.alert_audit()) == 1

    # 30 leave: 370 / 350 = 1.06, still overload; then 200 leave: 170 / 350, normal.
    _minutes(store, "tam_thanh", "main", start + timedelta(minutes=11), [(0, 30)], seq0=20)
    va.evaluate_alerts(store, catalogue, settings, NOW + timedelta(minutes=12))
    assert len(store.open_alerts()) == 1
    _minutes(store, "tam_thanh", "main", start + timedelta(minutes=13), [(0, 200)], seq0=30)
    _, cleared = va.evaluate_alerts(store, catalogue, settings, NOW + timedelta(minutes=14))
    assert cleared == [alert["alert_id"]]
    assert store.open_alerts().empty
    audit = store.alert_audit()
    assert len(audit) == 1 and audit.iloc[0]["cleared_at_utc"] == pd.Timestamp(
        NOW + timedelta(minutes=14))


def test_the_collector_step_raises_forecast_alerts_from_the_latest_run(
    settings: Settings,
) -> None:
    store = Store.from_settings(settings)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    hour = datetime(2026, 11, 21, 3, 0)
    hourly = _forecast([0.1, 0.3, 0.8, 0.6], hour).drop(columns="run_id")
    store.write_forecast_run(
        {"run_id": "r1", "created_at_utc": hour, "history_end_utc": hour, "settings_json": "{}",
         "sites_ok": 1, "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame([{"site_id": "tam_thanh", "status": "ok", "message": None, "fit_s": 1.0,
                       "regressors": "", "backtest_mae_ratio": 0.8}]),
        hourly, pd.DataFrame(),
    )
    # The threshold this case was written for (the shipped default is 0.3, settings.alerts).
    settings.alerts.forecast_p = 0.7
    va.evaluate_alerts(store, catalogue, settings, NOW)
    alert = store.open_alerts().iloc[0]
    assert (alert["kind"], alert["level"], alert["run_id"]) == ("forecast", "overload", "r1")
    # 05:00 UTC is 12:00 in Lạng Sơn.
    assert alert["message"] == "Động Tam Thanh có khả năng quá tải từ 12:00 (xác suất 80%)"


def test_live_alerts_keep_coming_when_the_forecast_is_stale(settings: Settings) -> None:
    """Refits failing for days: the last forecast ran out, forecast alerts fall silent, and
    the live counts still raise their alerts."""
    store = Store.from_settings(settings)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    old = datetime(2026, 11, 17, 3, 0)  # four days before NOW, its hours long past
    store.write_forecast_run(
        {"run_id": "old", "created_at_utc": old, "history_end_utc": old,
         "settings_json": "{}", "sites_ok": 1, "sites_failed": 0, "wall_s": 1.0},
        pd.DataFrame([{"site_id": "tam_thanh", "status": "ok", "message": None, "fit_s": 1.0,
                       "regressors": "", "backtest_mae_ratio": 0.8}]),
        _forecast([0.99] * 24, old).drop(columns="run_id"), pd.DataFrame(),
    )
    _minutes(store, "tam_thanh", "main", datetime(2026, 11, 21, 2, 50),
             [(400, 0)] + [(0, 0)] * 9)
    raised, _ = va.evaluate_alerts(store, catalogue, settings, NOW)
    assert list(zip(raised["kind"], raised["level"], strict=True)) == [("live", "overload")]


def test_acknowledgements_are_kept_with_their_note(settings: Settings) -> None:
    store = Store.from_settings(settings)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    _minutes(store, "tam_thanh", "main", datetime(2026, 11, 21, 2, 50), [(400, 0)] * 6)
    va.evaluate_alerts(store, catalogue, settings, NOW)
    alert_id = store.open_alerts().iloc[0]["alert_id"]
    store.acknowledge_alert(alert_id, "Nguyễn Văn A", "gate metered", NOW)
    store.acknowledge_alert(alert_id, "Trần Thị B", "police informed",
                            NOW + timedelta(minutes=3))
    open_now = store.open_alerts().iloc[0]
    assert open_now["acks"] == 2 and open_now["acked_by"] == "Trần Thị B"
    assert open_now["ack_note"] == "police informed"
    audit = store.alert_audit()
    assert list(audit["note"]) == ["gate metered", "police informed"]
    with pytest.raises(StoreError, match="no alert"):
        store.acknowledge_alert("live:nowhere", "x", "y", NOW)


def test_site_thresholds_in_the_store_drive_the_evaluation(settings: Settings) -> None:
    store = Store.from_settings(settings)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    # 200 / 350 = 0.57: normal by default, overload with the site's own 0.3 / 0.4 / 0.5.
    _minutes(store, "tam_thanh", "main", datetime(2026, 11, 21, 2, 50), [(200, 0)] * 1 +
             [(0, 0)] * 6)
    va.evaluate_alerts(store, catalogue, settings, NOW)
    assert store.open_alerts() is None or store.open_alerts().empty
    with pytest.raises(ValueError, match="rise"):
        store.set_alert_thresholds("tam_thanh", 0.5, 0.4, 0.6, "admin", NOW)
    store.set_alert_thresholds("tam_thanh", 0.3, 0.4, 0.5, "admin", NOW)
    va.evaluate_alerts(store, catalogue, settings, NOW)
    alert = store.open_alerts().iloc[0]
    assert (alert["level"], alert["threshold"]) == ("overload", 0.5)


def test_the_collector_step_defers_on_a_busy_store_and_never_raises(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:

    store = Store(settings.store.path, lock_timeout_s=0.3)
    store.initialise()
    catalogue = load_catalogue(settings.catalogue_path)
    holder = hold_store_lock(settings.store.path)
    try:
        with caplog.at_level("WARNING", logger="visitorflow.alerts"):
            va.run_alert_step(store, catalogue, settings, NOW)
    finally:
        holder.terminate()
        holder.wait(10)
    assert any("alert evaluation deferred" in r.getMessage() for r in caplog.records)
    _minutes(store, "tam_thanh", "main", datetime(2026, 11, 21, 2, 50), [(400, 0)] * 6)
    va.run_alert_step(store, catalogue, settings, NOW)  # the next minute catches up
    assert len(store.open_alerts()) == 1


def test_the_collector_evaluates_alerts_in_its_own_cycle(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector's run loop (no broker needed: it keeps retrying to connect) evaluates
    alerts on its first cycle and writes them itself."""
    import threading

    from ingest.collector import Collector
    from visitorflow.clock import utc_now
    from visitorflow.settings import get_settings

    monkeypatch.setenv("VISITORFLOW_ALERTS__RAISE_AFTER_MIN", "1")
    get_settings.cache_clear()
    settings = get_settings()
    store = Store.from_settings(settings)
    store.initialise()
    now = utc_now()
    store.write_batch([Reading("tam_thanh", "main", "lsn-tam_thanh-main", 1, now, 60, 400, 0)],
                      now)
    collector = Collector(settings, load_catalogue(settings.catalogue_path), store)
    stop = threading.Event()
    timer = threading.Timer(2.0, stop.set)
    timer.start()
    try:
        collector.run(stop)
    finally:
        timer.cancel()
    alerts = store.open_alerts()
    assert alerts is not None, "the collector did not evaluate alerts"
    assert list(alerts["site_id"]) == ["tam_thanh"] and alerts["level"].iloc[0] == "overload"

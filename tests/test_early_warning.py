"""Early warning: episode detection, alert spells, matching, lead times, miss
reasons and the nowcast, on synthetic series whose answers can be checked by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting.early_warning import (
    Run,
    alert_spells,
    evaluation_steps,
    match_episodes,
    miss_reasons,
    overload_episodes,
    peak_p_by_run,
    simulate_alerts,
    summary,
)
from visitorflow.alerts import forecast_alerts
from visitorflow.nowcast import apply_nowcast, nowcast_ratios
from visitorflow.settings import AlertSettings

T0 = datetime(2026, 3, 10, 0, 0)  # naive UTC


def minutes(site: str, occupancy: list[int], start: datetime = T0) -> pd.DataFrame:
    return pd.DataFrame({"site_id": site,
                         "minute_utc": pd.date_range(start, periods=len(occupancy), freq="min"),
                         "occupancy": occupancy})


def test_episodes_need_fifteen_minutes_at_capacity() -> None:
    # 100 people capacity: 14 min at 100 (too short), a dip, then 20 min at 120, then 15 at 100
    occ = [50] * 10 + [100] * 14 + [90] * 5 + [120] * 20 + [80] * 30 + [100] * 15 + [0] * 5
    eps = overload_episodes(minutes("a", occ), {"a": 100})
    assert list(eps["minutes"]) == [20, 15]
    assert eps["start_utc"].iloc[0] == pd.Timestamp(T0 + timedelta(minutes=29))
    assert eps["end_utc"].iloc[0] == pd.Timestamp(T0 + timedelta(minutes=49))
    assert list(eps["peak_occupancy"]) == [120, 100]
    # A share below 1 lowers the threshold: 90 counts at 0.9, so 14+5+20 = 39 minutes.
    eps = overload_episodes(minutes("a", occ), {"a": 100}, overload_share=0.9)
    assert list(eps["minutes"])[0] == 39


def test_short_dips_merge_and_missing_minutes_split() -> None:
    occ = [120] * 10 + [90] * 3 + [120] * 10
    assert list(overload_episodes(minutes("a", occ), {"a": 100})["minutes"]) == []
    merged = overload_episodes(minutes("a", occ), {"a": 100}, merge_gap_min=5)
    assert list(merged["minutes"]) == [20]
    # A hole in the series (no truth for 3 minutes) ends a spell.
    frame = pd.concat([minutes("a", [120] * 10),
                       minutes("a", [120] * 10, T0 + timedelta(minutes=13))])
    assert overload_episodes(frame, {"a": 100}).empty


def test_lead_times_false_alarms_and_summary() -> None:
    steps = evaluation_steps(T0, T0 + timedelta(hours=24), 10)
    # Alert for site a open 01:00-05:00 (steps), episode at 04:00: lead 3 h.
    # Alert for site a open 12:00-12:30, no episode within 12:30 + 6 h: false alarm.
    # Site b: episode at 08:00, alert only raised 07:00: lead 1 h (< 2 h goal).
    # Site b: episode at 20:00 with no alert at all.
    open_steps = pd.DataFrame(
        [{"step_utc": t, "site_id": "a", "from_utc": T0 + timedelta(hours=4), "p_overload": 0.8}
         for t in steps if T0 + timedelta(hours=1) <= t < T0 + timedelta(hours=5)]
        + [{"step_utc": t, "site_id": "a", "from_utc": T0 + timedelta(hours=14),
            "p_overload": 0.6} for t in steps
           if T0 + timedelta(hours=12) <= t < T0 + timedelta(hours=12, minutes=30)]
        + [{"step_utc": t, "site_id": "b", "from_utc": T0 + timedelta(hours=8),
            "p_overload": 0.9} for t in steps
           if T0 + timedelta(hours=7) <= t < T0 + timedelta(hours=9)])
    spells = alert_spells(open_steps, steps, horizon_h=6)
    assert len(spells) == 3
    first = spells.iloc[0]
    assert first["raised_at_utc"] == pd.Timestamp(T0 + timedelta(hours=1))
    assert first["cleared_at_utc"] == pd.Timestamp(T0 + timedelta(hours=5))
    assert first["window_end_utc"] == pd.Timestamp(T0 + timedelta(hours=11))
    episodes = pd.DataFrame({
        "site_id": ["a", "b", "b"],
        "start_utc": pd.to_datetime([T0 + timedelta(hours=4), T0 + timedelta(hours=8),
                                     T0 + timedelta(hours=20)]),
        "end_utc": pd.to_datetime([T0 + timedelta(hours=5), T0 + timedelta(hours=9),
                                   T0 + timedelta(hours=21)]),
        "minutes": 60, "peak_occupancy": 150, "capacity": 100})
    eps, sp = match_episodes(episodes, spells)
    assert list(eps["lead_h"].fillna(-1)) == [3.0, 1.0, -1]
    assert list(eps["flagged"]) == [True, True, False]
    assert list(sp["false_alarm"]) == [False, True, False]
    table = summary(eps, sp, ["a", "b"], lead_goal_h=2).set_index("site_id")
    overall = table.loc["all"]
    assert overall["episodes"] == 3 and overall["flagged"] == 2 and overall["flagged_goal"] == 1
    assert overall["share_goal"] == pytest.approx(1 / 3)
    assert overall["alerts"] == 3 and overall["false_alarms"] == 1
    assert overall["false_share"] == pytest.approx(1 / 3)
    assert overall["lead_median_h"] == pytest.approx(2.0)
    assert overall["lead_p10_h"] == pytest.approx(1.2)  # numpy's linear quantile of [1, 3]
    assert table.loc["b", "missed"] == 2


def hourly_run(site: str, p_by_hour: dict[int, float], start: datetime = T0,
               hours: int = 24, arrivals: float = 100.0) -> pd.DataFrame:
    ts = pd.date_range(start, periods=hours, freq="h")
    return pd.DataFrame({"site_id": site, "ts_utc": ts, "is_open": True, "arrivals": arrivals,
                         "occupancy": 50.0, "occupancy_upper": 80.0, "capacity": 100,
                         "p_overload": [p_by_hour.get(t.hour, 0.0) for t in ts],
                         "run_id": "r"})


def test_miss_reasons() -> None:
    episodes = pd.DataFrame({
        "site_id": ["a", "a", "a", "b"],
        "start_utc": pd.to_datetime([T0 + timedelta(hours=h) for h in (10, 14, 20, 10)]),
        "end_utc": pd.to_datetime([T0 + timedelta(hours=h, minutes=30) for h in (10, 14, 20, 10)]),
        "flagged": False, "lead_h": np.nan})
    # Run 1 (in force 00:00): high at 10:00 only. Run 2 (in force 13:00): high at 14:00.
    runs = [Run("r1", T0, T0, hourly_run("a", {10: 0.9})),
            Run("r2", T0 + timedelta(hours=13), T0 + timedelta(hours=13),
                hourly_run("a", {14: 0.9}))]
    peaks = peak_p_by_run(episodes, runs)
    reasons = miss_reasons(episodes, peaks, p_threshold=0.5, lead_goal_h=2)
    assert list(reasons) == ["flagged late", "late refit", "forecast too low", "no data"]


def test_nowcast_scales_today_and_moves_probability() -> None:
    now = T0 + timedelta(hours=3, minutes=20)
    forecast = hourly_run("a", {5: 0.5, 6: 0.1}, hours=8)
    forecast.loc[forecast["ts_utc"] == T0 + timedelta(hours=7), "is_open"] = False
    recent = pd.DataFrame({"site_id": "a",
                           "hour_utc": pd.to_datetime([T0 + timedelta(hours=h) for h in (1, 2)]),
                           "arrivals": [290.0, 310.0]})
    ratios = nowcast_ratios(forecast, recent, now, hours=3, prior_people=0, ratio_max=5)
    # Hours 00:00-02:00 forecast 100 each; 01:00 and 02:00 were counted: (290+310)/200 = 3.
    assert ratios.iloc[0]["hours_used"] == 2
    assert ratios.iloc[0]["ratio"] == pytest.approx(3.0)
    capped = nowcast_ratios(forecast, recent, now, 3, prior_people=100, ratio_max=2)
    assert capped.iloc[0]["ratio"] == pytest.approx(2.0)  # (600+100)/(200+100) = 2.33, cap 2
    out = apply_nowcast(forecast, ratios, now, interval_width=0.8)
    scaled = out.set_index(out["ts_utc"].dt.hour)
    assert scaled.loc[2, "arrivals"] == 100  # before the current hour: unchanged
    assert scaled.loc[3, "arrivals"] == pytest.approx(300)
    assert scaled.loc[6, "occupancy"] == pytest.approx(150)
    assert scaled.loc[7, "nowcast_ratio"] == 1.0  # closed: the rest of today's opening only
    assert scaled.loc[5, "p_overload"] > 0.99  # 3× the median, σ = ln(81/51)/1.28 ≈ 0.36
    assert scaled.loc[5, "p_overload_model"] == 0.5
    unchanged = apply_nowcast(forecast, ratios.assign(ratio=1.0), now, 0.8)
    assert (unchanged["p_overload"] == forecast["p_overload"]).all()


def test_the_nowcast_compares_the_counts_with_the_median_not_the_leaned_forecast() -> None:
    """Where `arrivals` leans toward the crowd, the counts are compared with
    `arrivals_median`: the ratio, the scaled hours and p_overload are the median's."""
    now = T0 + timedelta(hours=3, minutes=20)
    median = hourly_run("a", {5: 0.5}, hours=8)
    leaned = median.assign(arrivals_median=median["arrivals"],
                           arrivals=median["arrivals"] * 1.05)
    recent = pd.DataFrame({"site_id": "a",
                           "hour_utc": pd.to_datetime([T0 + timedelta(hours=h) for h in (1, 2)]),
                           "arrivals": [290.0, 310.0]})
    ratios = nowcast_ratios(leaned, recent, now, hours=3, prior_people=0, ratio_max=5)
    assert ratios.iloc[0]["ratio"] == pytest.approx(3.0)
    assert ratios.equals(nowcast_ratios(median, recent, now, 3, prior_people=0, ratio_max=5))
    # A run from before the median was kept (NULL): its arrivals were the median.
    older = median.assign(arrivals_median=np.nan)
    assert ratios.equals(nowcast_ratios(older, recent, now, 3, prior_people=0, ratio_max=5))
    out = apply_nowcast(leaned, ratios, now, interval_width=0.8).set_index("ts_utc")
    plain = apply_nowcast(median, ratios, now, interval_width=0.8).set_index("ts_utc")
    assert (out["p_overload"] == plain["p_overload"]).all()
    assert np.allclose(out["arrivals_median"], plain["arrivals"])
    assert np.allclose(out["arrivals"], plain["arrivals"] * 1.05)


def test_forecast_alerts_with_nowcast_and_simulated_steps() -> None:
    cfg = AlertSettings(forecast_p=0.7, forecast_p_margin=0.1, forecast_horizon_h=6,
                        nowcast_hours=3, nowcast_prior_people=0, nowcast_ratio_max=3)
    thresholds = pd.DataFrame({"capacity": [100], "overload": [1.0]}, index=["a"])
    forecast = hourly_run("a", {8: 0.3}, hours=24)
    recent = pd.DataFrame({"site_id": "a", "hour_utc": pd.date_range(T0, periods=24, freq="h"),
                           "arrivals": 300.0})
    now = T0 + timedelta(hours=4)
    assert forecast_alerts(forecast, now, cfg, set(), thresholds).empty
    alerts = forecast_alerts(forecast, now, cfg, set(), thresholds, recent)
    assert list(alerts["site_id"]) == ["a"]
    assert alerts.iloc[0]["from_utc"] == pd.Timestamp(T0 + timedelta(hours=8))
    # Stepping: the run counts from 01:00; with no counts before 03:00 nothing is raised until
    # the nowcast has hours to look at (03:00 needs 00:00-02:00 counted).
    runs = [Run("r", T0, T0 + timedelta(hours=1), forecast)]
    counted = recent[recent["hour_utc"] >= T0 + timedelta(hours=2)]
    steps = evaluation_steps(T0, T0 + timedelta(hours=10), 30)
    opened = simulate_alerts(runs, counted, steps, cfg, thresholds)
    assert opened["step_utc"].min() == pd.Timestamp(T0 + timedelta(hours=3))
    # From 03:00 the 08:00 hour is within 6 h only at 02:00+: the alert then holds to 08:59.
    assert opened["step_utc"].max() == pd.Timestamp(T0 + timedelta(hours=8, minutes=30))

"""Forecast models with real Prophet fits on small synthetic histories (no store)."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.calendar import festival_labels, site_calendar
from forecasting.dwell import dwell_kernel, occupancy_from_arrivals
from forecasting.features import open_mask, profile_groups
from forecasting.models import (
    LBFGS_HISTORY_SIZE,
    daily_temperature,
    daily_totals,
    fit_daily,
    fit_hourly,
    forecast_daily,
    forecast_hourly,
    quiet_cmdstan,
    seasonal_naive_hourly,
)
from forecasting.run import daily_horizon_days
from tests.synthetic_history import synthetic_arrivals, synthetic_temperature
from visitorflow.catalogue import load_catalogue
from visitorflow.festivals import lunar_to_solar
from visitorflow.settings import PROJECT_ROOT, ForecastSettings

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
FAST = ForecastSettings(samples=200)


@pytest.fixture(scope="module", autouse=True)
def _quiet() -> None:
    quiet_cmdstan()


def test_festivals_apply_only_to_the_sites_they_concern() -> None:
    bac_le_calendar = site_calendar("den_bac_le", [2026], before_days=2, after_days=1)
    bac_le = bac_le_calendar.holidays
    tam_thanh = site_calendar("tam_thanh", [2026], before_days=2, after_days=1).holidays
    assert "fest_bac_le" in set(bac_le["holiday"])
    assert "fest_bac_le" not in set(tam_thanh["holiday"])
    assert "fest_long_tong" in set(tam_thanh["holiday"])
    for frame in (bac_le, tam_thanh):  # province-wide and national for everyone
        assert {"fest_tet", "fest_hung_kings"} <= set(frame["holiday"])
        assert frame["holiday"].str.startswith("vn_").any()
    # Bắc Lệ 18–20/9 lunar: the window sits on the edges, the peak day has its own effect.
    rows = bac_le[bac_le["holiday"] == "fest_bac_le"].sort_values("ds")
    assert rows["ds"].dt.date.tolist() == [lunar_to_solar(d, 9, 2026) for d in (18, 19, 20)]
    assert rows["lower_window"].tolist() == [-2, 0, 0]
    assert rows["upper_window"].tolist() == [0, 0, 1]
    peak = bac_le[bac_le["holiday"] == "fest_bac_le_peak_20"]["ds"].dt.date.tolist()
    assert peak == [lunar_to_solar(20, 9, 2026)]
    # Kỳ Cùng's two peak days hold different events: one name each; Tết's peak days
    # (province-wide) share one.
    ky_lua_calendar = site_calendar("ky_lua", [2026], before_days=2, after_days=1)
    ky_lua = ky_lua_calendar.holidays
    assert {"fest_ky_cung_ta_phu_peak_22", "fest_ky_cung_ta_phu_peak_27"} <= set(
        ky_lua["holiday"])
    assert (ky_lua["holiday"] == "fest_tet_peak").sum() == 4
    # The calendar says what the names mean: the site's own peaks, each with its days, the
    # scheduled ones (processions: festivals.yaml `peak_events`) marked; Tết's peak is not
    # the site's own.
    assert list(ky_lua_calendar.event_peak_days) == [
        "ky_cung_ta_phu_peak_22", "ky_cung_ta_phu_peak_27"]
    assert list(ky_lua_calendar.event_peak_days["ky_cung_ta_phu_peak_27"].date) == [
        lunar_to_solar(27, 1, 2026)]
    assert ky_lua_calendar.scheduled_peaks == {"ky_cung_ta_phu_peak_22",
                                               "ky_cung_ta_phu_peak_27"}
    assert list(bac_le_calendar.event_peak_days) == ["bac_le_peak_20"]
    assert not bac_le_calendar.scheduled_peaks  # the main day, not a scheduled event
    assert set(bac_le_calendar.festival_days.date) >= {
        lunar_to_solar(d, 9, 2026) for d in (18, 19, 20)}
    assert lunar_to_solar(3, 1, 2026) in set(bac_le_calendar.days_off.date)  # Tết
    assert lunar_to_solar(18, 9, 2026) not in set(bac_le_calendar.days_off.date)
    # The window days: Bắc Lệ's reach two days before its first day and one after its last.
    window = set(bac_le_calendar.window_days.date)
    assert {lunar_to_solar(18, 9, 2026) - pd.Timedelta(days=2),
            lunar_to_solar(20, 9, 2026) + pd.Timedelta(days=1)} <= window
    labels = festival_labels("den_bac_le", [lunar_to_solar(20, 9, 2026), date(2026, 5, 5)])
    assert labels == {lunar_to_solar(20, 9, 2026): "bac_le"}


def test_daily_horizon_reaches_the_end_of_the_next_festival_season() -> None:
    assert daily_horizon_days(date(2026, 11, 21), 120) == 120
    # From 20 Dec 2026 the next season is Tết 2027 to Kỳ Cùng 27/1 lunar.
    end = lunar_to_solar(27, 1, 2027)
    assert daily_horizon_days(date(2026, 12, 20), 30) == (end - date(2026, 12, 20)).days + 1


def test_days_with_other_opening_hours_get_their_own_daily_profile() -> None:
    assert profile_groups(CATALOGUE.site("tam_thanh")) == {
        "daily_weekday": (0, 1, 2, 3, 4), "daily_weekend": (5, 6)}
    # Kỳ Lừa's night market opens Friday and Saturday evenings only.
    assert profile_groups(CATALOGUE.site("ky_lua")) == {
        "daily_weekday_mon_tue_wed_thu": (0, 1, 2, 3), "daily_weekday_fri": (4,),
        "daily_weekend_sat": (5,), "daily_weekend_sun": (6,)}


def test_occupancy_is_arrivals_convolved_with_dwell() -> None:
    assert dwell_kernel(45).tolist() == [0.75]
    assert dwell_kernel(90).tolist() == [1.0, 0.5]
    arrivals = np.full(6, 60.0)
    is_open = np.array([True] * 5 + [False])
    occ = occupancy_from_arrivals(arrivals, is_open, 90, lead_in=np.array([60.0]))
    # Steady 60/h with 90 min dwell: 90 people on site (Little's law); closed: cleared.
    assert occ.tolist() == [90.0] * 5 + [0.0]
    cold_start = occupancy_from_arrivals(arrivals, is_open, 90)
    assert cold_start[0] == 60.0 and cold_start[1] == 90.0


def test_hourly_forecast_is_never_negative_and_zero_when_closed() -> None:
    site = CATALOGUE.site("tam_thanh")
    history = synthetic_arrivals(site, datetime(2026, 9, 1), 42, seed=3)
    model = fit_hourly(history, site, FAST, site_calendar("tam_thanh", [2026], 2, 1))
    out = forecast_hourly(model, datetime(2026, 10, 13), 72)
    assert list(out.columns) == ["ds", "is_open", "arrivals", "arrivals_lower",
                                 "arrivals_upper", "occupancy", "occupancy_upper", "capacity",
                                 "p_overload", "arrivals_median"]
    assert len(out) == 72 and (out[["arrivals", "arrivals_lower", "occupancy"]] >= 0).all().all()
    closed = out[~out["is_open"]]
    assert len(closed) == 3 * 13  # 07:00–18:00 open: 13 closed hours a day
    assert (closed[["arrivals", "arrivals_upper", "occupancy", "p_overload"]] == 0).all().all()
    opened = out[out["is_open"]]
    assert (opened["arrivals_lower"] <= opened["arrivals"]).all()
    assert (opened["arrivals"] <= opened["arrivals_upper"]).all()
    # The model draws the mid-morning weekday peak of the history, not a flat line.
    tuesday = opened[opened["ds"].dt.date == date(2026, 10, 13)]
    tuesday = tuesday.set_index(tuesday["ds"].dt.hour)
    assert tuesday["arrivals"].idxmax() in (9, 10, 11)
    actual = history.set_index("ds")["arrivals"]
    week_ago = actual[actual.index.date == date(2026, 10, 6)].max()
    assert 0.6 * week_ago < tuesday["arrivals"].max() < 1.6 * week_ago


def test_overload_probability_follows_capacity() -> None:
    site = CATALOGUE.site("den_ky_cung")
    history = synthetic_arrivals(site, datetime(2026, 9, 1), 35, seed=5)
    model = fit_hourly(history, site, FAST, site_calendar(site.id, [2026], 2, 1))
    start = datetime(2026, 10, 10)  # a Saturday: peak occupancy ≈ half the capacity
    normal = forecast_hourly(model, start, 24)
    tight = forecast_hourly(replace(model, site=site.model_copy(update={"capacity": 10})),
                            start, 24)
    peak_hour = normal["occupancy"].idxmax()
    assert normal["p_overload"].max() < 0.05
    assert tight.loc[peak_hour, "p_overload"] > 0.95
    # The same samples: a site at its peak against capacity 10 vs the real 300.
    ratio = normal.loc[peak_hour, "occupancy"] / site.capacity
    assert 0.25 < ratio < 0.9


def test_seasonal_naive_repeats_last_week() -> None:
    site = CATALOGUE.site("tam_thanh")
    history = synthetic_arrivals(site, datetime(2026, 9, 1), 14, seed=1)
    naive = seasonal_naive_hourly(history, site, datetime(2026, 9, 15), 24 * 10)
    values = history.set_index("ds")["arrivals"]
    for ds, got in zip(naive["ds"], naive["arrivals"], strict=True):
        expected = values[ds - pd.Timedelta(days=7 * (1 + (ds - datetime(2026, 9, 15)).days
                                                      // 7))]
        assert got == expected
    assert (naive.loc[~open_mask(site, naive["ds"]), "arrivals"] == 0).all()


def test_daily_model_forecasts_the_bac_le_festival() -> None:
    site = CATALOGUE.site("den_bac_le")
    hourly = synthetic_arrivals(site, datetime(2024, 9, 1), 800, seed=2)
    daily = daily_totals(hourly, site)
    assert len(daily) == 800
    calendar = site_calendar(site.id, range(2024, 2028), 2, 1)
    model = fit_daily(daily[daily["ds"] < "2026-10-01"], FAST, calendar)
    out = forecast_daily(model, datetime(2026, 10, 1), 60)
    assert list(out.columns) == ["ds", "arrivals", "arrivals_lower", "arrivals_upper"]
    peak = pd.Timestamp(lunar_to_solar(20, 9, 2026))
    on_peak = out.loc[out["ds"] == peak, "arrivals"].iloc[0]
    ordinary = out.loc[out["ds"] < peak - pd.Timedelta(days=5), "arrivals"].median()
    assert on_peak > 2.5 * ordinary
    actual = daily.set_index("ds")["arrivals"][peak]
    assert abs(on_peak - actual) / actual < 0.2  # festival-day peak within 20 %


def test_a_cold_snap_scenario_raises_the_mau_son_forecast() -> None:
    site = CATALOGUE.site("mau_son")
    ds = pd.Series(pd.date_range("2025-06-01", periods=24 * 560, freq="h"))
    temp = synthetic_temperature(site.id, ds, seed=4)
    hourly = synthetic_arrivals(site, datetime(2025, 6, 1), 560, seed=4, temperature=temp)
    temps = daily_temperature(pd.DataFrame({"ds": ds, "temp_c": temp}))
    daily = daily_totals(hourly, site)
    calendar = site_calendar(site.id, range(2025, 2028), 2, 1)
    model = fit_daily(daily, FAST, calendar, temps)
    assert model.regressors == ("cold_c",)
    future = pd.DataFrame({"ds": pd.date_range("2026-12-12", periods=10, freq="D")})
    mild = forecast_daily(model, datetime(2026, 12, 12), 10, future.assign(temp_c=10.0))
    frost = forecast_daily(model, datetime(2026, 12, 12), 10, future.assign(temp_c=-4.0))
    assert (frost["arrivals"] > 1.5 * mild["arrivals"]).all()


def test_forecasting_imports_nothing_from_ingest() -> None:
    """The layers: forecasting reads the store, never the ingest side; what starts both (the
    early-warning season) lives in orchestration/."""
    for path in sorted((PROJECT_ROOT / "forecasting").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "ingest" or n.startswith("ingest.") for n in names), path.name


def test_prophet_fits_write_their_data_with_ujson_and_the_same_numbers() -> None:
    """cmdstanpy hands each fit's data to Stan as JSON (stanio), through ujson when it can
    import it: the standard library's encoder took a quarter of a site's refit
    (bench/results.md, "The refit's time on this machine"). ujson must write every double
    so that it reads back exactly, or the fits would change."""
    import json

    import ujson
    from stanio import json as stan_json

    assert stan_json.UJSON_AVAILABLE, "stanio writes Prophet's data without ujson"
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=5000), rng.normal(size=5000) * 1e-9,
                             rng.normal(size=5000) * 1e7, np.arange(100.0), [0.1, 1 / 3]])
    assert np.array_equal(np.array(json.loads(ujson.dumps(values.tolist()))), values)


def test_the_same_history_gives_the_same_forecast() -> None:
    site = CATALOGUE.site("tam_thanh")
    history = synthetic_arrivals(site, datetime(2026, 9, 1), 42, seed=3)
    calendar = site_calendar(site.id, [2026], 2, 1)
    first, again = (fit_hourly(history, site, FAST, calendar) for _ in range(2))
    # Stan's L-BFGS ran with the memory the models set (CmdStan's own default is 5).
    assert f"history_size={LBFGS_HISTORY_SIZE}" in first.model.stan_backend.stan_fit.runset.cmd(0)
    np.random.seed(11)
    before = np.random.get_state()[1].copy()
    out = forecast_hourly(first, datetime(2026, 10, 13), 72)
    # The caller's generator is left as it was.
    assert (np.random.get_state()[1] == before).all()
    pd.testing.assert_frame_equal(out, forecast_hourly(first, datetime(2026, 10, 13), 72))
    pd.testing.assert_frame_equal(out, forecast_hourly(again, datetime(2026, 10, 13), 72))
    # Another start draws other samples: the seed is not one constant.
    later = forecast_hourly(first, datetime(2026, 10, 14), 48)
    shared = out.merge(later, on="ds", suffixes=("", "_later"))
    opened = shared[shared["is_open"]]
    assert not np.allclose(opened["arrivals_upper"], opened["arrivals_upper_later"])
    daily = daily_totals(synthetic_arrivals(site, datetime(2025, 9, 1), 400, seed=2), site)
    model = fit_daily(daily, FAST, site_calendar(site.id, range(2025, 2028), 2, 1))
    pd.testing.assert_frame_equal(forecast_daily(model, datetime(2026, 10, 6), 30),
                                  forecast_daily(model, datetime(2026, 10, 6), 30))


def test_a_failed_lbfgs_fit_is_fitted_again_on_a_new_model(monkeypatch) -> None:
    """The retry builds a new Prophet object (one fits once) with CmdStan's default memory."""
    from prophet import Prophet

    from forecasting import models

    built: list[Prophet] = []
    calls: list[dict] = []
    real_fit = Prophet.fit

    def failing_once(self: Prophet, df: pd.DataFrame, **kwargs: object) -> Prophet:
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("Error evaluating model log probability: line search failed")
        return real_fit(self, df, **kwargs)

    def build() -> Prophet:
        built.append(Prophet(uncertainty_samples=0, daily_seasonality=False,
                             weekly_seasonality=False, yearly_seasonality=False))
        return built[-1]

    monkeypatch.setattr(Prophet, "fit", failing_once)
    train = pd.DataFrame({"ds": pd.date_range("2026-01-01", periods=30, freq="D"),
                          "y": np.linspace(1, 2, 30)})
    fitted = models._fit(build, train)
    assert len(built) == 2 and fitted is built[1]
    assert calls[0]["history_size"] == LBFGS_HISTORY_SIZE and "history_size" not in calls[1]
    assert built[0].history is None and fitted.history is not None
    with pytest.raises(ValueError, match="usable rows"):
        models._fit(build, train.assign(y=np.nan))

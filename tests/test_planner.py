"""The festival planner (visitorflow.planner): festival windows from the lunar rules, the per-
site plan and the day × hour overload grid — on hand-made forecast frames (unit tests) and on
a real Prophet run over a year of synthetic history in a temporary store."""

from __future__ import annotations

import io
from datetime import date, datetime

import pandas as pd
import pytest

from tests.planner_support import CAPACITY, TZ, daily_frame, hourly_frame
from visitorflow import planner
from visitorflow.festivals import national_holidays


def test_festival_windows_come_from_the_lunar_rules() -> None:
    windows = planner.festival_windows(date(2026, 11, 22))
    tet = windows[windows["festival_id"] == "tet"].iloc[0]
    # Tết 2027 from the lunar rule agrees with Vietnam's public holidays (another library).
    vn = national_holidays([2027])
    assert tet["first_day"] == vn.loc[vn["name"] == "Lunar New Year", "date"].iloc[0]
    assert tet["first_day"] == date(2027, 2, 6)
    assert tet["last_day"] == date(2027, 2, 10) and tet["sites"] == ()
    assert tet["peak_days"] == [date(2027, 2, d) for d in (7, 8, 9, 10)]
    assert windows["first_day"].is_monotonic_increasing
    # Bắc Lệ 2026 (27–29 Oct) is over; the next one is in 2027.
    bac_le = windows[windows["festival_id"] == "bac_le"]
    assert list(bac_le["year"]) == [2027]
    # A festival under way is still offered.
    during = planner.festival_windows(date(2027, 2, 8))
    assert during["festival_id"].iloc[0] == "tet"


def test_a_festival_windows_peak_day_and_hour_are_found() -> None:
    start = date(2027, 2, 1)
    tet = planner.festival_windows(start).iloc[0]
    peak_hour = datetime(2027, 2, 8, 10)
    hourly = hourly_frame(start, 14, {"tam_thanh": (peak_hour, 420.0),
                                      "den_ky_cung": (datetime(2027, 2, 9, 11), 120.0)})
    daily = daily_frame(start, 130, {"tam_thanh": (date(2027, 2, 8), 900.0),
                                     "den_ky_cung": (date(2027, 2, 9), 400.0)})
    plan = planner.plan_sites(hourly, daily, tet["first_day"], tet["last_day"], CAPACITY, TZ)
    assert list(plan["site_id"]) == ["tam_thanh", "den_ky_cung"]  # highest load first
    tam = plan.iloc[0]
    assert tam["peak_day"] == date(2027, 2, 8) and tam["peak_day_arrivals"] == 900
    assert (tam["peak_day_arrivals_lower"], tam["peak_day_arrivals_upper"]) == (720, 1080)
    assert pd.Timestamp(tam["peak_hour"]) == pd.Timestamp(peak_hour)  # local time
    assert tam["peak_occupancy"] == 420 and tam["peak_load"] == pytest.approx(1.2)
    assert tam["max_p_overload"] == pytest.approx(1.0)
    assert tam["hours_likely_overloaded"] == 1
    assert (tam["basis"], tam["hourly_days"], tam["days"]) == ("hourly", 5, 5)
    assert tam["peak_occupancy_source"] == "hourly"
    assert plan.iloc[1]["peak_day"] == date(2027, 2, 9)


def test_the_day_by_hour_grid_has_a_cell_per_local_day_and_hour() -> None:
    start = date(2027, 2, 1)
    hourly = hourly_frame(start, 14, {"tam_thanh": (datetime(2027, 2, 3, 10), 300.0),
                                      "den_ky_cung": (datetime(2027, 2, 3, 11), 380.0)})
    grid = planner.overload_grid(hourly, date(2027, 2, 2), date(2027, 2, 4), TZ)
    assert grid.shape == (3 * 24, 4)
    assert list(grid.columns) == planner.GRID_COLUMNS
    assert sorted(set(grid["day_local"])) == [date(2027, 2, d) for d in (2, 3, 4)]
    assert list(grid["hour"][:24]) == list(range(24))
    cell = grid.set_index(["day_local", "hour"])
    # The highest of the sites, and which site it is.
    assert cell.loc[(date(2027, 2, 3), 11), "p_overload"] == pytest.approx(0.95)
    assert cell.loc[(date(2027, 2, 3), 11), "site_id"] == "den_ky_cung"
    assert cell.loc[(date(2027, 2, 3), 10), "site_id"] == "tam_thanh"
    assert cell.loc[(date(2027, 2, 2), 3), "p_overload"] == 0  # closed at night
    only = planner.overload_grid(hourly, date(2027, 2, 3), date(2027, 2, 3), TZ, ["tam_thanh"])
    assert only.shape == (24, 4) and set(only["site_id"]) == {"tam_thanh"}


def test_beyond_the_hourly_horizon_only_daily_figures_and_an_estimate_remain() -> None:
    start = date(2027, 1, 20)
    hourly = hourly_frame(start, 14, {"tam_thanh": (datetime(2027, 1, 22, 10), 200.0)})
    daily = daily_frame(start, 130, {"tam_thanh": (date(2027, 2, 8), 900.0)})
    horizon = planner.hourly_horizon_end(hourly, TZ)
    assert horizon == date(2027, 2, 2)
    sites = ["tam_thanh"]

    beyond = planner.plan_sites(hourly, daily, date(2027, 2, 6), date(2027, 2, 10), CAPACITY,
                                TZ, sites).iloc[0]
    assert (beyond["basis"], beyond["hourly_days"]) == ("daily", 0)
    assert beyond["peak_day"] == date(2027, 2, 8) and beyond["peak_day_arrivals"] == 900
    assert pd.isna(beyond["peak_hour"]) and pd.isna(beyond["max_p_overload"])
    assert beyond["hours_likely_overloaded"] == 0
    # Estimated: 900 arrivals × the site's usual peak occupancy / daily arrivals (100 / 220;
    # the one day with a 200 peak does not move the median).
    assert beyond["peak_occupancy_source"] == "estimate"
    assert beyond["peak_occupancy"] == pytest.approx(900 * 100 / 220)
    assert planner.overload_grid(hourly, date(2027, 2, 6), date(2027, 2, 10), TZ).empty

    # Straddling the horizon: hourly figures for the days covered, the peak day beyond.
    partial = planner.plan_sites(hourly, daily, date(2027, 1, 31), date(2027, 2, 9), CAPACITY,
                                 TZ, sites).iloc[0]
    assert (partial["basis"], partial["hourly_days"], partial["days"]) == ("partial", 3, 10)
    assert partial["peak_day"] == date(2027, 2, 8)
    assert partial["peak_occupancy_source"] == "estimate"
    assert partial["max_p_overload"] == pytest.approx(0.25)  # from the covered days
    grid = planner.overload_grid(hourly, date(2027, 1, 31), date(2027, 2, 9), TZ)
    assert grid.shape == (3 * 24, 4)

    # No forecast reaches these days at all.
    none = planner.plan_sites(hourly, daily, date(2027, 9, 1), date(2027, 9, 3), CAPACITY, TZ,
                              sites).iloc[0]
    assert pd.isna(none["peak_day"]) and pd.isna(none["peak_occupancy"])


def test_exports_hold_the_table() -> None:
    table = pd.DataFrame({"Điểm": ["Động Tam Thanh", "谅山"], "Sức chứa": [350, 300]})
    csv = planner.to_csv_bytes(table)
    assert csv.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(csv), encoding="utf-8-sig"), table)
    xlsx = planner.to_excel_bytes({"Kế hoạch": table, "Xác suất theo giờ": table.head(1)})
    sheets = pd.read_excel(io.BytesIO(xlsx), sheet_name=None)
    assert list(sheets) == ["Kế hoạch", "Xác suất theo giờ"]
    pd.testing.assert_frame_equal(sheets["Kế hoạch"], table)


# -- on a real forecast run ----------------------------------------------------------------------


def test_the_plan_of_a_real_forecast_run(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A year of synthetic history for Tam Thanh (Tết 2026 in it), a real Prophet run that
    ends on 20 Jan 2027: Tết 2027 is beyond the hourly horizon, within the daily one, and its
    forecast peak day is a Tết day well above an ordinary January day."""
    from forecasting.run import run_forecasts
    from tests.synthetic_history import write_synthetic_history
    from visitorflow.catalogue import load_catalogue
    from visitorflow.settings import get_settings
    from visitorflow.store import Store

    monkeypatch.setenv("VISITORFLOW_FORECAST__SAMPLES", "100")
    monkeypatch.setenv("VISITORFLOW_FORECAST__HOURLY_HISTORY_DAYS", "60")  # a faster fit
    get_settings.cache_clear()
    small = get_settings()
    catalogue = load_catalogue(small.catalogue_path)
    store = Store.from_settings(small)
    write_synthetic_history(store, catalogue, ["tam_thanh"], datetime(2027, 1, 20), 400, seed=3)
    report = run_forecasts(small, ["tam_thanh"], processes=1, progress=False)
    assert not report.failed

    hourly = store.latest_forecast(granularity="hourly")
    daily = store.latest_forecast(granularity="daily")
    capacity = {"tam_thanh": catalogue.site("tam_thanh").capacity}
    tet = planner.festival_windows(date(2027, 1, 20))
    tet = tet[tet["festival_id"] == "tet"].iloc[0]
    plan = planner.plan_sites(hourly, daily, tet["first_day"], tet["last_day"], capacity, TZ)
    row = plan.iloc[0]
    assert row["basis"] == "daily" and row["peak_occupancy_source"] == "estimate"
    assert tet["first_day"] <= row["peak_day"] <= tet["last_day"]
    january = daily[pd.to_datetime(daily["day_local"]).dt.month == 1]["arrivals"].median()
    assert row["peak_day_arrivals"] > 1.5 * january, (row["peak_day_arrivals"], january)
    assert row["peak_occupancy"] > 0

    week = planner.plan_sites(hourly, daily, date(2027, 1, 21), date(2027, 1, 27), capacity, TZ)
    week = week.iloc[0]
    assert week["basis"] == "hourly" and week["hourly_days"] == 7
    assert 7 <= pd.Timestamp(week["peak_hour"]).hour < 18  # Tam Thanh's opening hours
    assert 0 <= week["max_p_overload"] <= 1
    grid = planner.overload_grid(hourly, date(2027, 1, 21), date(2027, 1, 27), TZ)
    assert grid.shape == (7 * 24, 4) and grid["p_overload"].notna().all()

"""The simulator's realism: festival dates, festival crowds, weekly shapes, the Kỳ Lừa walking
street, Mẫu Sơn frost rushes and their temperature, opening hours, reproducibility.

Unit tests of the visitor engine (no broker); the store test uses a real DuckDB file."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from statistics import median

import numpy as np
import pytest

from ingest.sim_engine import Engine
from ingest.sim_profiles import MINUTES_PER_DAY, load_profiles
from visitorflow.catalogue import load_catalogue
from visitorflow.festivals import festival_days
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

SEED = 20260217
CALENDAR_CSV = PROJECT_ROOT / "data" / "raw" / "lang_son_festival_calendar.csv"
# Rows of the reference calendar and the festival ids the simulator uses for them.
REFERENCE_ROWS = {
    "Tết Nguyên Đán": "tet",
    "Lễ hội Lồng Tồng (xuống đồng)": "long_tong",
    "Lễ hội Chùa Tiên": "chua_tien",
    "Lễ hội đền Kỳ Cùng – đền Tả Phủ (incl. hội đầu pháo Kỳ Lừa on 27/1)": "ky_cung_ta_phu",
    "Lễ hội đền Bắc Lệ": "bac_le",
    "Giỗ Tổ Hùng Vương": "hung_kings",
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    from visitorflow.settings import load_settings

    settings = load_settings()
    return Engine(load_catalogue(settings.catalogue_path), settings.tz, SEED)


def arrivals(engine: Engine, site_id: str, day: date) -> int:
    site = engine.catalogue.site(site_id)
    return int(engine.site_day(site, day).site_arrivals.sum())


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def test_festival_dates_match_the_reference_calendar() -> None:
    """Every festival's 2025–2027 dates, as the simulator computes them, equal the dates of
    data/raw/lang_son_festival_calendar.csv."""
    computed = festival_days([2025, 2026, 2027])
    checked = 0
    with CALENDAR_CSV.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            fid = REFERENCE_ROWS.get(row["name_vi"])
            if fid is None:
                continue
            for year in (2025, 2026, 2027):
                text = row[f"gregorian_{year}"]
                first, _, last = text.partition("..")
                ours = computed[(computed.festival_id == fid)
                                & (computed.date.map(lambda d: d.year) == year)]
                assert min(ours.date) == date.fromisoformat(first), (fid, year)
                assert max(ours.date) == date.fromisoformat(last or first), (fid, year)
                checked += 1
    assert checked == len(REFERENCE_ROWS) * 3


# Festival day vs the median ordinary day at the same site within ±45 days (no festival, no
# holiday, same lunar phase excluded): the margin each festival must clear, in simulated
# arrivals. Stated margins: the big temple festivals ≥ 3×, Tết peak days ≥ 1.5×.
FESTIVAL_MARGINS = [
    ("chua_tien", "chua_tien", None, 3.0),
    ("den_ky_cung", "ky_cung_ta_phu", 22, 5.0),
    ("den_ta_phu", "ky_cung_ta_phu", 27, 5.0),
    ("ky_lua", "ky_cung_ta_phu", 27, 3.0),
    ("den_bac_le", "bac_le", 20, 3.0),
    ("tam_thanh", "tet", 3, 1.5),
]


@pytest.mark.parametrize("site_id,festival,lunar_day,margin", FESTIVAL_MARGINS)
def test_a_festival_day_is_busier_than_an_ordinary_day(
    engine: Engine, site_id: str, festival: str, lunar_day: int | None, margin: float
) -> None:
    for year in (2025, 2026, 2027):
        fest = festival_days([year])
        special = set(fest.date)
        mine = fest[fest.festival_id == festival]
        if lunar_day is not None:
            mine = mine[mine.lunar_day == lunar_day]
        day = mine.date.iloc[0]
        ordinary = [
            arrivals(engine, site_id, d) for d in days(day - timedelta(days=45),
                                                       day + timedelta(days=46))
            if d not in special and abs((d - day).days) > 10
            and engine.context(d).national_holiday is None
            and engine.context(d).tet_phase is None and d.weekday() == day.weekday()
        ]
        busy = arrivals(engine, site_id, day)
        assert busy >= margin * median(ordinary), (site_id, festival, day, busy, ordinary)


def test_processions_at_noon_on_22_and_27(engine: Engine) -> None:
    fest = festival_days([2026])
    kc = fest[(fest.festival_id == "ky_cung_ta_phu")]
    for lunar_day in (22, 27):
        day = kc[kc.lunar_day == lunar_day].date.iloc[0]
        per_min = engine.site_day(engine.catalogue.site("den_ky_cung"), day).site_arrivals
        assert 11 * 60 <= int(np.argmax(per_min)) <= 13 * 60
    scramble = kc[kc.lunar_day == 27].date.iloc[0]
    ky_lua = engine.site_day(engine.catalogue.site("ky_lua"), scramble).site_arrivals
    assert 11 * 60 <= int(np.argmax(ky_lua)) <= 14 * 60
    assert ky_lua.sum() > 15000


def test_walking_street_three_to_six_thousand_on_friday_and_saturday(engine: Engine) -> None:
    site = engine.catalogue.site("ky_lua")
    nights = []
    for d in days(date(2025, 1, 1), date(2026, 1, 1)):
        evening = int(engine.site_day(site, d).site_arrivals[18 * 60:].sum())
        if d.weekday() in (4, 5):
            nights.append(evening)
        else:
            assert evening == 0, d
    assert len(nights) == 104
    # Poisson draws around a night's crowd drawn from 3,000–6,000 (plus market stragglers).
    assert min(nights) >= 2800 and max(nights) <= 6300
    assert 4000 <= float(np.mean(nights)) <= 5000


def test_border_gates_busiest_on_weekdays_leisure_sites_at_weekends(engine: Engine) -> None:
    year = [d for d in days(date(2025, 3, 1), date(2025, 12, 1))
            if engine.context(d).national_holiday is None and engine.context(d).tet_phase is None]
    for site_id, busier in (("huu_nghi", "weekday"), ("tan_thanh", "weekday"),
                            ("dong_dang", "weekday"), ("tam_thanh", "weekend"),
                            ("mau_son", "weekend")):
        weekday = np.mean([arrivals(engine, site_id, d) for d in year if d.weekday() < 5])
        weekend = np.mean([arrivals(engine, site_id, d) for d in year if d.weekday() >= 5])
        ratio = weekday / weekend if busier == "weekday" else weekend / weekday
        assert ratio > 1.3, (site_id, weekday, weekend)


def test_mau_son_frost_rushes_follow_the_cold(engine: Engine, settings: Settings) -> None:
    model = engine.model
    site = engine.catalogue.site("mau_son")
    frost, mild = [], []
    for d in days(date(2024, 1, 1), date(2027, 1, 1)):
        tmin = float(model.temperature_day(d).min())
        extra = model.frost_extra(d)
        if extra > 0:
            # Cold snaps come with the winter monsoon: late December to February (a snap
            # late in February may linger into the first days of March).
            assert d.month in (12, 1, 2) or (d.month == 3 and d.day <= 7), d
            assert d.month != 12 or d.day >= 20, d
            frost.append((d, tmin, arrivals(engine, "mau_son", d)))
        elif d.month in (1, 2) and d.weekday() < 5:
            mild.append(arrivals(engine, "mau_son", d))
    assert 3 <= len(frost) <= 90  # a few frost days every winter, not every winter day
    assert -8 < min(t for _, t, _ in frost) < 0.5
    # A frost day draws well over an ordinary winter weekday (thousands up one road).
    assert median(a for _, _, a in frost) > median(mild) + 1000
    # Frost-day crowds come early to see the ice: busiest before noon.
    d0 = frost[0][0]
    curve = engine.site_day(site, d0).site_arrivals
    assert int(np.argmax(curve)) < 12 * 60
    # The series that drives it is stored for forecasts, as 'simulated'.
    store = Store.from_settings(settings)
    store.initialise()
    frame = model.temperature_frame(d0, d0 + timedelta(days=3))
    assert store.write_temperature(frame) == 72
    stored = store.temperature("mau_son", frame.ts_utc.min(), frame.ts_utc.max()
                               + timedelta(hours=1), source="simulated")
    assert len(stored) == 72
    assert stored.temp_c.min() == pytest.approx(frame.temp_c.min())


def test_arrivals_only_while_open_and_occupancy_consistent(engine: Engine) -> None:
    for d in days(date(2026, 2, 16), date(2026, 2, 23)) + [date(2026, 7, 3)]:
        for site in engine.catalogue.sites:
            sd = engine.site_day(site, d)
            mask = engine.model.open_mask(site, d)
            assert not sd.site_arrivals[~mask].any(), (site.id, d)
            occupancy = sd.occupancy
            assert occupancy.min() >= 0
            if not mask[-1]:  # closed by midnight: everyone has left
                assert occupancy[-1] == 0, (site.id, d)


def test_a_day_is_the_same_whatever_the_run_started_with() -> None:
    """Backfill, live and accelerated runs see the same day: it depends on the seed only."""
    from visitorflow.settings import load_settings

    settings = load_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    site = catalogue.site("mau_son")  # open all night: visitors carry over midnight
    direct = Engine(catalogue, settings.tz, SEED).site_day(site, date(2026, 1, 10))
    walker = Engine(catalogue, settings.tz, SEED)
    for d in days(date(2026, 1, 5), date(2026, 1, 11)):
        walked = walker.site_day(site, d)
    assert np.array_equal(direct.arrivals, walked.arrivals)
    assert np.array_equal(direct.departures, walked.departures)
    assert direct.occupancy_start == walked.occupancy_start > 0
    other = Engine(catalogue, settings.tz, SEED + 1).site_day(site, date(2026, 1, 10))
    assert not np.array_equal(direct.arrivals, other.arrivals)


def test_every_site_has_a_profile_and_gate_weights_name_real_gates() -> None:
    from visitorflow.settings import load_settings

    catalogue = load_catalogue(load_settings().catalogue_path)
    profiles = load_profiles()
    assert set(profiles.sites) == {s.id for s in catalogue.sites}
    for site in catalogue.sites:
        weights = profiles.sites[site.id].gates
        if weights:
            assert set(weights) == {g.id for g in site.gates}, site.id
    assert MINUTES_PER_DAY == 1440

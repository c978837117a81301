"""The lunar festival calendar, computed with Vietnamese rules and checked against
holidays (VN) and the dates in the reference calendar."""

from __future__ import annotations

from datetime import date

import holidays
import pytest

from visitorflow.festivals import festival_days, load_festivals, lunar_to_solar


@pytest.mark.parametrize("year", range(2000, 2051))
def test_tet_matches_holidays_vn(year: int) -> None:
    vn = holidays.country_holidays("VN", years=year)
    tet = next(d for d, name in vn.items() if name == "Lunar New Year")
    assert lunar_to_solar(1, 1, year) == tet


def test_vietnamese_not_chinese_calendar_in_2030() -> None:
    # Chinese calendar: 3 Feb 2030; Vietnam (UTC+7) celebrates Tết on 2 Feb 2030.
    assert lunar_to_solar(1, 1, 2030) == date(2030, 2, 2)


def test_reference_calendar_dates() -> None:
    """Dates from data/raw/lang_son_festival_calendar.csv (2025–2027)."""
    days = festival_days([2025, 2026, 2027])
    first = days.groupby(["festival_id", days["date"].map(lambda d: d.year)])["date"].min()
    assert first[("ky_cung_ta_phu", 2026)] == date(2026, 3, 10)
    assert first[("ky_cung_ta_phu", 2025)] == date(2025, 2, 19)
    assert first[("long_tong", 2027)] == date(2027, 2, 9)
    assert first[("chua_tien", 2026)] == date(2026, 3, 6)
    assert first[("bac_le", 2026)] == date(2026, 10, 27)
    assert first[("hung_kings", 2026)] == date(2026, 4, 26)
    kc = days[(days.festival_id == "ky_cung_ta_phu") & (days.is_peak)]
    assert sorted(kc["lunar_day"].unique()) == [22, 27]


def test_every_festival_site_is_in_the_catalogue(settings) -> None:
    from visitorflow.catalogue import load_catalogue

    ids = {s.id for s in load_catalogue(settings.catalogue_path).sites}
    for fest in load_festivals():
        assert set(fest.sites) <= ids, fest.id

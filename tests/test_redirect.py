"""Redirect advice (visitorflow/redirect.py): the travel matrix, the ranking by predicted load at
arrival, the copyable message in three languages, and the store wrapper on a real store."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.redirect_support import write_hourly_run
from visitorflow import redirect as vr
from visitorflow.alerts import site_thresholds
from visitorflow.catalogue import LANGUAGES, load_catalogue
from visitorflow.contract import Reading
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store

CATALOGUE = load_catalogue(PROJECT_ROOT / "data" / "sites.yaml")
MATRIX = vr.load_travel_matrix(PROJECT_ROOT / "data" / "travel_matrix.csv")
RAW_MATRIX = PROJECT_ROOT / "data" / "raw" / "travel_matrix.csv"
# Saturday 21 Nov 2026, 10:00 in Lạng Sơn: every site is open.
NOW = datetime(2026, 11, 21, 3, 0)
NO_LIVE = pd.DataFrame({"site_id": [s.id for s in CATALOGUE.sites], "occupancy": None})


def _settings(settings: Settings, **redirect: object) -> Settings:
    return settings.model_copy(update={"redirect": settings.redirect.model_copy(update=redirect)})


def _forecast(occupancy: dict[str, float], start: datetime, hours: int = 6,
              p: dict[str, float] | None = None) -> pd.DataFrame:
    """Hourly forecast rows: the same occupancy every hour from `start`."""
    return pd.DataFrame([
        {"site_id": site_id, "ts_utc": start + timedelta(hours=h), "is_open": True,
         "occupancy": float(occ), "p_overload": (p or {}).get(site_id, 0.0)}
        for site_id, occ in occupancy.items() for h in range(hours)
    ])


def _rank(settings: Settings, forecast: pd.DataFrame, live: pd.DataFrame = NO_LIVE,
          now: datetime = NOW, site_id: str = "tam_thanh") -> pd.DataFrame:
    thresholds = site_thresholds(CATALOGUE, settings.load, pd.DataFrame())
    return vr.rank_alternatives(site_id, live, forecast, MATRIX, thresholds, CATALOGUE,
                                settings, now)


def _live(occupancy: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"site_id": [s.id for s in CATALOGUE.sites],
                         "occupancy": [occupancy.get(s.id) for s in CATALOGUE.sites]})


# -- travel matrix ---------------------------------------------------------------------------


def test_the_project_matrix_covers_every_pair_of_catalogue_sites() -> None:
    ids = [s.id for s in CATALOGUE.sites]
    pairs = set(zip(MATRIX["from_id"], MATRIX["to_id"], strict=True))
    assert pairs == {(a, b) for a in ids for b in ids if a != b}
    assert (MATRIX["drive_min"] > 0).all() and (MATRIX["road_km"] > 0).all()


def test_raw_point_ids_map_to_catalogue_sites() -> None:
    raw = pd.read_csv(RAW_MATRIX)
    derived = vr.derive_travel_matrix(RAW_MATRIX, CATALOGUE)
    assert "lang_son_city" not in set(derived["from_id"]) | set(derived["to_id"])
    # The catalogue's huu_nghi stands at the Vietnamese-side point: its rows are that point's.
    vn_side = raw[(raw["from_id"] == "huu_nghi_vn_side") & (raw["to_id"] == "dong_dang")]
    cn_side = raw[(raw["from_id"] == "huu_nghi") & (raw["to_id"] == "dong_dang")]
    ours = derived[(derived["from_id"] == "huu_nghi") & (derived["to_id"] == "dong_dang")]
    assert len(ours) == 1
    assert ours["road_km"].item() == vn_side["road_km"].item() != cn_side["road_km"].item()
    assert len(derived) == 17 * 16


def test_a_missing_pair_falls_back_to_the_straight_line_or_is_an_error() -> None:
    gap = MATRIX[~((MATRIX["from_id"] == "tam_thanh") & (MATRIX["to_id"] == "mau_son"))]
    trips = vr.travel_from(gap, CATALOGUE, "tam_thanh").set_index("site_id")
    a, b = CATALOGUE.site("tam_thanh"), CATALOGUE.site("mau_son")
    road_km = vr._haversine_km(a.lat, a.lon, b.lat, b.lon) * 1.4
    assert trips.loc["mau_son", "travel_basis"] == "fallback_haversine_x1.4"
    assert trips.loc["mau_son", "travel_min"] == round(road_km / 40 * 60)
    assert trips.loc["nhi_thanh", "travel_basis"] == "haversine_x1.4"  # from the matrix
    with pytest.raises(vr.RedirectError, match="tam_thanh → mau_son"):
        vr.travel_from(gap, CATALOGUE, "tam_thanh", allow_fallback=False)


def test_a_bad_matrix_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(vr.RedirectError, match="set redirect.matrix_path"):
        vr.load_travel_matrix(tmp_path / "missing.csv")
    (tmp_path / "m.csv").write_text("from_id,to_id,road_km\na,b,1\n", encoding="utf-8")
    with pytest.raises(vr.RedirectError, match="drive_min"):
        vr.load_travel_matrix(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text(
        "from_id,to_id,road_km,drive_min,basis\na,b,1,x,sourced\n", encoding="utf-8")
    with pytest.raises(vr.RedirectError, match="a → b"):
        vr.load_travel_matrix(tmp_path / "m.csv")


# -- ranking ---------------------------------------------------------------------------------


def test_a_site_with_room_ranks_above_a_nearer_one_predicted_to_overload(
    settings: Settings,
) -> None:
    cfg = _settings(settings, alternatives=30)
    near = {"thanh_nha_mac": 160, "nhi_thanh": 225, "nhat_thanh": 10}  # 3 min away each
    calm = {"den_ky_cung": 30, "ky_lua": 600, "dong_dang": 200}  # 7, 6, 24 min
    forecast = _forecast(near | calm, NOW, p={"nhat_thanh": 0.8})
    options = _rank(cfg, forecast)
    by_site = options.set_index("site_id")
    assert by_site.loc["thanh_nha_mac", "predicted_level"] == "overload"
    assert by_site.loc["nhi_thanh", "predicted_level"] == "crowded"
    # Normal occupancy but a forecast alert's probability of overload: no room either.
    assert by_site.loc["nhat_thanh", "predicted_level"] == "normal"
    assert not by_site.loc[["thanh_nha_mac", "nhi_thanh", "nhat_thanh"], "has_room"].any()
    assert by_site.loc[list(calm), "has_room"].all()
    assert list(options["site_id"][:3]) == ["ky_lua", "den_ky_cung", "dong_dang"]  # nearer first
    assert by_site.loc["den_ky_cung", "rank"] < by_site.loc["thanh_nha_mac", "rank"]
    assert by_site.loc["dong_dang", "rank"] < by_site.loc["nhi_thanh", "rank"]
    assert list(options["rank"]) == list(range(1, len(options) + 1))
    assert by_site.loc["dong_dang", "arrival_utc"] == NOW + timedelta(minutes=24)
    assert by_site.loc["dong_dang", "predicted_share"] == pytest.approx(200 / 2000)
    # At most `alternatives` rows, the best kept.
    assert list(_rank(_settings(settings, alternatives=2), forecast)["site_id"]) == [
        "ky_lua", "den_ky_cung"]


def test_sites_closed_at_arrival_or_closing_soon_are_not_proposed(settings: Settings) -> None:
    cfg = _settings(settings, alternatives=30)
    # 22:00 on a Saturday: only the walking street (till midnight) and the always-open sites.
    night = _rank(cfg, pd.DataFrame(), _live({}), now=datetime(2026, 11, 21, 15, 0))
    assert set(night["site_id"]) == {"ky_lua", "dong_dang", "mau_son"}
    assert night["is_open"].all()
    # 17:45: the caves close at 18:00, within min_open_min (30) of arriving; temples at 20:00.
    evening = _rank(cfg, pd.DataFrame(), now=datetime(2026, 11, 21, 10, 45))
    assert {"nhi_thanh", "nhat_thanh", "chua_tien"}.isdisjoint(evening["site_id"])
    assert {"den_ky_cung", "den_ta_phu"} <= set(evening["site_id"])
    relaxed = _rank(_settings(cfg, min_open_min=0), pd.DataFrame(),
                    now=datetime(2026, 11, 21, 10, 45))
    assert "nhi_thanh" in set(relaxed["site_id"])


def test_sites_beyond_the_longest_trip_are_left_out(settings: Settings) -> None:
    options = _rank(_settings(settings, alternatives=30, max_travel_min=10), pd.DataFrame())
    assert len(options) and (options["travel_min"] <= 10).all()
    assert "dong_dang" not in set(options["site_id"])


def test_forecast_nudged_by_live_occupancy_live_alone_or_no_data(settings: Settings) -> None:
    cfg = _settings(settings, alternatives=30, live_blend_min=60)
    now = NOW + timedelta(minutes=20)  # 03:20
    forecast = pd.concat([
        # Đồng Đăng, 24 min away: arrival 03:44, in the 03:00 hour (occupancy 600 at its end).
        pd.DataFrame({"site_id": "dong_dang", "ts_utc": [NOW - timedelta(hours=1), NOW],
                      "is_open": True, "occupancy": [400.0, 600.0], "p_overload": [0.0, 0.1]}),
        # Mẫu Sơn, 60 min away: the nudge has faded out, the forecast stands.
        _forecast({"mau_son": 900}, NOW, hours=3),
    ])
    live = _live({"dong_dang": 800, "mau_son": 2500, "den_ky_cung": 100})
    by_site = _rank(cfg, forecast, live, now=now).set_index("site_id")

    # The current hour's forecast is 600; live 800 is 200 above it, added with weight
    # 1 − 24/60 = 0.6.
    dong_dang = by_site.loc["dong_dang"]
    assert dong_dang["basis"] == "forecast" and dong_dang["live_weight"] == pytest.approx(0.6)
    assert dong_dang["predicted_occupancy"] == pytest.approx(600 + 0.6 * (800 - 600))
    assert dong_dang["p_overload"] == pytest.approx(0.1)
    mau_son = by_site.loc["mau_son"]
    assert (mau_son["basis"], mau_son["live_weight"]) == ("forecast", 0.0)
    assert mau_son["predicted_occupancy"] == 900 and mau_son["predicted_level"] == "normal"
    # No forecast for the arrival hour: the live occupancy stands in.
    ky_cung = by_site.loc["den_ky_cung"]
    assert (ky_cung["basis"], ky_cung["predicted_occupancy"]) == ("live", 100)
    assert pd.isna(ky_cung["p_overload"]) and ky_cung["has_room"]
    # Neither: no data, never proposed as having room, ranked after those with data.
    chua_tien = by_site.loc["chua_tien"]
    assert (chua_tien["basis"], chua_tien["predicted_level"]) == ("none", "no_data")
    assert not chua_tien["has_room"]
    assert chua_tien["rank"] > by_site.loc[by_site["basis"] != "none", "rank"].max()

    # Without the nudge the forecast alone decides.
    plain = _rank(_settings(cfg, live_blend_min=0), forecast, live, now=now).set_index("site_id")
    assert plain.loc["dong_dang", "predicted_occupancy"] == 600
    # Past hours play no part: the forecast from the current hour on gives the same answer
    # (the public page passes it so).
    ahead = forecast[pd.to_datetime(forecast["ts_utc"]) >= pd.Timestamp(now).floor("h")]
    pd.testing.assert_frame_equal(_rank(cfg, ahead, live, now=now), _rank(cfg, forecast, live,
                                                                         now=now))


# -- message ---------------------------------------------------------------------------------


def test_message_in_every_language_names_the_sites_in_that_language(settings: Settings) -> None:
    options = _rank(settings, _forecast({"thanh_nha_mac": 160, "den_ky_cung": 30,
                                         "ky_lua": 600}, NOW))
    top = list(options.loc[options["has_room"], "site_id"][:2])
    assert top == ["ky_lua", "den_ky_cung"]
    messages = {lang: vr.redirect_message(CATALOGUE, "tam_thanh", options, lang)
                for lang in LANGUAGES}
    for lang, text in messages.items():
        for site_id in ["tam_thanh", *top]:
            assert CATALOGUE.site(site_id).name.get(lang) in text, (lang, site_id, text)
        assert CATALOGUE.site("thanh_nha_mac").name.get(lang) not in text  # no room
        others = [lg for lg in LANGUAGES if lg != lang]
        assert not any(CATALOGUE.site("den_ky_cung").name.get(lg) in text for lg in others)
    # The chosen site is named, never called busy: the page shows how busy it really is.
    assert messages["en"] == ("Sites near Tam Thanh Cave with room for visitors: "
                              f"{CATALOGUE.site('ky_lua').name.en} (about 6 min by road), "
                              f"{CATALOGUE.site('den_ky_cung').name.en} (about 7 min by road).")
    assert "đông" not in messages["vi"] and "较多" not in messages["zh"]
    assert "6 phút" in messages["vi"] and "约6分钟" in messages["zh"]
    one = vr.redirect_message(CATALOGUE, "tam_thanh", options, "en", limit=1)
    assert CATALOGUE.site("den_ky_cung").name.en not in one


def test_message_when_no_site_has_room(settings: Settings) -> None:
    full = _rank(settings, _forecast({s.id: 10_000 for s in CATALOGUE.sites}, NOW))
    assert len(full) and not full["has_room"].any()
    for lang in LANGUAGES:
        text = vr.redirect_message(CATALOGUE, "tam_thanh", full, lang)
        assert text == vr.MESSAGES[lang]["none"].format(
            site=CATALOGUE.site("tam_thanh").name.get(lang))
    empty = vr.redirect_message(CATALOGUE, "tam_thanh", pd.DataFrame(columns=vr.OPTION_COLUMNS),
                                "vi")
    assert empty == vr.MESSAGES["vi"]["none"].format(site=CATALOGUE.site("tam_thanh").name.vi)
    with pytest.raises(ValueError, match="language"):
        vr.redirect_message(CATALOGUE, "tam_thanh", full, "fr")


# -- the store wrapper on a real store -------------------------------------------------------


def test_redirect_options_reads_live_forecast_and_thresholds_from_the_store(
    settings: Settings,
) -> None:
    store = Store.from_settings(settings)
    store.initialise()
    minute = NOW - timedelta(minutes=1)
    store.write_batch([
        Reading("den_ky_cung", "main", "lsn-den_ky_cung-main", 1, minute, 60, 290, 20),
        Reading("ky_lua", "north", "lsn-ky_lua-north", 1, minute, 60, 100, 0),
    ], NOW)
    hours = _forecast({"den_ky_cung": 280, "nhi_thanh": 50, "dong_dang": 500}, NOW, hours=4)
    write_hourly_run(store, CATALOGUE, hours.drop(columns="is_open"), NOW)
    # Đồng Đăng's own thresholds in the store: 500 / 2000 = 0.25 is crowded there.
    store.set_alert_thresholds("dong_dang", 0.1, 0.2, 0.3, "test", NOW)
    cfg = _settings(settings, alternatives=30)

    options = vr.redirect_options(store, CATALOGUE, cfg, "tam_thanh", NOW)
    by_site = options.set_index("site_id")
    assert by_site.loc["den_ky_cung", "basis"] == "forecast"  # live 270 nudges 280 down a bit
    assert by_site.loc["den_ky_cung", "predicted_level"] == "crowded"
    assert by_site.loc["nhi_thanh", "has_room"] and by_site.loc["nhi_thanh", "basis"] == "forecast"
    assert by_site.loc["ky_lua", "basis"] == "live"
    assert by_site.loc["ky_lua", "predicted_occupancy"] == 100
    assert by_site.loc["dong_dang", "predicted_level"] == "crowded"
    assert not by_site.loc["dong_dang", "has_room"]
    assert list(options.loc[options["has_room"], "site_id"][:2]) == ["nhi_thanh", "ky_lua"]
    with pytest.raises(vr.RedirectError, match="unknown site"):
        vr.redirect_options(store, CATALOGUE, cfg, "nowhere", NOW)
    moved = _settings(cfg, matrix_path=settings.store.path.parent / "none.csv")
    with pytest.raises(vr.RedirectError, match="travel matrix not found"):
        vr.redirect_options(store, CATALOGUE, moved, "tam_thanh", NOW)


def test_busiest_site_is_the_highest_share_with_data() -> None:
    live = pd.DataFrame({"site_id": ["a", "b", "c"], "load_share": [0.5, None, 0.9]})
    assert vr.busiest_site(live) == "c"
    assert vr.busiest_site(live.assign(load_share=None)) is None

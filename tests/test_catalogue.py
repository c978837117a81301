"""The site catalogue in data/: complete, inside the province, and validated with messages
that name the site and field."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from shapely.geometry import Point, shape

from visitorflow.catalogue import CatalogueError, load_catalogue
from visitorflow.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / "data"
REQUIRED = {
    "tam_thanh", "nhi_thanh", "nhat_thanh", "thanh_nha_mac", "den_ky_cung", "den_ta_phu",
    "ky_lua", "chua_tien", "mau_son", "huu_nghi", "dong_dang", "tan_thanh", "bac_son_na_lay",
    "quynh_son", "huu_lien", "den_bac_le", "ai_chi_lang",
}


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(DATA / "sites.yaml")


def test_catalogue_has_the_required_sites_in_three_languages(catalogue) -> None:
    assert {s.id for s in catalogue.sites} >= REQUIRED
    assert len(catalogue.sites) >= 15
    for site in catalogue.sites:
        assert site.name.vi and site.name.en and site.name.zh
        assert site.gates and all(g.counter_id for g in site.gates)


def test_every_site_lies_inside_the_province(catalogue) -> None:
    boundary = json.loads((DATA / "boundary.geojson").read_text(encoding="utf-8"))
    province = shape(boundary["features"][0]["geometry"])
    outside = [s.id for s in catalogue.sites if not province.contains(Point(s.lon, s.lat))]
    assert outside == []


def test_opening_hours(catalogue) -> None:
    ky_lua = catalogue.site("ky_lua")
    friday_night = datetime(2026, 11, 20, 21, 0)  # a Friday
    assert ky_lua.is_open(friday_night)
    assert catalogue.site("tam_thanh").is_open(datetime(2026, 11, 18, 10, 0))
    assert not catalogue.site("tam_thanh").is_open(datetime(2026, 11, 18, 3, 0))


def test_raw_reference_data_is_kept_with_provenance() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for name in ("lang_son_sites.csv", "site_capacity.csv", "lang_son_boundary.geojson"):
        assert (DATA / "raw" / name).exists()
        assert name in readme
    assert "gis.chinhphu.vn" in readme


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_bad_catalogue_names_site_and_field(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "sites.yaml").read_text(encoding="utf-8"))
    data["sites"][1]["capacity"] = -3
    with pytest.raises(CatalogueError, match=r"sites\[nhi_thanh\]\.capacity"):
        load_catalogue(_write(tmp_path, data))


def test_duplicate_counter_ids_rejected(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "sites.yaml").read_text(encoding="utf-8"))
    data["sites"][1]["gates"][0]["counter_id"] = data["sites"][0]["gates"][0]["counter_id"]
    with pytest.raises(CatalogueError, match="counter ids repeat"):
        load_catalogue(_write(tmp_path, data))


def test_missing_catalogue_says_where(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="not found"):
        load_catalogue(tmp_path / "nope.yaml")

"""`python -m public.qr`: every QR code, as PNG and on the printed A4 sheet, decodes (with
zxing-cpp, a reader we did not write) to its site's public address; the sheet carries the
names in Vietnamese, English and Chinese."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import zxingcpp
from PIL import Image

from visitorflow.catalogue import load_catalogue
from visitorflow.settings import PROJECT_ROOT, Settings

BASE_URL = "https://visit.langson.example/p"


def _decode(image: Image.Image) -> list[str]:
    return [code.text for code in zxingcpp.read_barcodes(image)
            if code.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.fixture(scope="module")
def sheet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qr")
    done = subprocess.run(
        [sys.executable, "-m", "public.qr", "--out", str(out), "--base-url", BASE_URL,
         "--no-progress"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{BASE_URL}/site/<site_id>" in done.stdout
    return out


def test_each_png_decodes_to_its_site_address(sheet_dir: Path, settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    pngs = sorted(sheet_dir.glob("*.png"))
    assert [p.stem for p in pngs] == sorted(s.id for s in catalogue.sites)
    for png in pngs:
        assert _decode(Image.open(png)) == [f"{BASE_URL}/site/{png.stem}"], png.name


def test_the_printed_sheet_has_every_code_and_the_three_names(
    sheet_dir: Path, settings: Settings
) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    pdf = pdfium.PdfDocument(sheet_dir / "qr-sheet.pdf")
    assert len(pdf) == 3  # 17 sites, 6 per A4 page
    width, height = pdf[0].get_size()
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (210, 297)
    decoded: list[str] = []
    text = ""
    for page in pdf:
        # 150 dpi, about what an office printer gives
        decoded += _decode(page.render(scale=150 / 72).to_pil())
        text += page.get_textpage().get_text_range()
    assert sorted(decoded) == sorted(f"{BASE_URL}/site/{s.id}" for s in catalogue.sites)
    for site in catalogue.sites:
        for lang in ("vi", "en", "zh"):
            assert site.name.get(lang) in text, (site.id, lang)


def test_a_missing_font_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "public.qr", "--out", str(tmp_path / "qr"), "--font",
         str(tmp_path / "none.ttc"), "--no-progress"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "apt-get install fonts-noto-cjk" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "qr").exists()  # nothing half-written


def test_the_codes_point_at_the_configured_public_address(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISITORFLOW_PUBLIC__BASE_URL", "https://langson.example/")
    done = subprocess.run(
        [sys.executable, "-m", "public.qr", "--out", str(tmp_path), "--no-progress"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert _decode(Image.open(tmp_path / "mau_son.png")) == [
        "https://langson.example/site/mau_son"]

"""QR codes for the gates: one PNG per site and a printable A4 PDF sheet of them all, each
with the site's name in Vietnamese, English and Chinese, pointing at
`{public.base_url}/site/{site_id}` (the public page of the site).

    python -m public.qr --out DIR [--base-url URL]      (make qr)

The sheet needs a font with Vietnamese and Chinese glyphs: Noto Sans CJK (Debian package
fonts-noto-cjk, installed by `make system-deps-test`), found at run time, or `--font PATH`.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import segno
from fpdf import FPDF
from tqdm import tqdm

from visitorflow.catalogue import CatalogueError, Site, load_catalogue
from visitorflow.settings import SettingsError, get_settings

# Where Debian and Ubuntu put Noto Sans CJK (fonts-noto-cjk); the first found is used.
CJK_FONT_CANDIDATES = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
)
# Face of the collection drawn with Simplified Chinese glyph shapes (as used in China).
CJK_FACE = "Noto Sans CJK SC"
# Error correction M (15 %): survives weather and scratches on a gate sign at a modest size.
QR_ERROR = "m"
# A4 sheet: 2 x 3 labels of 95 x 92 mm, QR 56 mm square (readable from about 50 cm).
PAGE_MARGIN_MM = 10.0
COLUMNS, ROWS = 2, 3
CELL_W_MM, CELL_H_MM = 95.0, 92.0
QR_MM = 56.0


class QrError(RuntimeError):
    """The QR sheet cannot be made as asked; the message says what to fix."""


def site_url(base_url: str, site_id: str) -> str:
    return f"{base_url.rstrip('/')}/site/{site_id}"


def qr_png(url: str, scale: int = 10) -> bytes:
    """A QR code of `url` as PNG bytes (quiet zone of 4 modules, as the standard asks)."""
    out = io.BytesIO()
    segno.make(url, error=QR_ERROR, micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def find_cjk_font(explicit: Path | None = None) -> tuple[Path, int]:
    """The font file and the face index within it for the sheet's names."""
    candidates = [explicit] if explicit else list(CJK_FONT_CANDIDATES)
    for path in candidates:
        if path.exists():
            return path, _face_index(path)
    looked = ", ".join(str(p) for p in candidates)
    raise QrError(
        f"no font with Chinese and Vietnamese glyphs found (looked for {looked}). Install "
        "it with `apt-get install fonts-noto-cjk` (or `make system-deps-test`), or pass "
        "--font PATH to a .ttf/.otf/.ttc that has them."
    )


def _face_index(path: Path) -> int:
    """Index of the Simplified Chinese face in a font collection (0 for a single font)."""
    if path.suffix.lower() != ".ttc":
        return 0
    from fontTools.ttLib import TTCollection

    with TTCollection(str(path), lazy=True) as collection:
        for i, font in enumerate(collection.fonts):
            if font["name"].getDebugName(4) == CJK_FACE:
                return i
    return 0


def write_sheet(sites: list[Site], base_url: str, path: Path, font: tuple[Path, int]) -> int:
    """The printable A4 PDF: each site's QR code, its three names and its address, with
    dashed cut lines. Returns the number of pages."""
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(False)
    pdf.set_title("Lạng Sơn — QR codes of the public visitor pages")
    pdf.add_font("cjk", fname=str(font[0]), collection_font_number=font[1])
    per_page = COLUMNS * ROWS
    for i, site in enumerate(sites):
        if i % per_page == 0:
            pdf.add_page()
        col, row = i % COLUMNS, (i % per_page) // COLUMNS
        x = PAGE_MARGIN_MM + col * CELL_W_MM
        y = PAGE_MARGIN_MM + row * CELL_H_MM
        pdf.set_draw_color(170)
        pdf.set_dash_pattern(dash=1.5, gap=1.5)
        pdf.rect(x, y, CELL_W_MM, CELL_H_MM)
        pdf.set_dash_pattern()
        url = site_url(base_url, site.id)
        pdf.image(io.BytesIO(qr_png(url)), x=x + (CELL_W_MM - QR_MM) / 2, y=y + 4,
                  w=QR_MM, h=QR_MM)
        pdf.set_xy(x + 2, y + 6 + QR_MM)
        for lang, size in (("vi", 13), ("en", 11), ("zh", 12)):
            pdf.set_font("cjk", size=size)
            pdf.set_x(x + 2)
            pdf.cell(CELL_W_MM - 4, size * 0.45, site.name.get(lang), align="C",
                     new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=7)
        pdf.set_text_color(90)
        pdf.set_x(x + 2)
        pdf.cell(CELL_W_MM - 4, 4, url, align="C")
        pdf.set_text_color(0)
    pdf.output(str(path))
    return pdf.pages_count


def make_codes(out: Path, base_url: str, font: Path | None = None,
               progress: bool = True) -> list[Path]:
    """Write `<site_id>.png` per catalogue site and `qr-sheet.pdf` into `out`."""
    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    cjk = find_cjk_font(font)  # before any file is written: fail early and clearly
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for site in tqdm(catalogue.sites, desc="QR codes", unit="site", disable=not progress):
        png = out / f"{site.id}.png"
        png.write_bytes(qr_png(site_url(base_url, site.id)))
        written.append(png)
    sheet = out / "qr-sheet.pdf"
    write_sheet(list(catalogue.sites), base_url, sheet, cjk)
    return [*written, sheet]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and PDF")
    parser.add_argument("--base-url", help="public address (default: public.base_url)")
    parser.add_argument("--font", type=Path, help="font with Vietnamese and Chinese glyphs")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        base_url = args.base_url or get_settings().public.base_url
        if not base_url.startswith(("http://", "https://")):
            raise QrError(f"--base-url must start with http:// or https://, not {base_url!r}")
        files = make_codes(args.out, base_url, args.font, progress=not args.no_progress)
    except (QrError, SettingsError, CatalogueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{len(files) - 1} QR codes and the sheet {files[-1]} point at "
          f"{site_url(base_url, '<site_id>')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

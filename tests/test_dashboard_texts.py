"""The dashboard's one translation table: every string in the three languages, with the same
placeholders, and every key a page asks for present in its section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEXTS = yaml.safe_load((ROOT / "dashboard" / "texts.yaml").read_text(encoding="utf-8"))
LANGS = ("vi", "en", "zh")
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def _entries():
    for page, section in TEXTS.items():
        for key, translations in section.items():
            yield pytest.param(page, key, translations, id=f"{page}.{key}")


@pytest.mark.parametrize(("page", "key", "translations"), list(_entries()))
def test_every_string_has_three_languages_with_the_same_placeholders(page, key, translations):
    assert set(translations) == set(LANGS), f"{page}.{key}: languages {sorted(translations)}"
    assert all(translations[lang] for lang in LANGS), f"{page}.{key}: an empty translation"
    if all(isinstance(translations[lang], str) for lang in LANGS):
        fields = {lang: sorted(PLACEHOLDER.findall(translations[lang])) for lang in LANGS}
        assert fields["vi"] == fields["en"] == fields["zh"], f"{page}.{key}: {fields}"


@pytest.mark.parametrize("view", sorted((ROOT / "dashboard" / "views").glob("*.py")),
                         ids=lambda p: p.stem)
def test_every_key_a_page_uses_is_in_its_section(view):
    source = view.read_text(encoding="utf-8")
    section = re.search(r'TEXT = page_texts\("(\w+)"\)', source)
    assert section, f"{view.name} does not take its strings from texts.yaml"
    used = set(re.findall(r'\bT\["(\w+)"\]', source)) | set(
        re.findall(r'TEXT\[lang\]\["(\w+)"\]', source))
    missing = used - set(TEXTS[section.group(1)])
    assert not missing, f"{view.name} uses keys missing from texts.yaml: {sorted(missing)}"

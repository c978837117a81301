"""The public pages as server-side HTML: no script, inline CSS, a few kilobytes, readable on
a small phone over a weak mountain 4G link. Rendered from the same status dicts as the JSON
feed (`public.status`), in Vietnamese, English or Chinese (`public/texts.yaml`)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any

import yaml

from visitorflow.catalogue import LANGUAGES

TEXTS_PATH = Path(__file__).with_name("texts.yaml")
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English", "zh": "中文"}

CSS = (
    "body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;max-width:34em;padding:.6em;"
    "color:#1d2329;background:#f6f7f5}"
    "h1{font-size:1.45em;margin:.3em 0}h2{font-size:1.05em;margin:1.1em 0 .3em}"
    "h3{font-size:.95em;margin:.6em 0 .2em;color:#555}"
    "nav{text-align:right;font-size:.9em}nav a{margin-left:.6em}nav b{margin-left:.6em}"
    ".now{background:#fff;border-left:.5em solid;padding:.5em .8em;border-radius:.3em}"
    ".level{font-size:1.9em;font-weight:700}.dot{display:inline-block;width:.8em;height:.8em;"
    "border-radius:50%;margin-right:.35em;vertical-align:baseline}"
    ".age,footer{color:#555;font-size:.85em}.best{font-size:1.2em;font-weight:600}"
    "ul{padding-left:1.1em}li{margin:.3em 0}"
    ".hours{display:flex;flex-wrap:wrap;gap:.25em;padding:0;list-style:none}"
    ".hours li{background:#fff;border-radius:.3em;padding:.15em .4em;margin:0;font-size:.85em}"
    "a{color:#0b57a4}"
)


@lru_cache(maxsize=1)
def texts() -> dict[str, dict[str, dict[str, str]]]:
    with TEXTS_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def text(section: str, key: str, lang: str, **values: object) -> str:
    """One string of texts.yaml in `lang`, placeholders filled."""
    return texts()[section][key][lang].format(**values)


def choose_language(query_lang: str | None, accept_language: str | None, default: str) -> str:
    """`?lang=` if it names a language we have; else the first of vi/en/zh in the phone's
    Accept-Language by preference (q-values; zh-CN, zh-TW… count as zh); else `default`."""
    if query_lang in LANGUAGES:
        return query_lang
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else default


def _clock(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%H:%M")


def _level(word: str, colour: str, lang: str) -> str:
    return (f'<span class="dot" style="background:{colour}"></span>'
            f'{escape(text("levels", word, lang))}')


def _document(lang: str, title: str, body: str, switch_path: str) -> str:
    switch = "".join(
        f"<b>{LANGUAGE_NAMES[code]}</b>" if code == lang else
        f'<a href="{switch_path}?lang={code}" hreflang="{code}" lang="{code}">'
        f"{LANGUAGE_NAMES[code]}</a>"
        for code in LANGUAGES
    )
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><nav>{switch}</nav>{body}</body></html>"
    )


def _data_age(status: dict[str, Any], lang: str) -> str:
    if status["data_time"] is None:
        return text("page", "no_data_ever", lang)
    when = _clock(status["data_time"])
    if status["level"] == "no_data":
        return text("page", "no_data_since", lang, time=when)
    return text("page", "updated", lang, time=when, minutes=status["data_age_s"] // 60)


def _day_label(iso: str, today: str, lang: str) -> str:
    return text("page", "today" if iso[:10] == today else "tomorrow", lang)


def site_page(status: dict[str, Any], lang: str) -> str:
    """The page behind a site's QR code."""
    name = status["name"][lang]
    level_word = text("levels", status["level"], lang)
    today = status["generated"][:10]
    counts = ""
    if status.get("occupancy") is not None:
        counts = "<p>" + escape(text("page", "people", lang, occupancy=status["occupancy"],
                                     capacity=status["capacity"])) + "</p>"
    best = status["best_time"]
    if best:
        when = text("page", "best_time_value", lang, day=_day_label(best["start"], today, lang),
                    start=_clock(best["start"]), end=_clock(best["end"]))
        best_level = _level(best["level"], _colour(status, best), lang)
        best_html = f'<p class="best" id="best">{escape(when)} · {best_level}</p>'
    else:
        best_html = f'<p id="best">{escape(text("page", "no_forecast", lang))}</p>'
    if status["nearby"]:
        items = ""
        for n in status["nearby"]:
            trip = text("page", "travel", lang, minutes=n["travel_min"],
                        time=_clock(n["arrival"]), level=text("levels", n["level"], lang))
            items += (f'<li data-site="{n["site_id"]}"><a href="/site/{n["site_id"]}?lang={lang}">'
                      f'{escape(n["name"][lang])}</a><br><small>{escape(trip)}</small></li>')
        nearby = f'<ul id="nearby">{items}</ul>'
    else:
        nearby = f'<p id="nearby">{escape(text("page", "nearby_none", lang))}</p>'
    days = ""
    for day in sorted({h["start"][:10] for h in status["hours"]}):
        chips = "".join(
            f'<li><time datetime="{h["start"]}">{_clock(h["start"])}</time> '
            f'{_level(h["level"], h["colour"], lang)}</li>'
            for h in status["hours"] if h["start"][:10] == day
        )
        days += f'<h3>{escape(_day_label(day, today, lang))}</h3><ol class="hours">{chips}</ol>'
    forecast = (text("page", "forecast_from", lang, time=_clock(status["forecast_time"]))
                + " · " if status["forecast_time"] else "")
    body = (
        f"<h1>{escape(name)}</h1>"
        f'<section class="now" style="border-color:{status["colour"]}">'
        f'{escape(text("page", "now", lang))}'
        f'<div class="level" id="level" data-level="{status["level"]}">'
        f'{_level(status["level"], status["colour"], lang)}</div>{counts}'
        f'<p class="age" id="age">{escape(_data_age(status, lang))}</p></section>'
        f'<h2>{escape(text("page", "best_time", lang))}</h2>{best_html}'
        f'<h2>{escape(text("page", "nearby", lang))}</h2>{nearby}'
        f'<h2>{escape(text("page", "expected", lang))}</h2>'
        f'<div id="hours">{days or escape(text("page", "no_forecast", lang))}</div>'
        f'<footer><p>{escape(forecast + text("page", "times_note", lang))}</p>'
        f'<p><a href="/?lang={lang}">{escape(text("page", "all_sites", lang))}</a></p></footer>'
    )
    return _document(lang, f"{name} — {level_word}", body, f"/site/{status['site_id']}")


def _colour(status: dict[str, Any], best: dict[str, Any]) -> str:
    return next(h["colour"] for h in status["hours"] if h["start"] == best["start"])


def index_page(statuses: list[dict[str, Any]], lang: str) -> str:
    """Every site with its level now, linking to its page."""
    items = "".join(
        f'<li data-site="{s["site_id"]}"><a href="/site/{s["site_id"]}?lang={lang}">'
        f'{escape(s["name"][lang])}</a> — {_level(s["level"], s["colour"], lang)}</li>'
        for s in statuses
    )
    title = text("page", "index_title", lang)
    return _document(lang, title, f"<h1>{escape(title)}</h1><ul>{items}</ul>", "/")


def message_page(key: str, lang: str) -> str:
    """A short page saying only what went wrong (unknown site, figures unavailable)."""
    message = text("page", key, lang)
    body = (f"<h1>{escape(message)}</h1>"
            f'<p><a href="/?lang={lang}">{escape(text("page", "all_sites", lang))}</a></p>')
    return _document(lang, message, body, "/")

"""Holidays for Prophet per site: Vietnam's national holidays plus the Lạng Sơn festivals that
concern the site (data/festivals.yaml: `sites: []` means province-wide), with windows.

A DataFrame out in Prophet's holidays format: holiday, ds, lower_window, upper_window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pandas as pd

from visitorflow.festivals import festival_days, national_holidays


def site_festival_days(site_id: str, years: Iterable[int]) -> pd.DataFrame:
    """The festival days (visitorflow.festivals.festival_days rows) that concern a site."""
    days = festival_days(list(years))
    if days.empty:
        return days
    concerns = days["sites"].map(lambda sites: len(sites) == 0 or site_id in sites)
    return days[concerns].reset_index(drop=True)


def site_holidays(
    site_id: str, years: Iterable[int], before_days: int, after_days: int
) -> pd.DataFrame:
    """Prophet holidays for one site: one name per national holiday and per festival, and a
    separate `<festival>_peak` name for the peak days the sources name.

    Windows sit on the edges only (the first day reaches `before_days` back, the last day
    `after_days` forward): every row of a multi-day festival carrying both windows would make
    Prophet's offset features overlap inside the festival and blur the effects."""
    years = sorted(set(years))
    rows: list[dict] = []
    national = national_holidays(years)
    for name, group in national.groupby("name"):
        for day in group["date"]:
            rows.append(_row(f"vn_{holiday_slug(str(name))}", day, before_days, after_days))
    festivals = site_festival_days(site_id, years)
    if not festivals.empty:
        festivals = festivals.assign(year=festivals["date"].map(lambda d: d.year))
        for (fest_id, _), group in festivals.groupby(["festival_id", "year"]):
            dates = sorted(group["date"])
            for day in dates:
                rows.append({
                    "holiday": f"fest_{fest_id}", "ds": pd.Timestamp(day),
                    "lower_window": -before_days if day == dates[0] else 0,
                    "upper_window": after_days if day == dates[-1] else 0,
                })
            for day in sorted(group.loc[group["is_peak"], "date"]):
                rows.append(_row(f"fest_{fest_id}_peak", day, 0, 0))
    frame = pd.DataFrame(rows, columns=["holiday", "ds", "lower_window", "upper_window"])
    frame["ds"] = pd.to_datetime(frame["ds"])
    return frame.sort_values(["ds", "holiday"]).reset_index(drop=True)


def festival_labels(site_id: str, days: Iterable[date]) -> dict[date, str]:
    """Local day → comma-separated festival / national-holiday ids concerning the site."""
    days = list(days)
    if not days:
        return {}
    years = sorted({d.year for d in days})
    labels: dict[date, list[str]] = {}
    for row in site_festival_days(site_id, years).itertuples():
        labels.setdefault(row.date, []).append(row.festival_id)
    for row in national_holidays(years).itertuples():
        labels.setdefault(row.date, []).append(f"vn_{holiday_slug(row.name)}")
    wanted = set(days)
    return {d: ",".join(dict.fromkeys(ids)) for d, ids in labels.items() if d in wanted}


def _row(name: str, day: date, before: int, after: int) -> dict:
    return {"holiday": name, "ds": pd.Timestamp(day), "lower_window": -before,
            "upper_window": after}


def holiday_slug(text: str) -> str:
    """A holiday name as a column-safe id (Prophet makes a regressor column per name)."""
    kept = "".join(c.lower() if c.isalnum() else "_" for c in text)
    return "_".join(part for part in kept.split("_") if part)[:60]

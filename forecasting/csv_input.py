"""Reading a CSV of hourly or daily counts as people export them, for the bring-your-own
backtest (`python -m forecasting.backtest --csv`) and the real-series benchmark.

Accepted shapes:

- a `ds` column (a date or a date and time) and one or more count columns;
- a date column (`date`, `day`, `dteday`) and an hour column (`hour`, `hr`) holding an hour
  number (`6`), a clock time (`06:00`) or an hour range (`6:00-6:59`);
- wide files: one count column per sensor (every column that is not a time column, nor a
  calendar column such as `year` or `weekday`, is a series).

Times are local clock times, as counters report them. A local day with daylight saving has
a repeated hour (its two rows are averaged: the models read one count per local hour) and a
missing hour (left missing). Counts may carry thousands separators (`1,234`, `1 234`).
Anything that cannot be read stops the reading with a `CsvInputError` that names the file's
line numbers and columns, never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

DATE_COLUMNS = ("date", "day", "dteday")
HOUR_COLUMNS = ("hour", "hr")
# Columns that describe the time, not a count: never taken as a series.
CALENDAR_COLUMNS = frozenset({
    "ds", *DATE_COLUMNS, *HOUR_COLUMNS, "year", "yr", "month", "mnth", "weekday", "dow",
    "season", "instant", "time", "ts",
})
# Day-first before month-first: the files we meet (Australia, New Zealand, Vietnam, the UCI
# bike-share copy) write 03-01-2012 for the 3rd of January.
DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%b-%Y",
                "%m/%d/%Y")
# How many bad cells a message quotes per column: enough to find the pattern, short to read.
SHOWN_PER_COLUMN = 5
# A column is a count series when at least this share of its filled cells are numbers (its
# other cells are then reported as unreadable); below it, it is a label column (a sensor's
# name, a weekday) and is left out rather than reported as broken.
NUMERIC_COLUMN_SHARE = 0.5
MISSING_MARKS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "?"})
_HOUR = re.compile(r"^(\d{1,2})(?::(\d{2}))?(?:\s*[-–]\s*\d{1,2}:\d{2})?$")
_SEPARATORS = re.compile(r"(?<=\d)[,\s'\u00a0\u202f_](?=\d{3}(?!\d))")


class CsvInputError(ValueError):
    """A CSV that cannot be read as counts; the message says which lines and columns."""


@dataclass
class CountsTable:
    """Counts read from a CSV: `frame` has ds (local time, hour or day start) and one float
    column per series; `notes` says what was repaired on the way (repeated hours averaged,
    hours moved to the next day)."""

    frame: pd.DataFrame
    series: list[str]
    notes: list[str] = field(default_factory=list)


def read_counts_csv(
    source: str | Path | IO[str], columns: list[str] | None = None, name: str | None = None
) -> CountsTable:
    """Read a CSV of counts (see the module's docstring). `columns`: the count columns to
    keep (default: `y` if there is one, else every numeric column that is not a time
    column). Raises `CsvInputError` with the file's line numbers (the header is line 1)."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "CSV")
    try:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CsvInputError(f"{label}: not a readable CSV: {exc}") from None
    except FileNotFoundError:
        raise CsvInputError(f"{label}: no such file") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    if raw.empty:
        raise CsvInputError(f"{label}: no rows")
    lower = {c.lower(): c for c in raw.columns}
    notes: list[str] = []
    problems: list[str] = []
    try:
        ds = _read_times(raw, lower, label, notes)
    except CsvInputError as exc:
        # Keep going: one message names every unreadable time and count at once.
        problems.append(str(exc).removeprefix(f"{label}: "))
    series = _pick_series(raw, lower, columns, label)
    values = {c: _read_counts(raw[c], c) for c in series}
    bad = {c: v[1] for c, v in values.items() if v[1]}
    if bad:
        total = sum(len(rows) for rows in bad.values())
        parts = [f"column {c!r}: " + ", ".join(f"line {line} ({text!r})"
                                               for line, text in rows[:SHOWN_PER_COLUMN])
                 + (f" and {len(rows) - SHOWN_PER_COLUMN} more" if len(rows) > SHOWN_PER_COLUMN
                    else "")
                 for c, rows in bad.items()]
        problems.append(f"{total} count cell(s) are not numbers of people: " + "; ".join(parts))
    if problems:
        raise CsvInputError(f"{label}: " + "; ".join(problems))
    frame = pd.DataFrame({"ds": ds, **{c: values[c][0] for c in series}})
    repeated = int(frame["ds"].duplicated().sum())
    if repeated:
        # A repeated local hour (daylight saving ending, or a file listing an hour twice):
        # one row per local hour, as the models read local clock hours.
        frame = frame.groupby("ds", as_index=False).mean()
        notes.append(f"{repeated} repeated local time(s) averaged (daylight saving or "
                     "duplicate rows)")
    frame = frame.sort_values("ds").reset_index(drop=True)
    return CountsTable(frame=frame, series=series, notes=notes)


def _lines(mask: np.ndarray | pd.Series) -> list[int]:
    """File line numbers (header = 1) of the rows where `mask` is true."""
    return [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))]


def _quote(lines: list[int], texts: pd.Series) -> str:
    shown = ", ".join(f"line {line} ({text!r})"
                      for line, text in zip(lines[:SHOWN_PER_COLUMN],
                                            texts.iloc[:SHOWN_PER_COLUMN], strict=False))
    more = len(lines) - SHOWN_PER_COLUMN
    return shown + (f" and {more} more" if more > 0 else "")


def _read_times(raw: pd.DataFrame, lower: dict[str, str], label: str,
                notes: list[str]) -> pd.Series:
    if "ds" in lower:
        text = raw[lower["ds"]].str.strip()
        ds = _parse_dates(text, with_time=True)
        bad = ds.isna().to_numpy()
        if bad.any():
            raise CsvInputError(f"{label}: {int(bad.sum())} unreadable time(s) in column "
                                f"{lower['ds']!r}: {_quote(_lines(bad), text[bad])}")
        return ds
    date_col = next((lower[c] for c in DATE_COLUMNS if c in lower), None)
    hour_col = next((lower[c] for c in HOUR_COLUMNS if c in lower), None)
    if date_col is None:
        raise CsvInputError(f"{label}: no time column: expected `ds`, or a date column "
                            f"({', '.join(DATE_COLUMNS)}) with an optional hour column "
                            f"({', '.join(HOUR_COLUMNS)}); has {list(raw.columns)}")
    text = raw[date_col].str.strip()
    day = _parse_dates(text, with_time=False)
    bad_day = day.isna().to_numpy()
    problems = []
    if bad_day.any():
        problems.append(f"{int(bad_day.sum())} unreadable date(s) in column {date_col!r}: "
                        f"{_quote(_lines(bad_day), text[bad_day])}")
    if hour_col is None:
        if problems:
            raise CsvInputError(f"{label}: " + "; ".join(problems))
        return day
    hour_text = raw[hour_col].str.strip()
    hour = hour_text.map(_parse_hour)
    bad_hour = hour.isna().to_numpy()
    if bad_hour.any():
        problems.append(f"{int(bad_hour.sum())} unreadable hour(s) in column {hour_col!r} "
                        "(expected 0-23, 06:00 or 6:00-6:59): "
                        f"{_quote(_lines(bad_hour), hour_text[bad_hour])}")
    if problems:
        raise CsvInputError(f"{label}: " + "; ".join(problems))
    hour = hour.astype(int)
    start = _day_start_hour(day, hour)
    moved = (hour < start).to_numpy()
    if start and moved.any():
        # The file's days run from `start` to `start` the next morning (a trading day: its
        # rows list 6:00 … 23:00 then 0:00 … 5:00): the small hours belong to the next date.
        day = day + pd.to_timedelta(moved.astype(int), unit="D")
        notes.append(f"the file's days start at {start}:00; hours before it were read as the "
                     "next calendar day's")
    return day + pd.to_timedelta(hour, unit="h")


def _parse_dates(text: pd.Series, with_time: bool) -> pd.Series:
    """The first of DATE_FORMATS (with or without a time) that reads every filled cell;
    else the one reading the most, the others NaT."""
    best: pd.Series | None = None
    formats = [f"{f} %H:%M" for f in DATE_FORMATS] + [f"{f} %H:%M:%S" for f in DATE_FORMATS] \
        if with_time else []
    for fmt in [*formats, *DATE_FORMATS]:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if parsed.notna().all():
            return parsed
        if best is None or parsed.notna().sum() > best.notna().sum():
            best = parsed
    if with_time:
        iso = pd.to_datetime(text, format="ISO8601", errors="coerce")
        if best is None or iso.notna().sum() > best.notna().sum():
            best = iso
        if getattr(best.dt, "tz", None) is not None:
            # Local clock time is what the models read; an offset only says which zone.
            best = best.dt.tz_localize(None)
    assert best is not None
    return best


def _parse_hour(text: str) -> float:
    match = _HOUR.match(text)
    if not match:
        return np.nan
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    return float(hour) if hour < 24 and minute == 0 else np.nan


def _day_start_hour(day: pd.Series, hour: pd.Series) -> int:
    """The hour the file's days start at: the most common first hour of a date's rows, in
    file order (0 for ordinary calendar days)."""
    first = hour.groupby(day.to_numpy(), sort=False).first()
    if first.empty:
        return 0
    start = int(first.mode().iloc[0])
    # Only a day that wraps (23:00 then 0:00 under the same date) starts late; a file whose
    # days merely begin at 6:00 (no night rows) is on calendar days.
    wraps = (hour.groupby(day.to_numpy(), sort=False).apply(
        lambda h: bool((np.diff(h.to_numpy()) < 0).any())))
    return start if start and wraps.mean() > 0.5 else 0


def _pick_series(raw: pd.DataFrame, lower: dict[str, str], columns: list[str] | None,
                 label: str) -> list[str]:
    if columns:
        missing = [c for c in columns if c not in raw.columns]
        if missing:
            raise CsvInputError(f"{label}: no column(s) {missing}; has {list(raw.columns)}")
        return list(columns)
    if "y" in lower:
        return [lower["y"]]
    picked = []
    for col in raw.columns:
        if col.lower() in CALENDAR_COLUMNS:
            continue
        filled = raw[col].str.strip()
        filled = filled[~filled.str.lower().isin(MISSING_MARKS)]
        if len(filled) and _numbers(filled).notna().mean() >= NUMERIC_COLUMN_SHARE:
            picked.append(col)
    if not picked:
        raise CsvInputError(f"{label}: no count column found (columns: {list(raw.columns)})")
    return picked


def _numbers(text: pd.Series) -> pd.Series:
    cleaned = text.str.replace(_SEPARATORS, "", regex=True)
    return pd.to_numeric(cleaned, errors="coerce")


def _read_counts(column: pd.Series, name: str) -> tuple[pd.Series, list[tuple[int, str]]]:
    """Counts of one column (missing marks → NaN) and its unreadable cells (line, text)."""
    text = column.str.strip()
    missing = text.str.lower().isin(MISSING_MARKS)
    values = _numbers(text.where(~missing, "nan"))
    bad = (values.isna() & ~missing) | (values < 0)
    return values.where(~missing).astype(float), [
        (line, str(t)) for line, t in zip(_lines(bad), text[bad.to_numpy()], strict=True)]

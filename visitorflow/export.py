"""Open-data export: readings, minute counts and forecasts as Parquet and CSV, and
NGSI-LD entities for national smart-city platforms.

    python -m visitorflow.export --start 2026-03-10 --end 2026-03-15 --out export/
    python -m visitorflow.export --help

Dates are local days (Asia/Ho_Chi_Minh), both inclusive; times inside the files are UTC.
Layout under --out:

    parquet/<table>/date=YYYY-MM-DD/*.parquet   hive-partitioned by local date
    csv/<table>.csv                              one file per table
    ngsi-ld/CrowdFlowObserved.jsonld             per gate, interval and direction
    ngsi-ld/TourismPresenceObserved.jsonld       per site and hour
    manifest.json                                what was exported, rows per file

NGSI-LD models (FIWARE Smart Data Models), checked against their published definitions:

- `CrowdFlowObserved` (dataModel.Transportation): `peopleCount` through one gate in one
  direction (`inbound` = into the site, `outbound` = out of it) over
  [`dateObservedFrom`, `dateObservedTo`); `dateObserved` carries the same ISO 8601
  interval as text, as the model's description allows. The id ends with the counter id,
  the direction and the interval start, so the collector's own FIWARE reader
  (visitorflow.formats_fiware) maps an exported entity back to its gate.
- `TourismPresenceObserved` (dataModel.TourismDestinations, v0.0.1): `visitorCount` =
  people arriving at the site in the hour, `aggregationType` `hourly_sum`, `dateObserved`
  the middle of the hour (the model asks for that), `hour` the local hour of day. The model
  requires `nationality` (ISO 3166-1 alpha-2), which gate counters cannot know: we send
  `ZZ`, the code ISO reserves for user assignment and CLDR uses for "unknown region", with
  `nationalityName` saying so. `locationCode` is the catalogue's site id (no official code
  exists for a tourist site).

Entities are NGSI-LD normalized (`--key-values` writes the simplified form instead).
Intervals and hours in which nothing was counted are left out: unknown, not zero.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.clock import local_day_range_utc, to_local, utc_now
from visitorflow.settings import Settings, SettingsError, get_settings
from visitorflow.store import Store, StoreError

TABLES = ("readings", "minute_counts", "forecast_hourly", "forecast_daily")
WHAT = ("readings", "minute_counts", "forecasts", "ngsi-ld")
FORMATS = ("parquet", "csv")
NGSI_LD_CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
TRANSPORTATION_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/"
    "context.jsonld"
)
TOURISM_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.TourismDestinations/"
    "master/context.jsonld"
)
DATA_PROVIDER = "Lạng Sơn visitor-flow platform (Sở Văn hóa, Thể thao và Du lịch Lạng Sơn)"
UNKNOWN_NATIONALITY = "ZZ"
UNKNOWN_NATIONALITY_NAME = "Unknown: all visitors (gate counters do not record nationality)"
UNIT_PERSONS = "IE"  # UN/CEFACT common code for "person"


class ExportError(ValueError):
    """The export cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class ExportRequest:
    first: date  # local day, inclusive
    last: date  # local day, inclusive
    site_ids: tuple[str, ...]
    out: Path
    what: tuple[str, ...] = WHAT
    formats: tuple[str, ...] = FORMATS
    interval_min: int = 15
    key_values: bool = False


@dataclass
class ExportResult:
    files: dict[str, int] = field(default_factory=dict)  # relative path -> rows / entities

    def add(self, path: str, rows: int) -> None:
        self.files[path] = self.files.get(path, 0) + rows


# -- time helpers -------------------------------------------------------------------------------


def iso_utc(ts: datetime | pd.Timestamp) -> str:
    """A naive-UTC time as RFC 3339 with `Z` (what NGSI-LD DateTime values expect)."""
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_date(utc: pd.Series, tz: str) -> pd.Series:
    return to_local(utc, tz).dt.strftime("%Y-%m-%d")


# -- tables: Parquet and CSV --------------------------------------------------------------------


def local_days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def table_frames(
    store: Store, request: ExportRequest, tz: str, first: date, last: date
) -> dict[str, pd.DataFrame]:
    """The rows of local days first..last per table, each with a `date` column (the local
    day) to partition on."""
    start_utc, end_utc = local_day_range_utc(first, last, tz)
    sites = list(request.site_ids)
    frames: dict[str, pd.DataFrame] = {}
    if "readings" in request.what:
        frame = store.readings_for_sites(start_utc, end_utc, sites)
        began = pd.to_datetime(frame["ts_utc"]) - pd.to_timedelta(frame["interval_s"], unit="s")
        frames["readings"] = frame.assign(date=_local_date(began, tz))
    if "minute_counts" in request.what:
        frame = store.minute_counts(start_utc, end_utc, sites)
        frames["minute_counts"] = frame.assign(date=_local_date(frame["minute_utc"], tz))
    if "forecasts" in request.what:
        hourly = store.forecast_hourly_range(start_utc, end_utc, sites)
        frames["forecast_hourly"] = hourly.assign(date=_local_date(hourly["ts_utc"], tz))
        daily = store.forecast_daily_range(first, last, sites)
        frames["forecast_daily"] = daily.assign(
            date=pd.to_datetime(daily["day_local"]).dt.strftime("%Y-%m-%d"))
    return frames


def _utc_aware(frame: pd.DataFrame) -> pd.DataFrame:
    """`*_utc` columns as timezone-aware UTC, so Parquet readers know what they hold."""
    out = frame.copy()
    for col in out.columns:
        if col.endswith("_utc"):
            out[col] = pd.to_datetime(out[col]).dt.tz_localize("UTC")
    return out


def write_parquet(frame: pd.DataFrame, root: Path) -> int:
    """Write one table hive-partitioned by `date` (root/date=YYYY-MM-DD/part-0.parquet);
    re-exporting a day replaces it. One plain file per day rather than pyarrow's dataset
    writer, whose thread pool once aborted the process at exit under load."""
    for day, part in frame.groupby("date"):
        folder = root / f"date={day}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        table = pa.Table.from_pandas(_utc_aware(part.drop(columns="date")),
                                     preserve_index=False)
        pq.write_table(table, folder / "part-0.parquet", compression="zstd")
    return len(frame)


def write_csv(frame: pd.DataFrame, path: Path, append: bool = False) -> int:
    """One CSV per table, UTF-8, times as RFC 3339 UTC with `Z`; `append` adds a day's rows
    under the header already written."""
    out = frame.copy()
    for col in out.columns:
        if col.endswith("_utc"):
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, encoding="utf-8", mode="a" if append else "w",
               header=not append)
    return len(out)


# -- NGSI-LD entities ---------------------------------------------------------------------------


def _prop(value: object, **extra: object) -> dict:
    return {"type": "Property", "value": value, **extra}


def _datetime(ts: datetime | pd.Timestamp) -> dict:
    return _prop({"@type": "DateTime", "@value": iso_utc(ts)})


def _point(lon: float, lat: float) -> dict:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def crowd_flow_entities(
    counts: pd.DataFrame, catalogue: Catalogue, interval_s: int
) -> Iterator[dict]:
    """CrowdFlowObserved per gate, interval and direction from Store.gate_interval_counts
    rows (site_id, gate_id, start_utc, count_in, count_out). The gate's location is its
    site's point: the catalogue has no per-gate coordinates."""
    span = timedelta(seconds=interval_s)
    for rec in counts.itertuples(index=False):
        site = catalogue.site(rec.site_id)
        gate = catalogue.gate(rec.site_id, rec.gate_id)
        if gate is None:  # a gate since removed from the catalogue: no id to publish under
            continue
        start = pd.Timestamp(rec.start_utc)
        end = start + span
        for direction, people in (("inbound", rec.count_in), ("outbound", rec.count_out)):
            yield {
                "id": (f"urn:ngsi-ld:CrowdFlowObserved:{gate.counter_id}:{direction}:"
                       f"{start:%Y%m%dT%H%M}Z"),
                "type": "CrowdFlowObserved",
                "name": _prop(f"{site.name.en} – {gate.name.en}"),
                "dataProvider": _prop(DATA_PROVIDER),
                "location": _point(site.lon, site.lat),
                "dateObserved": _prop(f"{iso_utc(start)}/{iso_utc(end)}"),
                "dateObservedFrom": _datetime(start),
                "dateObservedTo": _datetime(end),
                "direction": _prop(direction),
                "peopleCount": _prop(int(people)),
                "@context": [TRANSPORTATION_CONTEXT, NGSI_LD_CORE_CONTEXT],
            }


def presence_entities(hourly: pd.DataFrame, catalogue: Catalogue, tz: str) -> Iterator[dict]:
    """TourismPresenceObserved per site and hour from Store.site_hourly_counts rows
    (site_id, hour_utc, arrivals)."""
    for rec in hourly.itertuples(index=False):
        site = catalogue.site(rec.site_id)
        hour = pd.Timestamp(rec.hour_utc)
        local_hour = to_local(hour, tz).hour
        yield {
            "id": f"urn:ngsi-ld:TourismPresenceObserved:{site.id}:{hour:%Y%m%dT%H}Z",
            "type": "TourismPresenceObserved",
            "dataProvider": _prop(DATA_PROVIDER),
            "location": _point(site.lon, site.lat),
            "locationCode": _prop(site.id),
            "locationName": _prop(site.name.vi),
            "alternateName": _prop(site.name.en),
            "address": _prop({"addressCountry": "VN", "addressRegion": "Lạng Sơn"}),
            "dateObserved": _datetime(hour + timedelta(minutes=30)),
            "hour": _prop(int(local_hour)),
            "visitorCount": _prop(int(rec.arrivals), unitCode=UNIT_PERSONS),
            "aggregationType": _prop("hourly_sum"),
            "nationality": _prop(UNKNOWN_NATIONALITY),
            "nationalityName": _prop(UNKNOWN_NATIONALITY_NAME),
            "@context": [TOURISM_CONTEXT, NGSI_LD_CORE_CONTEXT],
        }


def key_values(entity: dict) -> dict:
    """A normalized NGSI-LD entity in the simplified (keyValues) form."""
    out: dict = {}
    for key, attr in entity.items():
        if key in ("id", "type", "@context") or not isinstance(attr, dict):
            out[key] = attr
            continue
        value = attr.get("object") if attr.get("type") == "Relationship" else attr.get("value")
        if isinstance(value, dict) and "@value" in value:
            value = value["@value"]
        out[key] = value
    return out


def write_entities(entities: Iterable[dict], path: Path, simplified: bool = False) -> int:
    """A JSON array of entities (what NGSI-LD batch create takes), one entity per line so
    a year of them streams out without being held in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write("[")
        for entity in entities:
            fh.write(",\n" if count else "\n")
            fh.write(json.dumps(key_values(entity) if simplified else entity,
                                ensure_ascii=False))
            count += 1
        fh.write("\n]\n")
    return count


# -- the export ---------------------------------------------------------------------------------


def validate_request(request: ExportRequest, catalogue: Catalogue) -> None:
    if request.first > request.last:
        raise ExportError(f"--start {request.first} is after --end {request.last}")
    unknown = [s for s in request.site_ids if s not in catalogue.by_id]
    if unknown:
        raise ExportError(f"unknown site(s) {', '.join(unknown)}; known: "
                          f"{', '.join(s.id for s in catalogue.sites)}")
    if not request.site_ids:
        raise ExportError("no sites to export")
    bad = [w for w in request.what if w not in WHAT]
    if bad:
        raise ExportError(f"--what {','.join(bad)} unknown; choose from {','.join(WHAT)}")
    bad = [f for f in request.formats if f not in FORMATS]
    if bad:
        raise ExportError(f"--formats {','.join(bad)} unknown; choose from {','.join(FORMATS)}")
    # Intervals that divide the hour keep every bucket inside one local day (UTC+7 days
    # start on a whole UTC hour), so an export never cuts an interval in two.
    if request.interval_min < 1 or 60 % request.interval_min:
        raise ExportError(f"--interval-min {request.interval_min} must divide 60")


def run_export(request: ExportRequest, settings: Settings, catalogue: Catalogue) -> ExportResult:
    """Write everything the request asks for; returns the files written and their rows."""
    validate_request(request, catalogue)
    store = Store.from_settings(settings)
    tz = settings.timezone
    out = request.out
    result = ExportResult()
    sites = list(request.site_ids)
    # One local day at a time: a year fits in memory day by day, and each query holds the
    # store only briefly, so a long export never stalls the collector.
    csv_started: set[str] = set()
    for day in local_days(request.first, request.last):
        for table, frame in table_frames(store, request, tz, day, day).items():
            if "parquet" in request.formats:
                result.add(f"parquet/{table}", write_parquet(frame, out / "parquet" / table))
            if "csv" in request.formats:
                path = out / "csv" / f"{table}.csv"
                result.add(f"csv/{table}.csv",
                           write_csv(frame, path, append=table in csv_started))
                csv_started.add(table)
    if "ngsi-ld" in request.what:
        interval_s = request.interval_min * 60

        def flows() -> Iterator[dict]:
            for day in local_days(request.first, request.last):
                counts = store.gate_interval_counts(*local_day_range_utc(day, day, tz),
                                                  interval_s, sites)
                yield from crowd_flow_entities(counts, catalogue, interval_s)

        def presence() -> Iterator[dict]:
            for day in local_days(request.first, request.last):
                hourly = store.site_hourly_counts(*local_day_range_utc(day, day, tz), sites)
                # An hour holding only the `_closing` re-zeroing was not counted.
                yield from presence_entities(hourly[hourly["minutes"] > 0], catalogue, tz)

        result.add("ngsi-ld/CrowdFlowObserved.jsonld", write_entities(
            flows(), out / "ngsi-ld" / "CrowdFlowObserved.jsonld", request.key_values))
        result.add("ngsi-ld/TourismPresenceObserved.jsonld", write_entities(
            presence(), out / "ngsi-ld" / "TourismPresenceObserved.jsonld",
            request.key_values))
    manifest = {
        "generated_at_utc": iso_utc(utc_now()),
        "first_local_day": request.first.isoformat(),
        "last_local_day": request.last.isoformat(),
        "timezone_of_days": tz,
        "sites": list(request.site_ids),
        "interval_min": request.interval_min,
        "ngsi_ld_form": "keyValues" if request.key_values else "normalized",
        "files": result.files,
        "attribution": "Site coordinates and capacities: data/README.md of the platform",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2),
                                       encoding="utf-8")
    return result


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m visitorflow.export",
        description=(
            "Export visitor counts and forecasts as open data: Parquet (partitioned by local "
            "date) and CSV of readings, minute counts and forecasts, and NGSI-LD entities "
            "(FIWARE CrowdFlowObserved per gate, interval and direction; "
            "TourismPresenceObserved per site and hour). Reads the store read-only, one short "
            "query at a time: safe while the collector runs."),
        epilog=(
            "Days are local (Asia/Ho_Chi_Minh) and inclusive; times in the files are UTC. "
            "Example: python -m visitorflow.export --start 2026-03-10 --end 2026-03-15 "
            "--sites den_ky_cung,den_ta_phu,ky_lua --out export/ky_cung_2026"),
    )
    parser.add_argument("--start", required=True, type=date.fromisoformat,
                        help="first local day, YYYY-MM-DD")
    parser.add_argument("--end", required=True, type=date.fromisoformat,
                        help="last local day (inclusive), YYYY-MM-DD")
    parser.add_argument("--sites", type=_csv_list, default=None,
                        help="comma-separated site ids (default: every catalogue site)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--what", type=_csv_list, default=WHAT,
                        help=f"comma-separated subset of {','.join(WHAT)} (default: all)")
    parser.add_argument("--formats", type=_csv_list, default=FORMATS,
                        help="tables as parquet, csv or both (default: both)")
    parser.add_argument("--interval-min", type=int, default=15,
                        help="CrowdFlowObserved interval in minutes, a divisor of 60 "
                             "(default 15)")
    parser.add_argument("--key-values", action="store_true",
                        help="write NGSI-LD entities in the simplified keyValues form")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        request = ExportRequest(
            first=args.start, last=args.end,
            site_ids=tuple(args.sites) if args.sites else tuple(s.id for s in catalogue.sites),
            out=args.out, what=tuple(args.what), formats=tuple(args.formats),
            interval_min=args.interval_min, key_values=args.key_values)
        result = run_export(request, settings, catalogue)
    except (ExportError, StoreError, SettingsError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    for path, rows in sorted(result.files.items()):
        print(f"{rows:>10,}  {args.out / path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

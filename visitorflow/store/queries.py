"""Reads of what the collector stored: readings, minute counts, gate health, ingest quality,
temperatures, and the range queries of the notebooks and the open-data export.

Every reader goes through these: read-only, one short-lived connection per call (or per
`session()`), so a page or an analyst never stalls the collector. Times are naive UTC,
ranges half-open [start, end). `sites` is one site id, a list of them, or None for all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from visitorflow.load import OCCUPANCY_SQL
from visitorflow.store.connection import StoreConnection

Sites = str | Sequence[str] | None
# The site filter every range query shares: $sites is NULL (all) or a list of ids.
_IN_SITES = "($sites::VARCHAR[] IS NULL OR list_contains($sites::VARCHAR[], site_id))"


def _sites(sites: Sites) -> list[str] | None:
    if sites is None:
        return None
    return [sites] if isinstance(sites, str) else list(sites)


class ReadQueries(StoreConnection):
    """Reads of counts, readings and their quality."""

    def readings(
        self,
        start_utc: datetime | None = None,
        end_utc: datetime | None = None,
        sites: Sites = None,
    ) -> pd.DataFrame:
        """Stored readings with `start_utc <= ts_utc < end_utc`, oldest first."""
        return self._read(
            f"""SELECT * FROM readings
            WHERE ($start::TIMESTAMP IS NULL OR ts_utc >= $start)
              AND ($end::TIMESTAMP IS NULL OR ts_utc < $end) AND {_IN_SITES}
            ORDER BY ts_utc, site_id, gate_id, device_id, seq""",  # constant filter
            {"start": start_utc, "end": end_utc, "sites": _sites(sites)},
        )

    def readings_for_sites(
        self, start_utc: datetime, end_utc: datetime, sites: Sites = None
    ) -> pd.DataFrame:
        """The stored readings whose counting interval began in [start, end), oldest first:
        the same people as minute_counts over the same range (a reading ending at midnight
        counted the day before)."""
        return self._read(
            f"""SELECT * FROM readings
            -- the plain ts_utc bounds let DuckDB skip row groups; intervals are at most a day
            WHERE ts_utc > $start AND ts_utc <= $end + INTERVAL 1 DAY
              AND ts_utc - to_seconds(interval_s) >= $start
              AND ts_utc - to_seconds(interval_s) < $end AND {_IN_SITES}
            ORDER BY ts_utc, site_id, gate_id, device_id, seq""",  # constant filter
            {"start": start_utc, "end": end_utc, "sites": _sites(sites)},
        )

    def quarantine(self, limit: int = 1000) -> pd.DataFrame:
        """The most recent quarantined messages, newest first."""
        return self._read(
            "SELECT * FROM quarantine ORDER BY received_at_utc DESC LIMIT $1", [limit]
        )

    def minute_counts(
        self, start_utc: datetime, end_utc: datetime, sites: Sites = None
    ) -> pd.DataFrame:
        """People in and out per gate and minute in [start, end), oldest first."""
        return self._read(
            f"""SELECT * FROM minute_counts
            WHERE minute_utc >= $start AND minute_utc < $end AND {_IN_SITES}
            ORDER BY minute_utc, site_id, gate_id""",  # constant filter
            {"start": start_utc, "end": end_utc, "sites": _sites(sites)},
        )

    def site_counts(self, day_start_utc: datetime, now_utc: datetime) -> pd.DataFrame:
        """Per site since the start of its local day: people in, out, occupancy
        (visitorflow.load), arrivals in the last hour. Sites with no count today are absent."""
        return self._read(
            f"""SELECT site_id,
                   sum(count_in)::BIGINT AS arrivals_today,
                   sum(count_out)::BIGINT AS departures_today,
                   {OCCUPANCY_SQL}::BIGINT AS occupancy,
                   coalesce(sum(count_in) FILTER (
                       WHERE minute_utc >= $2 - INTERVAL 1 HOUR), 0)::BIGINT
                       AS arrivals_last_hour
            FROM minute_counts
            WHERE minute_utc >= $1 AND minute_utc <= $2
            GROUP BY site_id ORDER BY site_id""",  # a constant expression
            [day_start_utc, now_utc],
        )

    def site_hourly_counts(
        self, start_utc: datetime, end_utc: datetime, sites: Sites = None
    ) -> pd.DataFrame:
        """People in and out per site and hour, all gates: site_id, hour_utc (start of the
        hour), arrivals, departures (incl. the `_closing` re-zeroing), minutes (counted
        gate-minutes). Hours with nothing counted are absent: unknown, not zero."""
        return self._read(
            f"""SELECT site_id, date_trunc('hour', minute_utc) AS hour_utc,
                   sum(count_in)::BIGINT AS arrivals, sum(count_out)::BIGINT AS departures,
                   count(*) FILTER (WHERE gate_id <> '_closing')::BIGINT AS minutes
            FROM minute_counts
            WHERE minute_utc >= $start AND minute_utc < $end AND {_IN_SITES}
            GROUP BY ALL ORDER BY site_id, hour_utc""",  # constant filter
            {"start": start_utc, "end": end_utc, "sites": _sites(sites)},
        )

    def hourly_arrivals(
        self, sites: Sites, start_utc: datetime, end_utc: datetime
    ) -> pd.DataFrame:
        """People arriving per site and hour (all gates), as the forecasts take them:
        site_id, hour_utc, arrivals (float). Hours with nothing counted are absent."""
        counts = self.site_hourly_counts(start_utc, end_utc, sites)
        return counts[["site_id", "hour_utc"]].assign(arrivals=counts["arrivals"].astype(float))

    def gate_interval_counts(
        self, start_utc: datetime, end_utc: datetime, interval_s: int, sites: Sites = None
    ) -> pd.DataFrame:
        """People in and out per real gate (not the `_closing` pseudo-gate) and interval of
        `interval_s` seconds (aligned to midnight UTC): site_id, gate_id, start_utc, count_in,
        count_out, minutes (counted minutes in it). Intervals with nothing counted are absent."""
        return self._read(
            f"""SELECT site_id, gate_id,
                   time_bucket(to_seconds($interval), minute_utc, TIMESTAMP '2000-01-01')
                       AS start_utc,
                   sum(count_in)::BIGINT AS count_in, sum(count_out)::BIGINT AS count_out,
                   count(*)::BIGINT AS minutes
            FROM minute_counts
            WHERE minute_utc >= $start AND minute_utc < $end AND gate_id <> '_closing'
              AND {_IN_SITES}
            GROUP BY ALL ORDER BY start_utc, site_id, gate_id""",  # constant filter
            {"start": start_utc, "end": end_utc, "interval": interval_s,
             "sites": _sites(sites)},
        )

    def data_span(self) -> tuple[datetime | None, datetime | None]:
        """The first and last counted minute (naive UTC); (None, None) for an empty store."""
        row = self._read(
            "SELECT min(minute_utc) AS first, max(minute_utc) AS last FROM minute_counts"
        ).iloc[0]
        return (
            None if pd.isna(row["first"]) else row["first"].to_pydatetime(),
            None if pd.isna(row["last"]) else row["last"].to_pydatetime(),
        )

    def latest_reading_utc(self) -> datetime | None:
        frame = self._read("SELECT max(ts_utc) AS latest FROM readings")
        value = frame["latest"].iloc[0]
        return None if pd.isna(value) else value.to_pydatetime()

    def table_counts(self) -> dict[str, int]:
        """Rows per counting table, for operators and tests."""
        frame = self._read(
            """SELECT (SELECT count(*) FROM readings) AS readings,
                      (SELECT count(*) FROM quarantine) AS quarantine,
                      (SELECT count(*) FROM minute_counts) AS minute_counts,
                      (SELECT count(*) FROM gate_status) AS gate_status"""
        )
        return {table: int(n) for table, n in frame.iloc[0].items()}

    # -- gates and their quality -------------------------------------------------------------

    def gate_health(self) -> pd.DataFrame:
        """Per gate that ever reported: last reading, its interval, battery, status."""
        return self._read(
            """SELECT coalesce(l.site_id, s.site_id) AS site_id,
                   coalesce(l.gate_id, s.gate_id) AS gate_id,
                   l.device_id, l.last_reading_utc, l.interval_s, l.battery_pct,
                   l.readings, s.status, s.changed_at_utc AS status_changed_at_utc
            FROM gate_last_reading l FULL OUTER JOIN gate_status s
              ON l.site_id = s.site_id AND l.gate_id = s.gate_id
            ORDER BY site_id, gate_id"""
        )

    def gate_coverage(
        self, start_utc: datetime, end_utc: datetime, sites: Sites = None
    ) -> pd.DataFrame:
        """Per gate that reported in [start, end): readings, seconds_counted (sum of their
        intervals), first/last reading, lowest battery, median and max delivery delay (s)."""
        return self._read(
            f"""SELECT site_id, gate_id, count(*)::BIGINT AS readings,
                   sum(interval_s)::BIGINT AS seconds_counted,
                   min(ts_utc) AS first_reading_utc, max(ts_utc) AS last_reading_utc,
                   min(battery_pct) AS min_battery_pct,
                   median(epoch(received_at_utc - ts_utc)) AS median_delay_s,
                   max(epoch(received_at_utc - ts_utc)) AS max_delay_s
            FROM readings
            WHERE ts_utc >= $start AND ts_utc < $end AND {_IN_SITES}
            GROUP BY ALL ORDER BY site_id, gate_id""",  # constant filter
            {"start": start_utc, "end": end_utc, "sites": _sites(sites)},
        )

    def device_frames(self, device_ids: Sequence[str], since_utc: datetime) -> pd.DataFrame:
        """device_id, seq and ts_utc of the stored readings of these devices since a time,
        oldest first: what the collector needs to recognise a LoRaWAN frame already stored,
        even one stored by another collector instance or before a restart."""
        return self._read(
            """SELECT device_id, seq, ts_utc FROM readings
            WHERE device_id IN (SELECT unnest($1::VARCHAR[])) AND ts_utc >= $2
            ORDER BY ts_utc, seq""",
            [list(device_ids), since_utc],
        )

    def reading_gaps(self, status: str | None = None) -> pd.DataFrame:
        """Seq gaps found by the collector (recovered, open or filled), oldest first."""
        return self._read(
            """SELECT * FROM reading_gaps WHERE ($1::VARCHAR IS NULL OR status = $1)
            ORDER BY after_ts_utc, device_id""",
            [status],
        )

    def counter_events(self) -> pd.DataFrame:
        """Counter wraps, resets and seq restarts the collector saw, oldest first."""
        return self._read("SELECT * FROM counter_events ORDER BY ts_utc, device_id, kind")

    def occupancy_corrections(self, site_id: str | None = None) -> pd.DataFrame:
        """The closing-time occupancy corrections (counter drift per site and day)."""
        return self._read(
            """SELECT * FROM occupancy_corrections WHERE ($1::VARCHAR IS NULL OR site_id = $1)
            ORDER BY local_date, site_id""",
            [site_id],
        )

    def temperature(
        self, site_id: str, start_utc: datetime, end_utc: datetime, source: str | None = None
    ) -> pd.DataFrame:
        """Temperatures of a site in [start, end), oldest first."""
        return self._read(
            """SELECT * FROM temperature
            WHERE site_id = $1 AND ts_utc >= $2 AND ts_utc < $3
              AND ($4::VARCHAR IS NULL OR source = $4)
            ORDER BY ts_utc, source""",
            [site_id, start_utc, end_utc, source],
        )

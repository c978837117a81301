"""Alerts, their acknowledgements and evaluations, and the administrators' overrides.

The collector writes alerts: it evaluates them once a minute inside its own cycle
(visitorflow.alerts.run_alert_step). The dashboard writes acknowledgements, per-site
thresholds and capacities, and action texts: rare writes that take the same short-lived,
retried connection as every writer, so a click waits at most store.lock_timeout_s for the
collector's commit to finish. Every administrative change is written to `change_log` in the
same transaction: who, when, old → new. The collector, the live view and the forecaster read
the overrides through visitorflow.limits.effective_limits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

import duckdb
import pandas as pd

from visitorflow.load import SEVERITY
from visitorflow.store.base import StoreError
from visitorflow.store.connection import StoreConnection
from visitorflow.store.schema import ALERT_COLUMNS

ADMIN_IDS = re.compile(r"^([a-z0-9][a-z0-9_]*|\*)$")
MAX_CAPACITY = 1_000_000
ACTION_KEYS = ("busy", "crowded", "overload", "forecast_overload")
ACTION_LANGUAGES = ("vi", "en", "zh")
# The alert list's order, most severe first, from the one severity order (visitorflow.load).
_SEVERITY_DESC = [level.value for level in reversed(SEVERITY)]


def _check_admin_id(site_id: object, every_site: bool = False) -> None:
    """Administrative writes name a catalogue site (snake_case), or '*' (every site) where
    `every_site` allows it; anything else is a bad id, never SQL."""
    if (not isinstance(site_id, str) or not ADMIN_IDS.match(site_id)
            or (site_id == "*" and not every_site)):
        raise ValueError(f"not a site id: {str(site_id)[:40]!r}")


def _shares(values: Sequence[float] | None) -> str | None:
    return None if values is None else " / ".join(f"{float(v):.2f}" for v in values)


def _log_change(
    con: duckdb.DuckDBPyConnection, now_utc: datetime, who: str, what: str, site_id: str,
    item: str | None, old: str | None, new: str | None,
) -> None:
    con.execute("INSERT INTO change_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                [now_utc, who, what, site_id, item, old, new])


class AlertAndAdminTables(StoreConnection):
    """Alerts and administration."""

    # -- alerts ------------------------------------------------------------------------------

    def last_alert_evaluation_utc(self) -> datetime | None:
        """When the collector last evaluated the alerts; None if it never has."""
        row = self._read("SELECT max(last_evaluated_at_utc) AS last FROM alert_evaluations")
        value = row["last"].iloc[0]
        return None if pd.isna(value) else value.to_pydatetime()

    def _if_evaluated(self, sql: str, params: Sequence[object] | None = None
                      ) -> pd.DataFrame | None:
        """A query of the alert tables; None when no alert evaluation ever ran on this store,
        so that a page can say so instead of reporting no alerts."""
        with self._reading() as con:
            if not con.execute("SELECT count(*) FROM alert_evaluations").fetchone()[0]:
                return None
            return con.execute(sql, params or []).df()

    def open_alerts(self) -> pd.DataFrame | None:
        """Alerts not cleared yet, most severe and oldest first, with their acknowledgements
        counted and the latest one (acked_by, acked_at_utc, note); None: never evaluated."""
        return self._if_evaluated(
            """WITH k AS (
                SELECT alert_id, count(*) AS acks, arg_max(acked_by, acked_at_utc) AS acked_by,
                       max(acked_at_utc) AS acked_at_utc, arg_max(note, acked_at_utc) AS ack_note
                FROM alert_acks GROUP BY alert_id)
            SELECT a.*, coalesce(k.acks, 0) AS acks, k.acked_by, k.acked_at_utc, k.ack_note
            FROM alerts a LEFT JOIN k USING (alert_id)
            WHERE a.cleared_at_utc IS NULL
            ORDER BY list_position($1::VARCHAR[], a.level), a.raised_at_utc, a.site_id""",
            [_SEVERITY_DESC],
        )

    def alert_audit(self, since_utc: datetime | None = None) -> pd.DataFrame | None:
        """Every alert raised since a time (all when None), newest first, one row per
        acknowledgement (ack columns NULL for an alert nobody acknowledged); None: never
        evaluated."""
        return self._if_evaluated(
            """SELECT a.*, k.acked_at_utc, k.acked_by, k.note
            FROM alerts a LEFT JOIN alert_acks k USING (alert_id)
            WHERE $1::TIMESTAMP IS NULL OR a.raised_at_utc >= $1
            ORDER BY a.raised_at_utc DESC, a.alert_id, k.acked_at_utc""",
            [since_utc],
        )

    def alerts(self) -> pd.DataFrame | None:
        """Every alert ever raised (the `alerts` rows), oldest first; None: never evaluated."""
        return self._if_evaluated("SELECT * FROM alerts ORDER BY ALL")

    def apply_alert_changes(
        self, raised: pd.DataFrame, cleared_ids: Sequence[str], now_utc: datetime
    ) -> None:
        """One evaluation's result, atomically: new alerts (ALERT_COLUMNS; an id already
        stored is kept as it is), the ids of open alerts that cleared at `now_utc`, and the
        record that alerts were evaluated at `now_utc`."""
        with self._writing(raised=raised[ALERT_COLUMNS]) as con:
            if len(raised):
                con.execute(
                    f"INSERT OR IGNORE INTO alerts SELECT {', '.join(ALERT_COLUMNS)} "
                    "FROM raised"
                )
            if cleared_ids:
                con.execute(
                    """UPDATE alerts SET cleared_at_utc = $2
                    WHERE list_contains($1::VARCHAR[], alert_id) AND cleared_at_utc IS NULL""",
                    [list(cleared_ids), now_utc],
                )
            con.execute(
                """INSERT INTO alert_evaluations VALUES ('collector', $1, $1, 1)
                ON CONFLICT (evaluator) DO UPDATE SET
                    last_evaluated_at_utc = greatest(last_evaluated_at_utc, $1),
                    evaluations = evaluations + 1""",
                [now_utc],
            )

    def acknowledge_alert(self, alert_id: str, acked_by: str, note: str, now_utc: datetime) -> None:
        """Record that an operator acknowledged an alert, with their note (kept for audit)."""
        with self._writing() as con:
            known = con.execute(
                "SELECT count(*) FROM alerts WHERE alert_id = ?", [alert_id]
            ).fetchone()[0]
            if not known:
                raise StoreError(f"no alert {alert_id!r} in the store")
            con.execute(
                "INSERT INTO alert_acks VALUES (?, ?, ?, ?)", [alert_id, now_utc, acked_by, note]
            )

    # -- administration ----------------------------------------------------------------------

    def alert_thresholds(self) -> pd.DataFrame:
        """Per-site threshold overrides: site_id, busy, crowded, overload (shares of
        capacity), updated_at_utc, updated_by. Empty when there are none."""
        return self._read("SELECT * FROM alert_thresholds ORDER BY site_id")

    def set_alert_thresholds(
        self, site_id: str, busy: float, crowded: float, overload: float, updated_by: str,
        now_utc: datetime, baseline: tuple[float, float, float] | None = None,
    ) -> None:
        """Give one site its own thresholds (shares of capacity, rising), logged in
        change_log with the thresholds in force before (`baseline` if it had none)."""
        _check_admin_id(site_id)
        if not 0 < busy < crowded < overload <= 10:
            raise ValueError("thresholds must rise: 0 < busy < crowded < overload (≤ 10)")
        with self._writing() as con:
            before = con.execute(
                "SELECT busy, crowded, overload FROM alert_thresholds WHERE site_id = ?",
                [site_id],
            ).fetchone() or baseline
            con.execute(
                "INSERT OR REPLACE INTO alert_thresholds VALUES (?, ?, ?, ?, ?, ?)",
                [site_id, busy, crowded, overload, now_utc, updated_by],
            )
            _log_change(con, now_utc, updated_by, "thresholds", site_id, None,
                        _shares(before), _shares((busy, crowded, overload)))

    def site_overrides(self) -> pd.DataFrame:
        """Per site with any override: site_id, capacity (people), busy, crowded, overload
        (shares of capacity); NULL where that value is not overridden. One read; empty when
        the store does not exist yet."""
        if not self.path.exists():
            return pd.DataFrame(columns=["site_id", "capacity", "busy", "crowded", "overload"])
        return self._read(
            """SELECT coalesce(c.site_id, t.site_id) AS site_id, c.capacity, t.busy,
                   t.crowded, t.overload
            FROM capacity_overrides c FULL OUTER JOIN alert_thresholds t
              ON c.site_id = t.site_id
            ORDER BY 1"""
        )

    def capacity_overrides(self) -> pd.DataFrame:
        """site_id, capacity, updated_at_utc, updated_by of every capacity override."""
        return self._read("SELECT * FROM capacity_overrides ORDER BY site_id")

    def set_capacity(
        self, site_id: str, capacity: int | None, updated_by: str, now_utc: datetime,
        baseline: int | None = None,
    ) -> None:
        """Give a site its own capacity (None: back to the catalogue's), logged in change_log
        with the capacity in force before (`baseline`, the catalogue's, if it had none)."""
        _check_admin_id(site_id)
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                     or not 0 < capacity <= MAX_CAPACITY):
            raise ValueError(f"capacity must be a whole number of people in 1..{MAX_CAPACITY}")
        with self._writing() as con:
            row = con.execute("SELECT capacity FROM capacity_overrides WHERE site_id = ?",
                              [site_id]).fetchone()
            before = row[0] if row else baseline
            if capacity is None:
                con.execute("DELETE FROM capacity_overrides WHERE site_id = ?", [site_id])
            else:
                con.execute("INSERT OR REPLACE INTO capacity_overrides VALUES (?, ?, ?, ?)",
                            [site_id, capacity, now_utc, updated_by])
            after = baseline if capacity is None else capacity
            _log_change(con, now_utc, updated_by, "capacity", site_id, None,
                        None if before is None else str(before),
                        None if after is None else str(after))

    def action_texts(self) -> pd.DataFrame:
        """Recommended action texts edited in the dashboard: site_id ('*': default),
        action_key, lang, text, updated_at_utc, updated_by."""
        return self._read("SELECT * FROM action_texts ORDER BY site_id, action_key, lang")

    def set_action_text(
        self, site_id: str, action_key: str, lang: str, text: str, updated_by: str,
        now_utc: datetime, baseline: str | None = None,
    ) -> None:
        """Store an operator's recommended action text, logged in change_log with the text
        in force before (`baseline`, the file's, if none was edited)."""
        _check_admin_id(site_id, every_site=True)
        if action_key not in ACTION_KEYS:
            raise ValueError(f"unknown action key {action_key!r}")
        if lang not in ACTION_LANGUAGES:
            raise ValueError(f"unknown language {lang!r}")
        text = text.strip()
        if not text or len(text) > 2000:
            raise ValueError("an action text needs 1–2000 characters")
        with self._writing() as con:
            row = con.execute(
                "SELECT text FROM action_texts WHERE site_id = ? AND action_key = ? "
                "AND lang = ?", [site_id, action_key, lang]).fetchone()
            con.execute("INSERT OR REPLACE INTO action_texts VALUES (?, ?, ?, ?, ?, ?)",
                        [site_id, action_key, lang, text, now_utc, updated_by])
            _log_change(con, now_utc, updated_by, "action", site_id,
                        f"{action_key}.{lang}", row[0] if row else baseline, text)

    def change_log(self, limit: int = 500) -> pd.DataFrame:
        """Changes of capacities, thresholds and actions, newest first: changed_at_utc,
        changed_by, what, site_id, item, old_value, new_value."""
        return self._read(
            "SELECT * FROM change_log ORDER BY changed_at_utc DESC LIMIT $1", [limit]
        )

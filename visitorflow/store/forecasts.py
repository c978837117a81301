"""Forecast runs, their hourly and daily forecasts, and backtests: written by
`forecasting`, read by the dashboard, the alerts, the public pages and the notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import pandas as pd

from visitorflow.store.base import transaction
from visitorflow.store.connection import StoreConnection

_GRANULARITY = {"hourly": ("forecast_hourly", "ts_utc"), "daily": ("forecast_daily", "day_local")}


def _site_list(site_ids: Sequence[str] | None) -> list[str] | None:
    return None if site_ids is None else list(site_ids)


class ForecastTables(StoreConnection):
    """Forecasts and backtests."""

    def write_forecast_run(
        self, run: dict, sites: pd.DataFrame, hourly: pd.DataFrame, daily: pd.DataFrame
    ) -> None:
        """Store one forecast run atomically. `run`: run_id, created_at_utc, history_end_utc,
        settings_json, sites_ok, sites_failed, wall_s; the frames carry the columns of
        forecast_sites, forecast_hourly and forecast_daily (run_id is added here)."""
        tables = {"forecast_sites": sites, "forecast_hourly": hourly, "forecast_daily": daily}
        with self._writing() as con:
            con.execute(
                "INSERT INTO forecast_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [run["run_id"], run["created_at_utc"], run["history_end_utc"],
                 run["settings_json"], run["sites_ok"], run["sites_failed"], run.get("wall_s")],
            )
            for table, frame in tables.items():
                if frame.empty:
                    continue
                columns = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()]
                # A column added by a later migration (forecast_sites.model) may be absent
                # from a caller's frame: NULL, as in the runs written before it.
                con.register("staged", frame.assign(run_id=run["run_id"]).reindex(
                    columns=columns))
                con.execute(f"INSERT INTO {table} SELECT * FROM staged")
                con.unregister("staged")

    def forecast_runs(self, limit: int = 50) -> pd.DataFrame:
        """Forecast runs, newest first."""
        return self._read(
            "SELECT * FROM forecast_runs ORDER BY created_at_utc DESC, run_id DESC LIMIT $1",
            [limit],
        )

    def forecast_sites(self, run_id: str) -> pd.DataFrame:
        """Per site of one run: status (ok | failed), message, fit seconds, regressors,
        model (the forecaster used; NULL in runs before the choice existed),
        backtest_mae_ratio (that forecaster's MAE / weekly-naive MAE in the newest backtest
        before the run), band_scale and prophet_share (Prophet's share in the preferred
        candidate, when that was the forecaster used)."""
        return self._read(
            "SELECT * FROM forecast_sites WHERE run_id = $1 ORDER BY site_id", [run_id]
        )

    def forecast_skill(self, site_id: str | None = None) -> pd.DataFrame:
        """Per site, from the newest run in which its fit succeeded (the run whose forecast
        `latest_forecast` shows): site_id, run_id, model (NULL before runs recorded it),
        backtest_mae_ratio (NULL: never backtested), prophet_share (NULL unless the model
        was the preferred mix and the run recorded its share)."""
        return self._read(
            """WITH chosen AS (
                SELECT s.site_id, arg_max(s.run_id, r.created_at_utc) AS run_id
                FROM forecast_sites s JOIN forecast_runs r USING (run_id)
                WHERE s.status = 'ok' AND ($1::VARCHAR IS NULL OR s.site_id = $1)
                GROUP BY s.site_id)
            SELECT s.site_id, s.run_id, s.model, s.backtest_mae_ratio, s.prophet_share
            FROM forecast_sites s JOIN chosen USING (site_id, run_id)
            ORDER BY s.site_id""",
            [site_id],
        )

    def latest_forecast(
        self, site_id: str | None = None, granularity: str = "hourly", run_id: str | None = None
    ) -> pd.DataFrame:
        """Each site's forecast from the newest run in which its fit succeeded (a site whose
        latest fit failed keeps its previous forecast), or from `run_id` if given.
        hourly: site_id, ts_utc, is_open, arrivals(_lower/_upper), occupancy(_upper),
        capacity, p_overload, arrivals_median (NULL in runs before it was kept); daily:
        site_id, day_local, arrivals(_lower/_upper), festival; both with run_id and
        run_created_at_utc."""
        if granularity not in _GRANULARITY:
            raise ValueError("granularity must be 'hourly' or 'daily'")
        table, time_col = _GRANULARITY[granularity]
        return self._read(
            f"""WITH chosen AS (
                SELECT s.site_id, arg_max(s.run_id, r.created_at_utc) AS run_id,
                       max(r.created_at_utc) AS run_created_at_utc
                FROM forecast_sites s JOIN forecast_runs r USING (run_id)
                WHERE s.status = 'ok'
                  AND ($1::VARCHAR IS NULL OR s.site_id = $1)
                  AND ($2::VARCHAR IS NULL OR s.run_id = $2)
                GROUP BY s.site_id)
            SELECT f.*, c.run_created_at_utc
            FROM {table} f JOIN chosen c USING (site_id, run_id)
            ORDER BY f.site_id, f.{time_col}""",  # table names are constants
            [site_id, run_id],
        )

    def forecast_hourly_range(
        self,
        start_utc: datetime,
        end_utc: datetime,
        site_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Hourly forecasts of every run (or of `run_ids`) for hours in [start, end), with
        the run's created_at_utc and history_end_utc: what was forecast, and when."""
        return self._read(
            """SELECT f.*, r.created_at_utc AS run_created_at_utc, r.history_end_utc
            FROM forecast_hourly f JOIN forecast_runs r USING (run_id)
            WHERE f.ts_utc >= $1 AND f.ts_utc < $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], f.site_id))
              AND ($4::VARCHAR[] IS NULL OR list_contains($4::VARCHAR[], f.run_id))
            ORDER BY f.ts_utc, f.site_id, r.created_at_utc""",
            [start_utc, end_utc, _site_list(site_ids), _site_list(run_ids)],
        )

    def forecast_daily_range(
        self, first_day: date, last_day: date, site_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Daily forecasts of every run for local days first_day..last_day (inclusive)."""
        return self._read(
            """SELECT f.*, r.created_at_utc AS run_created_at_utc, r.history_end_utc
            FROM forecast_daily f JOIN forecast_runs r USING (run_id)
            WHERE f.day_local >= $1 AND f.day_local <= $2
              AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], f.site_id))
            ORDER BY f.day_local, f.site_id, r.created_at_utc""",
            [first_day, last_day, _site_list(site_ids)],
        )

    def write_backtest(self, frame: pd.DataFrame) -> int:
        """Store backtest rows (the forecast_backtests columns)."""
        with self._connect(read_only=False) as con:
            columns = [c[0] for c in con.execute("DESCRIBE forecast_backtests").fetchall()]
            with transaction(con, staged=frame[columns]):
                con.execute("INSERT INTO forecast_backtests SELECT * FROM staged")
        return len(frame)

    def write_backtest_models(self, frame: pd.DataFrame) -> int:
        """Store every candidate forecaster's backtest score (forecast_backtest_models)."""
        if frame.empty:
            return 0
        with self._connect(read_only=False) as con:
            columns = [c[0] for c in con.execute(
                "DESCRIBE forecast_backtest_models").fetchall()]
            # A column added by a later migration (band_scale, prophet_share) may be absent: NULL.
            with transaction(con, staged=frame.reindex(columns=columns)):
                con.execute("INSERT INTO forecast_backtest_models SELECT * FROM staged")
        return len(frame)

    def latest_model_scores(self) -> pd.DataFrame:
        """Per site, every candidate's score from the newest backtest that scored the site's
        candidates: backtest_id, created_at_utc, site_id, model, folds, open_hours, mae,
        mae_ratio, busiest_mae_ratio, band_scale, prophet_share."""
        return self._read(
            """WITH newest AS (
                SELECT m.site_id, arg_max(m.backtest_id, b.created_at_utc) AS backtest_id
                FROM forecast_backtest_models m
                JOIN forecast_backtests b USING (backtest_id, site_id)
                GROUP BY m.site_id)
            SELECT m.*, b.created_at_utc
            FROM forecast_backtest_models m JOIN newest USING (site_id, backtest_id)
            JOIN forecast_backtests b USING (backtest_id, site_id)
            ORDER BY m.site_id, m.mae_ratio"""
        )

    def latest_backtest(self) -> pd.DataFrame:
        """The rows of the newest backtest, one per site."""
        return self._read(
            """SELECT * FROM forecast_backtests
            WHERE backtest_id = (SELECT arg_max(backtest_id, created_at_utc)
                                 FROM forecast_backtests)
            ORDER BY site_id"""
        )

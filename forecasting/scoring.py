"""Scoring a backtest's folds: pooled errors against the weekly naive, every candidate
forecaster on the same hours, festival-day peaks, and how often a band covers the counts.
DataFrames in, numbers out; `forecasting.backtest` makes the folds."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from forecasting.candidates import PREFERRED_MODEL, mix, moved_band, prophet_share

# The busiest hours scored apart: a tenth of the hours holds the peaks that raise alerts.
BUSIEST_SHARE = 0.1
# The band a forecast shows (settings.forecast.interval is 0.8 too): what `band_scale` aims at.
BAND_COVERAGE = 0.8
# Limits of a band's calibration: a backtest of a few quiet weeks must not shrink a band to a
# line nor blow it up.
BAND_SCALE_RANGE = (0.3, 3.0)


def score(
    scored: pd.DataFrame, festival_days: frozenset[date], folds: int, hours: int, site_id: str,
    occurrences: pd.DataFrame | None = None,
) -> dict:
    """Pooled errors of `model` and `naive` against `actual` on open hours where all three
    are known. scored: ds, is_open, model, naive, actual (optional: origin, p_overload,
    overloaded). Hours forecast by several folds count once per fold."""
    ok = scored[scored["is_open"] & scored["actual"].notna() & scored["naive"].notna()]
    err = (ok["model"] - ok["actual"]).abs()
    err_naive = (ok["naive"] - ok["actual"]).abs()
    positive = ok["actual"] > 0
    on_festival = ok["ds"].dt.date.isin(festival_days)
    mae, mae_naive = _mean(err), _mean(err_naive)
    fest = ok[on_festival]
    keys = [fest["ds"].dt.date] if "origin" not in fest else [fest["origin"], fest["ds"].dt.date]
    totals = fest.groupby(keys)[["model", "actual"]].sum()
    totals = totals[totals["actual"] > 0]
    peaks = festival_peaks(ok, occurrences)
    row = {
        "site_id": site_id, "folds": folds, "horizon_h": hours, "open_hours": int(len(ok)),
        "mae": mae, "mae_naive": mae_naive,
        "mae_ratio": mae / mae_naive if mae_naive else None,
        "mape_open": _mean(err[positive] / ok.loc[positive, "actual"]),
        "mae_festival": _mean(err[on_festival]),
        "mae_naive_festival": _mean(err_naive[on_festival]),
        "festival_day_err": _mean((totals["model"] - totals["actual"]).abs() / totals["actual"]),
        "festival_peak_err": _mean(peaks["peak_err"]) if len(peaks) else None,
        "festival_peak_max_err": float(peaks["peak_err"].max()) if len(peaks) else None,
        "festival_peaks": int(len(peaks)),
        "message": None,
    }
    if "p_overload" in ok:
        p, hit = ok["p_overload"].to_numpy(float), ok["overloaded"].to_numpy(bool)
        row["overload_hours"] = int(hit.sum())
        row["overload_brier"] = float(np.mean((p - hit) ** 2)) if len(p) else None
    return row


def score_models(scored: pd.DataFrame, busiest_share: float = BUSIEST_SHARE) -> pd.DataFrame:
    """Each candidate's pooled error on the same hours: open, counted, with a naive forecast
    and a value from every candidate scored. scored: is_open, actual, naive, and
    `candidate_<model>` columns (optional: model, model_lower, model_upper, Prophet's median
    and band). Returns model, folds, open_hours, mae, mae_ratio (to the weekly naive on those
    hours), busiest_mae_ratio (the same on the `busiest_share` of those hours with the most
    arrivals: they decide the overload alerts), band_scale (`band_scale` of Prophet's band
    moved to the candidate, as a forecast run moves it; NaN without a band) and prophet_share:
    on the preferred model's row, Prophet's share in it that erred least on these hours
    (`forecasting.candidates.prophet_share`, when the prophet and lgbm candidates were scored
    too), and the row scores the preferred model at that share; NaN on the other rows."""
    columns = [c for c in scored if c.startswith("candidate_")]
    ok = scored[scored["is_open"] & scored["actual"].notna() & scored["naive"].notna()
                & scored[columns].notna().all(axis=1)]
    shares = {}
    parts = [f"candidate_{m}" for m in (PREFERRED_MODEL, "lgbm", "prophet")]
    if set(parts) <= set(columns):
        share = prophet_share(ok["actual"], ok[parts[1]], ok[parts[2]])
        ok = ok.assign(**{parts[0]: mix(ok[parts[1]], ok[parts[2]], share)})
        shares[PREFERRED_MODEL] = share
    busiest = ok["actual"] >= ok["actual"].quantile(1 - busiest_share) if len(ok) else ok["actual"]
    naive_err = (ok["naive"] - ok["actual"]).abs()
    rows = []
    for column in columns:
        err = (ok[column] - ok["actual"]).abs()
        mae, mae_naive = _mean(err), _mean(naive_err)
        top, top_naive = _mean(err[busiest]), _mean(naive_err[busiest])
        scale = None
        if {"model", "model_lower", "model_upper"} <= set(ok) and len(ok):
            point = ok[column].to_numpy(float)
            lower, upper = moved_band(ok["model_lower"], ok["model"], ok["model_upper"], point)
            scale = band_scale(ok["actual"].to_numpy(float), point, lower, upper)
        model = column.removeprefix("candidate_")
        rows.append({
            "model": model,
            "folds": int(ok["origin"].nunique()) if "origin" in ok else 1,
            "open_hours": int(len(ok)), "mae": mae,
            "mae_ratio": mae / mae_naive if mae_naive else None,
            "busiest_mae_ratio": top / top_naive if top_naive else None,
            "band_scale": scale,
            "prophet_share": shares.get(model),
        })
    return pd.DataFrame(rows, columns=["model", "folds", "open_hours", "mae", "mae_ratio",
                                       "busiest_mae_ratio", "band_scale", "prophet_share"])


def band_scale(actual: np.ndarray, point: np.ndarray, lower: np.ndarray, upper: np.ndarray,
               coverage: float = BAND_COVERAGE) -> float | None:
    """The factor by which the band's distances from `point` must be multiplied for the band
    to cover `coverage` of these hours (split conformal calibration): the `coverage` quantile of
    each count's distance from the point in units of the band's half on its side. 1: the band
    was right; 0.7: it was too wide. Clipped to BAND_SCALE_RANGE; None without a known hour."""
    actual, point = np.asarray(actual, float), np.asarray(point, float)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    known = ~(np.isnan(actual) | np.isnan(point) | np.isnan(lower) | np.isnan(upper))
    if not known.any():
        return None
    a, p, lo, hi = actual[known], point[known], lower[known], upper[known]
    with np.errstate(divide="ignore", invalid="ignore"):
        below = np.where(a < p, (p - a) / (p - lo), 0.0)
        above = np.where(a > p, (a - p) / (hi - p), 0.0)
    # A count off the point where the band has no width there needs an infinite scale.
    distance = np.nan_to_num(np.maximum(below, above), nan=np.inf, posinf=np.inf)
    return float(np.clip(np.quantile(distance, coverage, method="higher"), *BAND_SCALE_RANGE))


def band_coverage(actual: pd.Series, lower: pd.Series, upper: pd.Series) -> float | None:
    """The share of hours whose count lies within the band (ends included), over the hours
    where all three are known: an honest 80 % band covers about 80 %."""
    frame = pd.DataFrame({"a": actual, "lo": lower, "hi": upper}).dropna()
    if frame.empty:
        return None
    return float(((frame["a"] >= frame["lo"]) & (frame["a"] <= frame["hi"])).mean())


def festival_peaks(ok: pd.DataFrame, occurrences: pd.DataFrame | None) -> pd.DataFrame:
    """The festival-day peak error, per festival occurrence of the site: the peak day is the
    occurrence's day with the most counted arrivals among the days a fold forecast from before
    the festival began; its error is |forecast − actual| / actual of that day's total (open
    hours). With several such folds, the one starting latest (closest to the festival) counts.
    Returns festival_id, occurrence, origin, day, model, actual, peak_err."""
    columns = ["festival_id", "occurrence", "origin", "day", "model", "actual", "peak_err"]
    if occurrences is None or occurrences.empty or "origin" not in ok or ok.empty:
        return pd.DataFrame(columns=columns)
    daily = ok.groupby([ok["origin"], ok["ds"].dt.normalize().rename("day")])[
        ["model", "actual"]].sum().reset_index()
    occ = occurrences.assign(day=pd.to_datetime(occurrences["date"]))
    first = occ.groupby(["festival_id", "occurrence"])["day"].transform("min")
    occ = occ.assign(first_day=first)
    merged = daily.merge(occ[["festival_id", "occurrence", "day", "first_day"]], on="day")
    merged = merged[merged["origin"] <= merged["first_day"]]
    if merged.empty:
        return pd.DataFrame(columns=columns)
    merged = merged[merged["origin"] == merged.groupby(["festival_id", "occurrence"])[
        "origin"].transform("max")]
    merged = merged[merged["actual"] > 0]
    peaks = merged.loc[merged.groupby(["festival_id", "occurrence"])["actual"].idxmax()]
    peaks = peaks.assign(peak_err=(peaks["model"] - peaks["actual"]).abs() / peaks["actual"])
    return peaks[columns].reset_index(drop=True)


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None

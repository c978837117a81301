"""Nowcast: correct the rest of today's forecast with what the counters saw in the
last hours, before the forecast alerts look at it.

Prophet is refitted a few times a day; between refits a festival day that runs hotter (or
colder) than forecast shows first in the morning's arrivals. For each site:

    ratio = (actual + prior) / (forecast + prior)

over the last `alerts.nowcast_hours` complete hours in which the forecast says the site is
open and the store holds counts (an hour with no count is unknown, not zero), with
`alerts.nowcast_prior_people` added to both sides so that a handful of visitors at opening
cannot swing it, kept within 1/`nowcast_ratio_max` … `nowcast_ratio_max`.

The ratio scales the forecast arrivals of the current hour and the following open hours up
to the next closed hour (today's opening only: yesterday's afternoon says little about
tomorrow's morning). Occupancy is a linear sum of arrivals (Little's law per visitor), so it
scales by the same ratio, and the overload probability is moved on the log scale: with
occupancy treated as lognormal, σ from the forecast's own band (median and upper quantile),

    p' = Φ(Φ⁻¹(p) + ln(ratio) / σ)

which keeps p where the ratio is 1 and needs no new predictive samples. Pure functions over
DataFrames; `visitorflow.alerts.forecast_alerts` applies them.
"""

from __future__ import annotations

from datetime import datetime
from statistics import NormalDist

import numpy as np
import pandas as pd

_NORMAL = NormalDist()
_P_EDGE = 0.002  # p of 0 or 1 from finite samples: keep a little room to move
_SIGMA_MIN = 0.05  # a band of zero width would make any ratio flip the probability


def nowcast_ratios(
    forecast: pd.DataFrame, recent: pd.DataFrame, now_utc: datetime, hours: int,
    prior_people: float, ratio_max: float,
) -> pd.DataFrame:
    """Per site: actual and forecast arrivals over the last `hours` complete open hours, and
    the ratio (sites with no hour both forecast open and counted are left out: ratio 1).

    forecast: site_id, ts_utc (hour start), is_open, arrivals (people/hour), optionally
    arrivals_median (the median where `arrivals` leans toward the crowd on busy hours: the
    counts are compared with the median; NULL in older runs, whose `arrivals` were it);
    recent: site_id, hour_utc, arrivals (`Store.hourly_arrivals`).
    Returns site_id, actual, expected (people), hours_used, ratio."""
    columns = ["site_id", "actual", "expected", "hours_used", "ratio"]
    if hours <= 0 or forecast.empty or recent is None or recent.empty:
        return pd.DataFrame(columns=columns)
    now_hour = pd.Timestamp(now_utc).floor("h")
    since = now_hour - pd.Timedelta(hours=hours)
    ts = pd.to_datetime(forecast["ts_utc"])
    keep = ((ts >= since) & (ts < now_hour) & forecast["is_open"].astype(bool)).to_numpy()
    if not keep.any():
        return pd.DataFrame(columns=columns)
    median = forecast["arrivals"]
    if "arrivals_median" in forecast:
        median = forecast["arrivals_median"].astype(float).fillna(median)
    expected = pd.Series(median.to_numpy(float)[keep],
                         index=pd.MultiIndex.from_arrays(
                             [forecast["site_id"].to_numpy()[keep], ts.to_numpy()[keep]]))
    actual = pd.Series(recent["arrivals"].to_numpy(float), index=pd.MultiIndex.from_arrays(
        [recent["site_id"].to_numpy(), pd.to_datetime(recent["hour_utc"]).to_numpy()]))
    both = pd.DataFrame({"expected": expected, "actual": actual}).dropna()
    if both.empty:
        return pd.DataFrame(columns=columns)
    grouped = both.groupby(level=0)
    sums = grouped.sum()
    sums["hours_used"] = grouped.size()
    ratio = (sums["actual"] + prior_people) / (sums["expected"] + prior_people)
    sums["ratio"] = ratio.clip(1 / ratio_max, ratio_max)
    return sums.rename_axis("site_id").reset_index()[columns]


def apply_nowcast(
    forecast: pd.DataFrame, ratios: pd.DataFrame, now_utc: datetime, interval_width: float,
) -> pd.DataFrame:
    """The forecast with today's remaining open hours scaled by each site's ratio: arrivals
    (and arrivals_median), occupancy and occupancy_upper times the ratio, p_overload moved as
    the module says.
    The unscaled probability is kept in `p_overload_model`; `nowcast_ratio` says what was
    applied (1 elsewhere). Rows must be sorted by site and hour (as the store returns them)."""
    out = forecast.copy()
    out["p_overload_model"] = out["p_overload"]
    out["nowcast_ratio"] = 1.0
    if ratios is None or ratios.empty or out.empty:
        return out
    now_hour = pd.Timestamp(now_utc).floor("h")
    ratio = out["site_id"].map(ratios.set_index("site_id")["ratio"]).fillna(1.0).to_numpy()
    ahead = (pd.to_datetime(out["ts_utc"]) >= now_hour).to_numpy()
    closed = ~out["is_open"].astype(bool).to_numpy()
    # Today's opening only: hours from now up to the first closed one, per site.
    closed_seen = pd.Series(closed & ahead).groupby(out["site_id"].to_numpy()).cumsum() > 0
    rows = ahead & ~closed_seen.to_numpy() & (ratio != 1.0)
    if not rows.any():
        return out
    r = ratio[rows]
    occ = out["occupancy"].to_numpy(float)[rows]
    upper = out["occupancy_upper"].to_numpy(float)[rows]
    z_upper = _NORMAL.inv_cdf((1 + interval_width) / 2)
    sigma = np.maximum(np.log((upper + 1) / (occ + 1)) / z_upper, _SIGMA_MIN)
    p = np.clip(out["p_overload"].to_numpy(float)[rows], _P_EDGE, 1 - _P_EDGE)
    z = np.array([_NORMAL.inv_cdf(v) for v in p]) + np.log(r) / sigma
    index = out.index[rows]
    out.loc[index, "p_overload"] = [_NORMAL.cdf(v) for v in z]
    for column in ("arrivals", "arrivals_median", "occupancy", "occupancy_upper"):
        if column in out:
            out.loc[index, column] = out.loc[index, column].to_numpy(float) * r
    out.loc[index, "nowcast_ratio"] = r
    return out

"""The forecasters a site's hourly forecast can come from, and the choice among them.

Prophet is the backbone: it carries the lunar festivals, the seasons, the frost and the
weekday profiles, and its components explain a forecast to a planner. What it cannot see is
how the last weeks ran against the usual; on real counter series it lost to "the same hour
last week" on 2 of 6 series where a gradient-boosted model on lags did not
(bench/results.md, "Real counter series"). So each site's forecast comes from one of:

- `prophet`: the seasonal model alone;
- `prophet_lgbm`: the mean of Prophet and LightGBM on calendar and weekly-lag features
  (`forecasting.baselines.gradient_boosted_pair`: the mean of a model of the counts and one
  of the counts relative to their recent level, both told how the last day before the
  forecast ran against the usual, with Prophet's temperature as a feature at temperature
  sites);
- `lgbm_prophet`: LightGBM mixed with a share of Prophet, the preferred model (below): the
  share (0 to a half) that erred least over the site's newest backtest (`prophet_share`), a
  quarter before any backtest;
- `lgbm`: the LightGBM model alone;
- `mean4w`: the mean of the same weekday-hour over the last four weeks;
- `naive`: the same hour last week (the fallback when nothing beat it).

Whatever the candidate, two things stay Prophet's: the days of the site's festivals and the
Tết days off (`SiteCalendar.festival_days`, `days_off`: a festival is not in last week's
counts, and Prophet's festival and peak-day profiles are what the overload alerts rest on),
and the hours beyond the first week (every weekly lag is a week or more old, so the lag
models forecast one week ahead). National holidays and the days around them are the lag
models' too: LightGBM has them as features (`holiday` on a holiday's own days, and
`holiday_offset`, the days from the nearest one, on every day a holiday effect reaches:
`forecasting.calendar.holiday_offsets`), and keeping them Prophet's cost the real series
where Prophet is weak (bench/results.md, "Real counter series": in New Zealand's calendar a
day in ten is in a holiday window).
Closed hours are 0.

The newest backtest (`forecasting.backtest`) scores every candidate on the same folds, and a
run takes per site the preferred `lgbm_prophet` unless another candidate erred at least
SWITCH_MARGIN less over those folds, or the preferred did not beat the weekly naive
(`choose_model`: then the best, the naive itself when nothing beat it). Why a preferred model
and a margin rather than the best of each backtest: on six real counter series over a year of
weekly folds, the free choice of the best over the last 4 weeks paid for its switches
(geometric mean of the MAE ratio to naive 0.791 against 0.780 for LightGBM alone); the fixed
3:1 mix scored 0.770, the best on 5 of 6 series, and the margin keeps that while still
leaving a model that loses to naive (bench/results.md, "Preferred blend and calibrated
bands"). Prophet's share in that mix is the site's own, chosen among PROPHET_SHARES on the same
folds: on nine real series the share that erred least over a year ran from none (45 Queen
Street, whose crowd doubled within the year while Prophet's trend followed late) to 0.3
(Washington's casual riders), and the share chosen at each origin from the last eight
finished folds scored 0.743 against 0.748 for a fixed quarter (bench/results.md, "Prophet's
share per site": better on five series, up to 0.03 at 45 Queen Street; worse on three, by
0.007 at most, at Washington, where the best share moved from season to season).

On the hours it expects busier than its usual open hour, the arrivals a run stores and shows
lean a little toward the crowd: `settings.forecast.crowd_lean` of the way from the median to
the band's upper edge (`busier_than_usual`, `lean_to_crowd`). The median is stored beside
them (`arrivals_median`); the band, occupancy and `p_overload` stay the distribution's.

The predictive distribution stays Prophet's, moved to the chosen median (`recentre`): each
open hour's samples are scaled (or, for a median under one person, shifted) so that their
median is the chosen forecast, then widened or narrowed around it by the backtest's band
scale (`widen`, `forecasting.scoring.band_scale`: the factor that made the 80 % band cover
80 % of the backtest's hours; Prophet's spread moved to a better median covered 86–91 % on
four real series). `p_overload` and the bands come from those samples.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from forecasting.baselines import (
    HOURS_PER_WEEK,
    gradient_boosted_pair,
    mean_of_weeks,
    regular_hours,
    weekly_naive,
)
from forecasting.calendar import SiteCalendar, holiday_offsets
from forecasting.features import open_mask
from visitorflow.catalogue import Site

MODELS = ("prophet", "prophet_lgbm", "lgbm_prophet", "lgbm", "mean4w", "naive")
# The backbone: what a forecast is when no other candidate can be made (too little history
# for LightGBM) and what the backtest's own columns score.
DEFAULT_MODEL = "prophet"
# The candidate a run uses unless the backtest says otherwise (see above).
PREFERRED_MODEL = "lgbm_prophet"
# Prophet's share in the preferred mix before a backtest has chosen one, and the shares a
# backtest chooses among: above a half, the mix would be Prophet corrected, which is
# `prophet_lgbm`'s place, and on real series no site's best share came near it.
DEFAULT_PROPHET_SHARE = 0.25
PROPHET_SHARES = tuple(round(0.05 * k, 2) for k in range(11))
# Another candidate replaces the preferred one only when it erred this much less in the
# backtest: a few weekly folds choose noisily, and each switch cost accuracy on real series.
SWITCH_MARGIN = 0.10
# Models that need the LightGBM fits (two models, one to two seconds each per site here).
NEEDS_LGBM = frozenset({"prophet_lgbm", "lgbm_prophet", "lgbm"})
# A median this small is recentred by a shift, not a scale: scaling samples around a median
# near zero would blow the band up or collapse it.
SCALE_FLOOR = 1.0


def site_hours(history: pd.DataFrame, site: Site, end: datetime) -> pd.Series:
    """The site's arrivals on a complete local-hour grid up to `end` (exclusive): closed hours
    0, open hours without a count NaN (an outage is unknown, not empty)."""
    known = history[["ds", "arrivals"]].dropna()
    known = known[known["ds"] < pd.Timestamp(end)]
    if known.empty:
        return pd.Series(dtype=float)
    y = regular_hours(known.set_index("ds")["arrivals"], end)
    closed = ~open_mask(site, pd.Series(y.index))
    return y.mask(closed, 0.0)


def candidate_forecasts(
    history: pd.DataFrame,
    site: Site,
    calendar: SiteCalendar,
    start_local: datetime,
    hours: int,
    prophet: np.ndarray,
    models: tuple[str, ...] = MODELS,
    temperature: pd.DataFrame | None = None,
    prophet_share: float = DEFAULT_PROPHET_SHARE,
) -> pd.DataFrame:
    """Median hourly arrivals of the `models` for the `hours` hours from `start_local`:
    ds and one column per model. `prophet` is Prophet's median for those hours (after its
    holiday day totals); `history` (ds, arrivals) is read only before `start_local`;
    `prophet_share` is Prophet's share in PREFERRED_MODEL (`prophet_share`).
    A model that cannot forecast (too little history for LightGBM) is left out, never
    raised: the caller keeps Prophet."""
    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {', '.join(MODELS)}")
    if not 0 <= prophet_share <= 1:
        raise ValueError(f"Prophet's share {prophet_share!r}: must be between 0 and 1")
    start = pd.Timestamp(start_local)
    ds = pd.date_range(start, periods=hours, freq="h")
    prophet = np.asarray(prophet, float)
    if len(prophet) != hours:
        raise ValueError(f"{len(prophet)} Prophet values for {hours} hours")
    out = pd.DataFrame({"ds": ds, "prophet": prophet})
    lag_models = [m for m in models if m != "prophet"]
    y = site_hours(history, site, start)
    if not lag_models or y.empty:
        return out
    week = min(hours, HOURS_PER_WEEK)
    points: dict[str, np.ndarray] = {}
    points["naive"] = weekly_naive(y, start, week)["point"].to_numpy()
    points["mean4w"] = mean_of_weeks(y, start, week)["point"].to_numpy()
    if NEEDS_LGBM & set(models):
        exog = None
        if temperature is not None:
            exog = temperature.drop_duplicates("ds").set_index("ds")[["temp_c"]]
        holidays = holiday_offsets(calendar.holidays)
        try:
            points["lgbm"] = gradient_boosted_pair(y, start, week, holidays, exog,
                                                   band=False)["point"].to_numpy()
            points["prophet_lgbm"] = (points["lgbm"] + prophet[:week]) / 2
            points["lgbm_prophet"] = mix(points["lgbm"], prophet[:week], prophet_share)
        except ValueError:  # too little history to train on: no learned candidate
            pass
    # Prophet's where a lag model is blind: festivals, beyond the first week, hours a lag
    # model has no value for (an outage four weeks long), and closed hours stay 0.
    keep = ds.normalize().isin(calendar.festival_days.union(calendar.days_off))
    is_open = open_mask(site, pd.Series(ds))
    for model in lag_models:
        if model not in points:
            continue
        value = prophet.copy()
        lag = points[model]
        usable = ~keep[:week] & ~np.isnan(lag)
        value[:week][usable] = lag[usable]
        value[~is_open] = 0.0
        out[model] = np.clip(value, 0, None)
    return out


def mix(lgbm: np.ndarray, prophet: np.ndarray, prophet_share: float) -> np.ndarray:
    """The preferred model's median: LightGBM's and Prophet's, Prophet weighing
    `prophet_share`."""
    return (1 - prophet_share) * np.asarray(lgbm, float) + prophet_share * np.asarray(
        prophet, float)


def prophet_share(actual: np.ndarray, lgbm: np.ndarray, prophet: np.ndarray) -> float:
    """Of PROPHET_SHARES, the share whose `mix` of the `lgbm` and `prophet` candidates erred
    least (absolute error) on the hours where all three are known; the smaller share on a tie,
    DEFAULT_PROPHET_SHARE without such an hour. Both candidates must be the ones
    `candidate_forecasts` makes (Prophet's on festival days in both), so that their mix is
    the preferred model at that share."""
    actual, lgbm, prophet = (np.asarray(a, float) for a in (actual, lgbm, prophet))
    known = ~(np.isnan(actual) | np.isnan(lgbm) | np.isnan(prophet))
    if not known.any():
        return DEFAULT_PROPHET_SHARE
    actual, lgbm, prophet = actual[known], lgbm[known], prophet[known]
    errors = [np.abs(mix(lgbm, prophet, share) - actual).sum() for share in PROPHET_SHARES]
    return float(PROPHET_SHARES[int(np.argmin(errors))])


def recentre(samples: np.ndarray, point: np.ndarray) -> None:
    """Move, in place, each row's samples (rows: hours) so that its median is `point`:
    scaled where the median is at least SCALE_FLOOR, shifted below it, floored at 0."""
    median = np.median(samples, axis=1)
    point = np.asarray(point, float)
    scale = median >= SCALE_FLOOR
    ratio = np.divide(point, median, out=np.ones_like(point), where=scale)
    samples[scale] *= ratio[scale, None]
    samples[~scale] += (point - median)[~scale, None]
    np.clip(samples, 0, None, out=samples)


def moved_band(lower: np.ndarray, median: np.ndarray, upper: np.ndarray,
               point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A band given by its quantiles (`lower`, `median`, `upper` per hour) moved to `point` as
    `recentre` moves samples: the new lower and upper. How a candidate gets Prophet's band in
    the backtest and the benchmark, where only those three quantiles are kept."""
    band = np.column_stack([np.asarray(q, float) for q in (lower, median, upper)])
    recentre(band, np.asarray(point, float))
    return band[:, 0], band[:, 2]


def busier_than_usual(point: np.ndarray, is_open: np.ndarray | None = None) -> np.ndarray:
    """The hours (True) a forecast expects busier than its usual open hour: open, and at or
    above the median of its open hours' `point`s (every hour is open without `is_open`)."""
    point = np.asarray(point, float)
    is_open = np.ones(len(point), bool) if is_open is None else np.asarray(is_open, bool)
    known = is_open & ~np.isnan(point)
    if not known.any():
        return np.zeros(len(point), bool)
    with np.errstate(invalid="ignore"):
        return known & (point >= np.median(point[known]))


def lean_to_crowd(point: np.ndarray, upper: np.ndarray, busy: np.ndarray,
                  lean: float) -> np.ndarray:
    """`point` moved, on the `busy` hours, `lean` of the way toward the band's `upper` edge:
    what a forecast shows there (the band stays). 0.07 of the way to an 80 % band's upper edge
    is about the 53.5th percentile of a normal band: a median a little nudged toward the crowd
    it may miss (`settings.forecast.crowd_lean`)."""
    if not 0 <= lean <= 1:
        raise ValueError(f"crowd lean {lean!r}: must be between 0 and 1")
    point, upper = np.asarray(point, float), np.asarray(upper, float)
    up = np.asarray(busy, bool) & (upper > point)
    return np.where(up, point + lean * (upper - point), point)


def widen(samples: np.ndarray, point: np.ndarray, scale: float) -> None:
    """Move, in place, each row's samples (rows: hours) away from `point` (their median) by the
    factor `scale` (< 1 narrows), floored at 0: every quantile of the band moves with them."""
    if scale == 1.0:
        return
    if not scale > 0:
        raise ValueError(f"band scale {scale!r}: must be a positive number")
    point = np.asarray(point, float)[:, None]
    samples -= point
    samples *= scale
    samples += point
    np.clip(samples, 0, None, out=samples)


def choose_model(scores: pd.DataFrame | None) -> tuple[str, float | None]:
    """The model a run uses for one site, from its backtest `scores` (model, mae_ratio), and
    that model's ratio: PREFERRED_MODEL, unless another model's ratio is below (1 −
    SWITCH_MARGIN) × the preferred one's, or the preferred one did not beat naive (ratio ≥ 1)
    or was not scored: then the lowest ratio (a tie goes to the earlier model of MODELS).
    (PREFERRED_MODEL, None) without scores; a run falls back to Prophet when LightGBM cannot
    be trained."""
    if scores is None or scores.empty:
        return PREFERRED_MODEL, None
    known = scores.dropna(subset=["mae_ratio"])
    known = known[known["model"].isin(MODELS)]
    if known.empty:
        return PREFERRED_MODEL, None
    order = {m: i for i, m in enumerate(MODELS)}
    best = min(known.itertuples(), key=lambda r: (r.mae_ratio, order[r.model]))
    preferred = known[known["model"] == PREFERRED_MODEL]["mae_ratio"]
    if len(preferred) and preferred.iloc[0] < 1.0 and not (
            best.mae_ratio < (1 - SWITCH_MARGIN) * preferred.iloc[0]):
        return PREFERRED_MODEL, float(preferred.iloc[0])
    return str(best.model), float(best.mae_ratio)

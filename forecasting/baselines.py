"""Forecasts to beat, for hourly counts on a regular local-hour grid: the weekly seasonal
naive, the mean of the last four same weekday-hours, and a plain gradient-boosted model on
calendar and lag features (LightGBM), each with an 80 % band.

Every function takes `y`: a float Series of counts indexed by consecutive local hour starts
(missing hours NaN) and forecasts `hours` hours from `origin` (a local hour start) using only
values before it. They return a DataFrame: ds, point, lower, upper. Horizons are at most a
week: every lag is a week or more, so a forecast never reads an hour at or after its origin
(`origin_features`, the days just before the origin, read only hours before it too).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

HOURS_PER_WEEK = 168
# Same weekday-hours averaged: four weeks follow a change of season within a month and
# still smooth one odd week (the measured sweet spot on pedestrian series, 0.8-0.95 of naive).
MEAN_WEEKS = 4
# The naive forecast reaches this many weeks back when last week's hour is missing (an
# outage): an older same weekday-hour is a better guess than none.
NAIVE_FALLBACK_WEEKS = 4
# Past errors that set the empirical bands: eight weeks hold 56 errors per hour of day.
BAND_WEEKS = 8
BAND_QUANTILES = (0.1, 0.9)  # an 80 % band
# LightGBM learns from the last two years before the origin: a yearly cycle seen twice.
TRAIN_DAYS = 730
LGBM_ROUNDS = 300
LGBM_PARAMS = {
    "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
    "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.9, "num_threads": 1,
    "seed": 0, "deterministic": True, "verbosity": -1,
}
LAG_WEEKS = (1, 2, 3, 4)
# What a relative model (`gradient_boosted(relative=True)`) divides by its level, and the
# smallest level it divides by: a night of zeros is not a level.
LEVEL_FEATURES = [*(f"lag_{w}w" for w in LAG_WEEKS), "mean_4w", "day_mean_1w"]
LEVEL_FLOOR = 1.0
# The same for the counts that `origin_features` adds (`recent=True`).
RECENT_LEVEL_FEATURES = ["day_mean_origin", "last_day_same_hour"]
# The holidays a lag model knows (`lag_features`): dates, or local day → offset in days.
Holidays = frozenset | pd.Series


def _check(y: pd.Series, origin: datetime, hours: int) -> pd.Timestamp:
    if not isinstance(y.index, pd.DatetimeIndex):
        raise ValueError("y must be indexed by local hour starts (a DatetimeIndex)")
    if not 0 < hours <= HOURS_PER_WEEK:
        raise ValueError(f"horizon of {hours} h: these baselines forecast 1-{HOURS_PER_WEEK} h")
    start = pd.Timestamp(origin)
    if start.minute or start.second:
        raise ValueError(f"origin {start} is not an hour start")
    return start


def regular_hours(y: pd.Series, end: datetime | None = None) -> pd.Series:
    """`y` (indexed by local hour starts, possibly with holes or repeats) on a complete hourly
    grid up to `end` (exclusive; default: its last hour), holes NaN, repeats averaged."""
    y = y.groupby(level=0).mean().sort_index()
    last = pd.Timestamp(end) - pd.Timedelta(hours=1) if end is not None else y.index.max()
    grid = pd.date_range(y.index.min(), max(last, y.index.max()), freq="h")
    return y.reindex(grid).astype(float)


def _weekly_lags(y: pd.Series, ds: pd.DatetimeIndex, weeks: tuple[int, ...]) -> np.ndarray:
    """Rows: ds; columns: y one, two, … weeks before (NaN where unknown)."""
    return np.column_stack([
        y.reindex(ds - pd.Timedelta(hours=HOURS_PER_WEEK * w)).to_numpy(float) for w in weeks])


def _band(point: np.ndarray, ds: pd.DatetimeIndex, past_err: pd.Series) -> tuple[
        np.ndarray, np.ndarray]:
    """Point + the 10 %/90 % quantiles of the method's own errors (actual − forecast) in the
    last BAND_WEEKS, per hour of day (a quiet night and a busy noon err differently)."""
    err = past_err.dropna()
    if err.empty:
        return point.copy(), point.copy()
    by_hour = err.groupby(err.index.hour).quantile(list(BAND_QUANTILES)).unstack()
    overall = err.quantile(list(BAND_QUANTILES)).to_numpy()
    q = by_hour.reindex(range(24)).to_numpy()
    q = np.where(np.isnan(q), overall, q)
    lo = point + q[ds.hour, 0]
    hi = point + q[ds.hour, 1]
    return np.clip(lo, 0, None), np.clip(hi, 0, None)


def _frame(ds: pd.DatetimeIndex, point: np.ndarray, lo: np.ndarray,
           hi: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ds": ds, "point": point, "lower": lo, "upper": hi})


def _naive_values(y: pd.Series, ds: pd.DatetimeIndex) -> np.ndarray:
    lags = _weekly_lags(y, ds, tuple(range(1, NAIVE_FALLBACK_WEEKS + 1)))
    out = np.full(len(ds), np.nan)
    for k in range(lags.shape[1] - 1, -1, -1):  # the nearest known week wins
        out = np.where(np.isnan(lags[:, k]), out, lags[:, k])
    return out


def _repeating(y: pd.Series, origin: datetime, hours: int,
               values: Callable[[pd.Series, pd.DatetimeIndex], np.ndarray]) -> pd.DataFrame:
    """A forecast whose hours are `values(known, ds)` of the counts before `origin`, its band
    from the same rule's errors over the BAND_WEEKS before the origin."""
    start = _check(y, origin, hours)
    ds = pd.date_range(start, periods=hours, freq="h")
    known = y[y.index < start]
    point = values(known, ds)
    past = pd.date_range(start - pd.Timedelta(weeks=BAND_WEEKS), start, freq="h",
                         inclusive="left")
    past_err = pd.Series(known.reindex(past).to_numpy(float) - values(known, past), index=past)
    return _frame(ds, point, *_band(point, ds, past_err))


def weekly_naive(y: pd.Series, origin: datetime, hours: int) -> pd.DataFrame:
    """Each hour repeats the same hour a week earlier (or the nearest earlier week known,
    up to NAIVE_FALLBACK_WEEKS back)."""
    return _repeating(y, origin, hours, _naive_values)


def _mean_values(y: pd.Series, ds: pd.DatetimeIndex) -> np.ndarray:
    lags = _weekly_lags(y, ds, tuple(range(1, MEAN_WEEKS + 1)))
    with np.errstate(invalid="ignore"):
        known = ~np.isnan(lags)
        total = np.where(known, lags, 0.0).sum(axis=1)
        count = known.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def mean_of_weeks(y: pd.Series, origin: datetime, hours: int) -> pd.DataFrame:
    """Each hour is the mean of the same weekday-hour over the last MEAN_WEEKS weeks (the
    weeks known; NaN when none is)."""
    return _repeating(y, origin, hours, _mean_values)


def lag_features(
    y: pd.Series, ds: pd.DatetimeIndex, holidays: Holidays | None = None,
    exog: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The gradient-boosted model's features for the hours `ds`: hour, weekday, day of year,
    holiday, the same weekday-hour 1-4 weeks before and their mean, and the mean of the day and
    of the week that end a week before the hour (the level, as far back as a week-ahead forecast
    can see); plus the columns of `exog` (indexed by hour).

    `holidays` is a set of dates (`holiday` is 1 on them) or a Series of day offsets
    (`forecasting.calendar.holiday_offsets`: local day → days from the nearest holiday day):
    then `holiday` is 1 where the offset is 0 and `holiday_offset` holds the offset (NaN
    outside every window), so the eve of a holiday is not taken for the holiday."""
    lags = _weekly_lags(y, ds, LAG_WEEKS)
    with np.errstate(invalid="ignore"):
        mean4 = _mean_values(y, ds)
    day_mean = y.rolling(24, min_periods=12).mean()
    week_mean = y.rolling(HOURS_PER_WEEK, min_periods=84).mean()
    back = ds - pd.Timedelta(hours=HOURS_PER_WEEK)
    out = pd.DataFrame({
        "hour": ds.hour, "weekday": ds.day_of_week, "doy": ds.day_of_year,
        "holiday": _holiday_flag(ds, holidays),
        **{f"lag_{w}w": lags[:, i] for i, w in enumerate(LAG_WEEKS)},
        "mean_4w": mean4,
        "day_mean_1w": day_mean.reindex(back).to_numpy(float),
        "week_mean_1w": week_mean.reindex(back).to_numpy(float),
    }, index=ds)
    if isinstance(holidays, pd.Series):
        out["holiday_offset"] = holidays.reindex(ds.normalize()).to_numpy(float)
    if exog is not None:
        out = out.join(exog.reindex(ds))
    return out


def _holiday_flag(ds: pd.DatetimeIndex, holidays: Holidays | None) -> np.ndarray:
    if isinstance(holidays, pd.Series):
        return (holidays.reindex(ds.normalize()).to_numpy(float) == 0).astype(int)
    return ds.normalize().isin(pd.to_datetime(list(holidays or ()))).astype(int)


def origin_features(y: pd.Series, ds: pd.DatetimeIndex, origin: datetime) -> pd.DataFrame:
    """What a forecast made at `origin` knows about the days just before it, for the hours
    `ds`: the horizon (hours from the origin), the mean of the last day before the origin
    (`day_mean_origin`) against the same day a week earlier, the last week's mean against the
    week before it, the last day against its 4-week mean of same weekday-hours, and the same
    hour of day on the last day before the origin (`last_day_same_hour`). An hour before
    `origin` (a training hour) takes the origin a forecast made at the same weekday and hour
    would have had: the latest of origin, origin − 1 week, … at or before it. So the model
    learns how much the last day before a forecast tells about each hour ahead: `lag_features`
    never read anything less than a week old."""
    start = pd.Timestamp(origin)
    weeks_back = np.ceil(np.maximum((start - ds) / pd.Timedelta(hours=1), 0) / HOURS_PER_WEEK)
    own_origin = pd.DatetimeIndex(start - pd.to_timedelta(weeks_back * HOURS_PER_WEEK, unit="h"))
    horizon = ((ds - own_origin) / pd.Timedelta(hours=1)).to_numpy(float)
    day_mean = y.rolling(24, min_periods=12).mean()
    week_mean = y.rolling(HOURS_PER_WEEK, min_periods=84).mean()
    usual = pd.Series(_mean_values(y, y.index), index=y.index).rolling(24, min_periods=12).mean()
    last = own_origin - pd.Timedelta(hours=1)  # the windows end just before the origin
    week_before = last - pd.Timedelta(hours=HOURS_PER_WEEK)
    day_now = day_mean.reindex(last).to_numpy(float)
    # The same hour of day on the last day before the origin: 1 day back within the first
    # day ahead, 2 days back within the second, and so on.
    days_back = np.floor(horizon / 24) + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "horizon": horizon,
            "day_ratio_1w": day_now / np.maximum(day_mean.reindex(week_before).to_numpy(float),
                                                 LEVEL_FLOOR),
            "week_ratio_1w": week_mean.reindex(last).to_numpy(float) / np.maximum(
                week_mean.reindex(week_before).to_numpy(float), LEVEL_FLOOR),
            "day_vs_mean_4w": day_now / np.maximum(usual.reindex(last).to_numpy(float),
                                                   LEVEL_FLOOR),
            "day_mean_origin": day_now,
            "last_day_same_hour": y.reindex(
                ds - pd.to_timedelta(days_back * 24, unit="h")).to_numpy(float),
        }, index=ds)


def _level(x: pd.DataFrame) -> np.ndarray:
    """The level a relative model divides by: the mean of the week that ends a week before
    the hour, else the 4-week mean of the same weekday-hour, at least LEVEL_FLOOR."""
    level = x["week_mean_1w"].to_numpy(float)
    level = np.where(np.isnan(level), x["mean_4w"].to_numpy(float), level)
    return np.maximum(level, LEVEL_FLOOR)


@dataclass(frozen=True)
class _TrainingSet:
    """What a gradient-boosted model learns from and forecasts with: `lag_features` (and
    `origin_features` if asked) of the training hours and of the forecast hours, the counts
    to learn, and which training hours are usable. Built once, shared by a pair's models."""

    ds: pd.DatetimeIndex
    x_train: pd.DataFrame
    target: np.ndarray
    usable: np.ndarray
    x_future: pd.DataFrame
    level_features: tuple[str, ...]


def _training_set(
    y: pd.Series, origin: datetime, hours: int, holidays: Holidays | None,
    exog: pd.DataFrame | None, recent: bool,
) -> _TrainingSet:
    start = _check(y, origin, hours)
    known = y[y.index < start]
    first = max(known.index.min(), start - pd.Timedelta(days=TRAIN_DAYS))
    train_ds = pd.date_range(first, start, freq="h", inclusive="left")
    x_train = lag_features(known, train_ds, holidays, exog)
    target = known.reindex(train_ds).to_numpy(float)
    # An hour is learnt from when it was counted and some week before it was.
    usable = ~np.isnan(target) & x_train["mean_4w"].notna().to_numpy()
    if usable.sum() < HOURS_PER_WEEK:
        raise ValueError(f"only {int(usable.sum())} hours with a count and a lag before "
                         f"{start}: too little to train on")
    ds = pd.date_range(start, periods=hours, freq="h")
    x_future = lag_features(known, ds, holidays, exog)
    level_features = list(LEVEL_FEATURES)
    if recent:
        x_train = x_train.join(origin_features(known, train_ds, start))
        x_future = x_future.join(origin_features(known, ds, start))
        level_features += RECENT_LEVEL_FEATURES
    return _TrainingSet(ds, x_train, target, usable, x_future, tuple(level_features))


def _fit_and_predict(data: _TrainingSet, band: bool, relative: bool) -> pd.DataFrame:
    import lightgbm  # heavy import, only where the model is fitted

    x_train, x_future, usable = data.x_train, data.x_future, data.usable
    train_level, future_level, weight = np.ones(len(x_train)), np.ones(len(data.ds)), None
    if relative:
        train_level, future_level = _level(x_train), _level(x_future)
        features = list(data.level_features)
        x_train, x_future = (
            x.assign(**{f: x[f].to_numpy(float) / level for f in features})
            .drop(columns="week_mean_1w")
            for x, level in ((x_train, train_level), (x_future, future_level)))
        weight = train_level[usable]
    preds = {}
    train = lightgbm.Dataset(x_train[usable], data.target[usable] / train_level[usable],
                             weight=weight, free_raw_data=False)
    quantiles = (("point", 0.5), ("lower", BAND_QUANTILES[0]), ("upper", BAND_QUANTILES[1]))
    for name, alpha in quantiles if band else quantiles[:1]:
        params = {**LGBM_PARAMS, "objective": "quantile", "alpha": alpha}
        booster = lightgbm.train(params, train, num_boost_round=LGBM_ROUNDS)
        preds[name] = np.clip(booster.predict(x_future) * future_level, 0, None)
    lo = np.minimum(preds.get("lower", preds["point"]), preds["point"])
    hi = np.maximum(preds.get("upper", preds["point"]), preds["point"])
    return _frame(data.ds, preds["point"], lo, hi)


def gradient_boosted(
    y: pd.Series, origin: datetime, hours: int, holidays: Holidays | None = None,
    exog: pd.DataFrame | None = None, band: bool = True, relative: bool = False,
    recent: bool = False,
) -> pd.DataFrame:
    """LightGBM on `lag_features` (median objective: the benchmark scores absolute errors;
    the 10 % and 90 % quantile models give the band), trained on the TRAIN_DAYS before
    `origin`. `exog` (indexed by local hour, e.g. weather) must cover the forecast hours:
    what it adds is measured with the values that happened (a perfect weather forecast).
    Without `band`, only the median model is trained (lower = upper = point).

    `relative` learns the counts and their lags as multiples of the level (`_level`), each
    hour weighted by its level so that the loss is still the absolute error in people. Its
    errors differ from the plain model's: on real series whose crowd grew it under-forecast
    less (mean error −16 against −19 people/hour on 45 Queen Street, whose crowd doubled
    within 2025; −19 against −30 on 107 Quay Street), and it did worse on a festival park
    (bench/results.md, "Two LightGBM models").

    `recent` adds `origin_features`: the days just before the origin."""
    return _fit_and_predict(_training_set(y, origin, hours, holidays, exog, recent),
                            band, relative)


def gradient_boosted_pair(
    y: pd.Series, origin: datetime, hours: int, holidays: Holidays | None = None,
    exog: pd.DataFrame | None = None, band: bool = True,
) -> pd.DataFrame:
    """The mean of the plain and the relative `gradient_boosted` models, both with
    `origin_features` (the other one's value where one has none). Each alone won on some real
    series and lost on others; their mean beat the plain model on 8 of 9 real series and tied
    on the ninth (bench/results.md, "Two LightGBM models"). The days just before the origin
    took the pair from 0.763 to 0.752 of naive over nine real series, most where the crowd
    moved within weeks (45 Queen Street 0.84 → 0.81, 261 Queen Street 0.83 → 0.77;
    bench/results.md, "The days just before the forecast")."""
    data = _training_set(y, origin, hours, holidays, exog, recent=True)
    plain = _fit_and_predict(data, band, relative=False)
    relative = _fit_and_predict(data, band, relative=True)
    out = plain.copy()
    for column in ("point", "lower", "upper"):
        both = np.column_stack([plain[column].to_numpy(float), relative[column].to_numpy(float)])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an hour neither model knows
            out[column] = np.nanmean(both, axis=1)
    return out

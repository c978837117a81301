"""Prophet models per site: hourly arrivals (14 days), daily arrivals (≥ 120 days), occupancy and
the probability of overload.

Choices, and why (measured figures in bench/results.md, "Forecast runs and backtests" and the
sections after it; the reasoning at length in forecasting/README.md, "Modelling choices"):
- Times are local (Asia/Ho_Chi_Minh, no DST) naive hours inside the models: daily and weekly
  seasonality and the festivals are local; the caller converts to UTC for the store.
- Closed hours are not modelled: the catalogue's opening hours say when a site is shut, so the
  hourly model trains and predicts open hours only and closed hours are exactly 0. Fitting
  the structural zeros would spend the daily seasonality on drawing the closing cliff.
- Counts are never negative: the models fit log1p(arrivals) and back-transform with expm1,
  floored at 0. The log scale also makes festival and weekend effects multiplicative, which is
  how crowds scale.
- Separate daily seasonalities for weekdays and weekends (a weekday and a weekend profile
  cannot be drawn by one additive daily curve), for days with other opening hours, and one
  more on festival days (a procession at noon is not an evening market scaled up), and one
  per peak day of the site's own festivals (the procession itself; the scramble). Peak days
  with scheduled events are out of the weekly cycle: a procession's crowd does not follow
  the weekday. Nor do the days off of the Tết holiday (both models; the hourly model draws
  them with Sunday's profile): one Tết in the window otherwise passes last year's weekdays
  on to this year's Tết days.
- Hours open on some weekdays only (a night market) take no holiday effect and no festival
  profile (the holidays enter as regressors that are 0 on those hours), only an offset of
  their own on festival and lunar-season days: holidays multiply the day's usual crowd,
  not the market's.
- On holiday days the hourly forecast's day total is the daily model's (`fit_and_forecast`):
  the daily model's longer window holds two or three occurrences of each festival where
  the hourly one holds one; the hourly model keeps the shape of the day.
- Never Newton (Prophet falls back to it when L-BFGS fails, and it is far slower on these
  sizes): L-BFGS always, no silent Newton fallback; mcmc_samples = 0. Bands and
  probabilities come from predictive_samples(), computed only for the rows forecast (never
  the history). They are drawn from a generator seeded by the fit and the hours forecast
  (`predictive_samples`): the same history gives the same forecast, run after run.
- Quantiles commute with the monotone expm1, so the back-transformed median and bands are the
  median and bands of arrivals; `arrivals` is the median forecast (what MAE rewards).

The calendar comes typed (`forecasting.calendar.SiteCalendar`), the features from
`forecasting/features.py`, occupancy from `forecasting/dwell.py`. A fit returns the Prophet
model with what it was fitted with (`FittedHourly`, `FittedDaily`), and the forecast takes
that: the features of a forecast are always derived as those of its fit.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from prophet import Prophet

from forecasting.calendar import SiteCalendar
from forecasting.candidates import (
    DEFAULT_MODEL,
    DEFAULT_PROPHET_SHARE,
    busier_than_usual,
    candidate_forecasts,
    lean_to_crowd,
    recentre,
    widen,
)
from forecasting.dwell import occupancy_from_arrivals
from forecasting.features import (
    HOLIDAY_REGRESSOR,
    extra_hours,
    open_mask,
    open_table,
    profile_groups,
    regressor_holiday,
    table_mask,
    with_features,
)
from visitorflow.catalogue import Site
from visitorflow.settings import ForecastSettings

HOURS_PER_WEEK = 168
HOURLY_COLUMNS = [
    "ds", "is_open", "arrivals", "arrivals_lower", "arrivals_upper", "occupancy",
    "occupancy_upper", "capacity", "p_overload", "arrivals_median",
]
DAILY_COLUMNS = ["ds", "arrivals", "arrivals_lower", "arrivals_upper"]

log = logging.getLogger(__name__)


def quiet_cmdstan() -> None:
    """Keep cmdstanpy's per-fit chatter ("Chain [1] start processing") and Prophet's notes
    out of the user's console; a failing fit still raises and is reported per site."""
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        logger.propagate = False
        # cmdstanpy installs its own INFO console handler on first use unless the logger
        # already has one: give it a silent one.
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
    # Prophet adds a frame column per regressor; with Kỳ Lừa's holiday regressors pandas
    # warns of a fragmented frame on every fit and forecast (a speed hint, not an error).
    warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning,
                            module="prophet")


@dataclass(frozen=True, eq=False)
class FittedHourly:
    """A fitted hourly model and what it was fitted with, so that its forecast derives the
    same features: the site (opening hours, dwell, capacity), the settings (samples, interval,
    cold threshold), the calendar, the daily-profile groups, the hours open on some weekdays
    only, the event peaks it drew a profile for, and its extra regressors."""

    model: Prophet
    site: Site
    settings: ForecastSettings
    calendar: SiteCalendar
    groups: dict[str, tuple[int, ...]]  # profile_groups(site)
    open_table: np.ndarray  # 7 × 24 (weekday, hour): open_table(site)
    extra: np.ndarray  # 7 × 24: extra_hours(site)
    peak_profiles: tuple[str, ...]  # event peaks seen in the window, each with a profile
    regressors: tuple[str, ...]  # extra regressor columns: cold_c, holiday__…, …


@dataclass(frozen=True, eq=False)
class FittedDaily:
    """A fitted daily model and what it was fitted with (the calendar, the settings)."""

    model: Prophet
    settings: ForecastSettings
    calendar: SiteCalendar
    regressors: tuple[str, ...]  # ("cold_c",) with a temperature regressor, else ()


def predictive_samples(model: Prophet, future: pd.DataFrame) -> np.ndarray:
    """Prophet's predictive samples of `future` (rows × samples of its fitted y), drawn from
    numpy's global generator seeded by the fit (its trend parameters) and the first hour
    asked, then the generator put back as it was. Prophet draws from the global generator
    only; unseeded, two runs on the same store gave the same site-hour medians differing by
    tens of people, and a planner who runs a forecast again should see the same forecast."""
    key = np.concatenate([np.ravel(model.params["k"]), np.ravel(model.params["m"]),
                          [pd.Timestamp(future["ds"].iloc[0]).value]]).astype(float)
    state = np.random.get_state()
    np.random.seed(zlib.crc32(key.tobytes()))
    try:
        return model.predictive_samples(future)["yhat"]
    finally:
        np.random.set_state(state)


def _new_prophet(
    settings: ForecastSettings, holidays: pd.DataFrame, span_days: float,
    groups: dict[str, tuple[int, ...]] | None, regressor: bool,
    peak_profiles: tuple[str, ...] = (), extra_regressor: bool = False,
    holiday_regressors: tuple[str, ...] = (),
) -> Prophet:
    yearly: bool | int = 6 if span_days >= 365 else False
    model = Prophet(
        growth="linear",
        yearly_seasonality=yearly,
        # The weekly cycle is added below, off on days that are not ordinary weekdays.
        weekly_seasonality=False,
        daily_seasonality=False,
        # Holidays given as regressors (`holiday_features`) replace Prophet's own.
        holidays=holidays if len(holidays) and not holiday_regressors else None,
        changepoint_prior_scale=settings.changepoint_prior_scale,
        interval_width=settings.interval_width,
        mcmc_samples=0,
        uncertainty_samples=settings.samples,
    )
    # A failed L-BFGS fit must fail the site (reported), not fall into a minute of Newton.
    model.stan_backend.set_options(newton_fallback=False)
    model.add_seasonality("weekly", period=7, fourier_order=3, condition_name="is_ordinary_day")
    for name in groups or {}:
        model.add_seasonality(name, period=1, fourier_order=8, condition_name=f"is_{name}")
    if groups:
        model.add_seasonality("daily_festival", period=1, fourier_order=6,
                              condition_name="is_festival")
    # Order 12 on hourly data is one free value per hour: an event an hour long (the
    # scramble, sd 30 min) would be smeared over the afternoon by a smoother profile.
    for name in peak_profiles if groups else ():
        model.add_seasonality(f"daily_{name}", period=1, fourier_order=12,
                              condition_name=f"is_{name}")
    if regressor:
        model.add_regressor("cold_c", standardize=True)
    if extra_regressor:
        model.add_regressor("festival_extra_hour", standardize=False)
        model.add_regressor("season_extra_hour", standardize=False)
    # Each holiday's prior as its `prior_scale` says (`calendar.pool_days_off`), else Prophet's
    # own holiday prior: the regressors are as free as Prophet's holidays would be.
    priors = (holidays.dropna(subset=["prior_scale"]).groupby("holiday")["prior_scale"].first()
              if "prior_scale" in holidays else pd.Series(dtype=float))
    for name in holiday_regressors:
        prior = float(priors.get(regressor_holiday(name), model.holidays_prior_scale))
        model.add_regressor(name, prior_scale=prior, standardize=False)
    return model


# L-BFGS keeps this many past gradients (CmdStan's default is 5). With 5, Kỳ Lừa's hourly fit
# (night-market offsets beside the daily profiles) stopped short of its optimum in most
# backtest folds (log posterior 30-340 lower; Prophet's MAE ratio to naive 0.55 against 0.51
# with 20) or crawled through 6,190 iterations (18.5 s, 10.3 s with 20). Elsewhere the fits end
# at the same optimum, a little more CPU in the backtest (bench/results.md, "L-BFGS's memory").
# A fit whose line search fails with it (seen on a daily model of 13 days: 76 parameters)
# is fitted again with CmdStan's default before it counts as failed.
LBFGS_HISTORY_SIZE = 20


def _fit(build: Callable[[], Prophet], train: pd.DataFrame) -> Prophet:
    """A model from `build` fitted on `train`; if L-BFGS fails with LBFGS_HISTORY_SIZE, a new
    model from `build` fitted with CmdStan's default memory (a Prophet object fits once)."""
    if train["y"].notna().sum() < 2:
        raise ValueError(f"only {int(train['y'].notna().sum())} usable rows of history")
    model = build()
    try:
        model.fit(train, algorithm="LBFGS", history_size=LBFGS_HISTORY_SIZE)
    except RuntimeError as exc:
        log.info("L-BFGS with %d gradients failed (%s); fitting again with CmdStan's default",
                 LBFGS_HISTORY_SIZE, str(exc).splitlines()[0][:120])
        model = build()
        model.fit(train, algorithm="LBFGS")
    return model


# -- hourly -------------------------------------------------------------------------------------

def fit_hourly(
    history: pd.DataFrame,
    site: Site,
    settings: ForecastSettings,
    calendar: SiteCalendar,
    temperature: pd.DataFrame | None = None,
) -> FittedHourly:
    """Fit the hourly model. history: ds (local hour start), arrivals (people/hour);
    temperature: ds, temp_c (°C) covering the history, or None for no regressor."""
    frame = history[["ds", "arrivals"]].dropna()
    table = open_table(site)
    frame = frame[table_mask(table, frame["ds"])]
    frame = frame.assign(y=np.log1p(frame["arrivals"].clip(lower=0)))[["ds", "y"]]
    if temperature is not None:
        frame = frame.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        frame["temp_c"] = frame["temp_c"].interpolate(limit_direction="both")
    groups = profile_groups(site)
    extra = extra_hours(site)
    frame = with_features(frame, settings.cold_threshold_c, groups, calendar, extra)
    span = (frame["ds"].max() - frame["ds"].min()).days if len(frame) else 0
    # A peak's profile is learnt from its past occurrences: none in the window, none drawn.
    seen = tuple(name for name in calendar.event_peak_days if frame[f"is_{name}"].any())
    model = _fit(lambda: _new_prophet(
        settings, calendar.holidays, span, groups, regressor=temperature is not None,
        peak_profiles=seen, extra_regressor="festival_extra_hour" in frame,
        holiday_regressors=tuple(c for c in frame.columns if c.startswith(HOLIDAY_REGRESSOR)),
    ), frame)
    return FittedHourly(
        model=model, site=site, settings=settings, calendar=calendar,
        groups=groups, open_table=table, extra=extra, peak_profiles=seen,
        regressors=tuple(model.extra_regressors),
    )


def forecast_hourly(
    fitted: FittedHourly,
    start_local: datetime,
    hours: int,
    overload_share: float = 1.0,
    lead_in: np.ndarray | None = None,
    temperature: pd.DataFrame | None = None,
    day_totals: pd.Series | None = None,
) -> pd.DataFrame:
    """Hourly forecast from `start_local` (a local hour start) for `hours` hours, from a
    model of `fit_hourly`, for its site and with its settings:
    ds (local hour start), is_open, arrivals (median people/hour) with lower/upper band,
    occupancy (median people at the end of the hour) and its upper band, capacity, and
    p_overload = P(occupancy ≥ overload_share × capacity) from predictive samples.
    `day_totals` (local day → people/day): days whose median total is set to these, every
    sample of the day scaled alike (`scale_to_day_totals`), before occupancy is derived."""
    grid, samples = hourly_samples(fitted, start_local, hours, temperature, day_totals)
    return summarise_hourly(grid, samples, fitted.site, fitted.settings, overload_share,
                            lead_in)


def hourly_samples(
    fitted: FittedHourly,
    start_local: datetime,
    hours: int,
    temperature: pd.DataFrame | None = None,
    day_totals: pd.Series | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The predictive samples of arrivals behind `forecast_hourly`: the grid (ds, is_open)
    and an hours × samples array (closed hours 0)."""
    site, settings = fitted.site, fitted.settings
    grid = pd.DataFrame({"ds": pd.date_range(start_local, periods=hours, freq="h")})
    is_open = table_mask(fitted.open_table, grid["ds"])
    future = grid[is_open].reset_index(drop=True)
    if temperature is not None:
        future = future.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        future["temp_c"] = future["temp_c"].interpolate(limit_direction="both")
    future = with_features(future, settings.cold_threshold_c, fitted.groups, fitted.calendar,
                           fitted.extra)
    samples = np.zeros((hours, settings.samples))
    if len(future):
        log_samples = predictive_samples(fitted.model, future)
        samples[is_open] = np.clip(np.expm1(log_samples), 0, None)
    if day_totals is not None and len(day_totals):
        scale_to_day_totals(samples, grid["ds"], is_open, site, day_totals)
    grid["is_open"] = is_open
    return grid, samples


def summarise_hourly(
    grid: pd.DataFrame,
    samples: np.ndarray,
    site: Site,
    settings: ForecastSettings,
    overload_share: float = 1.0,
    lead_in: np.ndarray | None = None,
) -> pd.DataFrame:
    """`forecast_hourly`'s columns from samples of arrivals (rows: the grid's hours): the
    median and the band of arrivals and of occupancy, and p_overload. `arrivals` is the median
    leaned toward the band's upper edge on the hours busier than the forecast's usual open
    hour (`settings.crowd_lean`, `forecasting.candidates.lean_to_crowd`), `arrivals_median`
    the median itself (what the nowcast compares the counts with)."""
    is_open = grid["is_open"].to_numpy(bool)
    occ = occupancy_from_arrivals(samples, is_open, site.dwell_min, lead_in)
    lo_q, hi_q = (1 - settings.interval_width) / 2, (1 + settings.interval_width) / 2
    threshold = overload_share * site.capacity
    grid = grid.copy()
    grid["arrivals"] = np.median(samples, axis=1)
    grid["arrivals_lower"] = np.quantile(samples, lo_q, axis=1)
    grid["arrivals_upper"] = np.quantile(samples, hi_q, axis=1)
    grid["occupancy"] = np.median(occ, axis=1)
    grid["occupancy_upper"] = np.quantile(occ, hi_q, axis=1)
    grid["capacity"] = site.capacity
    grid["p_overload"] = (occ >= threshold).mean(axis=1)
    # Shown toward the crowd on the hours expected busier than usual; the band, occupancy and
    # p_overload stay the samples' (the alerts and the nowcast read them).
    grid["arrivals_median"] = grid["arrivals"]
    median = grid["arrivals_median"].to_numpy(float)
    grid["arrivals"] = lean_to_crowd(median, grid["arrivals_upper"].to_numpy(float),
                                     busier_than_usual(median, is_open), settings.crowd_lean)
    return grid[HOURLY_COLUMNS]


def holiday_day_totals(
    daily: pd.DataFrame, site: Site, calendar: SiteCalendar
) -> pd.Series | None:
    """The daily model's forecast (ds, arrivals) on the holiday days (the calendar's
    `window_days`: every day a holiday effect reaches),
    as `forecast_hourly`'s `day_totals`; None for a site with hours open on some weekdays only.

    Why: a holiday's size is learnt from its past occurrences. The hourly model sees
    `hourly_history_days` (one occurrence of each festival: its day's random draw is the
    forecast's), the daily model up to `daily_history_days` (two or three occurrences) at
    a fraction of the cost; so the day's total comes from the daily model and the hour shape
    from the hourly one. Not for a night-market site (Kỳ Lừa): its day total mixes the day's
    crowd, which holidays scale, and the market's, which they do not, and only the hourly
    model tells them apart (the daily model forecast Tết's market Friday at 1.5 k, 5.4 k
    counted)."""
    if extra_hours(site).any():
        return None
    on_holiday = pd.to_datetime(daily["ds"]).dt.normalize().isin(calendar.window_days)
    picked = daily[on_holiday.to_numpy()]
    return pd.Series(picked["arrivals"].to_numpy(float),
                     index=pd.to_datetime(picked["ds"]).dt.normalize())


def scale_to_day_totals(
    samples: np.ndarray, ds: pd.Series, is_open: np.ndarray, site: Site, day_totals: pd.Series
) -> None:
    """Scale, in place, each day's hourly samples (rows: the hours `ds`, columns: samples) so
    that the day's hourly medians (the `arrivals` a planner reads and adds up) sum to
    `day_totals[day]`: the hourly forecast then agrees with the daily one. (Matching the
    median of the samples' day sums instead leaves the hourly medians 3-12 % short of it, the
    most at small sites: a sum of right-skewed hours has its median above the sum of their
    medians; Tam Thanh 0.97, Nhất Thanh 0.89.) Only days whose
    open hours are all in `ds` (a forecast starting mid-day leaves its first day alone: part
    of a day's hours cannot carry the whole day's total)."""
    day = pd.to_datetime(ds).dt.normalize()
    is_open = np.asarray(is_open, bool)
    in_grid = pd.Series(is_open).groupby(day.to_numpy()).sum()
    open_hours = open_table(site).sum(axis=1)  # per weekday
    for target_day, total in day_totals.items():
        if in_grid.get(target_day, -1) != open_hours[target_day.day_of_week]:
            continue
        rows = (day == target_day).to_numpy() & is_open
        current = float(np.median(samples[rows], axis=1).sum())
        if current > 0 and np.isfinite(total):
            samples[rows] *= total / current


def fit_and_forecast(
    history: pd.DataFrame,
    site: Site,
    settings: ForecastSettings,
    calendar: SiteCalendar,
    start_local: datetime,
    hours: int,
    days: int,
    overload_share: float = 1.0,
    lead_in: np.ndarray | None = None,
    temperature: pd.DataFrame | None = None,
    model: str = DEFAULT_MODEL,
    band_scales: Mapping[str, float] | None = None,
    prophet_share: float = DEFAULT_PROPHET_SHARE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit both models of a site on `history` (ds, arrivals) before `start_local` and forecast:
    (hourly for `hours` hours from `start_local`, daily for `days` days from its day). The
    hourly model sees the last `hourly_history_days` (fit time grows with the rows: 800 days
    instead of 400 doubled the refit, bench/results.md, "a longer hourly window (two
    occurrences per festival), measured and not kept"), the daily model the whole days of the
    last `daily_history_days`; with `holiday_totals_from_daily`, the hourly forecast's holiday
    days take the daily model's totals (`holiday_day_totals`). `model` (one of
    `forecasting.candidates.MODELS`) sets the hourly median; Prophet's samples, moved to it,
    give the band and p_overload (`forecasting.candidates`), widened by the `band_scales` entry
    of the model used (the backtest's calibration of each model's band,
    `forecasting.scoring.band_scale`; 1 for a model it did not score), and `prophet_share` is
    Prophet's share in the preferred mix (`forecasting.candidates.prophet_share`). A model that
    cannot forecast (too little history) leaves Prophet's, with Prophet's own scale; the
    hourly frame's attributes say which model was used (`model`) and the scale applied
    (`band_scale`)."""
    start = pd.Timestamp(start_local)
    first_day = start.normalize()
    past = history[history["ds"] < start]
    recent = past[past["ds"] >= start - pd.Timedelta(days=settings.hourly_history_days)]
    whole_days = past[(past["ds"] < first_day)
                      & (past["ds"] >= first_day - pd.Timedelta(days=settings.daily_history_days))]
    daily_temp = daily_temperature(temperature) if temperature is not None else None
    daily_model = fit_daily(daily_totals(whole_days, site), settings, calendar, daily_temp)
    daily = forecast_daily(daily_model, first_day.to_pydatetime(), days, daily_temp)
    totals = (holiday_day_totals(daily, site, calendar)
              if settings.holiday_totals_from_daily else None)
    hourly_model = fit_hourly(recent, site, settings, calendar, temperature)
    grid, samples = hourly_samples(hourly_model, start_local, hours, temperature, totals)
    used = DEFAULT_MODEL
    if model != DEFAULT_MODEL:
        points = candidate_forecasts(past, site, calendar, start_local, hours,
                                     np.median(samples, axis=1), (model,), temperature,
                                     prophet_share)
        if model in points:
            recentre(samples, points[model].to_numpy(float))
            used = model
    # Each scale was measured on its own model's band: the fallback takes Prophet's.
    scale = (band_scales or {}).get(used, 1.0)
    widen(samples, np.median(samples, axis=1), scale)
    hourly = summarise_hourly(grid, samples, site, settings, overload_share, lead_in)
    hourly.attrs["model"] = used
    hourly.attrs["band_scale"] = scale
    return hourly, daily


# -- daily --------------------------------------------------------------------------------------

def daily_totals(history: pd.DataFrame, site: Site, min_coverage: float = 0.8) -> pd.DataFrame:
    """Local daily arrivals from hourly history (ds, arrivals): ds (local day), arrivals.
    A day whose open hours are less than `min_coverage` counted is dropped (unknown), not
    summed short: a counter outage must not look like an empty day."""
    frame = history[["ds", "arrivals"]].dropna()
    frame = frame[open_mask(site, frame["ds"])]
    day = pd.to_datetime(frame["ds"]).dt.normalize()
    per_day = frame.groupby(day)["arrivals"].agg(["sum", "count"])
    open_hours = open_table(site).sum(axis=1)
    expected = open_hours[per_day.index.day_of_week]
    keep = per_day["count"] >= min_coverage * expected
    out = per_day[keep].rename(columns={"sum": "arrivals"})[["arrivals"]]
    return out.rename_axis("ds").reset_index()


def daily_temperature(temperature: pd.DataFrame) -> pd.DataFrame:
    """Hourly temperatures to a day's coldest hour (frost is a morning thing): ds, temp_c."""
    day = pd.to_datetime(temperature["ds"]).dt.normalize()
    out = temperature.groupby(day)["temp_c"].min()
    return out.rename_axis("ds").reset_index()


def fit_daily(
    daily: pd.DataFrame,
    settings: ForecastSettings,
    calendar: SiteCalendar,
    temperature: pd.DataFrame | None = None,
) -> FittedDaily:
    """Fit the daily model. daily: ds (local day), arrivals (people/day); temperature: ds,
    temp_c (the day's coldest hour, °C) or None."""
    frame = daily[["ds", "arrivals"]].dropna()
    frame = frame.assign(y=np.log1p(frame["arrivals"].clip(lower=0)))[["ds", "y"]]
    if temperature is not None:
        frame = frame.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        frame["temp_c"] = frame["temp_c"].interpolate(limit_direction="both")
    frame = with_features(frame, settings.cold_threshold_c, calendar=calendar)
    span = (frame["ds"].max() - frame["ds"].min()).days if len(frame) else 0
    model = _fit(lambda: _new_prophet(settings, calendar.holidays, span, None,
                                      regressor=temperature is not None), frame)
    return FittedDaily(model=model, settings=settings, calendar=calendar,
                       regressors=tuple(model.extra_regressors))


def forecast_daily(
    fitted: FittedDaily,
    start_day: datetime,
    days: int,
    temperature: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Daily forecast from a model of `fit_daily`, with its settings: ds (local day), arrivals
    (median people/day), arrivals_lower/upper."""
    settings = fitted.settings
    future = pd.DataFrame({"ds": pd.date_range(pd.Timestamp(start_day).normalize(),
                                               periods=days, freq="D")})
    if temperature is not None:
        future = future.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        future["temp_c"] = future["temp_c"].interpolate(limit_direction="both")
    future = with_features(future, settings.cold_threshold_c, calendar=fitted.calendar)
    samples = np.clip(np.expm1(predictive_samples(fitted.model, future)), 0, None)
    lo_q, hi_q = (1 - settings.interval_width) / 2, (1 + settings.interval_width) / 2
    out = future[["ds"]].copy()
    out["arrivals"] = np.median(samples, axis=1)
    out["arrivals_lower"] = np.quantile(samples, lo_q, axis=1)
    out["arrivals_upper"] = np.quantile(samples, hi_q, axis=1)
    return out[DAILY_COLUMNS]


# -- baseline -----------------------------------------------------------------------------------

def seasonal_naive_hourly(
    history: pd.DataFrame, site: Site, start_local: datetime, hours: int
) -> pd.DataFrame:
    """The weekly seasonal-naive forecast: each hour repeats the same hour of the last week
    before `start_local` (0 when closed; unknown hours stay NaN). ds, arrivals."""
    grid = pd.DataFrame({"ds": pd.date_range(start_local, periods=hours, freq="h")})
    last_week = grid["ds"] - pd.Timedelta(hours=HOURS_PER_WEEK)
    offset = ((grid.index.to_numpy() // HOURS_PER_WEEK) * HOURS_PER_WEEK).astype("int64")
    source = last_week - pd.to_timedelta(offset, unit="h")
    known = history.set_index("ds")["arrivals"]
    known = known[~known.index.duplicated()]
    grid["arrivals"] = source.map(known).to_numpy(float)
    grid.loc[~open_mask(site, grid["ds"]), "arrivals"] = 0.0
    return grid

"""Prophet models per site: hourly arrivals (14 days), daily arrivals (≥ 120 days), occupancy and
the probability of overload.

Choices, and why (measured facts in /work/shared/docs/field-notes.md):
- Times are local (Asia/Ho_Chi_Minh, no DST) naive hours inside the models: daily and weekly
  seasonality and the festivals are local; the caller converts to UTC for the store.
- Closed hours are not modelled: the catalogue's opening hours say when a site is shut, so the
  hourly model trains and predicts open hours only and closed hours are exactly 0. Fitting
  the structural zeros would spend the daily seasonality on drawing the closing cliff.
- Counts are never negative: the models fit log1p(arrivals) and back-transform with expm1,
  floored at 0. The log scale also makes festival and weekend effects multiplicative, which is
  how crowds scale, and (field notes) drew level with seasonal-naive where defaults lost 1.6×.
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
- Never Newton (61 s instead of 1.5 s): L-BFGS always, no silent Newton fallback;
  mcmc_samples = 0. Bands and probabilities come from predictive_samples(), computed only for
  the rows forecast (never the history).
- Quantiles commute with the monotone expm1, so the back-transformed median and bands are the
  median and bands of arrivals; `arrivals` is the median forecast (what MAE rewards).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from prophet import Prophet

from forecasting.calendar import load_seasons
from visitorflow.catalogue import WEEKDAYS, Site
from visitorflow.festivals import load_festivals
from visitorflow.settings import ForecastSettings

HOURS_PER_WEEK = 168
HOURLY_COLUMNS = [
    "ds", "is_open", "arrivals", "arrivals_lower", "arrivals_upper", "occupancy",
    "occupancy_upper", "capacity", "p_overload",
]
DAILY_COLUMNS = ["ds", "arrivals", "arrivals_lower", "arrivals_upper"]


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


# -- opening hours ------------------------------------------------------------------------------

def open_table(site: Site) -> np.ndarray:
    """7 × 24 booleans: is the site open at any time in (weekday, hour)? An hour counts as open
    when the site is open at its start or its last minute (Chi Lăng closes at 17:30)."""
    monday = datetime(2024, 1, 1)  # a Monday
    table = np.zeros((7, 24), dtype=bool)
    for wd in range(7):
        for hour in range(24):
            start = monday + timedelta(days=wd, hours=hour)
            table[wd, hour] = site.is_open(start) or site.is_open(start + timedelta(minutes=59))
    return table


def open_mask(site: Site, ds: pd.Series) -> np.ndarray:
    """Whether each local hour start in `ds` is an open hour of the site."""
    ds = pd.to_datetime(ds)
    return open_table(site)[ds.dt.day_of_week.to_numpy(), ds.dt.hour.to_numpy()]


# -- features -----------------------------------------------------------------------------------

def profile_groups(site: Site) -> dict[str, tuple[int, ...]]:
    """Days (0 = Monday) that share a daily profile: weekdays apart from weekend days, and
    within each, days with other opening hours apart (Kỳ Lừa's night market opens Friday and
    Saturday evenings only: one curve for every weekday would have to draw a night peak that
    Monday to Thursday never open for; measured, the fit then took 20 s instead of 3)."""
    table = open_table(site)
    groups: dict[tuple[bool, bytes], list[int]] = {}
    for wd in range(7):
        groups.setdefault((wd >= 5, table[wd].tobytes()), []).append(wd)
    named: dict[str, tuple[int, ...]] = {}
    for (weekend, _), days in groups.items():
        base = "daily_weekend" if weekend else "daily_weekday"
        alone = sum(1 for w, _ in groups if w == weekend) == 1
        named[base if alone else f"{base}_{'_'.join(WEEKDAYS[d] for d in days)}"] = tuple(days)
    return named


def extra_hours(site: Site) -> np.ndarray:
    """7 × 24 booleans: hours open on some days of the week only (Kỳ Lừa's Friday and Saturday
    night market), apart from the hours open every day the site opens at that hour."""
    table = open_table(site)
    return table & ~table[table.any(axis=1)].all(axis=0)


def _holiday_days(holidays: pd.DataFrame | None, chosen: Callable[[pd.Series], pd.Series],
                  ) -> pd.DatetimeIndex:
    """The local days of the Prophet holidays whose names `chosen` selects."""
    if holidays is None or holidays.empty:
        return pd.DatetimeIndex([])
    picked = holidays[chosen(holidays["holiday"])]
    return pd.DatetimeIndex(pd.to_datetime(picked["ds"]).dt.normalize().unique())


def festival_dates(holidays: pd.DataFrame | None) -> pd.DatetimeIndex:
    """The local days of the Lạng Sơn festivals among Prophet holidays (names `fest_*`)."""
    return _holiday_days(holidays, lambda name: name.str.startswith("fest_"))


def event_peak_days(holidays: pd.DataFrame | None) -> dict[str, pd.DatetimeIndex]:
    """The peak days of the site's own festivals (not the province-wide ones: Tết, Hùng
    Kings), where events of their own happen, by peak (`<festival>_peak_<lunar day>`): Kỳ
    Cùng's noon processions on the 22nd and 27th and the firecracker scramble on the 27th,
    Chùa Tiên's and Bắc Lệ's main days. Each peak gets its own daily profile: the 22nd and
    the 27th do not hold the same crowd at Kỳ Lừa."""
    if holidays is None or holidays.empty:
        return {}
    own = tuple(f"fest_{f.id}_peak_" for f in load_festivals() if f.sites)
    peaks = holidays[holidays["holiday"].str.startswith(own)] if own else holidays.iloc[:0]
    return {str(name).removeprefix("fest_"):
            pd.DatetimeIndex(pd.to_datetime(group["ds"]).dt.normalize().unique())
            for name, group in peaks.groupby("holiday")}


def season_dates(holidays: pd.DataFrame | None) -> pd.DatetimeIndex:
    """The days of the lunar seasons among Prophet holidays (names `lunar_*`)."""
    return _holiday_days(holidays, lambda name: name.str.startswith("lunar_"))


SUNDAY = 6  # pandas day_of_week
HOLIDAY_REGRESSOR = "holiday__"


def _holiday_windows(holidays: pd.DataFrame) -> Iterator[tuple[str, int, pd.Timestamp]]:
    """(holiday, offset, local day) for every day of every holiday's window."""
    for row in holidays.itertuples(index=False):
        start = pd.Timestamp(row.ds).normalize()
        for offset in range(int(row.lower_window), int(row.upper_window) + 1):
            yield row.holiday, offset, start + pd.Timedelta(days=offset)


def holiday_features(ds: pd.Series, holidays: pd.DataFrame, where: np.ndarray) -> pd.DataFrame:
    """Prophet's holiday features as regressor columns (`holiday__<name>_p<k>` / `_m<k>`: 1 on
    the holiday's day shifted by k days within its window), 0 outside `where`."""
    day = pd.to_datetime(ds).dt.normalize().to_numpy()
    columns: dict[str, np.ndarray] = {}
    for holiday, offset, on in _holiday_windows(holidays):
        name = f"{HOLIDAY_REGRESSOR}{holiday}_{'p' if offset >= 0 else 'm'}{abs(offset)}"
        hit = (day == on.to_datetime64()) & where
        columns[name] = columns[name] | hit if name in columns else hit
    return pd.DataFrame({name: hit.astype(float) for name, hit in columns.items()},
                        index=ds.index)


def days_off_dates(holidays: pd.DataFrame | None) -> pd.DatetimeIndex:
    """The days of the festivals and lunar seasons marked `days_off` (the Tết holiday) among
    Prophet holidays."""
    names = {f"fest_{f.id}" for f in load_festivals() if f.days_off}
    names |= {f"lunar_{s.id}" for s in load_seasons() if s.days_off}
    return _holiday_days(holidays, lambda name: name.isin(names))


def _on_days(ds: pd.Series, days: pd.DatetimeIndex | None) -> np.ndarray:
    return ds.dt.normalize().isin(days if days is not None else pd.DatetimeIndex([])).to_numpy()


def _with_features(
    df: pd.DataFrame, cold_threshold_c: float,
    groups: dict[str, tuple[int, ...]] | None = None,
    holidays: pd.DataFrame | None = None,
    extra: np.ndarray | None = None,
) -> pd.DataFrame:
    out = df.copy()
    ds = pd.to_datetime(out["ds"])
    day = ds.dt.day_of_week.to_numpy()
    has_extra = bool(groups) and extra is not None and extra.any()
    extra_now = extra[day, ds.dt.hour.to_numpy()] if has_extra else np.zeros(len(out), bool)
    peaks = event_peak_days(holidays)
    # Days that are not ordinary weekdays, so that neither the weekly cycle nor the weekday
    # profiles scale them (on the log scale they would): a peak day with scheduled events
    # (festivals.yaml `peak_events`: the procession draws its crowd whatever the weekday; last
    # year's Monday procession was forecast ×2 on this year's Sunday), and the days off of
    # the Tết holiday (`days_off`: the whole country is off; last year's Saturday of Tết lent
    # its weekend profile to this year's Friday). A day off is drawn with Sunday's profile,
    # its level set by the holiday effects. Hours open on some weekdays only (a night market)
    # keep their weekday's profile.
    day_off = _on_days(ds, days_off_dates(holidays))
    not_ordinary = day_off.copy()
    scheduled = tuple(f"{f.id}_peak_" for f in load_festivals() if f.peak_events)
    for name, days in peaks.items():
        if name.startswith(scheduled):
            not_ordinary |= _on_days(ds, days)
    ordinary = ~not_ordinary | extra_now
    out["is_ordinary_day"] = ordinary
    for name, days in (groups or {}).items():
        as_sunday = day_off & ~extra_now if SUNDAY in days else False
        out[f"is_{name}"] = (np.isin(day, days) & ordinary) | as_sunday
    festival_day = _on_days(ds, festival_dates(holidays))
    if groups:
        # A festival day has its own shape (a noon procession, not an evening market): a
        # holiday effect alone would scale every hour of the day alike. Hours open on some
        # weekdays only (a night market) keep their weekday's shape (below).
        out["is_festival"] = festival_day & ~extra_now
        # Its peak days have events of their own on top (a procession at noon).
        for name, days in peaks.items():
            out[f"is_{name}"] = _on_days(ds, days) & ~extra_now
    if has_extra:
        # A holiday scales the day's usual crowd, not a night market that draws its own
        # (Kỳ Lừa): Prophet's holiday effects would multiply every hour of the day, and a Tết
        # day learnt on market-less evenings drew 11.8 k on a 4.2 k market evening. So the
        # holidays enter as regressors that are 0 on the market hours, and those hours get
        # one offset of their own on festival days.
        if holidays is not None and len(holidays):
            out = pd.concat([out, holiday_features(ds, holidays, ~extra_now)], axis=1).copy()
        out["festival_extra_hour"] = (festival_day & extra_now).astype(float)
        # The same for the lunar seasons (the spring pilgrimage scales the day, not the market).
        out["season_extra_hour"] = (_on_days(ds, season_dates(holidays)) & extra_now).astype(
            float)
    if "temp_c" in out:
        # Degrees below the frost threshold: Mẫu Sơn's rush follows frost, not mild cold.
        out["cold_c"] = np.clip(cold_threshold_c - out["temp_c"].to_numpy(float), 0, None)
    return out


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
    for name in holiday_regressors:
        # Prophet's own holiday prior, so the effects are as free as Prophet's holidays.
        model.add_regressor(name, prior_scale=model.holidays_prior_scale, standardize=False)
    return model


def _fit(model: Prophet, train: pd.DataFrame) -> Prophet:
    if train["y"].notna().sum() < 2:
        raise ValueError(f"only {int(train['y'].notna().sum())} usable rows of history")
    model.fit(train, algorithm="LBFGS")
    return model


# -- hourly -------------------------------------------------------------------------------------

def fit_hourly(
    history: pd.DataFrame,
    site: Site,
    settings: ForecastSettings,
    holidays: pd.DataFrame,
    temperature: pd.DataFrame | None = None,
) -> Prophet:
    """Fit the hourly model. history: ds (local hour start), arrivals (people/hour);
    temperature: ds, temp_c (°C) covering the history, or None for no regressor."""
    frame = history[["ds", "arrivals"]].dropna()
    frame = frame[open_mask(site, frame["ds"])]
    frame = frame.assign(y=np.log1p(frame["arrivals"].clip(lower=0)))[["ds", "y"]]
    if temperature is not None:
        frame = frame.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        frame["temp_c"] = frame["temp_c"].interpolate(limit_direction="both")
    groups = profile_groups(site)
    peaks = event_peak_days(holidays)
    frame = _with_features(frame, settings.cold_threshold_c, groups, holidays, extra_hours(site))
    span = (frame["ds"].max() - frame["ds"].min()).days if len(frame) else 0
    # A peak's profile is learnt from its past occurrences: none in the window, none drawn.
    seen = tuple(name for name in peaks if frame[f"is_{name}"].any())
    model = _new_prophet(settings, holidays, span, groups, regressor=temperature is not None,
                         peak_profiles=seen, extra_regressor="festival_extra_hour" in frame,
                         holiday_regressors=tuple(
                             c for c in frame.columns if c.startswith(HOLIDAY_REGRESSOR)))
    model.site_holidays = holidays  # the forecast derives its features from them
    return _fit(model, frame)


def dwell_kernel(dwell_min: float) -> np.ndarray:
    """Weights w_k: the share of arrivals in hour h−k still on site at the end of hour h,
    with arrivals spread evenly over their hour and every visitor staying `dwell_min`:
    w_k = clip(dwell/60 − k, 0, 1)."""
    dwell_h = dwell_min / 60.0
    k = np.arange(int(np.ceil(dwell_h)) or 1)
    return np.clip(dwell_h - k, 0.0, 1.0)


def occupancy_from_arrivals(
    arrivals: np.ndarray, is_open: np.ndarray, dwell_min: float, lead_in: np.ndarray | None = None
) -> np.ndarray:
    """People on site at the end of each hour from hourly arrivals (rows: hours, optional
    columns: samples): arrivals convolved with the dwell kernel (Little's law per visitor), and
    0 when the site is closed (it is cleared at closing). `lead_in`: actual arrivals of the
    hours just before the first row, oldest first."""
    kernel = dwell_kernel(dwell_min)
    arr = arrivals if arrivals.ndim == 2 else arrivals[:, None]
    pad = len(kernel) - 1
    head = np.zeros((pad, arr.shape[1]))
    if lead_in is not None and pad:
        tail = np.asarray(lead_in, float)[-pad:]
        head[pad - len(tail):] = tail[:, None]
    full = np.vstack([head, arr])
    occ = np.zeros_like(arr, dtype=float)
    for k, weight in enumerate(kernel):
        occ += weight * full[pad - k: pad - k + len(arr)]
    occ[~np.asarray(is_open, bool)] = 0.0
    return occ if arrivals.ndim == 2 else occ[:, 0]


def forecast_hourly(
    model: Prophet,
    site: Site,
    start_local: datetime,
    hours: int,
    settings: ForecastSettings,
    overload_share: float = 1.0,
    lead_in: np.ndarray | None = None,
    temperature: pd.DataFrame | None = None,
    day_totals: pd.Series | None = None,
) -> pd.DataFrame:
    """Hourly forecast from `start_local` (a local hour start) for `hours` hours, from a
    model of `fit_hourly` (which keeps the site's holidays on it as `site_holidays`):
    ds (local hour start), is_open, arrivals (median people/hour) with lower/upper band,
    occupancy (median people at the end of the hour) and its upper band, capacity, and
    p_overload = P(occupancy ≥ overload_share × capacity) from predictive samples.
    `day_totals` (local day → people/day): days whose median total is set to these, every
    sample of the day scaled alike (`scale_to_day_totals`), before occupancy is derived."""
    grid = pd.DataFrame({"ds": pd.date_range(start_local, periods=hours, freq="h")})
    is_open = open_mask(site, grid["ds"])
    future = grid[is_open].reset_index(drop=True)
    if temperature is not None:
        future = future.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        future["temp_c"] = future["temp_c"].interpolate(limit_direction="both")
    future = _with_features(future, settings.cold_threshold_c, profile_groups(site),
                            model.site_holidays, extra_hours(site))
    samples = np.zeros((hours, settings.samples))
    if len(future):
        log_samples = model.predictive_samples(future)["yhat"]
        samples[is_open] = np.clip(np.expm1(log_samples), 0, None)
    if day_totals is not None and len(day_totals):
        scale_to_day_totals(samples, grid["ds"], is_open, site, day_totals)
    occ = occupancy_from_arrivals(samples, is_open, site.dwell_min, lead_in)
    lo_q, hi_q = (1 - settings.interval_width) / 2, (1 + settings.interval_width) / 2
    threshold = overload_share * site.capacity
    grid["is_open"] = is_open
    grid["arrivals"] = np.median(samples, axis=1)
    grid["arrivals_lower"] = np.quantile(samples, lo_q, axis=1)
    grid["arrivals_upper"] = np.quantile(samples, hi_q, axis=1)
    grid["occupancy"] = np.median(occ, axis=1)
    grid["occupancy_upper"] = np.quantile(occ, hi_q, axis=1)
    grid["capacity"] = site.capacity
    grid["p_overload"] = (occ >= threshold).mean(axis=1)
    return grid[HOURLY_COLUMNS]


def holiday_window_days(holidays: pd.DataFrame | None) -> pd.DatetimeIndex:
    """Every local day a holiday effect reaches: the holidays' days and their windows."""
    if holidays is None or holidays.empty:
        return pd.DatetimeIndex([])
    return pd.DatetimeIndex(sorted({on for _, _, on in _holiday_windows(holidays)}))


def holiday_day_totals(
    daily: pd.DataFrame, site: Site, holidays: pd.DataFrame | None
) -> pd.Series | None:
    """The daily model's forecast (ds, arrivals) on the holiday days (`holiday_window_days`),
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
    on_holiday = pd.to_datetime(daily["ds"]).dt.normalize().isin(holiday_window_days(holidays))
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
    holidays: pd.DataFrame,
    start_local: datetime,
    hours: int,
    days: int,
    overload_share: float = 1.0,
    lead_in: np.ndarray | None = None,
    temperature: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit both models of a site on `history` (ds, arrivals) before `start_local` and forecast:
    (hourly for `hours` hours from `start_local`, daily for `days` days from its day). The
    hourly model sees the last `hourly_history_days` (fit time grows with rows: field notes,
    17.5 k hourly rows 11-21 s), the daily model the whole days of the last
    `daily_history_days`; with `holiday_totals_from_daily`, the hourly forecast's holiday days
    take the daily model's totals (`holiday_day_totals`)."""
    start = pd.Timestamp(start_local)
    first_day = start.normalize()
    past = history[history["ds"] < start]
    recent = past[past["ds"] >= start - pd.Timedelta(days=settings.hourly_history_days)]
    whole_days = past[(past["ds"] < first_day)
                      & (past["ds"] >= first_day - pd.Timedelta(days=settings.daily_history_days))]
    daily_temp = daily_temperature(temperature) if temperature is not None else None
    daily_model = fit_daily(daily_totals(whole_days, site), settings, holidays, daily_temp)
    daily = forecast_daily(daily_model, first_day.to_pydatetime(), days, settings, daily_temp)
    totals = (holiday_day_totals(daily, site, holidays)
              if settings.holiday_totals_from_daily else None)
    hourly_model = fit_hourly(recent, site, settings, holidays, temperature)
    hourly = forecast_hourly(hourly_model, site, start_local, hours, settings, overload_share,
                             lead_in, temperature, totals)
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
    holidays: pd.DataFrame,
    temperature: pd.DataFrame | None = None,
) -> Prophet:
    """Fit the daily model. daily: ds (local day), arrivals (people/day); temperature: ds,
    temp_c (the day's coldest hour, °C) or None."""
    frame = daily[["ds", "arrivals"]].dropna()
    frame = frame.assign(y=np.log1p(frame["arrivals"].clip(lower=0)))[["ds", "y"]]
    if temperature is not None:
        frame = frame.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        frame["temp_c"] = frame["temp_c"].interpolate(limit_direction="both")
    frame = _with_features(frame, settings.cold_threshold_c, holidays=holidays)
    span = (frame["ds"].max() - frame["ds"].min()).days if len(frame) else 0
    model = _new_prophet(settings, holidays, span, None,
                         regressor=temperature is not None)
    return _fit(model, frame)


def forecast_daily(
    model: Prophet,
    start_day: datetime,
    days: int,
    settings: ForecastSettings,
    temperature: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Daily forecast: ds (local day), arrivals (median people/day), arrivals_lower/upper."""
    future = pd.DataFrame({"ds": pd.date_range(pd.Timestamp(start_day).normalize(),
                                               periods=days, freq="D")})
    if temperature is not None:
        future = future.merge(temperature[["ds", "temp_c"]], on="ds", how="left")
        future["temp_c"] = future["temp_c"].interpolate(limit_direction="both")
    future = _with_features(future, settings.cold_threshold_c, holidays=model.holidays)
    samples = np.clip(np.expm1(model.predictive_samples(future)["yhat"]), 0, None)
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

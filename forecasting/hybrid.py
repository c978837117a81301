"""The shipped model's choice, Prophet's share in the preferred model and the band
calibration, as a forecast run makes them from its newest backtest
(`forecasting.candidates.choose_model`, `forecasting.scoring.score_models`), replayed over a
benchmark's folds: at each origin, the last CHOICE_FOLDS folds whose week had ended by then
stand for the backtest. `bench.real_series` scores the result as `shipped`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.candidates import (
    busier_than_usual,
    choose_model,
    lean_to_crowd,
    mix,
    moved_band,
    widen,
)
from forecasting.scoring import band_scale, score_models
from visitorflow.settings import ForecastSettings

# Folds of past errors standing for a run's backtest: the nightly backtest's default folds.
CHOICE_FOLDS: int = ForecastSettings.model_fields["backtest_folds"].default
# How far a run's busy hours lean toward the crowd by default.
CROWD_LEAN: float = ForecastSettings.model_fields["crowd_lean"].default


def replay_shipped(
    scored: pd.DataFrame, columns: dict[str, str], horizon_hours: int,
    window: int = CHOICE_FOLDS, name: str = "shipped", crowd_lean: float = CROWD_LEAN,
) -> tuple[pd.DataFrame, pd.Series]:
    """`scored` (origin, ds, actual, naive, and per candidate column `c`: `c`, `c_lower`,
    `c_upper`) with `name`, `name_lower`, `name_upper` added. `columns` maps each model of
    `forecasting.candidates.MODELS` scored to its column. At each origin, the last `window`
    folds that ended by then (hours with the actual, the naive and every candidate known) are
    scored as a run's backtest scores its candidates (`score_models`: each model's MAE ratio to
    naive and, when "prophet" and "lgbm" are scored too, Prophet's share in the preferred
    model); `choose_model` picks one. Its forecast at the origin is its column, or for the
    preferred model with a share the mix at that share, Prophet's band moved to it; the band
    is scaled by `band_scale` over the same past hours, and the point leans `crowd_lean`
    toward the band's upper edge on the fold's busy hours (`busier_than_usual` among the
    fold's hours, open ones if `scored` has `is_open`), as a run's stored forecast does.
    Before any fold has ended: `choose_model`'s choice without scores, the band as it is.
    Also returns origin → chosen model."""
    missing = [c for c in ["actual", "naive", *columns.values()] if c not in scored]
    if missing:
        raise ValueError(f"replay_shipped: no column(s) {missing} in the scored frame")
    out = scored.copy()
    for suffix in ("", "_lower", "_upper"):
        out[f"{name}{suffix}"] = float("nan")
    known = scored["actual"].notna() & scored["naive"].notna()
    known &= scored[list(columns.values())].notna().all(axis=1)
    origins = sorted(scored["origin"].unique())
    horizon = pd.Timedelta(hours=horizon_hours)
    chosen: dict[pd.Timestamp, str] = {}
    for origin in origins:
        done = [o for o in origins if o + horizon <= origin][-window:]
        past = scored[known & scored["origin"].isin(done)]
        # Scored as a run's backtest scores its candidates: the same function, the same hours.
        scores = score_models(pd.DataFrame({
            "is_open": True, "origin": past["origin"], "actual": past["actual"],
            "naive": past["naive"], **{f"candidate_{m}": past[c] for m, c in columns.items()},
        })) if len(past) else None
        model, _ = choose_model(scores)
        if model not in columns:  # the preferred model was not scored: the backbone
            model = "prophet"
        share = None
        if scores is not None:
            share = scores.set_index("model")["prophet_share"].get(model)
        rows = out["origin"] == origin
        point, band = _forecast(out[rows], columns, model, share)
        scale = 1.0
        if len(past):
            past_point, past_band = _forecast(past, columns, model, share)
            scale = band_scale(past["actual"].to_numpy(float), past_point, past_band[:, 0],
                               past_band[:, 1]) or 1.0
        widen(band, point, scale)  # as a forecast run widens its samples
        is_open = out.loc[rows, "is_open"].to_numpy(bool) if "is_open" in out else None
        point = lean_to_crowd(point, band[:, 1], busier_than_usual(point, is_open), crowd_lean)
        out.loc[rows, name] = point
        out.loc[rows, f"{name}_lower"], out.loc[rows, f"{name}_upper"] = band[:, 0], band[:, 1]
        chosen[pd.Timestamp(origin)] = model
    return out, pd.Series(chosen, name="chosen")


def _forecast(frame: pd.DataFrame, columns: dict[str, str], model: str,
              share: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The `model`'s point and band (columns lower, upper) on `frame`'s hours: its own column,
    or with a Prophet `share` (the preferred model) the `mix` of the lgbm and prophet columns
    with Prophet's band moved to it, as a forecast run moves Prophet's samples."""
    if share is None or pd.isna(share):
        column = columns[model]
        return (frame[column].to_numpy(float),
                frame[[f"{column}_lower", f"{column}_upper"]].to_numpy(float, copy=True))
    prophet = columns["prophet"]
    point = mix(frame[columns["lgbm"]], frame[prophet], float(share))
    lower, upper = moved_band(frame[f"{prophet}_lower"], frame[prophet],
                              frame[f"{prophet}_upper"], point)
    return point, np.column_stack([lower, upper])

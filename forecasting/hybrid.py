"""The rolling choice among forecasters, as a forecast run makes it from its newest backtest
(forecasting/candidates.py), replayed over a benchmark's folds: at each origin, the forecaster
that did best over the last few folds whose week had ended by then. `bench.real_series` uses
it for the shipped model (`shipped`) and for an earlier candidate (`hybrid`: Prophet,
LightGBM and two averages).
"""

from __future__ import annotations

import pandas as pd

# Folds of past errors that choose the next week's forecaster: four weeks follow a change of
# regime within a month without letting one odd week decide.
CHOICE_FOLDS = 4


def rolling_choice(
    scored: pd.DataFrame, candidates: list[str], default: str, horizon_hours: int,
    window: int = CHOICE_FOLDS, name: str = "hybrid",
) -> tuple[pd.DataFrame, pd.Series]:
    """`scored` (origin, ds, actual, and per candidate `c`, `c_lower`, `c_upper`) with columns
    `name`, `name_lower`, `name_upper` added: at each origin, the candidate with the lowest
    MAE over the last `window` folds that ended by that origin (hours with an actual and every
    candidate known), `default` before any has. Also returns origin → chosen candidate."""
    missing = [c for c in [*candidates, default] if c not in scored]
    if missing:
        raise ValueError(f"rolling_choice: no column(s) {missing} in the scored frame")
    out = scored.copy()
    for suffix in ("", "_lower", "_upper"):
        out[f"{name}{suffix}"] = float("nan")
    errors = {}
    for origin, fold in scored.groupby("origin", sort=True):
        ok = fold["actual"].notna() & fold[candidates].notna().all(axis=1)
        errors[origin] = {c: float((fold.loc[ok, c] - fold.loc[ok, "actual"]).abs().sum())
                          for c in candidates} | {"_n": int(ok.sum())}
    chosen: dict[pd.Timestamp, str] = {}
    origins = sorted(errors)
    horizon = pd.Timedelta(hours=horizon_hours)
    for origin in origins:
        done = [o for o in origins if o + horizon <= origin][-window:]
        hours = sum(errors[o]["_n"] for o in done)
        if not done or hours == 0:
            pick = default
        else:
            pick = min(candidates, key=lambda c: sum(errors[o][c] for o in done))
        chosen[origin] = pick
        rows = out["origin"] == origin
        for suffix in ("", "_lower", "_upper"):
            source = f"{pick}{suffix}" if f"{pick}{suffix}" in out else pick
            out.loc[rows, f"{name}{suffix}"] = out.loc[rows, source]
    return out, pd.Series(chosen, name="chosen")

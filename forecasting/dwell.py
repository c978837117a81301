"""Occupancy (people on site) from hourly arrivals and the catalogue's dwell time.

With arrivals spread evenly over their hour and every visitor staying `dwell_min`, the people
on site at the end of hour h are Σ_k w_k · arrivals(h−k) with w_k = clip(dwell/60 − k, 0, 1)
(Little's law per visitor). The forecast applies it to every predictive sample of arrivals
(`forecasting/models.py`), the backtest to the counted arrivals (`forecasting/backtest.py`).
"""

from __future__ import annotations

import numpy as np


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

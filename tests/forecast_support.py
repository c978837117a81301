"""Shared pieces of the forecasting tests' synthetic histories."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.features import open_mask
from visitorflow.catalogue import Site


def counted_hours(site: Site, ds: pd.Series, rate: np.ndarray, seed: int) -> pd.DataFrame:
    """Poisson counts of an hourly arrival `rate` (people/hour), 0 when the site is closed:
    ds, arrivals."""
    rate = np.where(open_mask(site, ds), rate, 0.0)
    counts = np.random.default_rng(seed).poisson(rate)
    return pd.DataFrame({"ds": ds, "arrivals": counts.astype(float)})

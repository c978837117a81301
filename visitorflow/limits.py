"""Each site's limits in force: capacity and load thresholds, with the admins' overrides.

The catalogue (data/sites.yaml) and `settings.load` give the defaults; admins override a
site's capacity and thresholds from the dashboard's admin page (stored in
`capacity_overrides` and `alert_thresholds`). Every reader of capacity and thresholds — live
load levels, alerts, redirect advice, the analysts' load levels, the forecaster — goes
through `effective_limits`, so they all agree.
"""

from __future__ import annotations

import pandas as pd

from visitorflow.catalogue import Catalogue
from visitorflow.settings import LoadThresholds, Settings
from visitorflow.store import Store, StoreMissing

SHARES = ["busy", "crowded", "overload"]


def site_limits(
    catalogue: Catalogue, defaults: LoadThresholds, overrides: pd.DataFrame
) -> pd.DataFrame:
    """Per catalogue site (index site_id): capacity and the busy / crowded / overload shares
    in force. `overrides` has site_id and any of capacity, busy, crowded, overload; NULLs
    and unknown sites are ignored."""
    frame = pd.DataFrame([
        {"site_id": s.id, "capacity": s.capacity, "busy": defaults.busy,
         "crowded": defaults.crowded, "overload": defaults.overload}
        for s in catalogue.sites
    ]).set_index("site_id")
    if len(overrides):
        own = overrides.set_index("site_id")
        own = own[own.index.isin(frame.index)]
        if "capacity" in own:
            capacity = own["capacity"].dropna()
            frame.loc[capacity.index, "capacity"] = capacity.astype(int).to_numpy()
        if set(SHARES) <= set(own.columns):
            shares = own[SHARES].dropna()
            frame.loc[shares.index, SHARES] = shares.to_numpy(dtype=float)
    return frame


def with_capacities(catalogue: Catalogue, limits: pd.DataFrame) -> Catalogue:
    """The catalogue with each site's capacity replaced by the one in force."""
    sites = tuple(
        site if int(limits.at[site.id, "capacity"]) == site.capacity
        else site.model_copy(update={"capacity": int(limits.at[site.id, "capacity"])})
        for site in catalogue.sites
    )
    # A new object, not model_copy: that would carry over the cached `by_id` of the old sites.
    return Catalogue.model_construct(sites=sites)


def thresholds_of(limits: pd.DataFrame, site_id: str) -> LoadThresholds:
    row = limits.loc[site_id]
    return LoadThresholds(busy=row["busy"], crowded=row["crowded"], overload=row["overload"])


def effective_limits(
    store: Store, catalogue: Catalogue, settings: Settings
) -> tuple[Catalogue, pd.DataFrame]:
    """The catalogue with the capacities in force, and `site_limits` (capacity and shares per
    site), from one read of the store's overrides. A store not created yet has none."""
    try:
        overrides = store.site_overrides()
    except StoreMissing:
        overrides = pd.DataFrame(columns=["site_id", "capacity", *SHARES])
    limits = site_limits(catalogue, settings.load, overrides)
    return with_capacities(catalogue, limits), limits

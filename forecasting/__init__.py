"""Forecasting: Prophet models per site, forecast runs, backtests, early-warning scoring."""

import logging

# Prophet logs "Importing plotly failed" at import; plots are not ours to draw, so keep that
# line out of the console of every run, backtest and worker (this runs before prophet loads).
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)

"""`python -m orchestration.season_eval --quick` end to end: history backfilled, two days of
Kỳ Cùng through a real Mosquitto, the collector and the store, daily refits with real
Prophet fits, the product's alert logic — and metrics checked against a hand-checkable case:
the procession day (10 Mar 2026, lunar 1/22) overloads both temples around noon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.early_warning import read_results
from visitorflow.settings import PROJECT_ROOT, Settings


def own_episodes(truth: pd.DataFrame, capacity: dict[str, int]) -> list[tuple[str, int]]:
    """Overload runs of ≥ 15 minutes, counted the plain way: (site, minutes)."""
    out = []
    for site_id, site in truth.sort_values("minute_utc").groupby("site_id"):
        over = (site["occupancy"].to_numpy() >= capacity[site_id]).astype(int)
        edges = np.diff(np.concatenate([[0], over, [0]]))
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1),
                              strict=True):
            if end - start >= 15:
                out.append((site_id, int(end - start)))
    return sorted(out)


def test_quick_season_end_to_end(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    work = tmp_path / "season"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestration.season_eval", "--quick", "--seed", "11",
         "--work-dir", str(work), "--out", str(out), "--no-progress"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = read_results(out)

    # Everything the simulator sent went through the broker and the collector into the store.
    minutes = 2 * 1440
    assert r["timing"]["readings_stored"] == 23 * minutes

    # The truth has the procession's overloads, and the evaluation found exactly those.
    truth = pd.read_parquet(work / "truth" / "site_minutes.parquet")
    truth = truth[truth["site_id"].isin(["den_ky_cung", "den_ta_phu"])]
    assert truth["minute_utc"].nunique() == minutes
    expected = own_episodes(truth, {"den_ky_cung": 300, "den_ta_phu": 150})
    eps = r["episodes"]
    assert sorted(zip(eps["site_id"], eps["minutes"], strict=True)) == expected
    assert {s for s, _ in expected} == {"den_ky_cung", "den_ta_phu"}
    local = eps["start_utc"] + pd.Timedelta(hours=7)
    assert (local.dt.date.astype(str) == "2026-03-10").all()
    assert local.dt.hour.between(9, 13).all()  # the noon procession

    # Refits at 05:00 local the day before the season and on each of its days.
    assert list(r["runs"]["history_end_utc"].dt.strftime("%m-%d %H:%M")) == [
        "03-07 22:00", "03-08 22:00", "03-09 22:00"]

    # The metrics' arithmetic, from the episode and alert lists.
    flagged = eps[eps["flagged"]]
    lead = (flagged["start_utc"] - flagged["raised_at_utc"]) / pd.Timedelta(hours=1)
    assert np.allclose(lead, flagged["lead_h"])
    overall = r["summary"].set_index("site_id").loc["all"]
    assert overall["episodes"] == len(eps)
    assert overall["flagged_goal"] == int((eps["lead_h"] >= 2).sum())
    assert overall["alerts"] == len(r["alerts"])
    assert overall["false_alarms"] == int(r["alerts"]["false_alarm"].sum()) if len(
        r["alerts"]) else overall["false_alarms"] == 0
    missed = eps[~(eps["lead_h"] >= 2)]
    assert set(missed["reason"]) <= {"no data", "forecast too low", "late refit",
                                     "flagged late"}
    assert (missed["reason"] != "").all()

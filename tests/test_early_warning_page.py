"""The dashboard's early-warning page shows the newest results file (AppTest, signed in)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from forecasting.early_warning import Run, match_episodes, summary
from orchestration.season_eval import Season, write_results
from visitorflow.settings import Settings, get_settings

T0 = datetime(2026, 3, 10, 0, 0)


@pytest.fixture
def results_dir(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "early_warning"
    monkeypatch.setenv("VISITORFLOW_ALERTS__EARLY_WARNING_DIR", str(folder))
    get_settings.cache_clear()
    return folder


def write_season(folder: Path, settings: Settings, seed: int) -> Path:
    episodes = pd.DataFrame({
        "site_id": ["den_ky_cung", "den_ta_phu"],
        "start_utc": pd.to_datetime([T0 + timedelta(hours=4), T0 + timedelta(hours=4)]),
        "end_utc": pd.to_datetime([T0 + timedelta(hours=6), T0 + timedelta(hours=5)]),
        "minutes": [120, 60], "peak_occupancy": [2400, 2300], "capacity": [300, 150]})
    spells = pd.DataFrame({
        "site_id": ["den_ky_cung"], "raised_at_utc": [pd.Timestamp(T0 + timedelta(hours=1))],
        "cleared_at_utc": [pd.Timestamp(T0 + timedelta(hours=6))],
        "window_end_utc": [pd.Timestamp(T0 + timedelta(hours=12))],
        "first_from_utc": [pd.Timestamp(T0 + timedelta(hours=4))], "max_p": [0.9]})
    eps, sp = match_episodes(episodes, spells)
    eps["reason"] = ["", "forecast too low"]
    result = {"episodes": eps, "spells": sp,
              "summary": summary(eps, sp, ["den_ky_cung", "den_ta_phu"], 2.0)}
    season = Season(seed, date(2026, 3, 9), date(2026, 3, 11), ["den_ky_cung", "den_ta_phu"],
                    folder, 400, 60, 10)
    path = folder / f"seed{seed}.json"
    runs = [Run("r1", T0, T0 + timedelta(seconds=40), pd.DataFrame({"site_id": ["x"]}))]
    write_results(path, season, settings, result, {"refits_s": 1.0}, runs, None)
    return path


def test_page_shows_the_newest_results(
    results_dir: Path, signed_in_app: Callable[..., object],
) -> None:
    at = signed_in_app("viewer")
    at.switch_page("views/warning.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "make early-warning" in " ".join(i.value for i in at.info)  # nothing yet: says so

    write_season(results_dir, get_settings(), seed=7)
    at.switch_page("views/warning.py").run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Đợt quá tải"] == "2"
    assert metrics["Báo trước ≥ 2.0 giờ"] == "50%"  # one of two flagged 3 h ahead
    assert metrics["Thời gian báo trước (trung vị)"] == "3.0 h"
    assert metrics["Báo động giả"] == "0%"
    episodes = at.dataframe[1].value
    assert list(episodes.iloc[:, -1]) == ["", "dự báo quá thấp"]
    assert episodes.iloc[0, 1] == "10/03 11:00"  # 04:00 UTC shown in Asia/Ho_Chi_Minh

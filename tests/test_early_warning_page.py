"""The dashboard's early-warning page shows the newest results file, or with none the
reference evaluation recorded in the repository, labelled (AppTest, signed in)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from forecasting import early_warning
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


@pytest.fixture
def reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the page looks for the recorded reference, in tmp_path and empty: the tests
    decide whether there is one, whatever the repository ships."""
    path = tmp_path / "shipped" / "early_warning_reference.json"
    monkeypatch.setattr(early_warning, "REFERENCE_RESULTS", path)
    return path


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
    results_dir: Path, reference: Path, signed_in_app: Callable[..., object],
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


def infos(at: object) -> str:
    return " ".join(i.value for i in at.info)  # type: ignore[attr-defined]


def test_a_fresh_folder_shows_the_recorded_reference(
    results_dir: Path, reference: Path, signed_in_app: Callable[..., object],
) -> None:
    written = write_season(reference.parent, get_settings(), seed=606)
    doc = json.loads(written.read_text(encoding="utf-8"))
    doc["created_utc"] = "2026-12-02T21:46:00+00:00"  # 04:46 the next day in Lạng Sơn
    reference.write_text(json.dumps(doc), encoding="utf-8")

    at = signed_in_app("viewer")
    at.switch_page("views/warning.py").run()
    assert not at.exception, [e.value for e in at.exception]
    label = infos(at)
    assert "tham chiếu" in label and "hạt giống 606" in label and "2026-12-03" in label
    assert not at.main.selectbox  # one reference, nothing to choose
    assert {m.label: m.value for m in at.metric}["Đợt quá tải"] == "2"

    at.sidebar.selectbox(key="language").set_value("en").run()
    label = infos(at)
    assert "recorded reference evaluation" in label and "seed 606" in label
    assert "2026-12-03" in label
    at.sidebar.selectbox(key="language").set_value("zh").run()
    assert "参考评估" in infos(at) and "随机种子 606" in infos(at)
    at.sidebar.selectbox(key="language").set_value("en").run()

    # This machine's own results take precedence over the reference, unlabelled.
    write_season(results_dir, get_settings(), seed=7)
    at.switch_page("views/warning.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "reference" not in infos(at)
    assert "seed 7," in " ".join(m.value for m in at.markdown)
    assert at.main.selectbox[0].value.name == "seed7.json"


def test_the_repository_ships_a_reference_evaluation_with_its_seed_and_date() -> None:
    """The file a fresh machine's early-warning page falls back on is in the repository,
    readable, and labelled with its seed and the day it ran."""
    shipped = early_warning.REFERENCE_RESULTS
    assert shipped.is_file(), f"{shipped} is missing: make early-warning SEED=n, then copy it"
    results = early_warning.read_results(shipped)
    assert isinstance(results["seed"], int)
    datetime.fromisoformat(results["created_utc"])
    assert len(results["summary"]) and len(results["episodes"])

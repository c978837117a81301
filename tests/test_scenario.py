"""The demo's scenarios (data/scenarios.yaml, orchestration/scenario.py): each is a real day of
its festival, its watched site truly goes over capacity in the simulator (the profiles alone
for Kỳ Cùng, a documented crowd factor for Tết and the frost weekend), the factor touches
that day only, and the scenario's operator account can sign in."""

from __future__ import annotations

import stat
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from ingest.sim_engine import Engine, profile_model
from ingest.simulator import parse_crowd
from orchestration.scenario import (
    DAY_WALL_S,
    DEMO_OPERATOR,
    ScenarioError,
    ensure_demo_operator,
    load_scenarios,
    play_env,
)
from visitorflow.catalogue import Catalogue, load_catalogue
from visitorflow.festivals import festival_days
from visitorflow.settings import Settings, get_settings
from visitorflow.users import authenticate, load_users

# Minutes a watched site must stay at or over capacity for the scenario to show a live
# overload alert (alerts.raise_after_min is 5) that an operator has time to acknowledge.
MIN_OVERLOAD_MIN = 60


@pytest.fixture
def catalogue(settings: Settings) -> Catalogue:
    return load_catalogue(settings.catalogue_path)


def overload_minutes(settings: Settings, catalogue: Catalogue, site_id: str, day: date,
                     crowd: dict | None = None) -> np.ndarray:
    """Local minutes of `day` the site's true occupancy is at or over its capacity."""
    seed = settings.simulator.seed
    engine = Engine(catalogue, settings.tz, seed, profile_model(catalogue, settings, seed),
                    crowd)
    site = catalogue.site(site_id)
    return np.nonzero(engine.site_day(site, day).occupancy >= site.capacity)[0]


def test_the_scenarios_load_and_ky_cung_is_the_procession_day(
        settings: Settings, catalogue: Catalogue) -> None:
    scenarios = load_scenarios(catalogue)
    assert {"ky-cung", "tet", "mau-son-frost"} <= set(scenarios)
    ky_cung = scenarios["ky-cung"]
    days = festival_days([ky_cung.day.year])
    row = days[(days["festival_id"] == "ky_cung_ta_phu") & (days["date"] == ky_cung.day)]
    assert len(row) == 1 and row["lunar_day"].iloc[0] == 22 and row["is_peak"].iloc[0]
    # The default speed plays the day in about ten minutes.
    start, end = ky_cung.play_utc(settings)
    wall_s = (end - start).total_seconds() / ky_cung.default_speed()
    assert abs(wall_s - DAY_WALL_S) < 10
    # The forecast has seen the festival before: a previous one lies within the history.
    previous = festival_days([ky_cung.day.year - 1])
    previous = previous[previous["festival_id"] == "ky_cung_ta_phu"]["date"].min()
    assert ky_cung.day - timedelta(days=ky_cung.history_days) < previous


def test_ky_cung_overloads_at_the_procession_without_a_crowd_factor(
        settings: Settings, catalogue: Catalogue) -> None:
    ky_cung = load_scenarios(catalogue)["ky-cung"]
    assert ky_cung.crowd == {}
    minutes = overload_minutes(settings, catalogue, "den_ky_cung", ky_cung.day)
    assert len(minutes) >= MIN_OVERLOAD_MIN
    # Around the noon procession, not before 10:00: the forecast alert can come first.
    assert minutes.min() >= 10 * 60 and minutes.max() <= 15 * 60


@pytest.mark.parametrize("name", ["tet", "mau-son-frost"])
def test_the_crowd_factor_overloads_the_watched_site_on_that_day_only(
        settings: Settings, catalogue: Catalogue, name: str) -> None:
    scenario = load_scenarios(catalogue)[name]
    site_id = scenario.watch[0]
    assert site_id in scenario.crowd
    crowd = parse_crowd([f"{s}={f}" for s, f in scenario.crowd.items()],
                        [scenario.day.isoformat()], catalogue)
    # The profiles alone keep the site under capacity; the scenario's factor does not.
    assert len(overload_minutes(settings, catalogue, site_id, scenario.day)) == 0
    assert len(overload_minutes(settings, catalogue, site_id, scenario.day, crowd)) >= (
        MIN_OVERLOAD_MIN)
    # The day before is the profiles' own, factor or not.
    seed = settings.simulator.seed
    site = catalogue.site(site_id)
    before = scenario.day - timedelta(days=1)
    plain, scaled = (Engine(catalogue, settings.tz, seed,
                            profile_model(catalogue, settings, seed), c).site_day(site, before)
                     for c in (None, crowd))
    assert np.array_equal(plain.arrivals, scaled.arrivals)


def test_crowd_arguments_are_checked(catalogue: Catalogue) -> None:
    assert parse_crowd(["mau_son=1.5"], ["2026-02-01"], catalogue) == {
        ("mau_son", date(2026, 2, 1)): 1.5}
    for factors, days, error in ((["mau_son=1.5"], [], "go together"),
                                 (["nowhere=2"], ["2026-02-01"], "no site"),
                                 (["mau_son"], ["2026-02-01"], "SITE=FACTOR"),
                                 (["mau_son=0"], ["2026-02-01"], "above 0")):
        with pytest.raises(ValueError, match=error):
            parse_crowd(factors, days, catalogue)


def test_a_scenario_off_its_festival_is_refused(catalogue: Catalogue, tmp_path: Path) -> None:
    path = tmp_path / "scenarios.yaml"
    path.write_text("scenarios:\n  wrong:\n    date: 2027-04-01\n    festival: ky_cung_ta_phu\n"
                    "    play_from: '05:00'\n    play_to: '20:00'\n    history_days: 400\n",
                    encoding="utf-8")
    with pytest.raises(ScenarioError, match="not a day of ky_cung_ta_phu"):
        load_scenarios(catalogue, path)


def test_the_demo_operator_account_and_its_password_file(tmp_path: Path) -> None:
    users_path = tmp_path / "users.json"
    secret = ensure_demo_operator(users_path)
    assert secret == tmp_path / "operator-password.txt"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    lines = dict(line.split(": ", 1) for line in secret.read_text().splitlines())
    assert lines["user"] == DEMO_OPERATOR
    user = authenticate(load_users(users_path), DEMO_OPERATOR, lines["password"])
    assert user is not None and user.role == "operator"
    assert ensure_demo_operator(users_path) is None  # kept as it is on the next run


def test_every_process_of_the_day_reads_one_clock(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    from visitorflow.clock import utc_now

    start = datetime(2027, 2, 26, 22, 0)
    env = play_env(tmp_path / "store.duckdb", tmp_path / "users.json", start, 90.0, 18941,
                   8721)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    loaded = get_settings()
    assert loaded.clock.speed == 90.0 and loaded.mqtt.port == 18941
    assert loaded.store.path == tmp_path / "store.duckdb"
    assert abs((utc_now() - start).total_seconds()) < 90 * 5
    get_settings.cache_clear()


def test_the_narrator_gives_a_forecast_alert_its_lead_time(
        settings: Settings, catalogue: Catalogue) -> None:
    import pandas as pd

    from orchestration.scenario import Narrator

    narrator = Narrator(settings, catalogue, pd.Timestamp("2027-02-27 13:00").to_pydatetime(),
                        stop_at_end=True, say=lambda text: None)
    # Raised at 05:02 local (22:02 UTC the day before) for the hour from 11:00 local.
    row = pd.Series({"alert_id": "forecast:den_ky_cung:overload:2027-02-26T22:02",
                     "site_id": "den_ky_cung", "kind": "forecast", "level": "overload",
                     "raised_at_utc": pd.Timestamp("2027-02-26 22:02"),
                     "from_utc": pd.Timestamp("2027-02-27 04:00"), "p_overload": 0.93,
                     "occupancy": None, "capacity": 300})
    item = narrator.describe(row)
    assert (item["raised_local"], item["from_local"], item["lead_h"]) == ("05:02", "11:00", 6.0)
    assert item["text"] == ("forecast alert: Kỳ Cùng Temple likely over capacity from 11:00 "
                            "(p = 0.93), raised at 05:02, 6.0 h ahead")

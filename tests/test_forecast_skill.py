"""How far to trust a forecast, in words (visitorflow/forecast_skill.py): the sentence per
forecaster and backtest score in vi/en/zh, and the site and planner pages showing it for a
run whose sites used different forecasters (Streamlit's AppTest against a real store)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page
from tests.planner_support import daily_frame, hourly_frame
from visitorflow.catalogue import LANGUAGES, load_catalogue
from visitorflow.clock import local_date, utc_now
from visitorflow.forecast_skill import MODELS, skill_sentence, skill_sentences, skill_verdict
from visitorflow.settings import Settings
from visitorflow.store import Store

LEARNED_EN = ("Forecast by the seasonal model with a learned correction; in the last backtest "
              "it erred 38 % less than “same hour last week”.")
NAIVE_EN = ("No model beat “same hour last week” here in the last backtest, so this forecast "
            "repeats last week's counts.")
LEARNED_VI = "sai số thấp hơn 38 % so với “cùng giờ tuần trước”"
NAIVE_VI = "không mô hình nào tốt hơn “cùng giờ tuần trước”"

# -- the sentences ----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("ratio", [0.62, None])
@pytest.mark.parametrize("model", MODELS)
def test_every_forecaster_has_a_sentence_with_and_without_a_backtest(
    model: str, ratio: float | None, lang: str
) -> None:
    text = skill_sentence(model, ratio, lang)
    assert text and "{" not in text and "}" not in text, text
    others = {skill_sentence(model, ratio, other) for other in LANGUAGES if other != lang}
    assert text not in others, "the languages must differ"
    if model != "naive":
        # The score is said only when there is one.
        assert ("38" in text) == (ratio is not None), text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("ratio", [0.62, None, 1.12])
def test_each_forecaster_is_named_apart(ratio: float | None, lang: str) -> None:
    texts = [skill_sentence(model, ratio, lang) for model in MODELS]
    assert len(set(texts)) == len(MODELS), texts


def test_the_english_sentences() -> None:
    assert skill_sentence("prophet_lgbm", 0.62, "en") == LEARNED_EN
    assert skill_sentence("prophet", 1.12, "en") == (
        "Forecast by the seasonal model (seasons, lunar festivals, weekdays); in the last "
        "backtest it did not beat “same hour last week” (erred 12 % more): read it with care.")
    assert skill_sentence("lgbm", None, "en") == (
        "Forecast by a model learned from the last weeks' counts (the seasonal model on "
        "festival days); not yet checked against past weeks (no backtest).")
    assert skill_sentence("mean4w", 0.9, "en").startswith(
        "Forecast by the average of the same hour over the last 4 weeks (the seasonal model "
        "on festival days); in the last backtest it erred 10 % less")
    # The fallback is said plainly, whatever its score (naive against itself: 1).
    assert skill_sentence("naive", 1.0, "en") == NAIVE_EN
    assert skill_sentence("naive", None, "en") == NAIVE_EN


@pytest.mark.parametrize(("lang", "more"), [("vi", "sai số cao hơn 12 %"),
                                            ("en", "erred 12 % more"), ("zh", "误差高12%")])
def test_a_forecaster_that_did_not_beat_last_week_says_to_read_it_with_care(
    lang: str, more: str
) -> None:
    text = skill_sentence("prophet_lgbm", 1.12, lang)
    assert more in text, text
    assert text != skill_sentence("prophet_lgbm", 0.88, lang)
    assert skill_verdict("prophet_lgbm", 1.12) == "worse"
    # Exactly as good as last week, or no measurable margin: not beaten, no "0 % more".
    assert skill_verdict("prophet_lgbm", 1.0) == skill_verdict("lgbm", 1.004) == "worse_plain"
    assert " 0 %" not in skill_sentence("lgbm", 1.004, lang)
    assert skill_verdict("lgbm", float("inf")) == "worse_plain"


def test_percentages_are_whole_numbers_rounded_half_up() -> None:
    assert "erred 38 % less" in skill_sentence("lgbm", 0.6249, "en")
    # Half a percent rounds up, both ways (Python's round() would give 36 and 12).
    assert "erred 37 % less" in skill_sentence("lgbm", 0.635, "en")
    assert "erred 13 % more" in skill_sentence("lgbm", 1.125, "en")
    assert "erred 100 % less" in skill_sentence("lgbm", 0.0, "en")
    assert "erred 150 % more" in skill_sentence("lgbm", 2.5, "en")
    # Beat naive by less than half a percent: "about as much", not "0 % less".
    assert skill_verdict("lgbm", 0.998) == "even"
    assert "about as much as" in skill_sentence("lgbm", 0.998, "en")


def test_nulls_from_the_store_read_as_the_seasonal_model_and_no_backtest() -> None:
    assert skill_sentence(None, 0.62, "en") == skill_sentence("prophet", 0.62, "en")
    assert skill_sentence(float("nan"), float("nan"), "en") == skill_sentence(  # type: ignore[arg-type]
        "prophet", None, "en")
    assert skill_sentence("prophet", pd.NA, "vi") == skill_sentence("prophet", None, "vi")


def test_a_model_unknown_here_is_named_not_hidden() -> None:
    assert "“xgb”" in skill_sentence("xgb", 0.62, "en")


def test_sentences_per_site_from_the_store_frame() -> None:
    frame = pd.DataFrame({"site_id": ["a", "b", "c"], "run_id": "r",
                          "model": ["prophet_lgbm", "naive", None],
                          "backtest_mae_ratio": [0.62, 1.0, None]})
    assert skill_sentences(frame, "en") == {
        "a": LEARNED_EN, "b": NAIVE_EN, "c": skill_sentence("prophet", None, "en")}
    assert skill_sentences(frame.iloc[:0], "en") == {}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_mix_is_named_with_the_share_the_run_used(lang: str) -> None:
    with_share = skill_sentence("lgbm_prophet", 0.7, lang, 0.35)
    assert "35" in with_share and "{" not in with_share
    assert with_share != skill_sentence("lgbm_prophet", 0.7, lang, 0.2)
    # Unknown (a run from before the share was recorded): "a share", as before.
    assert skill_sentence("lgbm_prophet", 0.7, lang, None) == skill_sentence(
        "lgbm_prophet", 0.7, lang, float("nan")) == skill_sentence("lgbm_prophet", 0.7, lang)
    assert "35" not in skill_sentence("lgbm_prophet", 0.7, lang)
    # At a share of none the mix is the learned model alone, and is named so.
    assert skill_sentence("lgbm_prophet", 0.7, lang, 0.0) == skill_sentence("lgbm", 0.7, lang)
    # Other forecasters have no share to name.
    assert skill_sentence("prophet_lgbm", 0.7, lang, 0.35) == skill_sentence(
        "prophet_lgbm", 0.7, lang)


def test_the_share_is_read_from_the_store_frame() -> None:
    frame = pd.DataFrame({"site_id": ["a", "b"], "model": "lgbm_prophet",
                          "backtest_mae_ratio": 0.75, "prophet_share": [0.25, None]})
    assert skill_sentences(frame, "en") == {
        "a": "Forecast by a model learned from the last weeks' counts, mixed with 25 % of the "
             "seasonal model (the seasonal model on festival days); in the last backtest it "
             "erred 25 % less than “same hour last week”.",
        "b": skill_sentence("lgbm_prophet", 0.75, "en")}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        skill_sentence("prophet", 0.5, "fr")
    with pytest.raises(ValueError, match="negative"):
        skill_sentence("prophet", -0.1, "en")
    with pytest.raises(ValueError, match="share"):
        skill_sentence("lgbm_prophet", 0.8, "en", 25)


# -- the pages --------------------------------------------------------------------------------


@pytest.fixture
def skill_store(settings: Settings, fresh_streamlit_caches: None) -> Settings:
    """A forecast run from local midnight today in which Tam Thanh's forecast came from the
    seasonal model with a learned correction (38 % less error than naive) and Kỳ Cùng's from
    the weekly naive (no model beat it); an earlier run fitted Tam Thanh with another model,
    which the pages must not describe."""
    today = local_date(utc_now(), settings.tz)
    noon = datetime.combine(today + timedelta(days=1), datetime.min.time()).replace(hour=12)
    peaks = {"tam_thanh": (noon, 200.0), "den_ky_cung": (noon, 100.0)}
    hourly = hourly_frame(today, 3, peaks)
    daily = daily_frame(today, 3, {s: (noon.date(), 300.0) for s in peaks})
    store = Store.from_settings(settings)
    store.initialise()
    now = utc_now()
    for run_id, made, models, ratios in [
        ("run-old", now - timedelta(days=1), ["mean4w", "prophet"], [1.3, 0.7]),
        ("run-new", now, ["prophet_lgbm", "naive"], [0.62, 1.0]),
    ]:
        store.write_forecast_run(
            {"run_id": run_id, "created_at_utc": made, "history_end_utc": made,
             "settings_json": "{}", "sites_ok": 2, "sites_failed": 0, "wall_s": 1.0},
            pd.DataFrame({"site_id": ["tam_thanh", "den_ky_cung"], "status": "ok",
                          "message": None, "fit_s": 1.0, "regressors": None,
                          "backtest_mae_ratio": ratios, "model": models}),
            hourly, daily)
    return settings


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.main.caption]


@pytest.mark.parametrize(("lang", "learned", "naive"), [
    ("vi", LEARNED_VI, NAIVE_VI), ("en", LEARNED_EN, NAIVE_EN),
], ids=["vi", "en"])
def test_site_page_says_how_its_forecast_did_against_last_week(
    lang: str, learned: str, naive: str, skill_store: Settings,
    signed_in_app: Callable[..., AppTest],
) -> None:
    at = open_page(signed_in_app, "site", lang)
    at.selectbox(key="site").set_value("tam_thanh").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(learned in c for c in _captions(at)), _captions(at)
    assert not any(naive in c for c in _captions(at))
    at.selectbox(key="site").set_value("den_ky_cung").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(naive in c for c in _captions(at)), _captions(at)
    assert not any(learned in c for c in _captions(at))


def test_site_page_without_a_forecast_says_nothing_of_one(
    settings: Settings, fresh_streamlit_caches: None, signed_in_app: Callable[..., AppTest],
) -> None:
    Store.from_settings(settings).initialise()
    at = open_page(signed_in_app, "site", "en")
    assert not any("“same hour last week”" in c for c in _captions(at)), _captions(at)


@pytest.mark.parametrize(("lang", "site", "column", "learned", "naive"), [
    ("vi", "Điểm", "Dự báo so với “cùng giờ tuần trước”", LEARNED_VI, NAIVE_VI),
    ("en", "Site", "Forecast vs “same hour last week”", LEARNED_EN, NAIVE_EN),
], ids=["vi", "en"])
def test_planner_table_says_per_site_how_its_forecast_did_against_last_week(
    lang: str, site: str, column: str, learned: str, naive: str, skill_store: Settings,
    signed_in_app: Callable[..., AppTest],
) -> None:
    at = open_page(signed_in_app, "planner", lang)
    at.radio(key="planner_mode").set_value("range").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index(site)
    names = load_catalogue(skill_store.catalogue_path)
    tam = names.site("tam_thanh").name.get(lang)
    ky_cung = names.site("den_ky_cung").name.get(lang)
    assert learned in table.at[tam, column], table.at[tam, column]
    assert naive in table.at[ky_cung, column], table.at[ky_cung, column]
    # A site without a forecast has nothing to say.
    others = table.drop(index=[tam, ky_cung])[column]
    assert set(others) == {"–"}, set(others)


def test_every_forecaster_a_run_can_use_has_words() -> None:
    """The core cannot import forecasting/: the two lists of model names are kept equal here."""
    from forecasting.candidates import MODELS as RUN_MODELS

    assert set(MODELS) == set(RUN_MODELS)

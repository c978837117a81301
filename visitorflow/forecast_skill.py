"""How far to trust a site's forecast, in one plain sentence (vi/en/zh) for the officials who
plan with it: which forecaster made it and how it scored in the newest backtest against the
weekly seasonal-naive forecast, "the same hour last week".

The facts come from `Store.forecast_skill()` (per site, from the run whose forecast the pages
show): `model` is the forecaster the run chose (NULL in runs from before the choice was
recorded: those were all the seasonal model), `backtest_mae_ratio` that forecaster's MAE
divided by the weekly-naive MAE on the same hours (< 1: it beat naive; NULL: never
backtested) and `prophet_share` the seasonal model's share in the mix, when the forecaster
was the mix (NULL in runs from before the share was recorded: the name then says "a
share"). The site and planner pages (dashboard/views/site.py, planner.py) show the sentence
next to the forecast; its words are kept here, like visitorflow/redirect.py's messages,
because the core package does not read the dashboard's texts.yaml.
"""

from __future__ import annotations

import math
from typing import Literal

import pandas as pd

from visitorflow.catalogue import LANGUAGES

# The forecasters a run may choose per site (forecast_backtest_models.model in
# visitorflow/store/schema.py).
MODELS: tuple[str, ...] = ("prophet", "prophet_lgbm", "lgbm_prophet", "lgbm", "mean4w",
                           "naive")
# Runs written before the choice existed leave model NULL; they all used the seasonal model.
DEFAULT_MODEL = "prophet"

Verdict = Literal["better", "even", "worse", "worse_plain", "unchecked", "naive"]

# What each forecaster is, for someone who never heard of Prophet or LightGBM. The learned
# model and the 4-week mean hand festival days to the seasonal model (forecasting/), which is
# the only one that knows the lunar calendar; the names say so.
MODEL_NAMES: dict[str, dict[str, str]] = {
    "vi": {
        "prophet": "mô hình mùa vụ (theo mùa, lễ hội âm lịch, ngày trong tuần)",
        "prophet_lgbm": "mô hình mùa vụ có hiệu chỉnh học từ số khách các tuần gần đây",
        "lgbm_prophet": "mô hình học từ số khách các tuần gần đây, kết hợp một phần mô hình "
                        "mùa vụ (ngày lễ hội dùng mô hình mùa vụ)",
        "lgbm_prophet_share": "mô hình học từ số khách các tuần gần đây, kết hợp {share} % "
                              "mô hình mùa vụ (ngày lễ hội dùng mô hình mùa vụ)",
        "lgbm": "mô hình học từ số khách các tuần gần đây (ngày lễ hội dùng mô hình mùa vụ)",
        "mean4w": "trung bình cùng giờ của 4 tuần gần nhất (ngày lễ hội dùng mô hình mùa vụ)",
        "other": "mô hình “{name}”",
    },
    "en": {
        "prophet": "the seasonal model (seasons, lunar festivals, weekdays)",
        "prophet_lgbm": "the seasonal model with a learned correction",
        "lgbm_prophet": "a model learned from the last weeks' counts, mixed with a share of "
                        "the seasonal model (the seasonal model on festival days)",
        "lgbm_prophet_share": "a model learned from the last weeks' counts, mixed with {share} % "
                              "of the seasonal model (the seasonal model on festival days)",
        "lgbm": "a model learned from the last weeks' counts (the seasonal model on festival "
                "days)",
        "mean4w": "the average of the same hour over the last 4 weeks (the seasonal model on "
                  "festival days)",
        "other": "the model “{name}”",
    },
    "zh": {
        "prophet": "季节模型（季节、农历节庆、星期）",
        "prophet_lgbm": "季节模型加基于近几周客流的学习修正",
        "lgbm_prophet": "基于近几周客流学习的模型，并混合一部分季节模型（节庆日采用季节模型）",
        "lgbm_prophet_share": "基于近几周客流学习的模型，并混合{share}%的季节模型"
                              "（节庆日采用季节模型）",
        "lgbm": "基于近几周客流学习的模型（节庆日采用季节模型）",
        "mean4w": "近4周同一时段的平均值（节庆日采用季节模型）",
        "other": "模型“{name}”",
    },
}

SENTENCES: dict[str, dict[Verdict, str]] = {
    "vi": {
        "better": "Dự báo bằng {model}; lần đối chiếu gần nhất với số liệu đã qua cho thấy sai "
                  "số thấp hơn {pct} % so với “cùng giờ tuần trước”.",
        "even": "Dự báo bằng {model}; lần đối chiếu gần nhất với số liệu đã qua cho thấy sai "
                "số xấp xỉ “cùng giờ tuần trước”.",
        "worse": "Dự báo bằng {model}; lần đối chiếu gần nhất với số liệu đã qua cho thấy nó "
                 "không tốt hơn “cùng giờ tuần trước” (sai số cao hơn {pct} %): cần thận "
                 "trọng khi dùng.",
        "worse_plain": "Dự báo bằng {model}; lần đối chiếu gần nhất với số liệu đã qua cho "
                       "thấy nó không tốt hơn “cùng giờ tuần trước”: cần thận trọng khi dùng.",
        "unchecked": "Dự báo bằng {model}; chưa được đối chiếu với số liệu các tuần trước.",
        "naive": "Trong lần đối chiếu gần nhất với số liệu đã qua, không mô hình nào tốt hơn "
                 "“cùng giờ tuần trước” ở điểm này, nên dự báo này lặp lại số khách của tuần "
                 "trước.",
    },
    "en": {
        "better": "Forecast by {model}; in the last backtest it erred {pct} % less than "
                  "“same hour last week”.",
        "even": "Forecast by {model}; in the last backtest it erred about as much as "
                "“same hour last week”.",
        "worse": "Forecast by {model}; in the last backtest it did not beat “same hour last "
                 "week” (erred {pct} % more): read it with care.",
        "worse_plain": "Forecast by {model}; in the last backtest it did not beat “same hour "
                       "last week”: read it with care.",
        "unchecked": "Forecast by {model}; not yet checked against past weeks (no backtest).",
        "naive": "No model beat “same hour last week” here in the last backtest, so this "
                 "forecast repeats last week's counts.",
    },
    "zh": {
        "better": "预测采用{model}；在最近一次回测中，其误差比“上周同一时段”低{pct}%。",
        "even": "预测采用{model}；在最近一次回测中，其误差与“上周同一时段”大致相当。",
        "worse": "预测采用{model}；在最近一次回测中，它未能优于“上周同一时段”（误差高{pct}%），"
                 "请谨慎参考。",
        "worse_plain": "预测采用{model}；在最近一次回测中，它未能优于“上周同一时段”，请谨慎参考。",
        "unchecked": "预测采用{model}；尚未用过去几周的数据检验（没有回测）。",
        "naive": "在最近一次回测中，此处没有任何模型优于“上周同一时段”，"
                 "因此本预测沿用上周同一时段的客流。",
    },
}


def _missing(value: object) -> bool:
    """None, NaN or pd.NA: what a NULL from the store becomes in a frame."""
    return value is None or bool(pd.isna(value))


def model_key(model: str | None) -> str:
    """The forecaster's name, NULL read as the seasonal model (runs before it was recorded)."""
    return DEFAULT_MODEL if _missing(model) or model == "" else str(model)


def percent_difference(ratio: float) -> int:
    """How much more or less the forecaster erred than naive, in whole percent rounded half
    up: 0.62 → 38, 1.12 → 12."""
    return math.floor(abs(1.0 - ratio) * 100 + 0.5)


def skill_verdict(model: str | None, ratio: float | None) -> Verdict:
    """Which sentence applies: `naive` (the run fell back to last week's counts), `unchecked`
    (never backtested), `better` / `even` (beat naive by at least / less than half a
    percent), `worse` / `worse_plain` (did not beat naive; plain when the margin is no
    whole percent or cannot be given). Raises ValueError for a negative ratio (a ratio of
    two mean absolute errors cannot be)."""
    if model_key(model) == "naive":
        return "naive"
    if _missing(ratio):
        return "unchecked"
    ratio = float(ratio)
    if ratio < 0:
        raise ValueError(f"backtest MAE ratio cannot be negative: {ratio}")
    if ratio < 1:
        return "better" if percent_difference(ratio) > 0 else "even"
    if not math.isfinite(ratio) or percent_difference(ratio) == 0:
        return "worse_plain"
    return "worse"


def model_name(model: str | None, lang: str, prophet_share: float | None = None) -> str:
    """What the forecaster is, in `lang`: "the seasonal model with a learned correction".
    The mix (`lgbm_prophet`) is named with the seasonal model's `prophet_share` when it is
    known (0-1, said in whole percent), and as the learned model alone at a share of 0, which
    it then is."""
    names = MODEL_NAMES[_language(lang)]
    key = model_key(model)
    if key == "lgbm_prophet" and not _missing(prophet_share):
        share = float(prophet_share)  # type: ignore[arg-type]
        if not 0 <= share <= 1:
            raise ValueError(f"the seasonal model's share must be between 0 and 1: {share}")
        percent = math.floor(share * 100 + 0.5)
        return names["lgbm"] if percent == 0 else names["lgbm_prophet_share"].format(
            share=percent)
    return names[key] if key in names else names["other"].format(name=key)


def skill_sentence(model: str | None, ratio: float | None, lang: str,
                   prophet_share: float | None = None) -> str:
    """One plain sentence in `lang` (vi, en or zh) on the forecaster behind a site's forecast
    and how it did in the newest backtest against "the same hour last week": "Forecast by
    the seasonal model with a learned correction; in the last backtest it erred 38 % less
    than “same hour last week”." `model`: Store.forecast_skill's model (None: the seasonal
    model); `ratio`: its backtest_mae_ratio (None or NaN: never backtested); `prophet_share`:
    the seasonal model's share in the mix (`model_name`)."""
    lang = _language(lang)
    verdict = skill_verdict(model, ratio)
    text = SENTENCES[lang][verdict]
    if verdict == "naive":
        return text
    pct = percent_difference(float(ratio)) if verdict in ("better", "worse") else None
    return text.format(model=model_name(model, lang, prophet_share), pct=pct)


def skill_sentences(skill: pd.DataFrame, lang: str) -> dict[str, str]:
    """Per site of `Store.forecast_skill()` (site_id, model, backtest_mae_ratio, optionally
    prophet_share): its sentence in `lang`."""
    return {row.site_id: skill_sentence(row.model, row.backtest_mae_ratio, lang,
                                        getattr(row, "prophet_share", None))
            for row in skill.itertuples(index=False)}


def _language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    return lang

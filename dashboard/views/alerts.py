"""The alerts page: open alerts with their recommended action, acknowledgement with a note,
and the audit of every alert and acknowledgement.

The collector evaluates alerts once a minute (visitorflow.alerts.run_alert_step) and the store
records each evaluation, so the page can say when alerts were last evaluated and, with none
open, that no site is busy; it only reads them, once per refresh for all sessions.
Operators (and admins) acknowledge an alert as themselves (the signed-in user is
`acked_by`) and edit the recommended action texts (stored with who and when;
data/alert_actions.yaml stays the default); viewers see.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st
from shared import current_user, local_time, page_context, page_texts, read_store, user_with_role

from visitorflow.alerts import (
    ACTION_KEYS,
    alert_message,
    load_actions,
    recommended_action,
    with_action_edits,
)
from visitorflow.clock import clock_speed, utc_now
from visitorflow.load import LEVEL_LABELS, LoadLevel
from visitorflow.settings import Settings
from visitorflow.store import Store, StoreError

TEXT = page_texts("alerts")
# The collector evaluates every minute: an evaluation older than this means it has stopped.
STALE_EVALUATION = timedelta(minutes=5)
LEVEL_BOX = {"overload": st.error, "crowded": st.warning, "busy": st.info}
# How long the answer to an operator's click stays on the page: the view redraws itself every
# few seconds, and a message shown for one redraw was gone before it could be read.
MESSAGE_S = 12.0

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])
user = current_user()
can_act = user is not None and user.can("operator")
refresh_s = settings.dashboard.refresh_s


@st.cache_data(ttl=refresh_s, max_entries=4, show_spinner=False)
def alert_state(
    _settings: Settings,
) -> tuple[datetime | None, pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame]:
    """When alerts were last evaluated, the open alerts, the last 30 days' audit and the
    edited action texts: read once per refresh, shared by sessions."""
    store = Store.from_settings(_settings)
    with store.session():
        return (store.last_alert_evaluation_utc(), store.open_alerts(),
                store.alert_audit(utc_now() - timedelta(days=30)), store.action_texts())


@st.cache_resource(show_spinner=False)
def actions_at(path: str, mtime: float) -> dict:
    return load_actions(Path(path))


def file_actions() -> dict:
    path = settings.alerts.actions_path
    return actions_at(str(path), path.stat().st_mtime)


def site_name(site_id: str) -> str:
    return catalogue.site(site_id).name.get(lang)


def shown_message(row: pd.Series) -> str:
    """An alert's message in the page's language; a forecast's probability as a percentage."""
    if row["kind"] == "forecast":
        return T["forecast_message"].format(site=site_name(row["site_id"]),
                                            time=local_time(row["from_utc"], settings),
                                            p=f"{row['p_overload']:.0%}")
    return alert_message(site_name(row["site_id"]), row["kind"], row["level"], lang,
                         local_time(row["raised_at_utc"], settings), row["occupancy"],
                         row["capacity"])


def tell(key: str, text: str) -> None:
    """Show `text` (key "ack_problem": a warning, "ack_done": a success) for MESSAGE_S, in
    place of an earlier answer."""
    for old in ("ack_problem", "ack_done"):
        st.session_state.pop(old, None)
    st.session_state[key] = (text, time.monotonic() + MESSAGE_S)


def acknowledge(alert_id: str) -> None:
    who = user_with_role("operator")
    if who is None:
        tell("ack_problem", T["not_allowed"])
        return
    note = st.session_state[f"ack_note_{alert_id}"].strip()
    if not note:
        tell("ack_problem", T["need_note"])
        return
    # A write from the dashboard: rare, so it takes the store's one-writer-at-a-time lock
    # through the same short-lived, retried connection as the collector (Store._connect).
    try:
        Store.from_settings(settings).acknowledge_alert(alert_id, who.name, note, utc_now())
    except StoreError as exc:
        tell("ack_problem", f"{T['store_busy']} {exc}")
        return
    tell("ack_done", T["ack_done"])
    alert_state.clear()


def open_alert(row: pd.Series, actions: dict) -> None:
    level = LEVEL_LABELS[LoadLevel(row["level"])][lang]
    since = T["since"].format(time=local_time(row["raised_at_utc"], settings, with_date=True))
    with st.container(border=True):
        LEVEL_BOX[row["level"]](f"**{level} · {T[row['kind']]}** — {shown_message(row)}")
        st.caption(f"{since} · {site_name(row['site_id'])}")
        st.markdown(f"**{T['action']}:** "
                    + recommended_action(actions, row["site_id"], row["kind"], row["level"], lang))
        if row["acks"]:
            st.success(T["acked"].format(
                who=row["acked_by"], time=local_time(row["acked_at_utc"], settings),
                note=row["ack_note"]))
        if not can_act:  # viewers see alerts; only operators and admins acknowledge
            return
        # A form: the page refreshes itself every few seconds, and widgets outside a form
        # send each value on its own, so a refresh between typing and clicking lost it.
        with st.form(key=f"ack_form_{row['alert_id']}", border=False):
            note, button = st.columns([3, 0.6], vertical_alignment="bottom")
            note.text_input(T["note"], key=f"ack_note_{row['alert_id']}")
            button.form_submit_button(T["ack"], key=f"ack_{row['alert_id']}",
                                      on_click=acknowledge, args=(row["alert_id"],))


def audit_table(audit: pd.DataFrame) -> pd.DataFrame:
    def when(values: pd.Series) -> list[str]:
        return ["" if pd.isna(v) else local_time(v, settings, with_date=True) for v in values]

    return pd.DataFrame({
        T["col_raised"]: when(audit["raised_at_utc"]),
        T["col_site"]: [site_name(s) for s in audit["site_id"]],
        T["col_kind"]: [T[k] for k in audit["kind"]],
        T["col_level"]: [LEVEL_LABELS[LoadLevel(v)][lang] for v in audit["level"]],
        T["col_cleared"]: when(audit["cleared_at_utc"]),
        T["col_message"]: [shown_message(row) for _, row in audit.iterrows()],
        T["col_action"]: audit["recommended_action"],
        T["col_acked_by"]: audit["acked_by"].fillna(""),
        T["col_acked_at"]: when(audit["acked_at_utc"]),
        T["col_note"]: audit["note"].fillna(""),
    })


@st.fragment(run_every=refresh_s)
def alerts_view() -> None:
    for key, show in (("ack_problem", st.warning), ("ack_done", st.success)):
        if key in st.session_state:
            text, until = st.session_state[key]
            if time.monotonic() < until:
                show(text)
            else:
                del st.session_state[key]
    state = read_store(lambda: alert_state(settings), T)
    if state is None:
        return
    evaluated_utc, open_alerts, audit, edits = state
    if open_alerts is None or evaluated_utc is None:
        st.info(T["not_evaluated"])
        return
    evaluated = local_time(evaluated_utc, settings, with_date=True)
    # The collector evaluates each (simulated) minute; allow five of its wall-clock cycles.
    if utc_now() - evaluated_utc > STALE_EVALUATION * max(1.0, clock_speed()):
        st.warning(T["evaluation_stale"].format(time=evaluated))
    else:
        st.caption(T["evaluated_at"].format(time=evaluated))
    actions = with_action_edits(file_actions(), edits)
    if not can_act:
        st.caption(T["viewer_only"])

    st.subheader(f"{T['open']} ({len(open_alerts)})")
    if open_alerts.empty:
        st.success(T["none_open"])
    for _, row in open_alerts.iterrows():
        open_alert(row, actions)

    st.subheader(T["audit"])
    st.dataframe(audit_table(audit), hide_index=True, width="stretch")


def action_label(key: str) -> str:
    if key == "forecast_overload":
        return f"{T['forecast']} · {LEVEL_LABELS[LoadLevel.OVERLOAD][lang]}"
    return LEVEL_LABELS[LoadLevel(key)][lang]


def save_action_texts(site_id: str, key: str, current: dict[str, str]) -> None:
    who = user_with_role("operator")
    if who is None:
        tell("ack_problem", T["not_allowed"])
        return
    changed = {code: st.session_state[f"action_{site_id}_{key}_{code}"].strip()
               for code in current}
    changed = {code: text for code, text in changed.items() if text != current[code]}
    if any(not text for text in changed.values()):
        tell("ack_problem", T["need_text"])
        return
    try:
        for code, text in changed.items():
            Store.from_settings(settings).set_action_text(site_id, key, code, text, who.name,
                                                          utc_now(), baseline=current[code])
    except (StoreError, ValueError) as exc:
        tell("ack_problem", f"{T['store_busy']} {exc}")
        return
    tell("ack_done", T["action_saved"])
    alert_state.clear()


def action_editor() -> None:
    """Operators edit the recommended action of a level, for every site or one."""
    state = read_store(lambda: alert_state(settings), T)
    actions = with_action_edits(file_actions(), state[3] if state else pd.DataFrame(
        columns=["site_id", "action_key", "lang", "text"]))
    with st.expander(T["edit_actions"]):
        left, right = st.columns(2)
        site_id = left.selectbox(
            T["col_site"], ["*", *(s.id for s in catalogue.sites)], key="action_site",
            format_func=lambda i: T["all_sites"] if i == "*" else site_name(i))
        key = right.selectbox(T["col_level"], ACTION_KEYS, key="action_key",
                              format_func=action_label)
        level = "overload" if key == "forecast_overload" else key
        kind = "forecast" if key == "forecast_overload" else "live"
        current = {code: recommended_action(actions, "" if site_id == "*" else site_id, kind,
                                            level, code) for code in ("vi", "en", "zh")}
        with st.form(key=f"action_form_{site_id}_{key}", border=False):
            for code, text in current.items():
                st.text_area(code, value=text, key=f"action_{site_id}_{key}_{code}", height=68)
            st.form_submit_button(T["save_action"], key="save_action",
                                  on_click=save_action_texts, args=(site_id, key, current))


alerts_view()
if can_act:
    action_editor()

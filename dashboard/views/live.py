"""The live page: every site on a map of the province, coloured by its load, refreshing itself.

A page of the multipage dashboard (dashboard/app.py sets up settings, the catalogue and the
language, then navigates here). It reads the DuckDB store read-only through
`visitorflow.live.live_snapshot`, once per refresh for all sessions, and draws the province
and its former districts from data/ only: no tile provider, no external request. Each site
carries its name in the page's language; a click on a site (or a choice in the list under
the map) opens its detail page.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pydeck as pdk
import streamlit as st
from shared import local_time, page_context, page_texts

from visitorflow.catalogue import Catalogue
from visitorflow.clock import clock_speed, utc_now
from visitorflow.live import gate_notices, live_snapshot, map_layout
from visitorflow.load import LEVEL_COLOURS, LEVEL_LABELS, SEVERITY, LoadLevel
from visitorflow.settings import PROJECT_ROOT, Settings
from visitorflow.store import Store, StoreBusy, StoreError, StoreMissing

TEXT = page_texts("live")
# Drawn first to last: no data and closed underneath, then the load levels calmest first.
DRAW_ORDER: list[str] = [LoadLevel.NO_DATA, LoadLevel.CLOSED, *SEVERITY]
# Local base style served by Streamlit from dashboard/static/ (server.enableStaticServing).
LOCAL_MAP_STYLE = "app/static/blank_style.json"
# Constant across refreshes: Streamlit's front end re-applies only a *changed* initial view
# state, so the pan and zoom an official chose survive every refresh.
PROVINCE_VIEW = pdk.ViewState(latitude=21.89, longitude=106.73, zoom=8.2, pitch=0, bearing=0)
# The former districts (the tier was abolished on 1 July 2025): thin lines for orientation.
DISTRICTS_PATH = PROJECT_ROOT / "data" / "districts_pre2025.geojson"
# Names are drawn by deck.gl into a glyph atlas on a canvas, with a font of the machine's own
# (no font is fetched): Noto Sans CJK (make system-deps-fonts) has the Chinese and the
# Vietnamese letters; DejaVu Sans is the Debian fallback that has Vietnamese.
LABEL_FONT = "'Noto Sans CJK SC', 'Noto Sans', 'DejaVu Sans', sans-serif"
LABEL_PX = 13
# Dots of sites moved into a column keep within their row.
ROW_PX = 22.0
# The legend's order: the load levels calmest first, then the two states that are not loads.
LEGEND_ORDER: list[LoadLevel] = [*SEVERITY, LoadLevel.CLOSED, LoadLevel.NO_DATA]
# Follows the link to the site picked on the map, as if the official had clicked it: the
# browser's own page change stops every timed refresh of this page before it asks for the
# site's page. Opened from the script instead (st.switch_page), a refresh already on its way
# ran after the switch, and Chromium dropped the site's page ("Bad delta path" in its
# console, then a blank page). Tried for a few seconds while Streamlit draws the link.
FOLLOW_PICKED_LINK = """<script>
(() => {
  let tries = 0;
  const follow = () => {
    const link = document.querySelector(".st-key-live_map_pick a[href]");
    if (link) link.click();
    else if (++tries < 50) setTimeout(follow, 100);
  };
  follow();
})();
</script>"""


def duration_text(seconds: float, lang: str) -> str:
    sec_unit, min_unit, hour_unit = TEXT[lang]["units"]
    seconds = max(seconds, 0)
    if seconds < 90:
        return f"{seconds:.0f} {sec_unit}"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} {min_unit}"
    return f"{seconds / 3600:.1f} {hour_unit}"


def age_text(seconds: float | None, lang: str) -> str:
    """'12 s ago' in the page's language; '–' when there is no reading."""
    if seconds is None or pd.isna(seconds):
        return "–"
    return TEXT[lang]["ago"].format(age=duration_text(seconds, lang))


def dot_radius_px(occupancy: float | None) -> float:
    """Dots grow with the square root of the people on site; empty sites stay visible."""
    if occupancy is None or pd.isna(occupancy):
        return 5.0
    return min(5.0 + 0.45 * math.sqrt(max(occupancy, 0)), 32.0)


# -- static inputs, loaded once per process ---------------------------------------------------


@st.cache_data(show_spinner=False)
def boundary_at(path: str) -> dict:
    """The polygons of a GeoJSON file, geometry only (their properties are provenance, not
    for the map): the province, or its former districts."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    features = [{"type": "Feature", "properties": {}, "geometry": f["geometry"]}
                for f in raw["features"]]
    return {"type": "FeatureCollection", "features": features}


@st.cache_data(show_spinner=False)
def layout_for(lang: str, _catalogue: Catalogue, ids: tuple[str, ...]) -> pd.DataFrame:
    """Where each site and its name are drawn at the province's zoom (visitorflow.live's
    `map_layout`): it depends on the names, so once per language and catalogue."""
    points = pd.DataFrame([{"site_id": s.id, "lat": s.lat, "lon": s.lon,
                            "label": s.name.get(lang)} for s in _catalogue.sites])
    return map_layout(points, PROVINCE_VIEW.zoom, row_px=ROW_PX, char_px=LABEL_PX * 0.55)


# -- the page ---------------------------------------------------------------------------------

settings, catalogue, lang = page_context()
T = TEXT[lang]
st.title(T["title"])

boundary = districts = None
try:
    boundary = boundary_at(str(settings.boundary_path))
    districts = boundary_at(str(DISTRICTS_PATH))
except (OSError, ValueError, KeyError) as exc:
    st.warning(T["boundary_missing"].format(error=exc))

refresh_s = settings.dashboard.refresh_s


@st.cache_data(ttl=refresh_s, max_entries=4, show_spinner=False)
def snapshot(
    store_path: str, _catalogue: Catalogue, _settings: Settings
) -> tuple[datetime, pd.DataFrame, pd.DataFrame]:
    """The state of every site now: one query per refresh, shared by every session.

    Language-neutral (names are added per session). Errors are not cached, so the next
    refresh tries again."""
    now = utc_now()
    status, gates = live_snapshot(Store.from_settings(_settings), _catalogue, _settings, now)
    return now, status, gates


def site_records(status: pd.DataFrame, now: datetime) -> list[dict]:
    """One JSON-ready dict per site for the map, with the tooltip's texts: its true point
    (lon, lat) and where it is drawn (map_lon, map_lat: moved into a column where sites would
    overlap), its name and which side of the dot the name goes."""
    layout = layout_for(lang, catalogue, tuple(s.id for s in catalogue.sites)).set_index(
        "site_id")
    records = []
    for row in status.itertuples():
        has_data = row.occupancy is not None and not pd.isna(row.occupancy)
        last = row.last_reading_utc
        age = None if last is None or pd.isna(last) else (now - pd.Timestamp(last)).total_seconds()
        place = layout.loc[row.site_id]
        radius = dot_radius_px(row.occupancy)
        if place["moved"]:  # a dot in a column stays within its row
            radius = min(radius, ROW_PX / 2 - 1)
        records.append({
            "site_id": row.site_id,
            "name": row.name,
            "lon": row.lon,
            "lat": row.lat,
            "map_lon": float(place["map_lon"]),
            "map_lat": float(place["map_lat"]),
            "moved": bool(place["moved"]),
            "anchor": place["anchor"],
            "offset": [(radius + 4) * (1 if place["anchor"] == "start" else -1), 0],
            "colour": [int(c) for c in row.colour],
            "radius": radius,
            "level": row.level,
            "level_label": LEVEL_LABELS[row.level][lang],
            "occupancy_text": f"{int(row.occupancy) if has_data else '–'} / {row.capacity}",
            "arrivals_last_hour": int(row.arrivals_last_hour),
            "age_text": age_text(age, lang),
            "notice": row.no_data_notice,
        })
    # Drawn in order: the most urgent level on top, and within a level big dots first, so
    # that an overloaded site is never hidden under its neighbours in the city cluster.
    return sorted(records, key=lambda r: (DRAW_ORDER.index(r["level"]), -r["radius"]))


def label_characters(names: list[str]) -> str:
    """Every character the names use, for the TextLayer's glyph atlas: by default deck.gl
    draws ASCII only, and a Vietnamese or Chinese letter outside the atlas is left out. The
    quote pydeck uses to mark a literal string cannot be one of them."""
    return "".join(sorted(set("".join(names)) - {'"'}))


def site_map(status: pd.DataFrame, now: datetime) -> pdk.Deck:
    records = site_records(status, now)
    moved = [r for r in records if r["moved"]]
    layers = []
    if boundary is not None:
        layers.append(pdk.Layer(
            "GeoJsonLayer", id="boundary", data=boundary, stroked=True, filled=True,
            get_fill_color=[252, 253, 247, 255], get_line_color=[70, 100, 80, 255],
            line_width_min_pixels=2, pickable=False,
        ))
    if districts is not None:
        layers.append(pdk.Layer(
            "GeoJsonLayer", id="districts", data=districts, stroked=True, filled=False,
            get_line_color=[130, 150, 135, 200], line_width_min_pixels=1, pickable=False,
        ))
    # Where a site was moved into a column: a thin line from its true point to its dot.
    layers.append(pdk.Layer(
        "LineLayer", id="leaders", data=moved, get_source_position="[lon, lat]",
        get_target_position="[map_lon, map_lat]", get_color=[110, 110, 110, 200],
        get_width=1, width_units="'pixels'", pickable=False,
    ))
    layers.append(pdk.Layer(
        "ScatterplotLayer", id="true_points", data=moved, get_position="[lon, lat]",
        get_fill_color=[60, 60, 60, 255], get_radius=2, radius_units="'pixels'",
        pickable=False,
    ))
    layers.append(pdk.Layer(
        "ScatterplotLayer", id="sites", data=records,
        get_position="[map_lon, map_lat]", get_fill_color="colour", get_radius="radius",
        # pydeck turns bare strings into accessor expressions: quote a literal string.
        radius_units="'pixels'", stroked=True, get_line_color=[255, 255, 255, 255],
        line_width_min_pixels=1, opacity=0.85, pickable=True,
    ))
    layers.append(pdk.Layer(
        "TextLayer", id="labels", data=records, get_position="[map_lon, map_lat]",
        get_text="name", get_size=LABEL_PX, get_color=[25, 30, 28, 255],
        get_text_anchor="anchor", get_alignment_baseline="'center'", get_pixel_offset="offset",
        character_set=f'"{label_characters([r["name"] for r in records])}"',
        font_family=f'"{LABEL_FONT}"', background=True,
        get_background_color=[255, 255, 255, 215], background_padding=[3, 1, 3, 1],
        pickable=True,
    ))
    tooltip = {
        "html": (
            "<b>{name}</b><br/>{level_label}<br/>"
            f"{T['tip_occupancy']}: {{occupancy_text}}<br/>"
            f"{T['tip_last_hour']}: {{arrivals_last_hour}}<br/>"
            f"{T['tip_age']}: {{age_text}}<br/><i>{{notice}}</i><br/>"
            f"<small>{T['tip_click']}</small>"
        ),
        "style": {"fontSize": "13px"},
    }
    return pdk.Deck(
        layers=layers,
        initial_view_state=PROVINCE_VIEW,
        map_style=settings.dashboard.basemap_style_url or LOCAL_MAP_STYLE,
        tooltip=tooltip,
    )


def site_table(status: pd.DataFrame) -> pd.DataFrame:
    share = pd.to_numeric(status["load_share"], errors="coerce")
    table = pd.DataFrame({
        T["col_name"]: status["name"],
        T["col_level"]: [LEVEL_LABELS[lv][lang] for lv in status["level"]],
        T["col_occupancy"]: pd.array(status["occupancy"], dtype="Int64"),
        T["col_capacity"]: status["capacity"],
        T["col_load"]: (share * 100).round(0),
        T["col_last_hour"]: status["arrivals_last_hour"],
        T["col_silent"]: status["no_data_notice"],
        T["col_last"]: [
            "–" if ts is None or pd.isna(ts) else local_time(ts, settings, with_date=True)
            for ts in status["last_reading_utc"]
        ],
    })
    return table.iloc[share.fillna(-1).sort_values(ascending=False, kind="stable").index]


def legend_html(counts: pd.Series) -> str:
    """The map's legend as text (the map is a canvas): each level's colour and name, with
    how many sites are at it now."""
    items = [
        f'<span style="white-space:nowrap"><span style="color:rgb{LEVEL_COLOURS[level]};'
        f'font-size:1.3em" aria-hidden="true">●</span> {LEVEL_LABELS[level][lang]} '
        f"({int(counts.get(level.value, 0))})</span>"
        for level in LEGEND_ORDER
    ]
    return (f'<div data-testid="map-legend"><b>{T["legend"]}:</b> '
            + " &nbsp; ".join(items) + "</div>")


@st.fragment(run_every=refresh_s)
def live_view() -> None:
    try:
        taken_utc, status, gates = snapshot(str(settings.store.path), catalogue, settings)
        st.session_state["last_snapshot"] = (taken_utc, status, gates)
    except StoreMissing as exc:
        st.info(T["no_data_yet"])
        st.caption(str(exc))
        return
    except StoreBusy as exc:
        st.warning(f"{T['store_busy']} {exc}")
        if "last_snapshot" not in st.session_state:
            return
        taken_utc, status, gates = st.session_state["last_snapshot"]
        st.caption(T["showing_previous"].format(time=local_time(taken_utc, settings)))
    except (StoreError, duckdb.Error) as exc:
        st.error(f"{T['store_error']} {exc}")
        return

    # "No data from gate X since HH:MM", never "0 visitors", for each silent gate.
    notices = gate_notices(gates, catalogue, settings, lang).groupby("site_id")["message"]
    notice_by_site = notices.agg("; ".join).to_dict()
    status = status.assign(
        name=[catalogue.site(i).name.get(lang) for i in status["site_id"]],
        no_data_notice=[notice_by_site.get(i, "") for i in status["site_id"]],
    )
    now = utc_now()
    with_data = status[status["occupancy"].notna()]
    counts = status["level"].value_counts()
    last = pd.to_datetime(status["last_reading_utc"]).max()
    age_s = None if pd.isna(last) else (now - last.to_pydatetime()).total_seconds()

    cols = st.columns([1, 1, 1, 1, 1, 1.5])
    cols[0].metric(T["visitors_now"], f"{int(with_data['occupancy'].sum()):,}" if len(with_data)
                   else "–")
    cols[1].metric(T["arrivals_today"], f"{int(status['arrivals_today'].sum()):,}")
    for col, level in zip(cols[2:5], SEVERITY[1:], strict=True):  # every level above normal
        col.metric(T["sites_at"].format(level=LEVEL_LABELS[level][lang].lower()),
                   int(counts.get(level, 0)))
    cols[5].metric(
        T["data_from"].format(time="–" if age_s is None else local_time(last, settings)),
        age_text(age_s, lang),
    )

    if age_s is None:
        st.info(T["no_data_yet"])
    elif age_s > max(300, 6 * refresh_s) * clock_speed():  # a simulated clock runs faster
        st.warning(T["stale"].format(age=duration_text(age_s, lang)))
    for level, show, key in (("overload", st.error, "over"), ("crowded", st.warning, "crowded")):
        hit = status[status["level"] == level]
        if len(hit):
            show(f"{T[key]}: " + ", ".join(
                f"{r.name} ({int(r.occupancy)}/{r.capacity})" for r in hit.itertuples()))
    silent = status[status["level"] == "no_data"]
    if 0 < len(silent) < len(status):
        st.caption(T["silent_sites"].format(
            n=len(silent), total=len(status), names=", ".join(silent["name"])))

    st.markdown(legend_html(counts), unsafe_allow_html=True)
    # A click on a dot or a name selects that site (a rerun of this fragment); the map stays
    # in the fragment so that its colours follow the load.
    chart = st.pydeck_chart(
        site_map(status, now), height=620, key="live_map",
        alt=T["map_alt"].format(names=", ".join(status["name"])),
        on_select="rerun", selection_mode="single-object",
    )
    chosen = [obj for objs in chart.selection.get("objects", {}).values() for obj in objs]
    if chosen:
        site_id = chosen[0]["site_id"]
        with st.container(key="live_map_pick"):
            st.page_link("views/site.py", label=T["open_site_link"].format(
                site=catalogue.site(site_id).name.get(lang)), icon="📍",
                query_params={"site": site_id})
            st.html(FOLLOW_PICKED_LINK, unsafe_allow_javascript=True)
    st.caption(f"{T['attribution']} · {T['districts_note']} {T['moved_note']}")
    st.dataframe(
        site_table(status), hide_index=True, width="stretch",
        column_config={T["col_load"]: st.column_config.NumberColumn(format="%d%%")},
    )


st.sidebar.caption(f"↻ {refresh_s:g} s")
live_view()
# The way to a site's page without the mouse on the map (and for screen readers).
picked = st.selectbox(T["open_site"], [s.id for s in catalogue.sites], index=None,
                      placeholder=T["open_site_placeholder"], key="live_open_site",
                      format_func=lambda i: catalogue.site(i).name.get(lang))
if picked:
    # A link, not st.switch_page, for the reason given at FOLLOW_PICKED_LINK.
    st.page_link("views/site.py", label=T["open_site_link"].format(
        site=catalogue.site(picked).name.get(lang)), icon="📍", query_params={"site": picked})

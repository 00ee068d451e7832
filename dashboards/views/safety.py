"""Safety: what screening costs people who are harmed by it or failed by it, per 1,000 screened,
run beside run: interval cancers, cancers the AI cleared alone, false-positive work-ups and
benign biopsies, and the stage shift (the stages of screen-detected cancers and of every cancer
diagnosed)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st
from results import definition, root, runs_or_stop

from sandbox.errors import SandboxInputError
from sandbox.runfolder import read_run

st.title("Safety")
base = root()
runs = runs_or_stop(base)
names = [e.name for e in runs]
chosen = st.multiselect("run folders", names, default=names[:2], key="runs")
if not chosen:
    st.stop()
HARMS = (
    "interval_cancers",
    "ai_rule_out_missed_cancers",
    "false_positive_workups",
    "benign_biopsies",
    "benign_resections",
    "screen_detected_cancers",
)


@st.cache_data(show_spinner=False, max_entries=32)
def _run(path: str) -> dict:
    run = read_run(path)
    people = None
    try:
        people = pl.read_parquet(
            f"{path}/people.parquet", columns=["diagnosis_mode", "stage", "site", "diagnosis_round"]
        )
    except (OSError, pl.exceptions.PolarsError):
        people = None  # the stage of every cancer needs the people table
    return {"metrics": run["metrics"], "people": people, "config": run["config"]}


loaded = {}
for name in chosen:
    try:
        loaded[name] = _run(str(next(e.path for e in runs if e.name == name)))
    except SandboxInputError as e:
        st.error(str(e))
if not loaded:
    st.stop()
sites = sorted({s for r in loaded.values() for s in r["metrics"]["site"].unique().to_list()})
rounds = sorted({s for r in loaded.values() for s in r["metrics"]["round"].unique().to_list()})
c1, c2 = st.columns(2)
site = c1.selectbox("site", sites, index=sites.index("all"), key="site")
rnd = c2.selectbox("round", rounds, index=rounds.index("all"), key="round")

rows = []
for name, r in loaded.items():
    m = r["metrics"].filter(
        (pl.col("site") == site) & (pl.col("subgroup") == "all") & (pl.col("round") == rnd)
    )
    got = {row["metric"]: row for row in m.iter_rows(named=True)}
    screens = got.get("screens", {}).get("value") or 0.0
    for metric in HARMS:
        if metric not in got or not screens:
            continue
        g = got[metric]
        k = 1000.0 / screens
        rows.append(
            {
                "run": name,
                "metric": metric,
                "per_1000_screens": g["value"] * k,
                "lo": g["lo"] * k,
                "hi": g["hi"] * k,
                "count": g["value"],
                "screens": screens,
            }
        )
if not rows:
    st.warning("These runs have no screens at this site and round.")
    st.stop()
table = pl.DataFrame(rows)
st.subheader(
    "Per 1,000 screens",
    help="counts over the screens of the site and round chosen, with their 95% intervals",
)
points = alt.Chart(table.to_pandas()).encode(
    y=alt.Y("run:N", title=None, axis=alt.Axis(labelLimit=300)),
    color=alt.Color("run:N", legend=None),
)
chart = (
    points.mark_rule(strokeWidth=2).encode(
        x=alt.X("lo:Q", title="per 1,000 screens (95% interval)"), x2="hi:Q"
    )
    + points.mark_point(filled=True, size=80).encode(
        x="per_1000_screens:Q",
        tooltip=[
            "run",
            "metric",
            alt.Tooltip("per_1000_screens:Q", format=".2f"),
            "count",
            "screens",
        ],
    )
).properties(height=24 * len(loaded))
st.altair_chart(
    chart.facet(
        row=alt.Row("metric:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left"))
    ).resolve_scale(x="independent"),
    width="stretch",
)
for metric in HARMS:
    st.caption(f"**{metric}**: {definition(metric)}")
st.dataframe(table, hide_index=True)
st.download_button("Download (CSV)", table.write_csv(), "safety.csv", "text/csv")

st.subheader(
    "Stage shift",
    help="stage at diagnosis: of screen-detected cancers, and of every cancer diagnosed during "
    "follow-up (screen-detected, interval, after screening, before a first screen)",
)
stage_rows = []
for name, r in loaded.items():
    p = r["people"]
    if p is None:
        st.caption(f"{name}: no readable people.parquet; its stage shift is not shown.")
        continue
    if site != "all":
        names_in = [s.get("name") for s in r["config"].get("sites") or []]
        if site in names_in:
            p = p.filter(pl.col("site") == names_in.index(site))
    diagnosed = p.filter(pl.col("diagnosis_mode").cast(pl.String) != "none")
    for label, frame in (
        ("screen-detected", diagnosed.filter(pl.col("diagnosis_mode").cast(pl.String) == "screen")),
        ("every cancer", diagnosed),
    ):
        total = frame.height
        for stage, n in frame.group_by("stage").len().sort("stage").iter_rows():
            stage_rows.append(
                {"run": name, "cancers": label, "stage": stage, "count": n, "share": n / total}
            )
if stage_rows:
    stages = pl.DataFrame(stage_rows)
    bars = (
        alt.Chart(stages.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X(
                "share:Q", stack="normalize", axis=alt.Axis(format="%"), title="share of cancers"
            ),
            y=alt.Y("run:N", title=None, axis=alt.Axis(labelLimit=300)),
            color=alt.Color("stage:N", scale=alt.Scale(scheme="orangered"), sort="ascending"),
            order=alt.Order("stage:N"),
            tooltip=["run", "cancers", "stage", "count", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=24 * len(loaded))
        .facet(row=alt.Row("cancers:N", title=None))
    )
    st.altair_chart(bars, width="stretch")
    st.dataframe(stages, hide_index=True)
st.caption("Each chart's menu (...) saves it as PNG or SVG.")

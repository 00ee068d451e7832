"""Workload and capacity: reading hours needed against the hours the radiologists have, worklist
waits and the backlog of exams awaiting a report, week by week and site by site, for one run or
several side by side (another staffing, another scanner, another policy)."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl
import streamlit as st
from results import complete_runs, definition, root

from sandbox.errors import SandboxInputError
from sandbox.runfolder import read_run

st.title("Workload and capacity")
base = root()
runs = [e for e in complete_runs(base) if (e.path / "events.parquet").is_file()]
if not runs:
    st.info(
        "No complete run folders with an event log under the results root yet "
        "(runs with runtime.write_events=false have none)."
    )
    st.stop()
names = [e.name for e in runs]
chosen = st.multiselect(
    "run folders (several: side by side, e.g. another staffing or policy)",
    names,
    default=names[:2],
    key="runs",
)
if not chosen:
    st.stop()
width = st.select_slider(
    "time step", options=[7, 14, 30, 91], value=7, format_func=lambda d: f"{d} days", key="step"
)
COLUMNS = ["site", "exam_kind", "exam_day", "reported_day", "n_reads", "reader_minutes"]


@st.cache_data(show_spinner="Reading event logs...", max_entries=16)
def series(path: str, width: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per site and time step, per site) workload of the run folder at ``path``."""
    run = read_run(path)
    try:
        ev = pl.read_parquet(f"{path}/events.parquet", columns=COLUMNS)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise SandboxInputError(f"{path}/events.parquet: unreadable ({type(e).__name__})") from e
    sites = run["config"].get("sites") or []
    rows, totals = [], []
    for s, site in enumerate(sites):
        mine = ev.filter(pl.col("site") == s)
        if not mine.height:
            continue
        name = str(site.get("name", s))
        readers = sum((site.get("readers") or {}).values())
        hours = float(site.get("reading_hours_per_day", 0.0))
        start, done = mine["exam_day"].to_numpy(), mine["reported_day"].to_numpy()
        edges = np.arange(0.0, float(done.max()) + width, width)
        step = np.clip(np.floor(start / width).astype(int), 0, len(edges) - 1)
        by = (
            pl.DataFrame(
                {
                    "step": step,
                    "reads": mine["n_reads"].cast(pl.Float64),
                    "hours": mine["reader_minutes"] / 60.0,
                    "wait": done - start,
                }
            )
            .group_by("step")
            .agg(pl.col("reads").sum(), pl.col("hours").sum(), pl.col("wait").median())
        )
        workdays = np.array(
            [sum(1 for d in range(int(a), int(a) + width) if d % 7 < 5) for a in edges]
        )
        # exams awaiting their report at the end of each step
        ends = edges + width
        backlog = np.searchsorted(np.sort(start), ends) - np.searchsorted(np.sort(done), ends)
        frame = (
            pl.DataFrame(
                {
                    "step": np.arange(len(edges)),
                    "week": edges / 7.0,
                    "available_hours": workdays * readers * hours,
                    "awaiting_report": backlog,
                }
            )
            .join(by, on="step", how="left")
            .fill_null(0.0)
        )
        rows.append(frame.with_columns(pl.lit(name).alias("site")))
        wait = done - start
        active = np.isin(np.arange(len(edges)), by["step"].to_numpy())
        totals.append(
            {
                "site": name,
                "radiologists": readers,
                "exams": mine.height,
                "reads": int(mine["n_reads"].sum()),
                "reader_hours": float(mine["reader_minutes"].sum() / 60.0),
                "utilisation": float(
                    mine["reader_minutes"].sum()
                    / 60.0
                    / max((workdays * readers * hours)[active].sum(), 1e-9)
                ),
                "wait_days_median": float(np.median(wait)),
                "wait_days_p95": float(np.quantile(wait, 0.95)),
                "worst_awaiting_report": int(backlog.max()),
            }
        )
    if not rows:
        raise SandboxInputError(f"{path}: the event log has no exams")
    return pl.concat(rows), pl.DataFrame(totals)


frames, totals = [], []
for name in chosen:
    path = next(e.path for e in runs if e.name == name)
    try:
        per_step, per_site = series(str(path), width)
    except SandboxInputError as e:
        st.error(str(e))
        continue
    frames.append(per_step.with_columns(pl.lit(name).alias("run")))
    totals.append(per_site.with_columns(pl.lit(name).alias("run")))
if not frames:
    st.stop()
data = pl.concat(frames).to_pandas()
colour = alt.Color("run:N", legend=alt.Legend(orient="bottom", labelLimit=400))


def chart(y: str, title: str, help_text: str):
    st.subheader(title, help=help_text)
    lines = (
        alt.Chart(data)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("week:Q", title="weeks since the programme started"),
            y=alt.Y(f"{y}:Q", title=title),
            color=colour,
            tooltip=[
                "run",
                "site",
                alt.Tooltip("week:Q", format=".0f"),
                alt.Tooltip(f"{y}:Q", format=",.1f"),
            ],
        )
        .properties(height=220)
    )
    if y == "hours":
        lines += (
            alt.Chart(data)
            .mark_line(strokeDash=[4, 3], opacity=0.6, interpolate="step-after")
            .encode(x="week:Q", y="available_hours:Q", color=colour)
        )
    st.altair_chart(lines.facet(row=alt.Row("site:N", title=None)), width="stretch")


chart(
    "hours",
    "reading hours per time step",
    "radiologists' reading time on the exams scanned in each step (solid) against the hours "
    "they have: radiologists x reading hours per working day (dashed)",
)
chart("wait", "median worklist wait, days", definition("worklist_wait_days_median"))
chart(
    "awaiting_report",
    "exams awaiting a report",
    "exams scanned and not yet reported at the end of each step (the backlog)",
)
st.subheader("Per site")
table = pl.concat(totals).select("run", pl.exclude("run"))
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "utilisation": st.column_config.NumberColumn(
            help="reader hours / (radiologists x reading hours per working day x working days "
            "of the time steps with exams)",
            format="%.3f",
        )
    },
)
st.download_button("Download (CSV)", table.write_csv(), "workload.csv", "text/csv")
st.caption("Each chart's menu (...) saves it as PNG or SVG.")

"""Equity: a run's rates and proportions by sex, race/ethnicity or age band, each with its
interval and its gap to a reference group (difference and ratio, MOVER intervals), flagged where
the gap's interval excludes zero (sandbox/outcomes/equity.py)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st
from results import listing, root

from sandbox.comparison import programme_of, read_run
from sandbox.outcomes.equity import RATE_KINDS, gaps
from sandbox.outcomes.metrics import metric_catalogue

st.title("Equity")
base = root()
runs = [e for e in listing(base) if e.kind == "run" and e.ok]
if not runs:
    st.info("No complete run folders under the results root yet.")
    st.stop()
pick = st.selectbox("run folder", [e.name for e in runs], key="run")
run = read_run(next(e.path for e in runs if e.name == pick))
programme = programme_of(run)
catalogue = metric_catalogue(programme)
rates = [n for n, m in catalogue.items() if m.kind in RATE_KINDS]
left, right = st.columns(2)
dimension = left.selectbox("by", list(programme.subgroups), key="dimension")
groups = (
    run["metrics"]
    .filter(
        (pl.col("site") == "all")
        & (pl.col("round") == "all")
        & pl.col("subgroup").str.starts_with(f"{dimension}=")
        & (pl.col("metric") == "screens")
    )
    .sort("value", descending=True)["subgroup"]
    .to_list()
)
if not groups:
    st.warning(f"This run has no {dimension} subgroups.")
    st.stop()
reference = right.selectbox(
    "reference group", groups, key="reference", help="the largest group by screens by default"
)
chosen = st.multiselect(
    "metrics (rates and proportions: a count depends on the group's size)",
    rates,
    default=[
        n
        for n in ("cancer_detection_rate_per_1000", "programme_sensitivity", "recall_rate", "ppv")
        if n in rates
    ],
    key="metrics",
)
if not chosen:
    st.stop()
table = gaps(run["metrics"], dimension, reference, chosen)
flagged = table.filter(pl.col("flagged"))
if flagged.height:
    st.warning(
        f"{flagged.height} gap(s) to {reference} with a 95% interval that excludes zero: "
        + ", ".join(f"{r['metric']} {r['subgroup']}" for r in flagged.iter_rows(named=True))
    )
else:
    st.success(f"Every gap to {reference} has a 95% interval that includes zero.")
st.dataframe(table, hide_index=True)
st.download_button(
    "download the table (CSV)", table.write_csv(), file_name="equity_gaps.csv", mime="text/csv"
)
chart = (
    alt.Chart(table.to_pandas())
    .encode(
        y=alt.Y("subgroup:N", title=None),
        color=alt.Color(
            "flagged:N", scale=alt.Scale(domain=[False, True], range=["#444", "#c0392b"])
        ),
    )
    .properties(width=280, height=30 * max(2, len(groups)))
)
bars = chart.mark_rule().encode(x=alt.X("lo:Q", title="value (95% interval)"), x2="hi:Q")
points = chart.mark_point(filled=True).encode(
    x="value:Q", tooltip=["subgroup", "value", "lo", "hi", "diff", "diff_lo", "diff_hi", "n"]
)
st.altair_chart(
    (bars + points)
    .facet(facet=alt.Facet("metric:N", title=None), columns=2)
    .resolve_scale(x="independent")
)
st.caption(
    f"reference: {reference}; differences and ratios use MOVER intervals from each group's own "
    "interval (Newcombe's for proportions); definitions in docs/metrics.md"
)
equity_file = run["folder"] / "equity.parquet"
spread = pl.DataFrame()
if equity_file.is_file():
    try:
        spread = pl.read_parquet(equity_file).filter(
            (pl.col("dimension") == dimension) & (pl.col("group") == "max-min")
        )
    except (OSError, pl.exceptions.PolarsError) as e:
        st.warning(f"{equity_file}: unreadable ({type(e).__name__}); its summaries are not shown")
if spread.height:
    st.subheader(f"Fairlearn's summaries by {dimension}")
    st.dataframe(
        spread.select(
            "metric", "diff", "diff_lo", "diff_hi", "ratio", "ratio_lo", "ratio_hi"
        ).rename({"diff": "max - min", "ratio": "min / max"}),
        hide_index=True,
    )
    st.caption(
        "from the run's equity.parquet: over every group of the dimension, the largest gap "
        "(max - min) and the smallest ratio (min / max) of each rate; demographic_parity on "
        "the positive rate, equalized_odds the larger of the sensitivity and false-positive "
        "rate gaps; 95% intervals from a bootstrap over people (docs/equity.md)"
    )

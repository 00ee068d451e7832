"""Compare: two arms (a policy, device or operating point, at one or more seeds), paired on the
same people, pooled over seeds; a verdict on a primary metric and a forest plot. The method is
docs/metrics.md#paired-comparisons; the same code as `sandbox compare`."""

from __future__ import annotations

import polars as pl
import streamlit as st
from results import root, runs_or_stop

from sandbox.comparison import (
    Primary,
    compare_arms,
    forest_figure,
    group_arms,
    programme_of,
    read_run,
    verdict_lines,
)
from sandbox.errors import SandboxInputError
from sandbox.outcomes.paired import pairable

st.title("Compare")
base = root()
runs = runs_or_stop(base)

names = [e.name for e in runs]


def _role(arm) -> str:
    return str((arm.runs[0]["config"].get("policy") or {}).get("role", ""))


@st.cache_data(show_spinner=False)
def default_pair(names: tuple[str, ...], paths: tuple[str, ...]) -> list[str]:
    """The runs of the first two arms of one scenario that share a seed (the obvious question)."""
    by_path = dict(zip(paths, names, strict=True))
    arms = group_arms([read_run(p) for p in paths])
    for i, a in enumerate(arms):
        for b in arms[i + 1 :]:
            if a.scenario == b.scenario and set(a.seeds) & set(b.seeds):
                if _role(b) == "none" and _role(a) != "none":  # standard of care is A
                    a, b = b, a
                return [by_path[str(r["folder"])] for r in (*a.runs, *b.runs)]
    return list(names[:2])


chosen = st.multiselect(
    "run folders (runs of one configuration at several seeds form an arm)",
    names,
    default=default_pair(tuple(names), tuple(str(e.path) for e in runs)),
    key="runs",
)
if not chosen:
    st.stop()
loaded = [read_run(next(e.path for e in runs if e.name == n)) for n in chosen]
arms = group_arms(loaded)
for tag, arm in zip("AB", arms, strict=False):
    st.write(f"**{tag}**: {arm.label}, seeds {', '.join(map(str, arm.seeds))}")
if len(arms) != 2:
    st.warning(f"A paired comparison needs exactly two arms; these runs form {len(arms)}.")
    st.stop()
if arms[0].scenario != arms[1].scenario:
    st.error(
        "The two arms simulate different scenarios: a paired comparison needs the same people."
    )
    st.stop()
if st.toggle("swap A and B", key="swap"):
    arms = arms[::-1]

known = pairable(programme_of(arms[0].runs[0]))
directed = [n for n, m in known.items() if m.better]
left, mid, right = st.columns(3)
primary_metric = left.selectbox(
    "primary metric",
    directed,
    index=directed.index("screen_detected_cancers") if "screen_detected_cancers" in directed else 0,
    key="primary",
    help="the metric the verdict judges; docs/metrics.md defines each",
)
kind = mid.radio("margin", ["relative", "absolute"], horizontal=True, key="kind")
margin = right.number_input(
    "non-inferiority margin" + (" (fraction of A)" if kind == "relative" else " (metric units)"),
    min_value=0.001,
    max_value=0.99 if kind == "relative" else 1e9,
    value=0.1,
    key="margin",
)
secondary = st.multiselect(
    "secondary metrics",
    [n for n in known if n != primary_metric],
    default=[
        n
        for n in ("interval_cancers", "recall_rate", "human_reads")
        if n in known and n != primary_metric
    ],
    key="secondary",
)
sites = ["all"] + [str(s.get("name")) for s in arms[0].runs[0]["config"].get("sites") or []]
groups = ["all"] + sorted(
    g for g in arms[0].runs[0]["metrics"]["subgroup"].unique().to_list() if g != "all" and "=" in g
)
c_site, c_group = st.columns(2)
site = c_site.selectbox("site", sites, key="site", help="pair over the people of one site")
subgroup = c_group.selectbox(
    "subgroup", groups, key="subgroup", help="pair over the people of one subgroup"
)
primary = Primary(primary_metric, float(margin), kind)
try:
    with st.spinner("paired bootstrap over people ..."):
        cmp = compare_arms(arms[0], arms[1], [primary_metric, *secondary], 1000, site, subgroup)
except SandboxInputError as e:
    st.error(str(e))
    st.stop()

lines = verdict_lines(cmp, primary)
verdict = lines[1]
(st.success if "SUPERIOR" in verdict or "NON-INFERIOR" in verdict else st.warning)(verdict)
for line in (lines[0], *lines[2:]):
    st.caption(line)
table = cmp.table.select(
    "metric", "a", "b", "diff", "diff_lo", "diff_hi", "ratio", "ratio_lo", "ratio_hi", "discordant"
)
st.dataframe(table, hide_index=True)
st.download_button(
    "download the table (CSV)",
    table.write_csv(),
    file_name="paired_comparison.csv",
    mime="text/csv",
)
fig = forest_figure(cmp, primary)
st.pyplot(fig)
st.caption(f"method: {cmp.table['method'][0]}; A = {cmp.a.label}, B = {cmp.b.label}")

st.subheader(
    "Round by round",
    help="each arm's own value and 95% interval per screening round (not paired: a person's share of a round is not separable)",
)
per_round = []
for arm, tag in ((cmp.a, "A"), (cmp.b, "B")):
    for run in arm.runs:
        m = run["metrics"].filter(
            (pl.col("site") == site)
            & (pl.col("subgroup") == subgroup)
            & (pl.col("round") != "all")
            & pl.col("metric").is_in([primary_metric, *secondary])
        )
        per_round.append(
            m.select(
                pl.lit(f"{tag}: {arm.label}").alias("arm"),
                pl.lit(run["manifest"].get("seed")).cast(pl.Int64).alias("seed"),
                "round",
                "metric",
                "value",
                "lo",
                "hi",
            )
        )
if per_round:
    rounds = pl.concat(per_round).sort("metric", "round", "arm", "seed")
    st.dataframe(rounds, hide_index=True)

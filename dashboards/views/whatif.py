"""What if? Turn the knobs regulators argue about and see the answer in well under a second,
against standard of care on the same people; then confirm it with the full event-by-event run.

The fast answer is the queue-free replay of a prepared cohort (sandbox/whatif.py,
docs/dashboard.md#what-if); preparing a cohort and the confirming run are background jobs with a
progress bar and a cancel button (dashboards/jobs.py).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import altair as alt
import jobs
import polars as pl
import streamlit as st
from results import config_names, definition, device_index, device_names, inside, root

from sandbox import whatif
from sandbox.compose import load
from sandbox.errors import SandboxInputError
from sandbox.outcomes.metrics import METRICS
from sandbox.runfolder import read_run

st.title("What if?")
st.caption(
    "Move a knob: the answer comes from a queue-free replay of a prepared cohort (every screen "
    "already read under every AI role), against standard of care on the same people. Reading "
    "waits are estimated, not simulated; confirm any answer with the full run below."
)
base = root()
folder = base / ".whatif"


@st.cache_resource(show_spinner=False)
def _config(overrides: tuple[str, ...]):
    return load(list(overrides))[0]


@st.cache_resource(show_spinner="Loading the AI device...")
def _digest(agent: str) -> str:
    return whatif.agent_digest(agent)


@st.cache_resource(show_spinner=False)
def _store() -> dict:
    return {}


def _prepared(key: str):
    store, at = _store(), (str(folder), key)  # one results root's cohorts are not another's
    if at not in store:
        found = whatif.load(folder, key)
        if found is None:
            return None
        store[at] = found
    return store[at]


scenarios, policies = config_names("scenario"), config_names("policy")
devices = device_names()
c1, c2, c0, c3, c4 = st.columns(5)
scenario = c1.selectbox(
    "scenario",
    scenarios,
    index=scenarios.index("lung_ldct") if "lung_ldct" in scenarios else 0,
    key="scenario",
)
policy = c2.selectbox(
    "policy",
    policies,
    index=policies.index("ai_triage") if "ai_triage" in policies else 0,
    help="its human reading rule (single, or double with arbitration or consensus) is standard "
    "of care; its AI role is the knob's starting point",
    key="policy",
)
device = c0.selectbox(
    "AI device",
    devices,
    index=device_index(devices, scenario),
    key=f"device_{scenario}",  # each scenario starts on its own device
    help="a device folder under agents/ (the app loads no model from anywhere else)",
)
seed = int(c3.number_input("seed", min_value=0, max_value=2**31, value=7, step=1, key="seed"))
try:
    default_size = _config((f"scenario={scenario}", f"policy={policy}")).scenario.cohort.size
    if device not in devices:
        raise SandboxInputError(f"AI device {device!r}: not a device folder under agents/")
    size = int(
        c4.number_input(
            "people",
            min_value=100,
            max_value=1_000_000,
            value=default_size,
            step=1000,
            key="people",
        )
    )
    overrides = (
        f"scenario={scenario}",
        f"policy={policy}",
        f"agent={device}",
        f"seed={seed}",
        f"cohort.size={size}",
        f"runtime.out_dir={base}",
        f"runtime.score_cache={base / '.score_cache'}",
    )
    cfg = _config(overrides)
    whatif.check_screens(cfg)
    key = whatif.prepare_key(cfg, _digest(cfg.agent))
except SandboxInputError as e:
    st.error(str(e))
    st.stop()

jobs_of = st.session_state.setdefault("whatif_jobs", {})
try:
    prep = _prepared(key)
except SandboxInputError as e:  # a damaged prepared cohort: say so, and offer to prepare again
    st.error(str(e))
    prep = None


@st.fragment(run_every=1.0)
def _watch(job_key: str, label: str) -> None:
    job = jobs_of.get(job_key)
    if job is None:
        return
    stage, frac = job.progress()
    if job.running:
        st.progress(frac or 0.0, text=f"{label}: {stage}" + (f" {frac:.0%}" if frac else ""))
        if st.button("Cancel", key=f"cancel-{job_key}"):
            job.cancel()
            st.rerun()
        return
    if job.cancelled:
        st.warning(f"{label}: cancelled; nothing was kept.")
    elif job.returncode:
        st.error(f"{label} failed: {job.error()}")
    else:
        st.rerun(scope="app")


if prep is None:
    st.info(
        f"This cohort ({size:,} people, seed {seed}) is not prepared yet. Preparing draws the "
        "cohort, has the AI device score every screen (the slow part: a few hundred screens a "
        "second on a CPU) and reads every screen every way the knobs can; it is done once and "
        "kept under the results root."
    )
    job = jobs_of.get(key)
    if job is None or not job.running:
        if st.button("Prepare this cohort", type="primary"):
            jobs_of[key] = jobs.start("prepare", ["whatif", *overrides, "--prepare-only"], base)
            st.rerun()
    _watch(key, "preparing")
    st.stop()

# ---------------------------------------------------------------- the knobs
sites = list(cfg.scenario.sites)
unavailable = prep.meta.get("unavailable", {})
left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader("Knobs")
    roles = [r for r in whatif.ROLES if r not in unavailable]
    start_role = cfg.policy.role if cfg.policy.role in roles else roles[0]
    role = st.selectbox(
        "AI role",
        roles,
        index=roles.index(start_role),
        help="none = standard of care; see README, AI roles",
        key="role",
    )
    for r, why in unavailable.items():
        st.caption(f"{r} cannot be asked about here: {why}")
    modes = {
        "percentile": "percentile",
        "score": "absolute",
        "target sensitivity": "target_sensitivity",
    }
    op = cfg.policy.threshold
    start_mode = next(k for k, v in modes.items() if v == op.mode)
    mode_label = st.radio(
        "operating point",
        list(modes),
        key="mode",
        index=list(modes).index(start_mode),
        horizontal=True,
        disabled=role == "none",
        help="score: the cut-off itself; percentile: of the device's reference score "
        "distribution; target sensitivity: on the device's validation set",
    )
    mode = modes[mode_label]
    start_value = op.target_sensitivity if mode == "target_sensitivity" else op.value
    low, high = (0.5, 0.99) if mode == "target_sensitivity" else (0.0, 1.0)
    value = st.slider(
        "operating point value",
        low,
        high,
        float(min(max(start_value, low), high)),
        0.01,
        disabled=role == "none",
        key=f"op_value-{mode}",
    )
    audit = st.slider(
        "audit fraction (rule-out)",
        0.0,
        1.0,
        float(cfg.policy.audit_fraction),
        0.01,
        disabled=role != "rule_out",
        help="share of AI-cleared screens read by radiologists anyway",
        key="audit",
    )
    attendance = st.slider(
        "attendance", 0.3, 1.0, float(cfg.scenario.programme.attendance), 0.01, key="attendance"
    )
    readers = tuple(
        int(
            st.number_input(
                f"radiologists at {s.name}",
                min_value=1,
                max_value=200,
                value=sum(s.readers.values()),
                step=1,
                key=f"readers-{i}",
                help="reading capacity (waits and backlog); the reads themselves are those of the "
                "site's radiologists",
            )
        )
        for i, s in enumerate(sites)
    )
    st.caption(
        f"screening interval: {prep.meta['interval_years']} years, {prep.meta['rounds']} rounds "
        "(the scenario's; another interval is another cohort to prepare: set it with "
        "`sandbox whatif programme.interval_years=...`)"
    )

try:
    threshold = whatif.resolve_knob_threshold(cfg.agent, mode, value) if role != "none" else 0.5
    problem = whatif.staffing_problem(cfg, role, readers)
    if problem:
        raise SandboxInputError(problem)
    knobs = whatif.Knobs(role, threshold, audit, attendance, readers)
    ans = whatif.answer(prep, knobs, sites)
except SandboxInputError as e:
    right.error(str(e))
    st.stop()

# ---------------------------------------------------------------- the answer
table = ans.table
row = {r["metric"]: r for r in table.iter_rows(named=True)}


def _verdict(metric: str, lo: float, hi: float) -> str:
    better = METRICS[metric].better if metric in METRICS else whatif.BETTER.get(metric, "")
    if not better:
        return "no direction"
    if lo <= 0 <= hi:
        return "no clear change"
    up = lo > 0
    return "better" if up == (better == "higher") else "worse"


def _fmt(v: float, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit.startswith("share"):
        return f"{v:.1%}"
    return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"


with right:
    st.subheader(f"{role} against standard of care")
    st.caption(
        f"{prep.meta['people']:,} people, seed {prep.meta['seed']}; score cut-off "
        f"{threshold:.3f}; answered in {ans.seconds * 1000:.0f} ms"
    )
    cards = (
        ("screen_detected_cancers", "cancers found", "normal"),
        ("interval_cancers", "interval cancers", "inverse"),
        ("recalls", "recalls", "inverse"),
        ("human_reads", "human reads", "inverse"),
        ("ai_rule_out_missed_cancers", "missed cancers the AI cleared", "inverse"),
        ("days_to_diagnosis_median", "days to diagnosis (median)", "inverse"),
    )
    cols = st.columns(3)
    for i, (m, label, colour) in enumerate(cards):
        r = row[m]
        delta = r["policy"] - r["standard_of_care"]
        cols[i % 3].metric(
            label,
            _fmt(r["policy"]),
            delta=None if math.isnan(delta) or delta == 0 else f"{delta:+,.1f} vs standard of care",
            delta_color=colour,
            help=definition(m) + f" 95% interval {_fmt(r['lo'])} to {_fmt(r['hi'])}.",
        )
    if not ans.exact:
        st.warning(
            f"Capacity-bound, so the full run will differ (waits delay diagnoses): {ans.why_inexact}."
        )
    chart_rows = table.filter(
        pl.col("difference").is_not_nan() & (pl.col("standard_of_care") > 0)
    ).with_columns(
        change=pl.col("difference") / pl.col("standard_of_care"),
        low=pl.col("diff_lo") / pl.col("standard_of_care"),
        high=pl.col("diff_hi") / pl.col("standard_of_care"),
        verdict=pl.struct("metric", "diff_lo", "diff_hi").map_elements(
            lambda r: _verdict(r["metric"], r["diff_lo"], r["diff_hi"]), return_dtype=pl.String
        ),
    )
    if chart_rows.height:
        colours = alt.Scale(
            domain=["better", "worse", "no clear change", "no direction"],
            range=["#2e7d32", "#c62828", "#9e9e9e", "#1f77b4"],
        )
        base_chart = alt.Chart(chart_rows.to_pandas()).encode(
            y=alt.Y("metric:N", sort=None, title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color("verdict:N", scale=colours, title=None),
        )
        chart = base_chart.mark_rule(strokeWidth=2).encode(
            x=alt.X(
                "low:Q",
                axis=alt.Axis(format="%"),
                title="change against standard of care (95% interval)",
            ),
            x2="high:Q",
        ) + base_chart.mark_point(filled=True, size=80).encode(
            x="change:Q",
            tooltip=[
                "metric",
                alt.Tooltip("standard_of_care:Q", format=",.1f"),
                alt.Tooltip("policy:Q", format=",.1f"),
                alt.Tooltip("difference:Q", format="+,.1f"),
            ],
        )
        st.altair_chart(chart.properties(height=32 * chart_rows.height), width="stretch")
        st.caption("The chart's menu (...) saves it as PNG or SVG.")

st.subheader("Every number")
shown = table.with_columns(
    pl.col("metric").map_elements(definition, return_dtype=pl.String).alias("definition")
)
st.dataframe(
    shown,
    hide_index=True,
    column_config={
        "standard_of_care": st.column_config.NumberColumn("standard of care", format="%.4g"),
        "policy": st.column_config.NumberColumn(role, format="%.4g"),
        "difference": st.column_config.NumberColumn(
            "difference", format="%.4g", help="policy - standard of care, paired on the same people"
        ),
    },
)
st.download_button(
    "Download the table (CSV)",
    shown.write_csv(),
    file_name=f"whatif-{scenario}-{role}.csv",
    mime="text/csv",
)
st.subheader("Reading capacity")
st.caption(
    "Demand against the radiologists' reading hours per site; the mean wait is the Erlang C "
    "formula for an M/M/c queue (the replay itself has no queue)."
)
st.dataframe(ans.capacity, hide_index=True)

# ---------------------------------------------------------------- the full run
st.subheader("Confirm with the full run")
run_args = whatif.run_overrides(list(overrides), knobs, mode, value, sites)
tag = hashlib.sha256(" ".join(run_args).encode()).hexdigest()[:10]
run_args.append(f"runtime.run_name=whatif-{tag}")
st.code("sandbox run " + " ".join(run_args[:-1]), language="bash")
confirm_key = f"run-{tag}"
done_folder = None
try:
    candidate = inside(base, f"whatif-{tag}")
    if (candidate / "manifest.json").is_file():
        done_folder = candidate
except SandboxInputError:
    pass
job = jobs_of.get(confirm_key)
if done_folder is None and (job is None or not job.running):
    if st.button("Run it event by event (background)"):
        jobs_of[confirm_key] = jobs.start("run", ["run", *run_args], base)
        st.rerun()
if done_folder is None:
    _watch(confirm_key, "full run")
else:
    try:
        full = read_run(done_folder)["metrics"].filter(
            (pl.col("site") == "all") & (pl.col("subgroup") == "all") & (pl.col("round") == "all")
        )
    except SandboxInputError as e:
        st.error(str(e))
    else:
        both = table.select("metric", pl.col("policy").alias("fast")).join(
            full.select("metric", pl.col("value").alias("full run"), "lo", "hi"),
            on="metric",
            how="inner",
        )
        st.success(f"Full run done: {Path(done_folder).name}. The fast answer beside it:")
        st.dataframe(both, hide_index=True)

"""Surveillance: a run's monitoring plan at work. Per site and chart, when it alarmed, how many
days after the drift, its false alarms per site-year; the CUSUM charts over programme days with
their limits, alarms, the drift day and the policy versions the plan put in force
(sandbox/outcomes/surveillance.py; docs/surveillance.md)."""

from __future__ import annotations

import polars as pl
import streamlit as st
from results import listing, root

from sandbox.errors import SandboxInputError
from sandbox.outcomes.surveillance import (
    alarm_summary,
    chart_limits,
    drift_start,
    monitor_figure,
)
from sandbox.runfolder import read_run

st.title("Surveillance")
base = root()
runs = [
    e
    for e in listing(base)
    if e.kind == "run" and e.ok and (e.path / "monitoring.parquet").is_file()
]
if not runs:
    st.info(
        "No run under the results root has a monitoring plan yet: run one with a plan and, to "
        "test it, a drift, e.g. `sandbox run policy=ai_triage drift=scanner_update "
        "monitoring=aimcu_cusum` (docs/surveillance.md)."
    )
    st.stop()
pick = st.selectbox("run folder", [e.name for e in runs], key="run")
path = next(e.path for e in runs if e.name == pick)
try:
    run = read_run(path)
    frame = pl.read_parquet(path / "monitoring.parquet")
    cfg, man = run["config"], run["manifest"]
    plan, drift_cfg = cfg["monitoring"], cfg["drift"]
    drift = drift_start(drift_cfg)
    h = chart_limits(plan)
except (SandboxInputError, OSError, pl.exceptions.PolarsError, KeyError, TypeError) as e:
    st.error(f"{pick}: unreadable monitoring plan or series ({e})")
    st.stop()
st.caption(
    f"plan {plan['name']}: action {plan['action']} {float(plan['days_to_act']):g} days after an "
    f"alarm; drift {drift_cfg['name']}"
    + (
        ": " + ", ".join(f"{s} from day {d:g}" for s, d in drift.items())
        if drift
        else " (none: every alarm is a false alarm)"
    )
)
horizon = float(frame["day"].max() or 0) + 1.0 if frame.height else 0.0
table = alarm_summary(frame, drift, horizon)
detected = table.filter(pl.col("days_to_detection").is_not_null())
if drift and detected.height:
    first = detected.sort("days_to_detection").row(0, named=True)
    st.success(
        f"The drift at {first['site']} was detected {first['days_to_detection']:g} days after it "
        f"began ({first['statistic']})."
    )
elif drift:
    st.warning("The plan did not detect the drift before the run ended.")
st.dataframe(table, hide_index=True)
changes = {
    site: [(float(v["from_day"]), str(v["reason"])) for v in versions[1:]]
    for site, versions in (man.get("policy_versions") or {}).items()
}
for site, versions in changes.items():
    for day, reason in versions:
        st.write(f"**{site}**: policy changed on day {day:g} ({reason})")
st.pyplot(monitor_figure(frame, drift, h, changes), clear_figure=True)
st.download_button(
    "download the daily series (CSV)",
    frame.write_csv(),
    file_name="monitoring.csv",
    mime="text/csv",
)

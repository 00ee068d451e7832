"""Runs: every run folder and sweep under the results root, with what its manifest says (broken
folders are listed as broken, with the reason); a run or a sweep started in the background
(progress, cancel); the AI devices' cards."""

from __future__ import annotations

import jobs
import polars as pl
import streamlit as st
from results import (
    config_names,
    default_choice,
    device_index,
    device_names,
    listing,
    root,
    sweep_runs,
)

from sandbox.errors import SandboxInputError

st.title("Runs")
base = root()
st.caption(f"results root: `{base}` (only folders under it are read)")


running = st.session_state.setdefault("run_jobs", [])
with st.expander("Start a run or a sweep", expanded=False):
    scenarios, policies = config_names("scenario"), config_names("policy")
    c1, c2, c3 = st.columns(3)
    default = default_choice("scenario")
    scenario = c1.selectbox(
        "scenario",
        scenarios,
        index=scenarios.index(default) if default in scenarios else 0,
        key="new_scenario",
    )
    new_policies = c2.multiselect(
        "policies (several: a sweep)", policies, default=["soc_double_read"], key="new_policies"
    )
    devices = device_names()
    device = c3.selectbox(
        "AI device (AI policies)",
        devices,
        index=device_index(devices, scenario),
        key=f"new_device_{scenario}",  # each scenario starts on its own device
    )
    c4, c5, c6 = st.columns(3)
    first = int(c4.number_input("first seed", 0, 2**31, 1, key="new_seed"))
    seeds = int(c5.number_input("seeds", 1, 100, 1, key="new_seeds"))
    people = int(
        c6.number_input("people (0: the scenario's)", 0, 1_000_000, 0, 1000, key="new_people")
    )
    common = [
        f"scenario={scenario}",
        f"agent={device}",
        f"runtime.out_dir={base}",
        f"runtime.score_cache={base / '.score_cache'}",
    ]
    if people:
        common.append(f"cohort.size={people}")
    if not new_policies:
        st.info("Choose at least one policy.")
    elif len(new_policies) == 1 and seeds == 1:
        args = ["run", *common, f"policy={new_policies[0]}", f"seed={first}"]
    else:
        seed_axis = f"seed={first}" if seeds == 1 else f"seed=range({first},{first + seeds})"
        args = ["sweep", *common, f"policy={','.join(new_policies)}", seed_axis]
    if new_policies:
        st.code("sandbox " + " ".join(args), language="bash")
        if st.button("Start in the background", type="primary", key="start_job"):
            running.append(jobs.start(args[0], args, base))
            st.rerun()


@st.fragment(run_every=1.0)
def _jobs() -> None:
    for i, job in enumerate(running):
        stage, frac = job.progress()
        label = f"`sandbox {' '.join(job.args[:1])}` started {job.age()}"
        if job.running:
            st.progress(frac or 0.0, text=f"{label}: {stage}" + (f" {frac:.0%}" if frac else ""))
            if st.button("Cancel", key=f"cancel-job-{i}"):
                job.cancel()
                st.rerun()
        elif job.cancelled:
            st.warning(f"{label}: cancelled; nothing was kept.")
        elif job.returncode:
            st.error(f"{label}: failed: {job.error()}")
        else:
            st.success(f"{label}: done. {job.run_folder() or ''}")


if running:
    st.subheader("Started here")
    _jobs()

entries = listing(base)
if not entries:
    st.info(
        "No run folders yet. Start one above, or make one with `sandbox run` or `sandbox sweep`."
    )

runs = [e for e in entries if e.kind == "run"]
sweeps = [e for e in entries if e.kind == "sweep"]


def row(e) -> dict:
    m = e.manifest or {}
    return {
        "folder": e.name,
        "status": "complete" if e.ok else "broken",
        "scenario": m.get("scenario"),
        "policy": m.get("policy"),
        "seed": m.get("seed"),
        "people": m.get("people"),
        "created (UTC)": m.get("created_utc"),
        "problem": e.why,
    }


st.subheader(f"Run folders ({len(runs)})")
if runs:
    st.dataframe(pl.DataFrame([row(e) for e in runs], infer_schema_length=None), hide_index=True)
broken = [e for e in runs if not e.ok]
if broken:
    st.warning(
        f"{len(broken)} folder(s) are not complete run folders; they are left out of comparisons."
    )

st.subheader(f"Sweeps ({len(sweeps)})")
for s in sweeps:
    m = s.manifest or {}
    label = f"{s.name}: {m.get('finished', '?')} of {m.get('runs', '?')} runs, {m.get('status', 'unreadable')}"
    with st.expander(label):
        if not s.ok:
            st.error(s.why)
            continue
        st.write(f"axes: {', '.join(m.get('axes', []))}")
        if m.get("status") != "complete":
            st.code(m.get("resume", ""), language="bash")
        inner = sweep_runs(base, s)
        if inner:
            st.dataframe(
                pl.DataFrame([row(e) for e in inner], infer_schema_length=None), hide_index=True
            )

st.subheader("A run's manifest")
good = [e for e in runs if e.ok]
if good:
    pick = st.selectbox("run folder", [e.name for e in good], key="manifest_run")
    chosen = next(e for e in good if e.name == pick)
    st.json(chosen.manifest, expanded=False)
    st.code(chosen.manifest.get("repeat", ""), language="bash")

st.subheader("AI devices")
st.caption("Device folders under agents/ (the app loads no model from anywhere else).")
pick_device = st.selectbox("device", device_names(), key="card_device")
if pick_device:
    from sandbox.agents.bundle import load_bundle
    from sandbox.runners.devices import agent_folder

    try:
        model = load_bundle(agent_folder(pick_device), "cpu")
    except SandboxInputError as e:
        st.error(str(e))
    else:
        st.caption(f"digest `{model.digest}`")
        st.markdown(model.model_card or "(this device has no model card)")

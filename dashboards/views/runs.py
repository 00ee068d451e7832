"""Runs: every run folder and sweep under the results root, with what its manifest says; broken
folders are listed as broken, with the reason."""

from __future__ import annotations

import polars as pl
import streamlit as st
from results import listing, root, sweep_runs

st.title("Runs")
base = root()
st.caption(f"results root: `{base}` (only folders under it are read)")
entries = listing(base)
if not entries:
    st.info("No run folders yet. Make one with `sandbox run` or `sandbox sweep`.")
    st.stop()

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

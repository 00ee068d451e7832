"""The sandbox's dashboard: `sandbox dashboard` (or `streamlit run dashboards/app.py`).

Pages: What if? (knobs answered from a prepared cohort, confirmed by a full run), Runs (what is
under the results root; start a run or a sweep; device cards), Compare (two arms paired on the
same people, pooled over seeds, with a verdict and a forest plot), Equity, Workload and capacity,
Safety, Surveillance (a monitoring plan's alarms and charts), Cost-effectiveness.
docs/dashboard.md describes them.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Screening AI sandbox", layout="wide")
pages = [
    st.Page("views/whatif.py", title="What if?", default=True),
    st.Page("views/compare.py", title="Compare"),
    st.Page("views/equity.py", title="Equity"),
    st.Page("views/workload.py", title="Workload and capacity"),
    st.Page("views/safety.py", title="Safety"),
    st.Page("views/surveillance.py", title="Surveillance"),
    st.Page("views/economics.py", title="Cost-effectiveness"),
    st.Page("views/runs.py", title="Runs"),
]
st.navigation(pages).run()

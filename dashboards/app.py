"""The sandbox's dashboard: `sandbox dashboard` (or `streamlit run dashboards/app.py`).

Pages: Runs (what is under the results root) and Compare (two arms, paired on the same people,
pooled over seeds, with a verdict and a forest plot). docs/dashboard.md describes them.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Screening AI sandbox", layout="wide")
pages = [
    st.Page("views/whatif.py", title="What if?", default=True),
    st.Page("views/runs.py", title="Runs"),
    st.Page("views/compare.py", title="Compare"),
    st.Page("views/equity.py", title="Equity"),
]
st.navigation(pages).run()

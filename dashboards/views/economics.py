"""Cost-effectiveness: run folders priced as strategies under a price list (sandbox/economics):
the ICER table with dominance, net monetary benefit, the cost-effectiveness plane with the
efficient frontier, and a probabilistic sensitivity analysis over prices and utilities."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl
import streamlit as st
from results import config_names, root, runs_or_stop

from sandbox.economics.report import (
    economics_tables,
    load_preset,
    presets_for,
    price_folders,
    run_programme,
)
from sandbox.errors import SandboxInputError
from sandbox.runfolder import read_run

st.title("Cost-effectiveness")
st.caption(
    "Each run folder is a strategy; runs of one scenario and seed hold the same people, so "
    "increments are paired. Prices, utilities and discounting come from the price list "
    "(docs/economics.md); pricing re-uses the runs, it never simulates again."
)
base = root()
runs = [e for e in runs_or_stop(base) if (e.path / "events.parquet").is_file()]
if len(runs) < 2:
    st.info("Cost-effectiveness needs two or more complete runs with events.")
    st.stop()
names = [e.name for e in runs]
# default: the largest group of runs sharing a scenario and seed (one world, several policies)
worlds: dict[tuple, list[str]] = {}
for e in runs:
    m = e.manifest or {}
    worlds.setdefault((m.get("scenario"), m.get("seed")), []).append(e.name)
default = max(worlds.values(), key=len)[:4]
chosen = st.multiselect("strategies (run folders)", names, default=default, key="runs")


@st.cache_data(max_entries=256)
def programme_of(folder: str) -> str:
    return run_programme(read_run(folder)["config"])


@st.cache_data(max_entries=16)
def price_lists(programme: str) -> list[str]:
    return presets_for(programme)


paths = tuple(str(next(e.path for e in runs if e.name == n)) for n in chosen)
programmes = sorted({programme_of(p) for p in paths}) or sorted({programme_of(str(runs[0].path))})
if len(programmes) > 1:
    st.info(
        f"The chosen runs are of several programmes ({', '.join(programmes)}); a price list "
        "prices one. Choose runs of one programme."
    )
    st.stop()
# only the price lists that price the runs' programme (a preset's `programme`)
presets = [n for n in config_names("economics") if n in price_lists(programmes[0])]
if not presets:
    st.info(f"No price list in conf/economics prices programme {programmes[0]}.")
    st.stop()
left, mid, right = st.columns(3)
preset = left.selectbox(
    "price list",
    presets,
    index=presets.index("us_payer") if "us_payer" in presets else 0,
    key="preset",
)
wtp = mid.number_input(
    "willingness to pay per unit of effect",
    min_value=0.0,
    value=100_000.0,
    step=10_000.0,
    key="wtp",
)
effect = right.radio("effect", ["qalys", "life_years"], horizontal=True, key="effect")
if len(chosen) < 2:
    st.info("Choose two or more strategies.")
    st.stop()


@st.cache_data(show_spinner="pricing the runs ...", max_entries=16)
def tables(folders: tuple[str, ...], preset: str, effect: str, wtp: float):
    priced, econ = price_folders(list(folders), preset)
    icers, nmb, paired = economics_tables(priced, effect, [wtp], 500)
    return icers, nmb, paired, econ.currency, econ.price_year, econ.description


try:
    icers, nmb, paired, currency, year, about = tables(paths, preset, effect, float(wtp))
except SandboxInputError as err:
    st.error(str(err))
    st.stop()
unit = "QALYs" if effect == "qalys" else "life-years"
st.markdown(
    f"**{preset}**: {about}. Per person, discounted, {currency} {year}; 95% intervals from a "
    f"bootstrap over people ({'paired' if paired else 'unpaired'})."
)
frontier = icers.filter(pl.col("Status") == "ND")
best = nmb.sort("NMB", descending=True)["Strategy"][0]
st.success(
    f"At {wtp:,.0f} {currency} per {unit[:-1]}, the strategy with the highest net monetary "
    f"benefit is **{best}** (probability cost-effective "
    f"{nmb.filter(pl.col('Strategy') == best)['P_cost_effective'][0]:.2f})."
)
st.subheader("Strategies and increments (dampack's columns)")
money = [c for c in icers.columns if c.startswith(("Cost", "Inc_Cost", "ICER"))]
effects = [c for c in icers.columns if c.startswith(("Effect", "Inc_Effect"))]
st.dataframe(icers.with_columns(pl.col(money).round(0), pl.col(effects).round(4)), hide_index=True)
st.download_button("download (CSV)", icers.write_csv(), file_name="icers.csv", mime="text/csv")
st.subheader(f"Net monetary benefit at {wtp:,.0f}")
st.dataframe(
    nmb.with_columns(
        pl.col("NMB", "NMB_lo", "NMB_hi").round(0), pl.col("P_cost_effective").round(3)
    ),
    hide_index=True,
)

plane = icers.select("Strategy", "Cost", "Effect", "Status").to_pandas()
points = (
    alt.Chart(plane)
    .mark_circle(size=120)
    .encode(
        x=alt.X("Effect:Q", title=f"{unit} per person", scale=alt.Scale(zero=False)),
        y=alt.Y("Cost:Q", title=f"cost per person ({currency})", scale=alt.Scale(zero=False)),
        color=alt.Color("Status:N"),
        tooltip=["Strategy", "Cost", "Effect", "Status"],
    )
)
labels = points.mark_text(align="left", dx=8).encode(text="Strategy:N")
line = (
    alt.Chart(frontier.sort("Cost").select("Cost", "Effect").to_pandas())
    .mark_line(color="grey")
    .encode(x="Effect:Q", y="Cost:Q")
)
st.subheader("Cost-effectiveness plane (the line: the efficient frontier)")
st.altair_chart((line + points + labels).properties(height=360), use_container_width=True)

with st.expander("Probabilistic sensitivity analysis (prices and utilities)"):
    econ = load_preset(preset)
    if not econ.psa:
        st.info(f"The price list {preset} declares no distributions (its psa section).")
    else:
        draws = st.slider("draws", 50, 2000, 300, step=50, key="draws")
        if st.button("Run the PSA", key="psa"):
            from sandbox.economics.psa import acceptability, parse_params, run_psa

            params = parse_params(econ.psa, econ.costs, econ.utilities)
            priced, _ = price_folders(list(paths), preset)
            strategies = {p.label: p.exposures for p in priced}
            psa = run_psa(strategies, econ.costs, econ.utilities, params, draws, 0)
            grid = np.linspace(0.0, max(2 * wtp, 1.0), 41)
            ceac, evpi = acceptability(psa, grid)
            st.markdown(
                f"{draws} draws of {len(params)} parameters; clinical outcomes fixed. "
                "CEAC: the probability each strategy has the highest net monetary benefit."
            )
            chart = (
                alt.Chart(ceac.to_pandas())
                .mark_line()
                .encode(
                    x=alt.X("wtp:Q", title=f"willingness to pay ({currency})"),
                    y=alt.Y("p_cost_effective:Q", title="probability cost-effective"),
                    color="strategy:N",
                )
            )
            st.altair_chart(chart.properties(height=300), use_container_width=True)
            st.dataframe(evpi, hide_index=True)

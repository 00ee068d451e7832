"""Probabilistic sensitivity analysis over prices and utilities, and one-way sensitivity.

Each draw sets every uncertain price and utility from its declared distribution (the price
list's ``psa`` section) and re-prices the strategies' exposures (:mod:`.accounting`): a matrix
product per strategy, no simulation. Outputs, as BCEA and dampack report them: per draw the mean
cost and effect of every strategy (the cost-effectiveness plane), the acceptability curves
(CEAC) and frontier (CEAF) over willingness to pay, the expected value of perfect information
(EVPI), and a one-way tornado.

Distributions (``dist``), parameterised by the mean (default: the price list's value) and
``sd``: ``gamma`` (costs: shape (mean/sd)^2, scale sd^2/mean), ``beta`` (utilities and
probabilities: method of moments), ``lognormal`` (ratios: mean and sd of the variable itself),
``normal``, ``uniform`` (``low``, ``high``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import polars as pl

from sandbox.economics.accounting import Exposures, cell_utilities, item_prices
from sandbox.economics.config import Costs, Utilities
from sandbox.economics.distributions import DISTS, Param, parse_params  # noqa: F401


def with_values(
    costs: Costs, util: Utilities, values: Mapping[str, float]
) -> tuple[Costs, Utilities]:
    """``costs`` and ``util`` with the parameters at ``values`` (path -> value)."""
    c = {f.name: getattr(costs, f.name) for f in dataclasses.fields(costs)}
    u = {f.name: getattr(util, f.name) for f in dataclasses.fields(util)}
    for path, v in values.items():
        head, name, *sub = path.split(".")
        target = c if head == "costs" else u
        if sub:
            target[name] = {**target[name], sub[0]: v}
        else:
            target[name] = v
    return Costs(**c), Utilities(**u)


def averaged(exp: Exposures) -> Exposures:
    """``exp`` averaged over people (one row): what a draw's mean cost and QALYs need."""
    m = lambda a: np.atleast_1d(np.asarray(a).mean(axis=0))  # noqa: E731
    return dataclasses.replace(
        exp,
        person_id=np.array([-1]),
        items={k: m(v) for k, v in exp.items.items()},
        cells=m(exp.cells)[None, :],
        cells_raw=m(exp.cells_raw)[None, :],
        losses={k: m(v) for k, v in exp.losses.items()},
        losses_raw={k: m(v) for k, v in exp.losses_raw.items()},
        life_years=m(exp.life_years),
        life_years_disc=m(exp.life_years_disc),
    )


def means(exp: Exposures, costs: Costs, util: Utilities) -> tuple[float, float]:
    """Mean discounted cost and QALYs per person (the linear forms of ``accounting.price``;
    pass an :func:`averaged` exposure and a draw costs a few dot products)."""
    cost = sum(
        unit * float(exp.items[item].mean()) for item, (_, unit) in item_prices(costs, exp).items()
    )
    q = float(exp.cells.mean(axis=0) @ cell_utilities(util, exp.band_ages))
    q -= util.false_positive_loss * float(exp.losses["false_positive"].mean())
    q -= util.biopsy_loss * float(exp.losses["biopsy"].mean())
    return float(cost), q


def run_psa(
    strategies: Mapping[str, Exposures],
    costs: Costs,
    util: Utilities,
    params: list[Param],
    draws: int,
    seed: int,
) -> pl.DataFrame:
    """Per draw and strategy: the drawn values' mean cost and QALYs per person (long format:
    draw, strategy, cost, effect; plus one column per parameter with its drawn value)."""
    strategies = {k: averaged(v) for k, v in strategies.items()}
    rng = np.random.default_rng(seed)
    u = rng.random((draws, len(params)))
    values = (
        np.column_stack([p.frozen().ppf(u[:, k]) for k, p in enumerate(params)])
        if params
        else np.zeros((draws, 0))
    )
    rows = []
    for d in range(draws):
        c, ut = with_values(
            costs, util, {p.path: float(values[d, k]) for k, p in enumerate(params)}
        )
        for name, exp in strategies.items():
            cost, effect = means(exp, c, ut)
            rows.append({"draw": d, "strategy": name, "cost": cost, "effect": effect})
    frame = pl.DataFrame(rows)
    drawn = pl.DataFrame({p.path: values[:, k] for k, p in enumerate(params)}).with_row_index(
        "draw"
    )
    return (
        frame.join(drawn.with_columns(pl.col("draw").cast(pl.Int64)), on="draw")
        if params
        else frame
    )


def acceptability(psa: pl.DataFrame, wtp: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(CEAC and CEAF by WTP, EVPI by WTP).

    CEAC: the share of draws in which each strategy has the highest net monetary benefit. CEAF:
    the strategy with the highest expected NMB at that WTP, and its CEAC value. EVPI per person:
    E[max over strategies of NMB] - max over strategies of E[NMB].
    """
    names = psa["strategy"].unique(maintain_order=True).to_list()
    wide_c = psa.pivot(on="strategy", index="draw", values="cost").sort("draw")
    wide_e = psa.pivot(on="strategy", index="draw", values="effect").sort("draw")
    c = wide_c.select(names).to_numpy()
    e = wide_e.select(names).to_numpy()
    ceac, evpi = [], []
    for lam in wtp:
        nmb = lam * e - c
        best = np.argmax(nmb, axis=1)
        expected = nmb.mean(axis=0)
        optimal = int(np.argmax(expected))
        for k, name in enumerate(names):
            ceac.append(
                {
                    "wtp": float(lam),
                    "strategy": name,
                    "p_cost_effective": float(np.mean(best == k)),
                    "expected_nmb": float(expected[k]),
                    "on_frontier": k == optimal,
                }
            )
        evpi.append(
            {"wtp": float(lam), "evpi_per_person": float(nmb.max(axis=1).mean() - expected.max())}
        )
    return pl.DataFrame(ceac), pl.DataFrame(evpi)


def tornado(
    strategies: Mapping[str, Exposures],
    costs: Costs,
    util: Utilities,
    params: list[Param],
    strategy: str,
    comparator: str,
    wtp: float,
) -> pl.DataFrame:
    """One-way sensitivity: each parameter at its 2.5% and 97.5% quantile, the others at their
    base values; the incremental net monetary benefit (and ICER) of ``strategy`` against
    ``comparator``, sorted by the width of the swing."""

    def inmb_icer(c: Costs, u: Utilities) -> tuple[float, float]:
        cs, es = means(strategies[strategy], c, u)
        cc, ec = means(strategies[comparator], c, u)
        de = es - ec
        return wtp * de - (cs - cc), (cs - cc) / de if de != 0 else math.nan

    strategies = {k: averaged(v) for k, v in strategies.items()}
    base_nmb, base_icer = inmb_icer(costs, util)
    rows = []
    for p in params:
        lo_v, hi_v = (float(p.frozen().ppf(q)) for q in (0.025, 0.975))
        lo = inmb_icer(*with_values(costs, util, {p.path: lo_v}))
        hi = inmb_icer(*with_values(costs, util, {p.path: hi_v}))
        rows.append(
            {
                "parameter": p.path,
                "low_value": lo_v,
                "high_value": hi_v,
                "inmb_low": lo[0],
                "inmb_high": hi[0],
                "icer_low": lo[1],
                "icer_high": hi[1],
                "swing": abs(hi[0] - lo[0]),
                "base_inmb": base_nmb,
                "base_icer": base_icer,
            }
        )
    return pl.DataFrame(rows).sort("swing", descending=True) if rows else pl.DataFrame()

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
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from sandbox.economics.accounting import Exposures, cell_utilities, item_prices
from sandbox.economics.config import PATH_ALIASES, Costs, Utilities
from sandbox.economics.distributions import DISTS, Param, parse_params  # noqa: F401


def with_values(
    costs: Costs, util: Utilities, values: Mapping[str, float]
) -> tuple[Costs, Utilities]:
    """``costs`` and ``util`` with the parameters at ``values`` (path -> value)."""
    c = {f.name: getattr(costs, f.name) for f in dataclasses.fields(costs)}
    u = {f.name: getattr(util, f.name) for f in dataclasses.fields(util)}
    for path, v in values.items():
        head, name, *sub = PATH_ALIASES.get(path, path).split(".")
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


def pooled(exps: Sequence[Exposures]) -> Exposures:
    """One exposure standing for several natural-history sets, each weighing the same (their
    :func:`averaged` rows averaged): exact for mean costs and QALYs, which are linear in it."""
    rows = [averaged(e) for e in exps]
    if len(rows) == 1:
        return rows[0]
    m = lambda get: np.mean([get(r) for r in rows], axis=0)  # noqa: E731
    first = rows[0]
    return dataclasses.replace(
        first,
        items={k: m(lambda r, k=k: r.items[k]) for k in first.items},
        cells=m(lambda r: r.cells),
        cells_raw=m(lambda r: r.cells_raw),
        losses={k: m(lambda r, k=k: r.losses[k]) for k in first.losses},
        losses_raw={k: m(lambda r, k=k: r.losses_raw[k]) for k in first.losses_raw},
        life_years=m(lambda r: r.life_years),
        life_years_disc=m(lambda r: r.life_years_disc),
    )


def means(exp: Exposures, costs: Costs, util: Utilities) -> tuple[float, float]:
    """Mean discounted cost and QALYs per person (the linear forms of ``accounting.price``;
    pass an :func:`averaged` exposure and a draw costs a few dot products)."""
    cost = sum(
        unit * float(exp.items[item].mean()) for item, (_, unit) in item_prices(costs, exp).items()
    )
    q = float(exp.cells.mean(axis=0) @ cell_utilities(util, exp.band_ages, exp.stages))
    q -= util.false_positive_loss * float(exp.losses["false_positive"].mean())
    q -= util.biopsy_loss * float(exp.losses["biopsy"].mean())
    return float(cost), q


def run_psa(
    strategies: Mapping[str, Exposures | Sequence[Exposures]],
    costs: Costs,
    util: Utilities,
    params: list[Param],
    draws: int,
    seed: int,
) -> pl.DataFrame:
    """Per draw and strategy: the drawn values' mean cost and QALYs per person (long format:
    draw, strategy, cost, effect; plus one column per parameter with its drawn value).

    A strategy may have one exposure per natural-history set (the same number for every
    strategy: runs re-simulated under the calibration's accepted parameter sets); draw ``d``
    then prices set ``d mod K`` (column ``nh_set``), so prices, utilities and the clinical
    model vary together and every set is used equally often."""
    sets = {k: [v] if isinstance(v, Exposures) else list(v) for k, v in strategies.items()}
    counts = {len(v) for v in sets.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError("every strategy needs the same number of natural-history sets")
    (n_sets,) = counts
    averaged_sets = {k: [averaged(e) for e in v] for k, v in sets.items()}
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
        for name, exps in averaged_sets.items():
            cost, effect = means(exps[d % n_sets], c, ut)
            row = {"draw": d, "strategy": name, "cost": cost, "effect": effect}
            if n_sets > 1:
                row["nh_set"] = d % n_sets
            rows.append(row)
    frame = pl.DataFrame(rows)
    drawn = pl.DataFrame({p.path: values[:, k] for k, p in enumerate(params)}).with_row_index(
        "draw"
    )
    return (
        frame.join(drawn.with_columns(pl.col("draw").cast(pl.Int64)), on="draw")
        if params
        else frame
    )


def evppi_sets(psa: pl.DataFrame, wtp: np.ndarray) -> pl.DataFrame:
    """Expected value of partial perfect information about the natural history, by WTP: knowing
    which of the calibration's parameter sets is true (prices still uncertain).
    E over sets of max over strategies of E[NMB | set] - max over strategies of E[NMB]; exact
    for the sets drawn (each is used equally often). Needs the ``nh_set`` column."""
    rows = []
    for lam in wtp:
        nmb = psa.with_columns(nmb=lam * pl.col("effect") - pl.col("cost"))
        by_set = nmb.group_by("nh_set", "strategy").agg(pl.col("nmb").mean())
        best = by_set.group_by("nh_set").agg(pl.col("nmb").max())["nmb"].mean()
        overall = nmb.group_by("strategy").agg(pl.col("nmb").mean())["nmb"].max()
        rows.append({"wtp": float(lam), "evppi_natural_history_per_person": float(best - overall)})
    return pl.DataFrame(rows)


def parameter_groups(params: Sequence[str]) -> dict[str, list[str]]:
    """The groups :func:`evppi_params` values: every parameter alone, then all prices
    (``costs.*``) and all utilities (``utilities.*``) where there are several."""
    groups = {p: [p] for p in params}
    for head, label in (("costs.", "all prices"), ("utilities.", "all utilities")):
        members = [p for p in params if p.startswith(head)]
        if len(members) > 1:
            groups[label] = members
    return groups


def evppi_params(
    psa: pl.DataFrame, groups: Mapping[str, Sequence[str]], wtp: np.ndarray
) -> pl.DataFrame:
    """Expected value of partial perfect information per parameter group, by WTP: the value of
    knowing the group's parameters (the others still uncertain), per person.

    Regression estimate (Strong, Oakley and Brennan, Med Decis Making 2014): each strategy's
    net monetary benefit is regressed on the group's drawn values (least squares on 1, x, x^2
    per parameter); EVPPI = mean over draws of the largest fitted NMB - the largest mean NMB.
    Prices enter the NMB linearly and utilities nearly so (piecewise linear where a disease
    state's utility caps the age norm), so the regression is close to exact here.
    """
    names = psa["strategy"].unique(maintain_order=True).to_list()
    wide_c = psa.pivot(on="strategy", index="draw", values="cost").sort("draw")
    wide_e = psa.pivot(on="strategy", index="draw", values="effect").sort("draw")
    c, e = wide_c.select(names).to_numpy(), wide_e.select(names).to_numpy()
    values = psa.group_by("draw").agg(pl.all().first()).sort("draw")
    rows = []
    for label, members in groups.items():
        x = values.select(members).to_numpy()
        x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        basis = np.column_stack([np.ones(len(x)), x, x * x])
        for lam in wtp:
            nmb = lam * e - c
            coef, *_ = np.linalg.lstsq(basis, nmb, rcond=None)
            fitted = basis @ coef
            value = float(fitted.max(axis=1).mean() - nmb.mean(axis=0).max())
            rows.append({"wtp": float(lam), "group": label, "evppi_per_person": max(value, 0.0)})
    return pl.DataFrame(rows)


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
    strategies: Mapping[str, Exposures | Sequence[Exposures]],
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

    strategies = {
        k: averaged(v) if isinstance(v, Exposures) else pooled(v) for k, v in strategies.items()
    }
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

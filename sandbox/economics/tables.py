"""Cost-effectiveness tables: strategies, dominance, ICERs and net monetary benefit, with
bootstrap intervals over people.

The table follows dampack's ``calculate_icers`` (Alarid-Escudero et al., 2019): strategies sorted
by cost; a strategy is *dominated* (D) if another costs no more and gains no less (one of them
strictly); of the rest, one is *extendedly dominated* (ED) if the next more costly strategy has a
lower ICER, repeatedly; the others are non-dominated (ND) and form the efficient frontier, each
with its ICER against the previous one on it.

Intervals: when every strategy was simulated on the same people (same scenario, seed and
cohort), the bootstrap resamples people once for all strategies (paired: the differences are
tight); otherwise each strategy is resampled on its own. Poisson weights (Hanley and
MacGibbon, 2006) make each replicate a weighted mean, computed in blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

STATUS = {"ND": "non-dominated", "D": "dominated", "ED": "extendedly dominated"}


def frontier(cost: np.ndarray, effect: np.ndarray) -> tuple[list[str], list[int | None]]:
    """(status per strategy, index of the strategy each ND one is compared with or None)."""
    k = len(cost)
    order = sorted(range(k), key=lambda i: (cost[i], -effect[i]))
    status = ["ND"] * k
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            no_more = cost[j] <= cost[i] and effect[j] >= effect[i]
            strict = cost[j] < cost[i] or effect[j] > effect[i]
            # identical strategies: the later one in cost order is dominated
            tie = cost[j] == cost[i] and effect[j] == effect[i] and order.index(j) < order.index(i)
            if (no_more and strict) or tie:
                status[i] = "D"
                break
    live = [i for i in order if status[i] == "ND"]
    changed = True
    while changed and len(live) > 2:
        changed = False
        icers = [
            (cost[b] - cost[a]) / (effect[b] - effect[a])
            for a, b in zip(live, live[1:], strict=False)
        ]
        for m in range(len(icers) - 1):
            if icers[m] > icers[m + 1]:
                status[live[m + 1]] = "ED"
                live.pop(m + 1)
                changed = True
                break
    ref: list[int | None] = [None] * k
    for a, b in zip(live, live[1:], strict=False):
        ref[b] = a
    return status, ref


@dataclass
class Arm:
    """One strategy's per-person costs and effects, people keyed by ``ids``."""

    label: str
    cost: np.ndarray
    effect: np.ndarray
    ids: np.ndarray


def replicate_means(arms: list[Arm], paired: bool, replicates: int, seed: int) -> np.ndarray:
    """[replicates, strategies, 2] bootstrap means of (cost, effect)."""
    rng = np.random.default_rng(seed)
    out = np.empty((replicates, len(arms), 2))
    block = 100
    for lo in range(0, replicates, block):
        b = min(block, replicates - lo)
        shared = rng.poisson(1.0, (b, len(arms[0].cost))).astype(np.float32) if paired else None
        for k, arm in enumerate(arms):
            w = shared if paired else rng.poisson(1.0, (b, len(arm.cost))).astype(np.float32)
            total = np.maximum(w.sum(axis=1), 1.0)
            out[lo : lo + b, k, 0] = (w @ arm.cost) / total
            out[lo : lo + b, k, 1] = (w @ arm.effect) / total
    return out


def _interval(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if not len(x):
        return math.nan, math.nan
    lo, hi = np.quantile(x, [0.025, 0.975])
    return float(lo), float(hi)


def cea_table(
    arms: list[Arm],
    wtp: list[float],
    replicates: int = 1000,
    seed: int = 0,
    same_people: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame, bool]:
    """(ICER table, NMB table, paired).

    ICER table columns, as dampack's: Strategy, Cost, Effect, Inc_Cost, Inc_Effect, ICER, Status,
    with ``_lo``/``_hi`` 95% intervals and ``Compared_with``. NMB table: Strategy, WTP, NMB,
    NMB_lo, NMB_hi, P_cost_effective (the share of replicates in which the strategy has the
    highest net monetary benefit: the CEAC at that WTP). ``same_people``: the arms may be
    paired if they hold the same people (same scenario and seed), in the same order.
    """
    paired = same_people and all(np.array_equal(a.ids, arms[0].ids) for a in arms)
    cost = np.array([a.cost.mean() for a in arms])
    effect = np.array([a.effect.mean() for a in arms])
    status, ref = frontier(cost, effect)
    reps = replicate_means(arms, paired, replicates, seed)
    rows = []
    for k, arm in enumerate(arms):
        r = ref[k]
        c_lo, c_hi = _interval(reps[:, k, 0])
        e_lo, e_hi = _interval(reps[:, k, 1])
        row = {
            "Strategy": arm.label,
            "Cost": float(cost[k]),
            "Cost_lo": c_lo,
            "Cost_hi": c_hi,
            "Effect": float(effect[k]),
            "Effect_lo": e_lo,
            "Effect_hi": e_hi,
            "Compared_with": arms[r].label if r is not None else None,
            "Inc_Cost": math.nan,
            "Inc_Cost_lo": math.nan,
            "Inc_Cost_hi": math.nan,
            "Inc_Effect": math.nan,
            "Inc_Effect_lo": math.nan,
            "Inc_Effect_hi": math.nan,
            "ICER": math.nan,
            "ICER_lo": math.nan,
            "ICER_hi": math.nan,
            "Status": status[k],
        }
        if r is not None:
            dc = reps[:, k, 0] - reps[:, r, 0]
            de = reps[:, k, 1] - reps[:, r, 1]
            row["Inc_Cost"] = float(cost[k] - cost[r])
            row["Inc_Effect"] = float(effect[k] - effect[r])
            row["ICER"] = row["Inc_Cost"] / row["Inc_Effect"]
            row["Inc_Cost_lo"], row["Inc_Cost_hi"] = _interval(dc)
            row["Inc_Effect_lo"], row["Inc_Effect_hi"] = _interval(de)
            # a ratio interval means something only where the effect difference keeps its sign
            if np.all(de > 0):
                row["ICER_lo"], row["ICER_hi"] = _interval(dc / de)
        rows.append(row)
    order = sorted(range(len(arms)), key=lambda i: (cost[i], -effect[i]))
    icers = pl.DataFrame([rows[i] for i in order])
    nmb_rows = []
    for lam in wtp:
        nmb_reps = lam * reps[:, :, 1] - reps[:, :, 0]
        best = np.argmax(nmb_reps, axis=1)
        for k, arm in enumerate(arms):
            lo, hi = _interval(nmb_reps[:, k])
            nmb_rows.append(
                {
                    "Strategy": arm.label,
                    "WTP": float(lam),
                    "NMB": float(lam * effect[k] - cost[k]),
                    "NMB_lo": lo,
                    "NMB_hi": hi,
                    "P_cost_effective": float(np.mean(best == k)),
                }
            )
    return icers, pl.DataFrame(nmb_rows), paired

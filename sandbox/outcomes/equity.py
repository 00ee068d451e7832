"""Equity gaps: each subgroup's metric against a reference group of the same dimension, as a
difference and a ratio with 95% intervals.

Subgroups of one dimension (sex, race, age band, site) hold different people, so a gap is a
difference of two independent estimates. Its interval is built from the two groups' own
intervals by the method of variance estimates recovery (MOVER; Zou & Donner 2008, Stat Med
27:1693; for two Wilson intervals it is Newcombe's hybrid score interval, Stat Med 1998
17:873): for d = a - r, L = d - sqrt((a - l_a)^2 + (u_r - r)^2) and U = d + sqrt((u_a - a)^2 +
(r - l_r)^2); the ratio a / r applies the same on the log scale. Only rates and proportions
are compared (a count depends on the group's size). A gap is flagged where the interval of the
difference excludes zero.
"""

from __future__ import annotations

import numpy as np
import polars as pl

RATE_KINDS = ("proportion", "per_1000", "per_100k_py")


def mover_difference(a, la, ua, r, lr, ur):
    """(difference, low, high) of a - r from each estimate's own 95% interval."""
    a, la, ua, r, lr, ur = (np.asarray(x, dtype=float) for x in (a, la, ua, r, lr, ur))
    d = a - r
    return d, d - np.sqrt((a - la) ** 2 + (ur - r) ** 2), d + np.sqrt((ua - a) ** 2 + (r - lr) ** 2)


def mover_ratio(a, la, ua, r, lr, ur):
    """(ratio, low, high) of a / r: :func:`mover_difference` on the log scale (NaN at zeros)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = [np.log(np.asarray(x, dtype=float)) for x in (a, la, ua, r, lr, ur)]
        d, lo, hi = mover_difference(*logs)
    ok = np.isfinite(d) & np.isfinite(lo) & np.isfinite(hi)
    return (
        np.where(ok, np.exp(d), np.nan),
        np.where(ok, np.exp(lo), np.nan),
        np.where(ok, np.exp(hi), np.nan),
    )


def gaps(
    metrics: pl.DataFrame,
    dimension: str,
    reference: str,
    names: list[str],
    site: str = "all",
    rnd: str = "all",
) -> pl.DataFrame:
    """One row per (metric, subgroup of ``dimension``): value with its interval, and the gap to
    ``reference`` (e.g. ``race=white``) as difference and ratio with MOVER intervals;
    ``flagged`` where the difference's interval excludes 0."""
    cells = metrics.filter(
        (pl.col("site") == site)
        & (pl.col("round") == rnd)
        & pl.col("subgroup").str.starts_with(f"{dimension}=")
        & pl.col("metric").is_in(names)
    ).select("metric", "subgroup", "value", "lo", "hi", "n")
    ref = cells.filter(pl.col("subgroup") == reference).select(
        "metric", pl.col("value").alias("r"), pl.col("lo").alias("lr"), pl.col("hi").alias("ur")
    )
    t = cells.join(ref, on="metric", how="inner")
    args = [t[c].to_numpy() for c in ("value", "lo", "hi", "r", "lr", "ur")]
    d, dl, dh = mover_difference(*args)
    q, ql, qh = mover_ratio(*args)
    out = t.select("metric", "subgroup", "value", "lo", "hi", "n").with_columns(
        pl.Series("diff", d),
        pl.Series("diff_lo", dl),
        pl.Series("diff_hi", dh),
        pl.Series("ratio", q),
        pl.Series("ratio_lo", ql),
        pl.Series("ratio_hi", qh),
    )
    out = out.with_columns(
        flagged=(pl.col("subgroup") != reference)
        & ((pl.col("diff_lo") > 0) | (pl.col("diff_hi") < 0))
    )
    order = {n: i for i, n in enumerate(names)}
    return out.sort(pl.col("metric").replace_strict(order, return_dtype=pl.Int64), "subgroup")

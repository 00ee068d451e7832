"""Equity gaps: MOVER intervals reproduce Newcombe's published example, cover the true gap at
the nominal rate, and gaps() reads a run's metrics as they are."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sandbox.outcomes.equity import gaps, mover_difference, mover_ratio
from sandbox.outcomes.intervals import wilson


def test_newcombes_worked_example():
    """Newcombe 1998 (Stat Med 17:873), 56/70 against 48/80: 0.2000 (0.0524 to 0.3339)."""
    a, r = wilson(np.array([56.0]), np.array([70.0])), wilson(np.array([48.0]), np.array([80.0]))
    d, lo, hi = mover_difference(*a, *r)
    assert d[0] == pytest.approx(0.2)
    assert lo[0] == pytest.approx(0.0524, abs=5e-5) and hi[0] == pytest.approx(0.3339, abs=5e-5)


def test_mover_intervals_cover_the_true_gap_at_the_nominal_rate():
    rng = np.random.default_rng(4)
    n1, n2, p1, p2, trials = 400, 900, 0.08, 0.05, 3000
    k1, k2 = rng.binomial(n1, p1, trials), rng.binomial(n2, p2, trials)
    a, r = wilson(k1, np.full(trials, n1)), wilson(k2, np.full(trials, n2))
    _, dl, dh = mover_difference(*a, *r)
    _, ql, qh = mover_ratio(*a, *r)
    assert 0.93 <= np.mean((dl <= p1 - p2) & (p1 - p2 <= dh)) <= 0.97
    ok = np.isfinite(ql)
    assert 0.93 <= np.mean((ql[ok] <= p1 / p2) & (p1 / p2 <= qh[ok])) <= 0.97


def test_gaps_against_a_reference_group(small_run):
    names = ["positive_rate", "cancer_detection_rate_per_1000", "screens"]
    g = gaps(small_run.metrics, "sex", "sex=F", names)
    assert set(g["metric"]) == {"positive_rate", "cancer_detection_rate_per_1000", "screens"}
    ref = g.filter(pl.col("subgroup") == "sex=F")
    assert (ref["diff"] == 0).all() and (ref["ratio"].fill_nan(1.0) == 1).all()
    assert not ref["flagged"].any()
    m = small_run.metrics.filter(
        (pl.col("site") == "all") & (pl.col("round") == "all") & (pl.col("subgroup") == "sex=M")
    )
    male = g.filter(pl.col("subgroup") == "sex=M", pl.col("metric") == "positive_rate").row(
        0, named=True
    )
    assert male["value"] == m.filter(pl.col("metric") == "positive_rate")["value"][0]
    assert male["diff_lo"] <= male["diff"] <= male["diff_hi"]
    assert male["flagged"] == (male["diff_lo"] > 0 or male["diff_hi"] < 0)

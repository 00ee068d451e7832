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


# ---------------------------------------------------------------- a run's disparity table
from sandbox.outcomes.equity import (  # noqa: E402
    DISPARITY_METRICS,
    SPREAD,
    disparity_changes,
    disparity_table,
)
from sandbox.outcomes.metrics import METRICS  # noqa: E402

CHOSEN = [METRICS[m] for m in DISPARITY_METRICS]


def people_sums(
    rng, n: int, p_pos: np.ndarray, screens: int = 1, cluster: bool = False, cancer: float = 0.05
):
    """Per-person sums of ``n`` people: ``screens`` screens each, positive with probability
    ``p_pos`` (per person); with ``cluster`` a person's screens are all positive or none."""
    has_cancer = rng.random(n) < cancer
    if cluster:
        positives = np.where(rng.random(n) < p_pos, screens, 0)
    else:
        positives = rng.binomial(screens, p_pos)
    caught = has_cancer & (rng.random(n) < 0.9)
    cancer_screens = has_cancer.astype(float)
    frame = pl.DataFrame(
        {
            "person_id": np.arange(n),
            "screens": np.full(n, float(screens)),
            "positives": positives.astype(float) + caught,
            "recalls": positives.astype(float) + caught,
            "cancers_in_window": cancer_screens,
            "after_positive": caught.astype(float),
            "no_cancer_screens": np.full(n, float(screens)) - cancer_screens,
            "positive_no_cancer": positives.astype(float),
        }
    )
    return frame


def test_a_real_gap_is_flagged_and_no_gap_is_not():
    rng = np.random.default_rng(8)
    n = 8000
    group = np.where(np.arange(n) < n // 2, "a", "b")
    sums = people_sums(rng, n, np.where(group == "a", 0.10, 0.15))
    t = disparity_table(sums, {"g": group}, CHOSEN, seed=1, replicates=400)

    def cell(g, m):
        return t.filter((pl.col("group") == g) & (pl.col("metric") == m)).row(0, named=True)

    fpr = cell("b", "false_positive_rate")
    assert fpr["reference"] == "a" and fpr["flagged"]
    assert fpr["diff_lo"] < 0.05 < fpr["diff_hi"] or abs(fpr["diff"] - 0.05) < 0.02
    assert not cell("b", "screen_sensitivity")["flagged"]  # 0.9 in both groups
    ref = cell("a", "positive_rate")
    assert ref["diff"] == 0 and ref["ratio"] == 1 and not ref["flagged"]
    assert ref["lo"] <= ref["value"] <= ref["hi"]
    # Fairlearn's summaries: the spread of the positive rate; the larger of the TPR and FPR spreads
    spread = {r["metric"]: r for r in t.filter(pl.col("group") == SPREAD).iter_rows(named=True)}
    assert spread["demographic_parity"]["diff"] == spread["positive_rate"]["diff"]
    assert spread["equalized_odds"]["diff"] == max(
        spread["screen_sensitivity"]["diff"], spread["false_positive_rate"]["diff"]
    )
    assert spread["equalized_odds"]["ratio"] == min(
        spread["screen_sensitivity"]["ratio"], spread["false_positive_rate"]["ratio"]
    )
    assert not t.filter(pl.col("group") == SPREAD)["flagged"].any()
    # every interval holds its estimate, the spreads' too (their bootstrap sits above it)
    for r in t.iter_rows(named=True):
        assert r["diff_lo"] <= r["diff"] <= r["diff_hi"], r
        assert r["ratio_lo"] <= r["ratio"] <= r["ratio_hi"], r


def test_no_gap_is_flagged_at_most_at_the_nominal_rate_when_a_persons_screens_agree():
    """Three screens per person, all positive or none: counting screens as independent (Wilson,
    MOVER) flags a null gap far too often; the table's intervals keep a person's screens
    together and stay near 5%."""
    rng = np.random.default_rng(3)
    n, trials = 1500, 150
    flagged, naive = 0, 0
    for i in range(trials):
        group = np.where(rng.random(n) < 0.5, "a", "b")
        sums = people_sums(rng, n, np.full(n, 0.1), screens=3, cluster=True)
        t = disparity_table(sums, {"g": group}, CHOSEN[1:2], seed=i, replicates=200)
        row = t.filter(pl.col("group") == "b").row(0, named=True)
        flagged += row["flagged"]
        k = {g: sums.filter(pl.Series(group == g))["positive_no_cancer"].sum() for g in "ab"}
        m = {g: sums.filter(pl.Series(group == g))["no_cancer_screens"].sum() for g in "ab"}
        a, r = (
            wilson(np.array([k["b"]]), np.array([m["b"]])),
            wilson(np.array([k["a"]]), np.array([m["a"]])),
        )
        _, lo, hi = mover_difference(*a, *r)
        naive += bool(lo[0] > 0 or hi[0] < 0)
    assert flagged / trials <= 0.09
    assert naive / trials >= 0.12  # the test can tell the two apart


def test_changes_between_two_arms_on_the_same_people():
    rng = np.random.default_rng(5)
    n = 8000
    group = np.where(np.arange(n) < n // 2, "a", "b")
    a = people_sums(rng, n, np.full(n, 0.10))
    same = disparity_changes(a, a, {"g": group}, CHOSEN, seed=2, replicates=300)
    assert (
        (same["diff"] == 0).all() and (same["diff_lo"] == 0).all() and (same["diff_hi"] == 0).all()
    )
    # B raises the false positives of group b only
    extra = np.where((group == "b") & (rng.random(n) < 0.06), 1.0, 0.0)
    b = a.with_columns(
        pl.col("positive_no_cancer") + extra,
        pl.col("positives") + extra,
        pl.col("recalls") + extra,
    )
    t = disparity_changes(a, b, {"g": group}, CHOSEN, seed=2, replicates=300)
    row = t.filter(pl.col("metric") == "g=b vs a: false_positive_rate").row(0, named=True)
    assert row["diff_lo"] > 0.03 and row["better"] == ""
    sens = t.filter(pl.col("metric") == "g=b vs a: screen_sensitivity").row(0, named=True)
    assert sens["diff"] == 0 and sens["discordant"] == 0
    spread = t.filter(pl.col("metric") == "g: false_positive_rate").row(0, named=True)
    assert spread["better"] == "lower" and spread["diff_lo"] > 0.03
    eo = t.filter(pl.col("metric") == "g: equalized_odds").row(0, named=True)
    assert eo["b"] >= spread["b"] and eo["diff"] > 0


def test_a_reference_that_is_not_a_group_is_refused():
    from sandbox.errors import SandboxInputError

    rng = np.random.default_rng(1)
    sums = people_sums(rng, 200, np.full(200, 0.1))
    group = np.where(np.arange(200) < 100, "a", "b")
    with pytest.raises(SandboxInputError, match="no such group"):
        disparity_table(sums, {"g": group}, CHOSEN, 1, 100, {"g": "c"})
    with pytest.raises(SandboxInputError, match="no dimension"):
        disparity_table(sums, {"g": group}, CHOSEN, 1, 100, {"sex": "F"})


def test_the_devices_own_rates_are_compared_where_a_device_scored_the_screens():
    from sandbox.outcomes.equity import AI_DISPARITY_METRICS, disparity_metrics

    scored = pl.DataFrame({"ai_score": [0.2, None, 0.9]})
    unscored = pl.DataFrame({"ai_score": [None, None]}, schema={"ai_score": pl.Float64})
    assert disparity_metrics(scored) == DISPARITY_METRICS + AI_DISPARITY_METRICS
    assert disparity_metrics(unscored) == DISPARITY_METRICS
    assert disparity_metrics(scored, unscored) == DISPARITY_METRICS  # both arms, or neither

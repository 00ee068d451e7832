"""Paired comparisons: the per-person sums reproduce the metrics, intervals cover the truth at
the nominal rate (within one seed and pooled over seeds), a planted effect is recovered, and
verdicts read as a trial states them."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from sandbox.outcomes.metrics import Metric, person_sums
from sandbox.outcomes.paired import (
    FEW_DISCORDANT,
    pairable,
    paired_differences,
    pool,
    seeds_to_settle,
    verdict,
)
from sandbox.programmes import programme_for

DETECTED = Metric("screen_detected_cancers", "count", "", "screen_detected", better="higher")
POSITIVE_RATE = Metric("positive_rate", "proportion", "", "positives", "screens", better="lower")


@pytest.fixture(scope="module")
def small(small_run, small_cfg):
    programme = programme_for(small_cfg.scenario)
    return person_sums(small_run.events, small_run.people, programme), pairable(programme)


def test_person_sums_reproduce_every_pairable_metric(small_run, small):
    table, metrics = small
    m = small_run.metrics.filter(
        (pl.col("site") == "all") & (pl.col("subgroup") == "all") & (pl.col("round") == "all")
    )
    assert {"lung_cancer_deaths", "stage_I_share", "life_years", "reader_hours"} <= set(metrics)
    same = paired_differences(table, table, list(metrics.values()), seed=1, replicates=100)
    for row in same.iter_rows(named=True):
        want = m.filter(pl.col("metric") == row["metric"])["value"][0]
        assert row["a"] == pytest.approx(want, rel=1e-9, nan_ok=True), row["metric"]
        assert row["discordant"] == 0


def test_a_run_against_itself_differs_by_exactly_nothing(small):
    table, _ = small
    row = paired_differences(table, table, [DETECTED], seed=1, replicates=200).row(0, named=True)
    assert row["diff"] == row["diff_lo"] == row["diff_hi"] == 0.0
    assert verdict(row, 0.1) == "non-inferior"  # equal is not better


def arms(n: int, rng: np.random.Generator, keep: float = 0.9, shift: float = 0.0):
    """Two arms of the same people: B copies A's detection, or redraws it (with ``shift``)."""
    a = (rng.random(n) < 0.3).astype(float)
    b = np.where(rng.random(n) < keep, a, (rng.random(n) < 0.3 + shift).astype(float))
    return [
        pl.DataFrame({"person_id": np.arange(n), "screen_detected": x, "screens": np.ones(n)})
        for x in (a, b)
    ]


def test_intervals_cover_a_zero_difference_at_the_nominal_rate():
    rng = np.random.default_rng(2024)
    covered, trials = 0, 200
    for t in range(trials):
        a, b = arms(300, rng)
        row = paired_differences(a, b, [DETECTED], seed=t, replicates=400).row(0, named=True)
        covered += row["diff_lo"] <= 0.0 <= row["diff_hi"]
    # 95% nominal; with 200 trials the binomial SD is 1.5 points
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_the_bootstrap_agrees_with_mcnemar_on_one_screen_per_person():
    """One screen each: the paired proportion difference has McNemar's Wald interval
    (b - c) / n +- 1.96 sqrt(b + c - (b - c)^2 / n) / n, b and c the discordant pairs."""
    rng = np.random.default_rng(5)
    n = 4000
    a = (rng.random(n) < 0.10).astype(float)
    b = np.where(rng.random(n) < 0.85, a, (rng.random(n) < 0.13).astype(float))
    frames = [
        pl.DataFrame({"person_id": np.arange(n), "positives": x, "screens": np.ones(n)})
        for x in (a, b)
    ]
    row = paired_differences(*frames, [POSITIVE_RATE], seed=3, replicates=4000).row(0, named=True)
    up, down = float(((b == 1) & (a == 0)).sum()), float(((a == 1) & (b == 0)).sum())
    half = 1.96 * math.sqrt(up + down - (up - down) ** 2 / n) / n
    assert row["diff"] == pytest.approx((up - down) / n)
    assert row["diff_lo"] == pytest.approx((up - down) / n - half, abs=0.15 * half)
    assert row["diff_hi"] == pytest.approx((up - down) / n + half, abs=0.15 * half)
    assert row["discordant"] == up + down


def test_a_planted_effect_is_recovered(small):
    a, _ = small
    detected = a["screen_detected"].to_numpy() > 0
    rng = np.random.default_rng(7)
    drop = detected & (rng.random(len(a)) < 0.5)  # B misses half of A's screen-detected
    b = a.with_columns(pl.Series("screen_detected", np.where(drop, 0.0, a["screen_detected"])))
    row = paired_differences(a, b, [DETECTED], 3, 1000).row(0, named=True)
    truth = 1 - drop.sum() / detected.sum()
    assert row["ratio"] == pytest.approx(truth)
    assert row["ratio_lo"] < truth < row["ratio_hi"] and row["ratio_hi"] < 1.0
    assert row["discordant"] == drop.sum()
    assert verdict(row, 0.1) == "inferior"


@pytest.mark.parametrize(
    ("better", "lo", "hi", "want"),
    [
        ("higher", 1.02, 1.10, "superior"),
        ("higher", 0.95, 1.05, "non-inferior"),
        ("higher", 0.85, 1.05, "inconclusive"),
        ("higher", 0.70, 0.85, "inferior"),
        ("lower", 0.90, 0.98, "superior"),
        ("lower", 0.95, 1.05, "non-inferior"),
        ("lower", 1.15, 1.30, "inferior"),
    ],
)
def test_verdicts_read_as_trials_state_them(better, lo, hi, want):
    row = {"metric": "m", "better": better, "ratio_lo": lo, "ratio_hi": hi}
    assert verdict(row, 0.1) == want


def test_absolute_margins_are_in_the_metrics_units():
    row = {"metric": "m", "better": "lower", "diff_lo": -1.0, "diff_hi": 2.5}
    assert verdict(row, 3.0, "absolute") == "non-inferior"
    assert verdict(row, 2.0, "absolute") == "inconclusive"


# ---------------------------------------------------------------- pooled over seeds
def seed_frames(rng, seeds: int, run_sd: float, n: int = 2000, effect: float = 0.0):
    """Per-seed paired differences where each seed (run) also shifts B's detection by a
    run-level effect of sd ``run_sd`` that resampling people cannot see."""
    out = []
    for s in range(seeds):
        shift = effect + rng.normal(0, run_sd)
        a, b = arms(n, rng, keep=0.8, shift=float(np.clip(shift, -0.25, 0.5)))
        out.append(paired_differences(a, b, [DETECTED], seed=s, replicates=300))
    return out


def test_one_seed_pools_to_itself():
    frame = seed_frames(np.random.default_rng(1), 1, 0.0)
    pooled = pool(frame)
    assert pooled.drop("between_share").equals(frame[0])


def test_pooled_intervals_cover_with_run_level_variation_where_one_seed_does_not():
    """Truth: B - A = 0.2 x n x mean shift = 0 on average over runs. With a run-level shift the
    single-seed interval under-covers it; the pooled one (5 seeds) covers at about 95%."""
    rng = np.random.default_rng(11)
    single = pooled = 0
    trials = 80
    shares = []
    for _ in range(trials):
        frames = seed_frames(rng, 5, run_sd=0.06, n=1500)
        single += frames[0]["diff_lo"][0] <= 0 <= frames[0]["diff_hi"][0]
        p = pool(frames).row(0, named=True)
        shares.append(p["between_share"])
        pooled += p["diff_lo"] <= 0 <= p["diff_hi"]
    assert np.mean(shares) > 0.6  # the seeds disagree more than resampling people explains
    assert single / trials < 0.75, single / trials
    assert 0.86 <= pooled / trials <= 1.0, pooled / trials


def test_pooling_agreeing_seeds_narrows_the_interval_as_one_over_root_seeds():
    rng = np.random.default_rng(3)
    frames = seed_frames(rng, 8, run_sd=0.0)
    p = pool(frames).row(0, named=True)
    within = np.sqrt(np.mean([f["diff_se"][0] ** 2 for f in frames]))
    half = (p["diff_hi"] - p["diff_lo"]) / 2
    if p["between_share"] <= 0.5:  # seeds agree: the within-run variance, normal interval
        assert half == pytest.approx(1.96 * within / np.sqrt(8), rel=1e-3)
    else:
        assert half > 1.96 * within / np.sqrt(8)
    assert p["a"] == pytest.approx(np.mean([f["a"][0] for f in frames]))


def test_seeds_to_settle_names_the_seeds_a_verdict_needs():
    # relative margin 0.1, estimate B / A = 0.97, one seed with log-ratio se 0.05:
    # non-inferior needs 0.97 exp(-1.96 x 0.05 / sqrt(k)) > 0.9
    row = {
        "metric": "m",
        "better": "higher",
        "ratio": 0.97,
        "ratio_lo": 0.97 * math.exp(-1.96 * 0.05),
        "ratio_hi": 0.97 * math.exp(1.96 * 0.05),
        "log_ratio_se": 0.05,
        "seeds": 1,
        "between_share": float("nan"),
    }
    assert verdict(row, 0.1) == "inconclusive"
    z = stats.norm.ppf(0.975)
    need = next(k for k in range(2, 100) if 0.97 * math.exp(-z * 0.05 / math.sqrt(k)) > 0.9)
    assert seeds_to_settle(row, 0.1) == (
        f"about {need} seeds would make it NON-INFERIOR, if the estimate holds"
    )


def test_few_discordant_people_are_counted():
    a = pl.DataFrame({"person_id": [0, 1, 2], "screen_detected": [1.0, 0, 0], "screens": [1.0] * 3})
    b = a.with_columns(pl.Series("screen_detected", [1.0, 1.0, 0]))
    row = paired_differences(a, b, [DETECTED], 1, 100).row(0, named=True)
    assert row["discordant"] == 1 < FEW_DISCORDANT

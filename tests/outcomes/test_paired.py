"""Paired comparisons: the per-person sums reproduce the metrics, intervals cover the truth at
the nominal rate, a planted effect is recovered, and verdicts read as a trial states them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from testkit import assert_one_line_error, run_cli

from sandbox.outcomes.paired import COLUMNS, PAIRED, paired_differences, person_table, verdict


def test_person_sums_reproduce_every_paired_metric(small_run):
    table = person_table(small_run.events, small_run.people)
    m = small_run.metrics.filter(
        (pl.col("site") == "all") & (pl.col("subgroup") == "all") & (pl.col("round") == "all")
    )
    same = paired_differences(table, table, list(PAIRED), seed=1, replicates=100)
    for row in same.iter_rows(named=True):
        want = m.filter(pl.col("metric") == row["metric"])["value"][0]
        assert row["a"] == pytest.approx(want, rel=1e-9), row["metric"]


def test_a_run_against_itself_differs_by_exactly_nothing(small_run):
    table = person_table(small_run.events, small_run.people)
    d = paired_differences(table, table, ["screen_detected_cancers"], seed=1, replicates=200)
    row = d.row(0, named=True)
    assert row["diff"] == row["diff_lo"] == row["diff_hi"] == 0.0
    assert verdict(row, 0.1) == "non-inferior"  # equal is not better


def synthetic(n: int, rng: np.random.Generator, keep: float = 0.9):
    """Two arms of the same people: B copies A's detection, or redraws it (same expectation)."""
    a = (rng.random(n) < 0.3).astype(float)
    b = np.where(rng.random(n) < keep, a, (rng.random(n) < 0.3).astype(float))
    frames = []
    for x in (a, b):
        cols = {c: np.zeros(n) for c in COLUMNS}
        cols["screen_detected"] = x
        cols["screens"] = np.ones(n)
        frames.append(pl.DataFrame({"person_id": np.arange(n), **cols}))
    return frames


def test_intervals_cover_a_zero_difference_at_the_nominal_rate():
    rng = np.random.default_rng(2024)
    covered = 0
    trials = 200
    for t in range(trials):
        a, b = synthetic(300, rng)
        row = paired_differences(a, b, ["screen_detected_cancers"], seed=t, replicates=400).row(
            0, named=True
        )
        covered += row["diff_lo"] <= 0.0 <= row["diff_hi"]
    # 95% nominal; with 200 trials the binomial SD is 1.5 points
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_a_planted_effect_is_recovered(small_run):
    a = person_table(small_run.events, small_run.people)
    detected = a["screen_detected"].to_numpy() > 0
    rng = np.random.default_rng(7)
    drop = detected & (rng.random(len(a)) < 0.5)  # B misses half of A's screen-detected
    b = a.with_columns(pl.Series("screen_detected", np.where(drop, 0.0, a["screen_detected"])))
    row = paired_differences(a, b, ["screen_detected_cancers"], 3, 1000).row(0, named=True)
    truth = 1 - drop.sum() / detected.sum()
    assert row["ratio"] == pytest.approx(truth)
    assert row["ratio_lo"] < truth < row["ratio_hi"] and row["ratio_hi"] < 1.0
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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    import testkit

    out = tmp_path_factory.mktemp("pair")
    common = ["run", "runtime=quiet", "cohort.size=1500", "seed=5", f"runtime.out_dir={out}"]
    assert testkit.main([*common, "policy=soc_double_read", "runtime.run_name=double"]) == 0
    assert testkit.main([*common, "policy=soc_single_read", "runtime.run_name=single"]) == 0
    assert (
        testkit.main([*common, "seed=6", "policy=soc_single_read", "runtime.run_name=other"]) == 0
    )
    return out


def test_compare_prints_paired_differences_and_a_verdict(two_runs, capsys):
    argv = ["compare", str(two_runs / "double"), str(two_runs / "single")]
    code, out, err = run_cli([*argv, "--primary", "screen_detected_cancers"], capsys)
    assert code == 0, err
    assert "paired differences, soc_single_read - soc_double_read" in out
    assert "screen_detected_cancers (primary)" in out
    assert "verdict on screen_detected_cancers (higher is better" in out
    assert any(w in out for w in ("NON-INFERIOR", "SUPERIOR", "INFERIOR", "INCONCLUSIVE"))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--primary", "life_years"], "no paired interval"),
        (["--primary", "screens", "--margin", "0"], "--margin"),
        (["--primary", "screens", "--replicates", "5"], "--replicates"),
    ],
)
def test_bad_comparison_options_are_one_line(two_runs, capsys, extra, needle):
    argv = ["compare", str(two_runs / "double"), str(two_runs / "single"), *extra]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, needle)


def test_a_verdict_needs_paired_runs(two_runs, capsys):
    argv = ["compare", str(two_runs / "double"), str(two_runs / "other"), "--primary", "screens"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "same scenario and seed")

"""Reading policies end to end on a small cohort."""

from __future__ import annotations

import polars as pl
import pytest

BASE = ("scenario=lung_ldct", "cohort.size=2000", "seed=5", "runtime=quiet")


def top(res, metric: str, rnd: str = "all") -> float:
    row = res.metrics.filter(
        (pl.col("metric") == metric)
        & (pl.col("site") == "all")
        & (pl.col("subgroup") == "all")
        & (pl.col("round") == rnd)
    )
    assert row.height == 1, metric
    return row["value"][0]


@pytest.fixture(scope="module")
def runs(run_sim):
    return {
        p: run_sim(*BASE, f"policy={p}")
        for p in ("soc_single_read", "soc_double_read", "soc_double_read_consensus")
    }


def test_single_read_reads_each_exam_once(runs):
    ev = runs["soc_single_read"].events
    assert (ev["n_reads"] == 1).all()
    assert not ev["arbitrated"].any()
    assert top(runs["soc_single_read"], "human_reads") == ev.height


def test_double_read_has_more_reads_and_arbitrates(runs):
    single, double = runs["soc_single_read"], runs["soc_double_read"]
    assert top(double, "human_reads") > top(single, "human_reads")
    ev = double.events
    screens = ev.filter(pl.col("exam_kind") == "screen")
    assert screens["arbitrated"].sum() > 0
    assert (screens.filter(pl.col("arbitrated"))["n_reads"] == 3).all()
    assert (screens.filter(~pl.col("arbitrated"))["n_reads"] == 2).all()
    assert top(double, "human_reads") == ev["n_reads"].sum()
    assert top(double, "human_reads") >= 2 * top(double, "screens")
    assert top(double, "reader_hours") > top(single, "reader_hours")


def test_consensus_policy_runs(runs):
    res = runs["soc_double_read_consensus"]
    screens = res.events.filter(pl.col("exam_kind") == "screen")
    assert screens["arbitrated"].sum() > 0  # discordant reads went to consensus review
    assert (screens.filter(pl.col("arbitrated"))["n_reads"] == 3).all()
    assert top(res, "screens") == screens.height
    assert res.metrics["policy"].unique().to_list() == ["soc_double_read_consensus"]


def test_policy_name_is_recorded(runs):
    for name, res in runs.items():
        assert res.metrics["policy"].unique().to_list() == [name]
        assert res.metrics["scenario"].unique().to_list() == ["lung_ldct"]
        assert res.metrics["seed"].unique().to_list() == [5]

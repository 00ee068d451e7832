"""Common random numbers and reproducibility of the serial runner."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sandbox.runners.local import simulate, site_blocks

BASE = ("scenario=lung_ldct", "cohort.size=2000", "seed=5", "runtime=quiet")
NATURAL_HISTORY = [
    "person_id",
    "site",
    "sex",
    "race",
    "age",
    "pack_years",
    "plcom2012_6y",
    "entry_day",
    "end_day",
    "has_cancer",
    "histology",
    "indolent",
    "onset_day",
    "clinical_day",
]


@pytest.fixture(scope="module")
def single(run_sim):
    return run_sim(*BASE, "policy=soc_single_read")


@pytest.fixture(scope="module")
def double(run_sim):
    return run_sim(*BASE, "policy=soc_double_read")


def test_same_seed_same_results(load_config, single):
    cfg, profiles, _ = load_config(*BASE, "policy=soc_single_read")
    again = simulate(cfg, profiles, progress=False)  # a fresh run, not the cached one
    assert_frame_equal(again.metrics, single.metrics, check_exact=True)
    assert_frame_equal(again.events, single.events, check_exact=True)
    assert_frame_equal(again.people, single.people, check_exact=True)


def test_other_seed_other_results(run_sim, single):
    other = run_sim(
        "scenario=lung_ldct",
        "cohort.size=2000",
        "seed=6",
        "runtime=quiet",
        "policy=soc_single_read",
    )
    assert not other.people["onset_day"].equals(single.people["onset_day"])


def test_policies_see_the_same_people_and_disease_courses(single, double, run_sim):
    consensus = run_sim(*BASE, "policy=soc_double_read_consensus")
    for other in (double, consensus):
        assert_frame_equal(
            other.people.select(NATURAL_HISTORY),
            single.people.select(NATURAL_HISTORY),
            check_exact=True,
        )


def test_policies_share_screening_invitations(single, double):
    # the first screen of each attender is due the same day under every policy
    def first_due(res):
        return (
            res.events.filter((pl.col("exam_kind") == "screen") & (pl.col("round") == 0))
            .select("person_id", "due_day")
            .sort("person_id")
        )

    assert_frame_equal(first_due(single), first_due(double), check_exact=True)


@pytest.mark.parametrize("block", [1, 2])
def test_results_do_not_depend_on_site_blocks(load_config, single, block):
    cfg, profiles, _ = load_config(*BASE, "policy=soc_single_read")
    blocked = dataclasses.replace(
        cfg, runtime=dataclasses.replace(cfg.runtime, site_block_size=block)
    )
    res = simulate(blocked, profiles, progress=False)
    assert_frame_equal(res.metrics, single.metrics, check_exact=True)
    assert_frame_equal(res.events, single.events, check_exact=True)
    assert_frame_equal(res.people, single.people, check_exact=True)


def test_site_blocks():
    assert site_blocks(3, 0) == [[0, 1, 2]]
    assert site_blocks(3, 1) == [[0], [1], [2]]
    assert site_blocks(5, 2) == [[0, 1], [2, 3], [4]]
    assert site_blocks(2, 7) == [[0, 1]]

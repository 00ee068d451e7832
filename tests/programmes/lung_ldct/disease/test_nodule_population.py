"""The benign nodule population is realistic in itself, not only through the screening rates it
was fitted to: it is compared with published screening series (docs/natural-history.md, "The
nodule population against published series")."""

from __future__ import annotations

import math

import pytest

from sandbox.compose import load, load_reader_profiles
from sandbox.programmes import programme_for
from sandbox.programmes.lung_ldct.disease.history import follow_up_days
from sandbox.programmes.lung_ldct.disease.natural_history import YEAR
from sandbox.programmes.lung_ldct.disease.nodules import population_summary
from sandbox.simulate import build_cohort


@pytest.fixture(scope="module")
def summary():
    cfg, _, _ = load(["scenario=nlst", "cohort.size=8000", "seed=2011"])
    cohort = build_cohort(cfg, lambda n: None, programme_for(cfg.scenario))
    years = follow_up_days(cfg.scenario) / YEAR
    return population_summary(cohort.nodules, cohort.people["entry_day"], years)


def test_prevalent_nodules_are_as_common_and_as_small_as_in_screening_series(summary):
    # at least one non-calcified nodule at baseline: 23% (ELCAP, Henschke et al., Lancet 1999)
    # to 51% (Mayo, Swensen et al., Radiology 2005; NELSON, van Klaveren et al., NEJM 2009)
    assert 0.23 <= summary["share_with_nodule_at_entry_3mm"] <= 0.55
    # a nodule of 4 mm or more: NLST's T0 positivity (27.3%) is mostly such nodules
    assert 0.20 <= summary["share_with_nodule_at_entry_4mm"] <= 0.35
    # most nodules are small; few are 8 mm or more (Lung-RADS 4A or above at baseline)
    assert summary["size_at_entry_share_below_5mm"] >= 0.6
    assert summary["size_at_entry_share_8mm_or_more"] <= 0.10


def test_new_nodules_appear_resolve_and_grow_at_published_rates(summary):
    # a new solid nodule at an incidence round: about 5-7% of participants per round in NELSON
    # (Walter et al., Lancet Oncol 2016); more with smaller size cut-offs (Mayo: about 10%)
    assert 0.05 <= summary["share_with_new_nodule_in_a_year_3mm"] <= 0.15
    # a minority resolve (inflammatory) and few grow (most benign nodules are stable)
    assert 0.10 <= summary["share_resolving"] <= 0.35
    assert summary["share_growing"] <= 0.15


@pytest.mark.parametrize("profile", ["thoracic_radiologist", "general_radiologist"])
def test_two_readers_measure_a_nodule_within_one_to_two_and_a_half_mm(profile):
    # inter-reader 95% limits of agreement for the diameter of small nodules: about 1-2 mm
    # (Revel et al., Radiology 2004; Bogot et al., Br J Radiol 2005)
    p = load_reader_profiles({profile})[profile]
    per_reader = p.size_error_sd_mm**2 + p.between_reader_size_bias_sd_mm**2
    limits = 1.96 * math.sqrt(2.0 * per_reader)
    assert 1.0 <= limits <= 2.5, limits

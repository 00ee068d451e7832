"""Candidates, PLCOm2012 risk and eligibility rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sandbox.programmes.lung_ldct.cohort import (
    age_band,
    assign_sites,
    plcom2012_risk,
    sample_candidates,
)
from sandbox.programmes.lung_ldct.config import Eligibility
from sandbox.rng import Streams

BASE = dict(
    age=62.0,
    education=4.0,
    bmi=27.0,
    copd=0.0,
    personal_cancer_history=0.0,
    family_history=0.0,
    race_coef=0.0,
    current_smoker=0.0,
    cigs_per_day=10 / 0.4021541613,
    years_smoked=27.0,
    years_since_quit=10.0,
)


def risk(**change):
    return float(plcom2012_risk(**{k: np.asarray(v) for k, v in {**BASE, **change}.items()}))


def test_plcom2012_reference_person_is_the_intercept():
    # every covariate at its centring value: the logit is the model's intercept
    assert risk() == pytest.approx(1 / (1 + np.exp(4.532506)), rel=1e-12)


@pytest.mark.parametrize(
    "name, lo, hi",
    [
        ("age", 55, 74),
        ("copd", 0, 1),
        ("personal_cancer_history", 0, 1),
        ("family_history", 0, 1),
        ("current_smoker", 0, 1),
        ("cigs_per_day", 5, 40),
        ("years_smoked", 20, 50),
    ],
)
def test_plcom2012_risk_increases_with_risk_factors(name, lo, hi):
    assert risk(**{name: hi}) > risk(**{name: lo})


@pytest.mark.parametrize(
    "name, lo, hi", [("education", 1, 6), ("bmi", 20, 35), ("years_since_quit", 0, 15)]
)
def test_plcom2012_risk_decreases_with_protective_factors(name, lo, hi):
    assert risk(**{name: hi}) < risk(**{name: lo})


def _with_rule(cohort, rule: str, threshold: float = 0.0151):
    return dataclasses.replace(
        cohort, eligibility=Eligibility(rule=rule, plcom2012_threshold=threshold)
    )


@pytest.mark.parametrize("rule", ["nlst", "uspstf2021", "plcom2012"])
def test_eligibility_rules_hold_for_every_eligible_candidate(small_cfg, rule):
    cohort = _with_rule(small_cfg.scenario.cohort, rule)
    c = sample_candidates(cohort, Streams(1), np.arange(20_000))
    e = c["eligible"]
    assert 0 < e.sum() < len(e)
    if rule == "nlst":
        assert np.all(
            (c["age"][e] >= 55)
            & (c["age"][e] <= 74)
            & (c["pack_years"][e] >= 30)
            & (c["years_since_quit"][e] <= 15)
        )
    elif rule == "uspstf2021":
        assert np.all(
            (c["age"][e] >= 50)
            & (c["age"][e] <= 80)
            & (c["pack_years"][e] >= 20)
            & (c["years_since_quit"][e] <= 15)
        )
    else:
        assert np.all(c["plcom2012_6y"][e] >= 0.0151)
        assert np.all(c["plcom2012_6y"][~e] < 0.0151)


def test_candidate_attributes_are_plausible(small_cfg):
    pop = small_cfg.scenario.cohort.population
    c = sample_candidates(small_cfg.scenario.cohort, Streams(2), np.arange(50_000))
    assert c["age"].min() >= pop.age.min and c["age"].max() <= pop.age.max
    assert np.all(c["age"] == np.floor(c["age"]))
    assert np.all((c["education"] >= 1) & (c["education"] <= 6))
    assert np.all(c["years_since_quit"][c["current_smoker"] == 1] == 0)
    assert np.all(c["years_smoked"] >= 1)
    np.testing.assert_allclose(c["pack_years"], c["cigs_per_day"] / 20 * c["years_smoked"])
    assert abs(c["female"].mean() - pop.female) < 0.01
    assert abs(c["current_smoker"].mean() - pop.current_smoker) < 0.01
    assert np.all((c["plcom2012_6y"] > 0) & (c["plcom2012_6y"] < 1))


def test_candidates_are_keyed_by_id(small_cfg):
    cohort = small_cfg.scenario.cohort
    whole = sample_candidates(cohort, Streams(3), np.arange(1000))
    part = sample_candidates(cohort, Streams(3), np.arange(500, 1000))
    for k, v in whole.items():
        np.testing.assert_array_equal(v[500:], part[k])


def test_site_shares(small_cfg):
    shares = [s.share for s in small_cfg.scenario.sites]
    site = assign_sites(Streams(4), np.arange(100_000), shares)
    observed = np.bincount(site, minlength=len(shares)) / len(site)
    np.testing.assert_allclose(observed, np.array(shares) / sum(shares), atol=0.01)


def test_age_bands():
    bands = age_band(np.array([50, 54, 55, 62, 74, 75, 80]))
    assert bands.tolist() == ["50-54", "50-54", "55-59", "60-64", "70-74", "75+", "75+"]


def test_age_band_shares_set_the_candidates_ages(small_cfg):
    cohort = small_cfg.scenario.cohort
    pop = dataclasses.replace(cohort.population, age_band_shares=(0.5, 0.3, 0.2, 0.0))
    c = sample_candidates(
        dataclasses.replace(cohort, population=pop), Streams(5), np.arange(40_000)
    )
    share = [np.mean((c["age"] >= lo) & (c["age"] < lo + 5)) for lo in (55, 60, 65, 70)]
    np.testing.assert_allclose(share, [0.5, 0.3, 0.2, 0.0], atol=0.01)
    years = (
        np.bincount(c["age"][c["age"] < 60].astype(int) - 55, minlength=5) / (c["age"] < 60).sum()
    )
    np.testing.assert_allclose(years, 0.2, atol=0.015)  # uniform within the band


def test_the_nlst_cohort_is_nlsts_enrolled_population():
    """NLST's Table 1 (Aberle et al., NEJM 2011) among the people the eligibility rule keeps:
    48% current smokers, 41% women, 43/31/18/9% aged 55-59/60-64/65-69/70-74."""
    from sandbox.compose import load

    cfg, _, _ = load(["scenario=nlst"])
    c = sample_candidates(cfg.scenario.cohort, Streams(11), np.arange(200_000))
    kept = c["eligible"]
    assert kept.sum() > 50_000
    assert c["current_smoker"][kept].mean() == pytest.approx(0.48, abs=0.01)
    assert c["female"][kept].mean() == pytest.approx(0.41, abs=0.01)
    share = [np.mean((c["age"][kept] >= lo) & (c["age"][kept] < lo + 5)) for lo in (55, 60, 65, 70)]
    np.testing.assert_allclose(share, [0.428, 0.306, 0.177, 0.089], atol=0.015)

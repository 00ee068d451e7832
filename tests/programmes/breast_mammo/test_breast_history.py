"""The breast programme's women and natural history against the figures their parameters
come from: density by age, incidence by age and by risk factor, growth, stage at symptoms,
DCIS, survival by stage and other-cause death."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sandbox.programmes.breast_mammo.config import BreastDisease, Women
from sandbox.programmes.breast_mammo.history import (
    YEAR,
    age_group,
    cancer_death_day,
    diameter_mm,
    relative_risk,
    sample_histories,
    sample_women,
    stage,
)
from sandbox.rng import Streams

N = 200_000
YEARS = 10.0


@pytest.fixture(scope="module")
def cohort():
    women, disease, streams = Women(), BreastDisease(), Streams(3)
    w = sample_women(women, streams, np.arange(N))
    return women, disease, w, sample_histories(women, disease, streams, w, YEARS)


def test_density_follows_age(cohort):
    women, _, w, _ = cohort
    g = age_group(w["age"])
    for k, shares in enumerate(women.density_by_age):
        got = np.bincount(w["density"][g == k], minlength=4) / (g == k).sum()
        assert got == pytest.approx(np.asarray(shares) / sum(shares), abs=0.01)
    dense = (w["density"] >= 2).mean()
    assert 0.40 < dense < 0.50  # Sprague et al. 2014: 43% of women 40-74


def test_relative_risks_share_out_the_age_specific_rate(cohort):
    women, disease, w, h = cohort
    rr = relative_risk(w, women, disease)
    for k in range(4):
        assert rr[age_group(w["age"]) == k].mean() == pytest.approx(1.0, abs=0.03)
    # the first year's clinical incidence matches the table at the women's ages
    first = h["clinical_day"] < YEAR
    rate = np.asarray(disease.invasive.clinical_incidence_per_100k) / 1e5
    expected = rate[np.clip(((w["age"] - 40) // 5).astype(int), 0, len(rate) - 1)].sum()
    assert first.sum() == pytest.approx(expected, rel=4 / math.sqrt(expected))
    # extremely dense against scattered: the declared 1.9, up to sampling error
    ten = h["has_cancer"]
    d, b = w["density"] == 3, w["density"] == 1
    ratio = ten[d].mean() / ten[b].mean()
    assert ratio == pytest.approx(1.9, rel=0.15)


def test_growth_and_stage_at_symptoms_are_those_of_unscreened_cancers(cohort):
    _, disease, _, h = cohort
    c = h["has_cancer"]
    # Weedon-Fekjaer et al. 2008: 1.7 years on average from 10 to 20 mm
    assert (3.0 * h["doubling_days"][c] / YEAR).mean() == pytest.approx(1.7, abs=0.4)
    inv = disease.invasive
    st = stage(
        h["clinical_diameter_mm"][c],
        h["node_diameter_mm"][c],
        h["distant_diameter_mm"][c],
        inv.extensive_nodes_factor,
    )
    share = np.bincount(st, minlength=5)[1:] / c.sum()
    # symptomatic cancers before screening: about 35-45% stage I, one in eight stage III
    assert 0.30 < share[0] < 0.50 and 0.08 < share[2] < 0.20
    assert 0.03 < share[3] < 0.10  # stage IV
    # the tumour is at its clinical diameter on its clinical day and smaller before
    rows = np.flatnonzero(c)[:500]
    at = diameter_mm(h, rows, h["clinical_day"][rows])
    assert at == pytest.approx(h["clinical_diameter_mm"][rows], rel=1e-9)
    year_before = diameter_mm(h, rows, h["clinical_day"][rows] - YEAR)
    assert (year_before < at).all() and (diameter_mm(h, rows, h["onset_day"][rows] - 1) == 0).all()


def test_dcis_is_visible_for_years_and_never_surfaces(cohort):
    _, _, _, h = cohort
    now = h["has_dcis"] & (h["dcis_onset_day"] <= 0) & (h["dcis_end_day"] > 0)
    assert 0.001 < now.mean() < 0.004  # visible at a first screen: one to four per 1,000


def test_survival_by_stage_is_the_registries(cohort):
    women, disease, w, h = cohort
    rows = np.arange(N)
    five = {}
    for s in (1, 2, 3, 4):
        death = cancer_death_day(h, rows, np.full(N, s, dtype=np.int8), 0.0, disease)
        five[s] = (death > 5 * YEAR).mean()
    assert five[1] > 0.97 and 0.90 < five[2] < 0.96 and 0.70 < five[3] < 0.80
    assert 0.20 < five[4] < 0.35
    assert (cancer_death_day(h, rows, np.zeros(N, dtype=np.int8), 0.0, disease) == np.inf).all()
    # a cancer lethal at stage I is lethal at stage II (one draw per woman)
    one = cancer_death_day(h, rows, np.full(N, 1, dtype=np.int8), 0.0, disease) < np.inf
    two = cancer_death_day(h, rows, np.full(N, 2, dtype=np.int8), 0.0, disease) < np.inf
    assert (two | ~one).all()
    # other causes: about 7% of women of 60 die within ten years (Swedish life table)
    sixty = (w["age"] >= 60) & (w["age"] < 61)
    assert (h["other_death_day"][sixty] < 10 * YEAR).mean() == pytest.approx(0.07, abs=0.02)


def test_a_womans_history_is_hers_whatever_the_cohort():
    women, disease, streams = Women(), BreastDisease(), Streams(3)
    ids = np.arange(5_000, 5_100)
    w = sample_women(women, streams, ids)
    alone = sample_histories(women, disease, streams, w, YEARS)
    big = np.arange(0, 30_000)
    wb = sample_women(women, streams, big)
    together = sample_histories(women, disease, streams, wb, YEARS)
    for k, v in alone.items():
        np.testing.assert_array_equal(v, together[k][5_000:5_100], err_msg=k)


def test_benign_findings_by_age_density_and_hormones(cohort):
    from sandbox.programmes.breast_mammo.benign import MAX_FINDINGS, sample_benign

    women, disease, w, _ = cohort
    b = disease.benign
    f = sample_benign(b, Streams(3), w, YEARS)
    assert (np.bincount(f["row"], minlength=N) <= MAX_FINDINGS).all()
    g = age_group(w["age"])
    dens = np.asarray(b.density_multiplier)[w["density"]]
    at_entry = ~np.isfinite(f["appear_day"])
    for kind in range(3):
        for k in range(4):
            women_k = g == k
            scale = dens * (
                np.where(w["hormone_therapy"] == 1, b.hormone_therapy_cysts, 1.0)
                if kind == 0
                else 1.0
            )
            expected = (b.at_entry[kind][k] * scale[women_k]).sum()
            got = (at_entry & (f["kind"] == kind) & women_k[f["row"]]).sum()
            assert got == pytest.approx(expected, rel=0.05 + 4 / math.sqrt(expected))
    # cysts come and go; fibroadenomas and calcifications stay
    assert np.isfinite(f["resolve_day"][f["kind"] == 0]).all()
    assert np.isinf(f["resolve_day"][f["kind"] > 0]).all()
    new = np.isfinite(f["appear_day"])
    assert (f["appear_day"][new] >= 0).all() and (f["appear_day"][new] <= YEARS * YEAR).all()
    # dense breasts show more cysts than fatty ones, as declared
    cysts = np.bincount(f["row"][f["kind"] == 0], minlength=N)
    assert cysts[w["density"] == 3].mean() > 2 * cysts[w["density"] == 0].mean()


def test_visibility_follows_the_physics_of_a_mammogram():
    from sandbox.programmes.breast_mammo.visibility import (
        Detector,
        calcification_detectability,
        mass_detectability,
    )

    det = Detector("dm_2020")
    dens = np.arange(4)
    mass = mass_detectability(np.full(4, 15.0), dens, det)
    calc = calcification_detectability(np.full(4, 10.0), dens, det)
    # dense tissue hides masses (contrast and texture) far more than calcifications
    assert (np.diff(mass) < 0).all() and (np.diff(calc) < 0).all()
    assert mass[3] / mass[0] < 0.3 < 0.6 < calc[3] / calc[0]
    # larger masses are more visible, but in power-law noise (beta 3) only as about sqrt(size)
    small, large = mass_detectability(np.array([5.0, 20.0]), np.array([2, 2]), det)
    assert 1.5 < large / small < 2.5
    # calcifications are limited by the detector's noise; masses in dense breasts by anatomy
    quiet = Detector("low_noise", quantum_noise=0.025)
    assert calcification_detectability(10.0, 2, quiet) == pytest.approx(2 * calc[2])
    assert mass_detectability(15.0, 3, quiet) < 1.05 * mass[3]
    # a spiculated mass stands out more than a circumscribed one; nothing is seen of nothing
    assert mass_detectability(15.0, 1, det, True) > mass[1]
    assert mass_detectability(0.0, 1, det) == 0.0

"""The cohort with its disease histories, and benign nodules."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sandbox.programmes.lung_ldct.disease import (
    YEAR,
    diameter_at,
    sample_benign_nodules,
    sample_history,
)
from sandbox.programmes.lung_ldct.disease.nodules import MAX_NODULES
from sandbox.rng import Streams


@pytest.fixture(scope="module")
def history(small_cfg):
    return sample_history(small_cfg.scenario, Streams(small_cfg.seed), 2000)


def test_history_is_the_requested_size_and_eligible(history, small_cfg):
    assert len(history) == 2000
    for arr in (*history.people.values(), *history.cancer.values()):
        assert len(arr) == 2000
    assert np.all(np.diff(history.people["person_id"]) > 0)  # candidate-id order
    assert np.all(
        history.people["plcom2012_6y"] >= small_cfg.scenario.cohort.eligibility.plcom2012_threshold
    )
    # nobody enters with a lung cancer already diagnosed clinically
    assert np.all(history.cancer["clinical_day"] >= history.people["entry_day"])
    site = history.people["site"]
    assert set(np.unique(site)) <= set(range(len(small_cfg.scenario.sites)))


def test_people_with_symptoms_at_entry_are_not_enrolled(small_cfg):
    """With ``symptom_free_days`` d, nobody enrolled has a cancer that symptoms bring to
    diagnosis within d days of entry; everyone else is enrolled as before (the same people,
    in the same order, less those)."""
    scn = small_cfg.scenario
    elig = dataclasses.replace(scn.cohort.eligibility, symptom_free_days=0.0)
    base = dataclasses.replace(scn, cohort=dataclasses.replace(scn.cohort, eligibility=elig))
    wide = dataclasses.replace(
        scn,
        cohort=dataclasses.replace(
            scn.cohort, eligibility=dataclasses.replace(elig, symptom_free_days=365.0)
        ),
    )
    a = sample_history(base, Streams(small_cfg.seed), 4000)
    b = sample_history(wide, Streams(small_cfg.seed), 4000)
    lead = a.cancer["clinical_day"] - a.people["entry_day"]
    assert np.any(lead < 365.0)  # some would surface within the year
    assert np.all(b.cancer["clinical_day"] - b.people["entry_day"] >= 365.0)
    kept = a.people["person_id"][lead >= 365.0]
    np.testing.assert_array_equal(b.people["person_id"][: len(kept)], kept)


def test_a_symptom_tail_keeps_fewer_of_those_whose_cancer_surfaces_soon(small_cfg):
    """With ``symptom_free_tail_days`` τ beyond the window, a candidate whose cancer would
    surface t days after it enrols with probability 1 - exp(-t / τ): fewer cancers surfacing in
    the first year enrol, in proportion, than surfacing later, and nobody within the window."""
    scn = small_cfg.scenario

    def cohort(tail: float):
        elig = dataclasses.replace(
            scn.cohort.eligibility, symptom_free_days=30.0, symptom_free_tail_days=tail
        )
        s = dataclasses.replace(scn, cohort=dataclasses.replace(scn.cohort, eligibility=elig))
        h = sample_history(s, Streams(small_cfg.seed), 20000)
        lead = (h.cancer["clinical_day"] - h.people["entry_day"]) / YEAR
        return lead[np.isfinite(lead)]

    hard, soft = cohort(0.0), cohort(365.0)
    assert soft.min() >= 30.0 / YEAR
    first = lambda lead: np.mean(lead < 1.0)  # noqa: E731
    later = lambda lead: np.mean((lead >= 3.0) & (lead < 6.0))  # noqa: E731
    assert first(soft) < 0.75 * first(hard)  # about 0.5 expected over the first year
    assert later(soft) > 0.9 * later(hard)  # exp(-3) and beyond: barely touched


def test_bigger_cohort_extends_smaller_one(small_cfg, history):
    big = sample_history(small_cfg.scenario, Streams(small_cfg.seed), 3000)
    for k, v in history.people.items():
        np.testing.assert_array_equal(big.people[k][:2000], v)
    for k, v in history.cancer.items():
        np.testing.assert_array_equal(big.cancer[k][:2000], v)


def test_nodule_index_is_aligned(history):
    start, nod = history.nodule_start, history.nodules
    assert start[0] == 0 and start[-1] == len(nod["row"])
    for i in (0, 1, 17, 999, 1999):
        assert np.all(nod["row"][start[i] : start[i + 1]] == i)


def test_cancer_diameter_matches_diameter_at(history):
    rows = np.flatnonzero(history.cancer["has_cancer"])[:20]
    assert len(rows) > 0
    for r in rows:
        onset, vdt = history.cancer["onset_day"][r], history.cancer["vdt_days"][r]
        for day in (onset - 1, onset, onset + 100, onset + 1000):
            expected = float(diameter_at(np.array(day), onset, vdt, history.onset_diameter_mm))
            assert history.cancer_diameter(r, day) == pytest.approx(expected, rel=1e-12)


def test_benign_nodule_counts_and_sizes(small_cfg):
    benign = dataclasses.replace(
        small_cfg.scenario.disease.benign, mean_count_at_start=1.3, new_per_year=0.4
    )
    n = 40_000
    horizon = 5 * YEAR
    nod = sample_benign_nodules(benign, Streams(6), np.arange(n), horizon)
    prevalent = np.isinf(nod["appear_day"])
    per_person_start = np.bincount(nod["row"][prevalent], minlength=n)
    per_person_new = np.bincount(nod["row"][~prevalent], minlength=n)
    assert per_person_start.max() <= MAX_NODULES and per_person_new.max() <= MAX_NODULES
    assert per_person_start.mean() == pytest.approx(1.3, abs=5 * math.sqrt(1.3 / n))
    assert per_person_new.mean() == pytest.approx(0.4 * 5, abs=5 * math.sqrt(2.0 / n))
    assert per_person_start.var() == pytest.approx(1.3, rel=0.05)  # Poisson: variance = mean
    new = nod["appear_day"][~prevalent]
    assert new.min() >= 0 and new.max() <= horizon
    assert np.all((nod["size_mm"] >= 1) & (nod["size_mm"] <= 30))
    assert np.median(nod["size_mm"]) == pytest.approx(benign.size_median_mm, rel=0.03)
    resolving = np.isfinite(nod["resolve_day"])
    assert resolving.mean() == pytest.approx(benign.resolving_fraction, abs=0.01)
    start = np.where(prevalent, 0.0, nod["appear_day"])
    assert np.all(nod["resolve_day"][resolving] >= start[resolving])
    assert np.isfinite(nod["vdt_days"]).mean() == pytest.approx(benign.growing_fraction, abs=0.005)
    assert np.all(np.diff(nod["row"]) >= 0)  # sorted by person

"""Candidate people and screening eligibility.

Every attribute of candidate ``i`` is drawn from keyed streams indexed by ``i``, so the same
candidate has the same attributes whatever the cohort size or shard.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from sandbox.programmes.lung_ldct.cohort.plcom2012 import RACE_COEF, plcom2012_risk
from sandbox.programmes.lung_ldct.config import RACES, Cohort
from sandbox.rng import Streams

AGE_BANDS = ((50, 55), (55, 60), (60, 65), (65, 70), (70, 75), (75, 81))


def _categorical(u: np.ndarray, shares) -> np.ndarray:
    p = np.asarray(shares, dtype=float)
    cdf = np.cumsum(p / p.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(p) - 1)


def age_band(age: np.ndarray) -> np.ndarray:
    """Age band labels ('50-54', ..., '75+') as an array of str."""
    labels = np.array([f"{lo}-{hi - 1}" if hi < 81 else f"{lo}+" for lo, hi in AGE_BANDS])
    idx = np.clip(np.searchsorted([b[1] for b in AGE_BANDS], age, side="right"), 0, len(labels) - 1)
    return labels[idx]


def sample_candidates(cohort: Cohort, streams: Streams, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Risk-factor profile of candidates ``ids`` (all ever-smokers), with eligibility.

    Returns a dict of equal-length arrays: ``person_id``, ``age``, ``female``, ``race`` (index
    into :data:`~sandbox.programmes.lung_ldct.config.RACES`), ``education`` (1-6), ``bmi``, ``copd``,
    ``personal_cancer_history``, ``family_history``, ``current_smoker``, ``cigs_per_day``,
    ``years_smoked``, ``years_since_quit``, ``pack_years``, ``plcom2012_6y`` and ``eligible``.
    """
    pop = cohort.population
    u = lambda name: streams.uniform(f"cohort.{name}", ids)  # noqa: E731
    if pop.age_band_shares:  # five-year bands from age.min, then a year within the band
        band = _categorical(u("age"), pop.age_band_shares)
        lo = pop.age.min + 5 * band
        width = np.minimum(lo + 5, pop.age.max + 1) - lo
        age = np.floor(lo + u("age_year") * width).clip(pop.age.min, pop.age.max)
    else:
        age = np.floor(pop.age.min + u("age") * (pop.age.max - pop.age.min + 1)).clip(
            pop.age.min, pop.age.max
        )
    female = (u("sex") < pop.female).astype(np.int8)
    race_names = list(pop.race)
    race_local = _categorical(u("race"), [pop.race[r] for r in race_names])
    race = np.array([RACES.index(r) for r in race_names], dtype=np.int8)[race_local]
    education = (_categorical(u("education"), pop.education) + 1).astype(np.int8)
    bmi = np.clip(pop.bmi_mean + pop.bmi_sd * ndtri(u("bmi")), 15.0, 60.0)
    copd = (u("copd") < pop.copd).astype(np.int8)
    pch = (u("personal_cancer") < pop.personal_cancer_history).astype(np.int8)
    fh = (u("family_history") < pop.family_history).astype(np.int8)
    current = (u("current_smoker") < pop.current_smoker).astype(np.int8)
    cpd = np.clip(
        pop.cigs_per_day_median * np.exp(pop.cigs_per_day_sigma * ndtri(u("cpd"))), 2.0, 80.0
    )
    start = np.clip(
        pop.smoking_start_age_mean + pop.smoking_start_age_sd * ndtri(u("start_age")),
        10.0,
        age - 5.0,
    )
    span = np.maximum(age - start, 1.0)
    quit_years = np.where(
        current == 1, 0.0, np.minimum(-pop.years_since_quit_mean * np.log(u("quit")), span - 1.0)
    )
    quit_years = np.maximum(quit_years, 0.0)
    years_smoked = np.maximum(span - quit_years, 1.0)
    pack_years = cpd / 20.0 * years_smoked
    race_coef = np.array([RACE_COEF[r] for r in RACES])[race]
    risk = plcom2012_risk(
        age, education, bmi, copd, pch, fh, race_coef, current, cpd, years_smoked, quit_years
    )
    rule = cohort.eligibility.rule
    if rule == "plcom2012":
        eligible = risk >= cohort.eligibility.plcom2012_threshold
    elif rule == "uspstf2021":
        eligible = (age >= 50) & (age <= 80) & (pack_years >= 20) & (quit_years <= 15)
    else:  # nlst
        eligible = (age >= 55) & (age <= 74) & (pack_years >= 30) & (quit_years <= 15)
    return {
        "person_id": ids.astype(np.int64),
        "age": age,
        "female": female,
        "race": race,
        "education": education,
        "bmi": bmi,
        "copd": copd,
        "personal_cancer_history": pch,
        "family_history": fh,
        "current_smoker": current,
        "cigs_per_day": cpd,
        "years_smoked": years_smoked,
        "years_since_quit": quit_years,
        "pack_years": pack_years,
        "plcom2012_6y": risk,
        "eligible": eligible,
    }


def assign_sites(streams: Streams, ids: np.ndarray, shares) -> np.ndarray:
    """Site index of each person, by the scenario's site shares."""
    return _categorical(streams.uniform("cohort.site", ids), shares).astype(np.int16)

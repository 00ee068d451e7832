"""Per-person outcomes: how and when each cancer was diagnosed, at what stage, and who died of what."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from sandbox.config import Scenario
from sandbox.programmes.base import DIAGNOSIS_MODES, diagnosis_modes
from sandbox.programmes.lung_ldct.cohort import age_band
from sandbox.programmes.lung_ldct.config import RACES, STAGES
from sandbox.programmes.lung_ldct.disease.history import LungCohort
from sandbox.programmes.lung_ldct.disease.natural_history import YEAR

DEATH_CAUSES = ("alive", "lung_cancer", "other")
# how a cancer surfaces without screening (natural_history.sample_cancers' clinical_route)
CLINICAL_ROUTES = ("none", "symptoms", "metastatic_symptoms", "incidental")

PEOPLE_SCHEMA = {
    "person_id": pl.Int64,
    "site": pl.Int16,
    "sex": pl.Enum(["F", "M"]),
    "race": pl.Enum(list(RACES)),
    "age_band": pl.Utf8,
    "smoking": pl.Enum(["current", "former"]),
    "age": pl.Float64,
    "pack_years": pl.Float64,
    "plcom2012_6y": pl.Float64,
    "entry_day": pl.Float64,
    "end_day": pl.Float64,
    "has_cancer": pl.Boolean,
    "histology": pl.Utf8,
    "indolent": pl.Boolean,
    "onset_day": pl.Float64,
    "clinical_day": pl.Float64,
    "clinical_route": pl.Enum(list(CLINICAL_ROUTES)),
    "diagnosis_day": pl.Float64,
    "diagnosis_mode": pl.Enum(list(DIAGNOSIS_MODES)),
    "diagnosis_round": pl.Int16,
    "stage": pl.Utf8,
    "death_day": pl.Float64,
    "death_cause": pl.Enum(list(DEATH_CAUSES)),
    "person_years": pl.Float64,
    "overdiagnosed": pl.Boolean,
    "lifetime_death_day": pl.Float64,
    "other_cause_death_day": pl.Float64,
    "lifetime_death_cause": pl.Enum(list(DEATH_CAUSES)),
    "lifetime_years": pl.Float64,
    "lifetime_diagnosis_day": pl.Float64,
    "lifetime_stage": pl.Utf8,
}


def subgroup_labels(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each person's subgroup labels (``sex``, ``race``, ``age_band``, ``smoking``) from the
    cohort's ``people`` arrays."""
    return {
        "sex": np.where(p["female"] == 1, "F", "M"),
        "race": np.array(RACES)[p["race"]],
        "age_band": age_band(p["age"]),
        "smoking": np.where(p["current_smoker"] == 1, "current", "former"),
    }


def resolve_people(
    scenario: Scenario,
    history: LungCohort,
    screen_dx_day: np.ndarray,
    screen_dx_stage: np.ndarray,
    screens: pl.DataFrame,
) -> pl.DataFrame:
    """Combine natural history with what screening did, one row per person.

    ``screens`` holds the screening exams (person_id, round, exam_day). A cancer is
    *screen-detected* if its screening work-up ends before symptoms would have surfaced,
    an *interval* cancer if diagnosed clinically within the interval window after a screen of
    that person that did not diagnose it, *after_screening* if diagnosed clinically later than
    that window after the person's last screen (the programme's end, or rounds missed), and
    *not_screened* if before the person's first screen.
    """
    p, c = history.people, history.cancer
    n = len(history)
    entry, end = p["entry_day"], p["end_day"]  # each person's follow-up window
    window = scenario.programme.interval_cancer_window_years * YEAR
    clinical = c["clinical_day"]
    other = c["other_death_day"]
    dx_screen_first = screen_dx_day < clinical
    dx_day = np.where(dx_screen_first, screen_dx_day, clinical)
    diagnosed = c["has_cancer"] & (dx_day < np.minimum(other, end))
    dx_day = np.where(diagnosed, dx_day, np.inf)

    mode, dx_round = diagnosis_modes(
        p["person_id"], diagnosed, dx_day, dx_screen_first, screens, window
    )
    stage = np.full(n, "", dtype=object)
    death = other.copy()
    cause = np.where(other < end, 2, 0).astype(np.int8)
    lc_life = np.full(n, np.inf)
    disease = scenario.disease

    def lc_death(i: int, st: str, day: float) -> float:
        return history.cancer_death_day(i, st, day, disease)

    for i in np.flatnonzero(diagnosed):
        st = STAGES[screen_dx_stage[i]] if dx_screen_first[i] else STAGES[c["clinical_stage"][i]]
        stage[i] = st
        lc = lc_life[i] = lc_death(i, st, float(dx_day[i]))
        if lc < min(other[i], end[i]):
            death[i], cause[i] = lc, 1
    later = c["has_cancer"] & ~diagnosed & (clinical < other)
    life_dx = np.where(diagnosed, dx_day, np.where(later, clinical, np.nan))
    life_stage = stage.copy()
    for i in np.flatnonzero(later):
        life_stage[i] = STAGES[c["clinical_stage"][i]]
        lc_life[i] = lc_death(i, life_stage[i], float(clinical[i]))
    life_death = np.minimum(other, lc_life)
    death = np.where(cause > 0, death, np.inf)
    person_years = (np.minimum(death, end) - entry) / YEAR
    hist_names = np.array(["adenocarcinoma", "squamous", "small_cell", "other"])
    return pl.DataFrame(
        {
            "person_id": p["person_id"],
            "site": p["site"],
            **subgroup_labels(p),
            "age": p["age"],
            "pack_years": p["pack_years"],
            "plcom2012_6y": p["plcom2012_6y"],
            "entry_day": entry,
            "end_day": end,
            "has_cancer": c["has_cancer"],
            "histology": np.where(c["has_cancer"], hist_names[c["histology"]], ""),
            "indolent": c["indolent"],
            "onset_day": c["onset_day"],
            "clinical_day": clinical,
            "clinical_route": np.array(CLINICAL_ROUTES)[c["clinical_route"]],
            "diagnosis_day": np.where(diagnosed, dx_day, math.nan),
            "diagnosis_mode": np.array(DIAGNOSIS_MODES)[mode],
            "diagnosis_round": dx_round,
            "stage": stage.astype(str),
            "death_day": np.where(np.isfinite(death), death, math.nan),
            "death_cause": np.array(DEATH_CAUSES)[cause],
            "person_years": person_years,
            # found by screening, and would not have surfaced before death from another cause
            "overdiagnosed": (mode == 1) & (clinical >= other),
            "lifetime_death_day": life_death,
            # the day the person would die of anything else (no follow-up cut)
            "other_cause_death_day": other,
            "lifetime_death_cause": np.array(DEATH_CAUSES)[np.where(lc_life < other, 1, 2)],
            "lifetime_years": (life_death - entry) / YEAR,
            # a lifetime's diagnosis: in follow-up as above, else on the clinical day
            "lifetime_diagnosis_day": life_dx,
            "lifetime_stage": life_stage.astype(str),
        },
        schema=PEOPLE_SCHEMA,
    ).with_columns(
        pl.col("diagnosis_day", "death_day", "lifetime_diagnosis_day").fill_nan(None),
        pl.col("stage", "lifetime_stage").replace("", None),
    )

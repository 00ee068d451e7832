"""The lung programme's own metrics: Lung-RADS shares, lung cancers by stage, lung cancer deaths.

They join the metrics every programme reports (:data:`sandbox.outcomes.metrics.METRICS`);
docs/metrics.md documents each name.
"""

from __future__ import annotations

import polars as pl

from sandbox.outcomes.metrics import Metric
from sandbox.programmes.lung_ldct.config import STAGES
from sandbox.programmes.lung_ldct.lung_rads import CATEGORIES

STAGE_SHIFT = {STAGES[0]: "higher", STAGES[-1]: "lower"}
"""Screening works by a stage shift: more cancers found at the earliest stage, fewer at the
latest (the middle stages have no better direction)."""


def definitions() -> dict[str, list[Metric]]:
    """Screen and people metrics, by the view they are computed on."""
    screen = [
        Metric(
            f"lung_rads_{c}_share",
            "proportion",
            f"screens reported as Lung-RADS {c} / screens",
            f"lr_{c}",
            "screens",
        )
        for c in CATEGORIES
    ]
    people = [
        Metric(
            "lung_cancers_diagnosed",
            "count",
            "lung cancers diagnosed by any route within each person's follow-up",
            "diagnosed",
        ),
        *[
            Metric(
                f"stage_{s}_share",
                "proportion",
                f"diagnosed lung cancers at stage {s} / all diagnosed",
                f"dx_stage_{s}",
                "diagnosed",
                better=STAGE_SHIFT.get(s, ""),
            )
            for s in STAGES
        ],
        Metric(
            "overdiagnosed_cancers",
            "count",
            "screen-detected lung cancers that would not have surfaced before the person's death "
            "from another cause (lifetime overdiagnosis)",
            "overdiagnosed",
            better="lower",
        ),
        Metric(
            "lung_cancer_deaths",
            "count",
            "deaths from lung cancer within each person's follow-up",
            "lc_deaths",
            better="lower",
        ),
        Metric(
            "lung_cancer_incidence_per_100k_person_years",
            "per_100k_py",
            "lung cancers diagnosed per 100,000 person-years (incidence in the arm, screen-detected "
            "and clinical)",
            "diagnosed",
            "person_years",
        ),
        Metric(
            "all_cause_deaths",
            "count",
            "deaths from any cause within each person's follow-up",
            "deaths",
            better="lower",
        ),
        Metric(
            "all_cause_deaths_per_100k_person_years",
            "per_100k_py",
            "deaths from any cause per 100,000 person-years",
            "deaths",
            "person_years",
            better="lower",
        ),
        Metric(
            "lifetime_lung_cancer_deaths",
            "count",
            "deaths from lung cancer over each person's lifetime (no follow-up cut; a cancer "
            "not diagnosed in follow-up is diagnosed on its clinical day)",
            "lc_deaths_life",
            better="lower",
        ),
        Metric(
            "lifetime_life_years",
            "sum",
            "years lived from entry to death, over each person's lifetime (the horizon of a "
            "lifetime health-economic evaluation)",
            "lifetime_years",
            better="higher",
        ),
        Metric(
            "lung_cancer_deaths_per_100k_person_years",
            "per_100k_py",
            "lung cancer deaths per 100,000 person-years",
            "lc_deaths",
            "person_years",
            better="lower",
        ),
    ]
    return {"screen": screen, "people": people}


def screen_aggregations() -> list[pl.Expr]:
    return [(pl.col("lung_rads") == c).sum().alias(f"lr_{c}") for c in CATEGORIES]


def people_aggregations() -> list[pl.Expr]:
    return [
        pl.col("diagnosis_day").is_not_null().sum().alias("diagnosed"),
        *[(pl.col("stage") == s).sum().alias(f"dx_stage_{s}") for s in STAGES],
        (pl.col("death_cause") == "lung_cancer").sum().alias("lc_deaths"),
        (pl.col("death_cause") != "alive").sum().alias("deaths"),
        (pl.col("lifetime_death_cause") == "lung_cancer").sum().alias("lc_deaths_life"),
        pl.col("lifetime_years").sum().alias("lifetime_years"),
        (pl.col("lifetime_years") ** 2).sum().alias("lifetime_years_sq"),
        pl.col("overdiagnosed").sum().alias("overdiagnosed"),
    ]

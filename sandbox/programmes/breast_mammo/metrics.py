"""The breast programme's own metrics: BI-RADS report shares, cancers by kind and stage,
breast cancer deaths.

They join the metrics every programme reports (:data:`sandbox.outcomes.metrics.METRICS`);
docs/metrics.md documents each name.
"""

from __future__ import annotations

import polars as pl

from sandbox.outcomes.metrics import Metric
from sandbox.programmes.breast_mammo.config import STAGES
from sandbox.programmes.breast_mammo.reading import CATEGORIES

ADVANCED = STAGES[2:]  # II-IV: the stages screening aims to make rarer


def definitions() -> dict[str, list[Metric]]:
    """Screen and people metrics, by the view they are computed on."""
    screen = [
        Metric(
            f"bi_rads_{c}_share",
            "proportion",
            f"screens reported BI-RADS {c} / screens",
            f"br_{c}",
            "screens",
        )
        for c in CATEGORIES
    ]
    screen += [
        Metric(
            "dcis_share_screen_detected",
            "proportion",
            "screen-detected cancers that are DCIS (stage 0) / screen-detected cancers",
            "sd_stage_0",
            "screen_detected",
        ),
    ]
    people = [
        Metric(
            "breast_cancers_diagnosed",
            "count",
            "breast cancers (invasive or DCIS) diagnosed by any route within each woman's follow-up",
            "diagnosed",
        ),
        *[
            Metric(
                f"breast_stage_{s}_share",
                "proportion",
                f"diagnosed breast cancers at stage {s} / all diagnosed",
                f"dx_stage_{s}",
                "diagnosed",
            )
            for s in STAGES
        ],
        Metric(
            "invasive_stage_II_plus_share",
            "proportion",
            "diagnosed invasive cancers at stage II or later / diagnosed invasive cancers",
            "dx_advanced",
            "dx_invasive",
            better="lower",
        ),
        Metric(
            "overdiagnosed_cancers",
            "count",
            "screen-detected cancers (DCIS included) that would not have surfaced before the "
            "woman's death from another cause (lifetime overdiagnosis)",
            "overdiagnosed",
            better="lower",
        ),
        Metric(
            "breast_cancer_deaths",
            "count",
            "deaths from breast cancer within each woman's follow-up",
            "bc_deaths",
            better="lower",
        ),
        Metric(
            "all_cause_deaths",
            "count",
            "deaths from any cause within each woman's follow-up",
            "deaths",
            better="lower",
        ),
        Metric(
            "lifetime_breast_cancer_deaths",
            "count",
            "deaths from breast cancer over each woman's lifetime (an invasive cancer not "
            "diagnosed in follow-up is diagnosed on its clinical day)",
            "bc_deaths_life",
            better="lower",
        ),
        Metric(
            "lifetime_life_years",
            "sum",
            "years lived from entry to death, over each woman's lifetime",
            "lifetime_years",
            better="higher",
        ),
    ]
    return {"screen": screen, "people": people}


def screen_aggregations() -> list[pl.Expr]:
    return [(pl.col("bi_rads") == c).sum().alias(f"br_{c}") for c in CATEGORIES]


def people_aggregations() -> list[pl.Expr]:
    return [
        pl.col("diagnosis_day").is_not_null().sum().alias("diagnosed"),
        *[(pl.col("stage") == s).sum().alias(f"dx_stage_{s}") for s in STAGES],
        pl.col("stage").is_in(list(ADVANCED)).sum().alias("dx_advanced"),
        pl.col("stage").is_in(list(STAGES[1:])).sum().alias("dx_invasive"),
        (pl.col("death_cause") == "breast_cancer").sum().alias("bc_deaths"),
        (pl.col("death_cause") != "alive").sum().alias("deaths"),
        (pl.col("lifetime_death_cause") == "breast_cancer").sum().alias("bc_deaths_life"),
        pl.col("lifetime_years").sum().alias("lifetime_years"),
        (pl.col("lifetime_years") ** 2).sum().alias("lifetime_years_sq"),
        pl.col("overdiagnosed").sum().alias("overdiagnosed"),
    ]

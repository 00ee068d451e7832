"""Screening populations: risk factors, eligibility, subgroups, sites."""

from sandbox.programmes.lung_ldct.cohort.plcom2012 import RACE_COEF, plcom2012_risk
from sandbox.programmes.lung_ldct.cohort.population import (
    AGE_BANDS,
    age_band,
    assign_sites,
    sample_candidates,
)

__all__ = [
    "AGE_BANDS",
    "RACE_COEF",
    "age_band",
    "assign_sites",
    "plcom2012_risk",
    "sample_candidates",
]

"""Disease natural history, independent of any policy."""

from sandbox.programmes.lung_ldct.disease.history import LungCohort, sample_history
from sandbox.programmes.lung_ldct.disease.natural_history import (
    YEAR,
    clinical_time_after_onset,
    diameter_at,
    lung_cancer_death_day,
    onset_hazard_per_year,
    other_cause_death_day,
    sample_cancers,
    stage_at,
    survival_5y_at,
    time_to_diameter,
)
from sandbox.programmes.lung_ldct.disease.nodules import sample_benign_nodules

__all__ = [
    "YEAR",
    "LungCohort",
    "clinical_time_after_onset",
    "diameter_at",
    "lung_cancer_death_day",
    "survival_5y_at",
    "onset_hazard_per_year",
    "other_cause_death_day",
    "sample_benign_nodules",
    "sample_cancers",
    "sample_history",
    "stage_at",
    "time_to_diameter",
]

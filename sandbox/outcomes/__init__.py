"""From a run's records to metrics with intervals."""

from sandbox.outcomes.intervals import garwood, mean_ci, quantile_ci, wilson
from sandbox.outcomes.metrics import METRICS, METRICS_SCHEMA, Metric, compute_metrics
from sandbox.outcomes.people import DIAGNOSIS_MODES, PEOPLE_SCHEMA, resolve_people

__all__ = [
    "DIAGNOSIS_MODES",
    "METRICS",
    "METRICS_SCHEMA",
    "PEOPLE_SCHEMA",
    "Metric",
    "compute_metrics",
    "garwood",
    "mean_ci",
    "quantile_ci",
    "resolve_people",
    "wilson",
]

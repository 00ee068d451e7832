"""From a run's records to metrics with intervals."""

from sandbox.outcomes.intervals import garwood, mean_ci, quantile_ci, wilson
from sandbox.outcomes.metrics import (
    METRICS,
    METRICS_SCHEMA,
    Metric,
    compute_metrics,
    metric_catalogue,
)

__all__ = [
    "METRICS",
    "METRICS_SCHEMA",
    "Metric",
    "compute_metrics",
    "garwood",
    "mean_ci",
    "metric_catalogue",
    "quantile_ci",
    "wilson",
]

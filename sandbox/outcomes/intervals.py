"""95% intervals: Wilson for proportions, Garwood (exact Poisson) for counts and rates,
distribution-free order statistics for quantiles, normal approximation for sums."""

from __future__ import annotations

import numpy as np
from scipy.stats import binom, chi2, norm

Z = float(norm.ppf(0.975))


def wilson(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) of k/n; NaN where n is 0."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + Z * Z / n
        centre = (p + Z * Z / (2 * n)) / denom
        half = Z * np.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return p, np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def garwood(
    k: np.ndarray, exposure: np.ndarray | float = 1.0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rate, low, high) for a Poisson count ``k`` over ``exposure``, times ``scale``."""
    k = np.asarray(k, dtype=float)
    e = np.asarray(exposure, dtype=float)
    lo = np.where(k > 0, chi2.ppf(0.025, 2 * k) / 2, 0.0)
    hi = chi2.ppf(0.975, 2 * k + 2) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return k / e * scale, lo / e * scale, hi / e * scale


def quantile_ci(values: np.ndarray, q: float) -> tuple[float, float, float]:
    """(quantile, low, high) with order-statistic bounds (binomial coverage >= 95% where the
    sample is large enough; otherwise the bounds fall back to the sample minimum or maximum)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return (np.nan, np.nan, np.nan)
    est = float(np.quantile(x, q))
    lo_rank = int(binom.ppf(0.025, n, q))
    hi_rank = int(binom.ppf(0.975, n, q)) + 1
    lo = float(x[max(lo_rank - 1, 0)]) if lo_rank >= 1 else float(x[0])
    hi = float(x[min(hi_rank - 1, n - 1)])
    return est, min(lo, est), max(hi, est)


def mean_ci(total: float, sumsq: float, n: int) -> tuple[float, float, float]:
    """(sum, low, high) of a sum of ``n`` i.i.d. values, by the normal approximation."""
    if n == 0:
        return (0.0, 0.0, 0.0)
    mean = total / n
    var = max(sumsq / n - mean * mean, 0.0)
    half = Z * np.sqrt(var * n)
    return total, total - half, total + half

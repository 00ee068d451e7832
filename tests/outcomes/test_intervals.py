"""95% intervals: contain their estimate, and cover at the nominal rate (exact computations)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sandbox.outcomes import garwood, mean_ci, quantile_ci, wilson


@given(data=st.data(), n=st.integers(1, 100_000))
def test_wilson_contains_estimate(data, n):
    k = data.draw(st.integers(0, n))
    p, lo, hi = wilson(np.array([k]), np.array([n]))
    assert 0.0 <= lo[0] <= p[0] + 1e-12 and p[0] - 1e-12 <= hi[0] <= 1.0
    assert lo[0] < hi[0]


def test_wilson_of_empty_denominator_is_nan():
    p, lo, hi = wilson(np.array([0]), np.array([0]))
    assert np.isnan(p[0])


@given(
    k=st.integers(0, 100_000),
    exposure=st.floats(0.1, 1e7),
    scale=st.sampled_from([1.0, 1000.0, 1e5]),
)
def test_garwood_contains_estimate(k, exposure, scale):
    v, lo, hi = garwood(np.array([k]), exposure, scale)
    assert 0.0 <= lo[0] <= v[0] * (1 + 1e-12) and v[0] <= hi[0] * (1 + 1e-12)
    assert v[0] == pytest.approx(k / exposure * scale)


@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
    q=st.sampled_from([0.1, 0.5, 0.9, 0.95]),
)
def test_quantile_interval_contains_estimate(values, q):
    est, lo, hi = quantile_ci(np.array(values), q)
    assert lo <= est <= hi
    assert min(values) <= lo and hi <= max(values)


def test_quantile_of_nothing_is_nan():
    assert all(np.isnan(quantile_ci(np.array([]), 0.5)))


@pytest.mark.parametrize("p, n", [(0.05, 200), (0.3, 50), (0.5, 1000)])
def test_wilson_coverage_is_close_to_95_percent(p, n):
    k = np.arange(n + 1)
    _, lo, hi = wilson(k, np.full(n + 1, n))
    coverage = stats.binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum()
    assert 0.92 <= coverage <= 0.99


@pytest.mark.parametrize("mu", [0.5, 3.0, 25.0, 400.0])
def test_garwood_coverage_is_at_least_95_percent(mu):
    k = np.arange(int(mu + 20 * np.sqrt(mu) + 30))
    _, lo, hi = garwood(k)
    coverage = stats.poisson.pmf(k, mu)[(lo <= mu) & (mu <= hi)].sum()
    assert coverage >= 0.95 - 1e-9


def test_quantile_interval_coverage_by_simulation():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        x = rng.exponential(size=120)
        _, lo, hi = quantile_ci(x, 0.5)
        hits += lo <= np.log(2) <= hi
    assert hits / 400 >= 0.92


def test_mean_ci_of_a_sum():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    total, lo, hi = mean_ci(x.sum(), (x**2).sum(), len(x))
    assert total == 10.0 and lo < total < hi
    assert hi - total == pytest.approx(1.959963984540054 * np.sqrt(x.var() * len(x)))
    assert mean_ci(0.0, 0.0, 0) == (0.0, 0.0, 0.0)

"""Keyed random streams: every number is a pure function of (seed, stream, person, index)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sandbox.rng import Streams, declare_streams, stream_key, uniform, uniform_scalar

# streams these tests draw from, declared as every stream must be
declare_streams({n: "rng tests" for n in ("a", "b", "e", "g", "x", "y", "z", "moments")})

N = 200_000
ids = st.integers(min_value=0, max_value=2**62)
small_index = st.integers(min_value=0, max_value=2**40)


def test_same_seed_same_numbers():
    a, b = Streams(42), Streams(42)
    p = np.arange(1000)
    np.testing.assert_array_equal(a.uniform("x", p, 3), b.uniform("x", p, 3))
    assert a.key("x") == b.key("x") == stream_key(42, "x")


def test_different_seed_or_stream_different_numbers():
    p = np.arange(1000)
    base = Streams(1).uniform("x", p)
    assert not np.array_equal(base, Streams(2).uniform("x", p))
    assert not np.array_equal(base, Streams(1).uniform("y", p))
    assert not np.array_equal(base, Streams(1).uniform("x", p, 1))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**63 - 1),
    person=ids,
    index=small_index,
    stream=st.text(min_size=1, max_size=20),
)
def test_scalar_is_bit_identical_to_vectorised(seed, person, index, stream):
    stream = f"test.{stream}"
    s = Streams(seed)
    vec = s.uniform(stream, np.array([person]), np.array([index]))[0]
    assert s.u(stream, person, index) == vec  # exact, not approximate
    assert uniform_scalar(s.key(stream), person, index) == uniform(s.key(stream), person, index)


@settings(max_examples=100, deadline=None)
@given(person=ids, index=small_index)
def test_uniform_strictly_inside_unit_interval(person, index):
    u = Streams(0).u("x", person, index)
    assert 0.0 < u < 1.0


def test_uniform_moments_and_distribution():
    u = Streams(7).uniform("moments", np.arange(N))
    se_mean = np.sqrt(1 / 12 / N)
    assert abs(u.mean() - 0.5) < 5 * se_mean
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / N)  # var of (U - 1/2)^2 is 1/180
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    counts, _ = np.histogram(u, bins=50, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 1e-3


def test_normal_and_exponential_moments():
    s = Streams(8)
    z = s.normal("z", np.arange(N))
    e = s.exponential("e", np.arange(N))
    assert abs(z.mean()) < 5 / np.sqrt(N)
    assert abs(z.std() - 1) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(e.mean() - 1) < 5 / np.sqrt(N)
    assert stats.kstest(e, "expon").pvalue > 1e-3


def test_streams_and_neighbouring_persons_are_uncorrelated():
    s = Streams(9)
    p = np.arange(N)
    a, b = s.uniform("a", p), s.uniform("b", p)
    tol = 5 / np.sqrt(N)
    assert abs(np.corrcoef(a, b)[0, 1]) < tol  # two streams, same person
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < tol  # same stream, adjacent persons
    i0, i1 = s.uniform("a", p, 0), s.uniform("a", p, 1)
    assert abs(np.corrcoef(i0, i1)[0, 1]) < tol  # same stream, adjacent indices
    assert abs(stats.spearmanr(a, b).statistic) < tol


def test_index_grid_broadcasts_like_separate_draws():
    s = Streams(3)
    p = np.arange(50)[:, None]
    j = np.arange(7)[None, :]
    grid = s.uniform("g", p, j)
    assert grid.shape == (50, 7)
    for k in range(7):
        np.testing.assert_array_equal(grid[:, k], s.uniform("g", np.arange(50), k))


def test_shard_invariance():
    s = Streams(5)
    ids_all = np.arange(10_000, 20_000)
    whole = s.uniform("cohort.age", ids_all)
    halves = np.concatenate(
        [s.uniform("cohort.age", ids_all[:3333]), s.uniform("cohort.age", ids_all[3333:])]
    )
    np.testing.assert_array_equal(whole, halves)
    shuffled = np.random.default_rng(0).permutation(ids_all)
    np.testing.assert_array_equal(
        s.uniform("cohort.age", shuffled),
        Streams(5).uniform("cohort.age", ids_all)[shuffled - 10_000],
    )


def test_generator_is_keyed_and_repeatable():
    s = Streams(4)
    a = s.generator("reader", 0, 1).standard_normal(5)
    np.testing.assert_array_equal(a, Streams(4).generator("reader", 0, 1).standard_normal(5))
    assert not np.array_equal(a, s.generator("reader", 0, 2).standard_normal(5))
    assert not np.array_equal(a, Streams(5).generator("reader", 0, 1).standard_normal(5))


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
def test_extreme_seeds_work(seed):
    u = Streams(seed).uniform("x", np.arange(10))
    assert np.all((u > 0) & (u < 1))


def test_undeclared_streams_are_refused():
    with pytest.raises(KeyError, match="not declared"):
        Streams(1).u("nobody.declared.this", 1)


def test_exam_keys_refuse_overflow_instead_of_reusing_draws():
    from sandbox.rng import EXAMS_PER_ROUND, READ_SLOTS, exam_key, item_key, read_key

    keys = {
        read_key(exam_key(r, s), slot, k)
        for r in range(3)
        for s in range(EXAMS_PER_ROUND)
        for slot in range(READ_SLOTS)
        for k in (0, 15, 63)
    }
    assert len(keys) == 3 * EXAMS_PER_ROUND * READ_SLOTS * 3  # all distinct
    with pytest.raises(OverflowError, match="at most 32 exams"):
        exam_key(0, EXAMS_PER_ROUND)  # the 33rd exam of a round
    with pytest.raises(OverflowError, match="read slots"):
        read_key(exam_key(0, 0), READ_SLOTS)  # a fifth read slot
    with pytest.raises(OverflowError):
        item_key(exam_key(0, 0), 64)

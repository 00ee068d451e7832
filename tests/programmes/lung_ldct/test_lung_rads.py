"""Lung-RADS v2022 categories and management, and the NLST positivity rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.programmes.lung_ldct.lung_rads import (
    CATEGORIES,
    management,
    nlst_positive,
    nodule_category,
)

C = {c: i for i, c in enumerate(CATEGORIES)}
sizes = st.floats(min_value=0.5, max_value=60, allow_nan=False)
STATUSES = ("baseline", "new", "growing", "stable")


@pytest.mark.parametrize(
    "size, cat", [(3, "2"), (5.9, "2"), (6, "3"), (7.9, "3"), (8, "4A"), (14.9, "4A"), (15, "4B")]
)
def test_solid_baseline_thresholds(size, cat):
    assert nodule_category(size, 0, "baseline", False) == C[cat]


@pytest.mark.parametrize("size, cat", [(3.9, "2"), (4, "3"), (6, "4A"), (8, "4B")])
def test_solid_new_thresholds(size, cat):
    assert nodule_category(size, 0, "new", False) == C[cat]


@given(a=sizes, b=sizes)
def test_solid_baseline_category_is_monotone_in_size(a, b):
    lo, hi = sorted((a, b))
    assert nodule_category(lo, 0, "baseline", False) <= nodule_category(hi, 0, "baseline", False)


@given(
    a=sizes,
    b=sizes,
    t=st.sampled_from([0, 1, 2]),
    status=st.sampled_from(STATUSES),
    spic=st.booleans(),
)
def test_category_is_monotone_in_size_for_every_type_and_status(a, b, t, status, spic):
    lo, hi = sorted((a, b))
    assert nodule_category(lo, t, status, spic) <= nodule_category(hi, t, status, spic)


@given(size=sizes, t=st.sampled_from([0, 1, 2]), status=st.sampled_from(STATUSES))
def test_spiculation_only_raises_suspicion(size, t, status):
    plain = nodule_category(size, t, status, False)
    spic = nodule_category(size, t, status, True)
    assert spic >= plain
    assert (spic == C["4X"]) == (plain >= C["3"])


@given(size=sizes, t=st.sampled_from([0, 1, 2]))
def test_growth_is_never_less_suspicious_than_stability(size, t):
    assert nodule_category(size, t, "growing", False) >= nodule_category(size, t, "stable", False)


def test_management_by_category():
    assert [management(C[c]) for c in CATEGORIES] == [
        "next_round",
        "next_round",
        "ct_6m",
        "ct_3m",
        "workup",
        "workup",
    ]


def test_nlst_rule():
    assert not nlst_positive(3.9, "new", 0, 0, 4.0, 730)
    assert nlst_positive(4.0, "baseline", 0, 0, 4.0, 730)
    assert nlst_positive(5.0, "stable", 0, 300, 4.0, 730)  # seen before, not long enough
    assert not nlst_positive(5.0, "stable", 0, 700, 4.0, 730)  # within the two-month window
    assert nlst_positive(5.0, "growing", 0, 800, 4.0, 730)


@given(a=sizes, b=sizes, status=st.sampled_from(STATUSES), gap=st.floats(0, 1500))
def test_nlst_rule_is_monotone_in_size(a, b, status, gap):
    lo, hi = sorted((a, b))
    assert nlst_positive(lo, status, 0.0, gap, 4.0, 730.5) <= nlst_positive(
        hi, status, 0.0, gap, 4.0, 730.5
    )

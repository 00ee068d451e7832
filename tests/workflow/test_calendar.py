"""The appointment book: capacity per working day, weekends closed, first free slot wins."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.workflow import Calendar, is_workday


def test_day_zero_is_a_monday():
    assert [is_workday(d) for d in range(14)] == [True] * 5 + [False] * 2 + [True] * 5 + [False] * 2


def test_books_same_day_until_full_then_next_working_day():
    cal = Calendar(2)
    assert [cal.book(4.2) for _ in range(5)] == [7, 7, 8, 8, 9]  # ceil(4.2) = 5 is a Saturday
    cal = Calendar(2)
    assert [cal.book(3.0) for _ in range(5)] == [3, 3, 4, 4, 7]


@settings(max_examples=200, deadline=None)
@given(
    slots=st.integers(1, 6),
    requests=st.lists(
        st.floats(min_value=-5, max_value=120, allow_nan=False), min_size=1, max_size=150
    ),
)
def test_calendar_properties(slots, requests):
    cal = Calendar(slots)
    booked = []
    for r in requests:
        expected = _first_free(cal, r, slots)
        day = cal.book(r)
        assert day == expected  # the first working day with a free slot
        assert day >= max(0, r - 1e-9)  # never before it was asked for
        assert is_workday(day)  # never a weekend
        booked.append(day)
    per_day = Counter(booked)
    assert max(per_day.values()) <= slots  # never over capacity
    for d, k in per_day.items():
        assert cal.booked(d) == k


def _first_free(cal: Calendar, earliest: float, slots: int) -> int:
    import math

    d = max(0, math.ceil(earliest - 1e-9))
    while not is_workday(d) or cal.booked(d) >= slots:
        d += 1
    return d

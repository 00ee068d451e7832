"""An appointment book: a fixed number of slots per working day."""

from __future__ import annotations

import math


def is_workday(day: int) -> bool:
    """Day 0 is a Monday; Saturdays and Sundays are closed."""
    return day % 7 < 5


class Calendar:
    """Books the first working day on or after a requested day that has a free slot.

    Full days are skipped with a path-compressed "next open day" map, so booking stays fast
    even with a long backlog.
    """

    def __init__(self, slots_per_day: int) -> None:
        self.slots_per_day = slots_per_day
        self._used: dict[int, int] = {}
        self._next: dict[int, int] = {}

    def _find(self, day: int) -> int:
        path = []
        while True:
            if not is_workday(day):
                path.append(day)
                day += 1
                continue
            nxt = self._next.get(day)
            if nxt is None:
                break
            path.append(day)
            day = nxt
        for d in path:
            self._next[d] = day
        return day

    def book(self, earliest_day: float) -> int:
        """Reserve a slot; returns the booked day (an integer day index)."""
        day = self._find(max(0, math.ceil(earliest_day - 1e-9)))
        used = self._used.get(day, 0) + 1
        self._used[day] = used
        if used >= self.slots_per_day:
            self._next[day] = day + 1
        return day

    def booked(self, day: int) -> int:
        return self._used.get(day, 0)

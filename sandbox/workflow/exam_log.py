"""The exam event log, kept as one column per field while the simulation runs.

A million-person run logs millions of exams; one container per exam would dominate memory and
every full garbage collection. Numeric fields go to typed arrays (raw machine values), the rest
to plain lists of shared objects (booleans, None, interned strings).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

# typecodes of the numeric columns: q int64, h int16, d float64
TYPECODES = {
    "person_id": "q",
    "site": "h",
    "round": "h",
    "exam_seq": "h",
    "due_day": "d",
    "exam_day": "d",
    "reported_day": "d",
    "n_reads": "h",
    "reader_minutes": "d",
    "top_finding_mm": "d",
    "malignant_diameter_mm": "d",
    "workup_day": "d",
    "workup_diagnosis_day": "d",
}


class ExamLog:
    """Append-only rows, stored by column; single fields can be set later (work-up results)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._index = {n: i for i, n in enumerate(self.names)}
        self.columns: list[Any] = [
            array(TYPECODES[n]) if n in TYPECODES else [] for n in self.names
        ]
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, values: Sequence[Any]) -> int:
        """Add one exam; returns its row index."""
        for column, value in zip(self.columns, values, strict=True):
            column.append(value)
        self._n += 1
        return self._n - 1

    def set(self, row: int, name: str, value: Any) -> None:
        self.columns[self._index[name]][row] = value

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.names, self.columns, strict=True))

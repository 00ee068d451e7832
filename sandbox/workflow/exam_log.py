"""The exam event log: the first observer, kept as one column per field while the run goes on.

A million-person run logs millions of exams; one container per exam would dominate memory and
every full garbage collection. Numeric fields go to typed arrays (raw machine values), the rest
to plain lists of shared objects (booleans, None, interned strings).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sandbox.workflow.exam import RECORD_FIELDS, ExamRecord, events_schema
from sandbox.workflow.observers import Observer, WorkupDone

if TYPE_CHECKING:
    from sandbox.programmes.base import Programme
    from sandbox.workflow.site import SiteModel

_TYPECODES = {pl.Int64: "q", pl.Int16: "h", pl.Float64: "d"}
_NUMPY = {"q": np.int64, "h": np.int16, "d": np.float64}
_WORKUP_FIELDS = (
    "workup_day",
    "workup_diagnosis_day",
    "workup_stage",
    "benign_biopsy",
    "benign_resection",
)


class ExamLog(Observer):
    """Append-only exam records by column; work-up results are filled in when they happen.

    Args:
        programme: the programme whose vocabularies type the columns.
    """

    def __init__(self, programme: Programme | type[Programme]) -> None:
        self.schema = events_schema(programme)
        # numbers that are never missing go to typed arrays; the rest to lists
        nullable = [f.type.endswith("| None") for f in fields(ExamRecord)]
        self.columns: list[Any] = [
            array(_TYPECODES[d]) if d in _TYPECODES and not null else []
            for d, null in zip(self.schema.values(), nullable, strict=True)
        ]
        self._index = {name: i for i, name in enumerate(RECORD_FIELDS)}
        self._get = attrgetter(*RECORD_FIELDS)
        self._workup_rows: dict[tuple[int, int, int, int], int] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def on_exam(self, site: SiteModel, record: ExamRecord) -> None:
        for column, value in zip(self.columns, self._get(record), strict=True):
            column.append(value)
        if record.management == "workup":
            key = (record.site, record.person_id, record.round, record.exam_seq)
            self._workup_rows[key] = self._n
        self._n += 1

    def on_workup(self, site: SiteModel, event: WorkupDone) -> None:
        row = self._workup_rows.pop((site.index, event.person_id, event.round, event.exam_seq))
        values = (
            event.workup_day,
            math.nan if event.diagnosis_day is None else event.diagnosis_day,
            event.stage,
            event.benign_biopsy,
            event.benign_resection,
        )
        for name, value in zip(_WORKUP_FIELDS, values, strict=True):
            self.columns[self._index[name]][row] = value

    def frame(self) -> pl.DataFrame:
        """The log as a frame of ``events.parquet``'s schema, NaN days as nulls."""
        data = {}
        for (name, dtype), col in zip(self.schema.items(), self.columns, strict=True):
            if isinstance(col, array):
                np_type = _NUMPY[col.typecode]
                data[name] = np.frombuffer(col, dtype=np_type) if len(col) else np.empty(0, np_type)
            else:
                loose = pl.Utf8 if isinstance(dtype, pl.Enum) else dtype
                data[name] = pl.Series(name, col, dtype=loose, strict=False)
        frame = pl.DataFrame(data).with_columns(
            pl.col("workup_day", "workup_diagnosis_day").fill_nan(None)
        )
        return frame.cast(self.schema).sort("site", "person_id", "exam_day")

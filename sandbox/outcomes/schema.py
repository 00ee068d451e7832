"""Declared schemas of the run folder's tables (documented in docs/run-folder.md)."""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from sandbox.workflow.lung_rads import CATEGORIES, MANAGEMENT

EXAM_KINDS = ("screen", "ct_6m", "ct_3m")

EVENTS_SCHEMA = {
    "person_id": pl.Int64,
    "site": pl.Int16,
    "round": pl.Int16,
    "exam_seq": pl.Int16,
    "exam_kind": pl.Enum(list(EXAM_KINDS)),
    "due_day": pl.Float64,
    "exam_day": pl.Float64,
    "reported_day": pl.Float64,
    "n_reads": pl.Int16,
    "reader_minutes": pl.Float64,
    "arbitrated": pl.Boolean,
    "lung_rads": pl.Enum(list(CATEGORIES)),
    "positive": pl.Boolean,
    "management": pl.Enum(list(MANAGEMENT)),
    "top_finding_mm": pl.Float64,
    "malignant_visible": pl.Boolean,
    "malignant_reported": pl.Boolean,
    "malignant_diameter_mm": pl.Float64,
    "workup_day": pl.Float64,
    "workup_diagnosis_day": pl.Float64,
    "workup_stage": pl.Utf8,
    "benign_biopsy": pl.Boolean,
    "ai_score": pl.Float64,
    "ai_positive": pl.Boolean,
    "ai_autonomous": pl.Boolean,
    "human_positive": pl.Boolean,
}
_NUMPY = {"q": np.int64, "h": np.int16, "d": np.float64}
# list columns are built with these types first (None allowed), then cast to EVENTS_SCHEMA
_LOOSE = {
    "exam_kind": pl.Utf8,
    "arbitrated": pl.Boolean,
    "lung_rads": pl.Utf8,
    "positive": pl.Boolean,
    "management": pl.Utf8,
    "malignant_visible": pl.Boolean,
    "malignant_reported": pl.Boolean,
    "workup_stage": pl.Utf8,
    "benign_biopsy": pl.Boolean,
    "ai_score": pl.Float64,
    "ai_positive": pl.Boolean,
    "ai_autonomous": pl.Boolean,
    "human_positive": pl.Boolean,
}
BACKLOG_SCHEMA = {"site": pl.Int16, "day": pl.Int32, "backlog": pl.Int32}


def events_frame(columns: Mapping[str, Any]) -> pl.DataFrame:
    """The exam event log from the workflow's columns (typed arrays or lists), NaN days as nulls."""
    data = {}
    for name in EVENTS_SCHEMA:
        col = columns[name]
        if isinstance(col, array):
            data[name] = (
                np.frombuffer(col, dtype=_NUMPY[col.typecode])
                if len(col)
                else np.empty(0, _NUMPY[col.typecode])
            )
        else:
            data[name] = pl.Series(name, col, dtype=_LOOSE.get(name), strict=False)
    frame = pl.DataFrame(data)
    frame = frame.with_columns(pl.col("workup_day", "workup_diagnosis_day").fill_nan(None))
    return frame.cast(EVENTS_SCHEMA).sort("site", "person_id", "exam_day")

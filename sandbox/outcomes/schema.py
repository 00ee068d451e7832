"""Declared schemas of the run folder's tables (documented in docs/run-folder.md)."""

from __future__ import annotations

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
BACKLOG_SCHEMA = {"site": pl.Int16, "day": pl.Int32, "backlog": pl.Int32}


def events_frame(rows: list[list]) -> pl.DataFrame:
    """The exam event log from the workflow's row lists, NaN days as nulls."""
    cols = list(EVENTS_SCHEMA)
    frame = (
        pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None)
        if rows
        else pl.DataFrame(schema=cols)
    )
    frame = frame.with_columns(pl.col("workup_day", "workup_diagnosis_day").fill_nan(None))
    return frame.cast(EVENTS_SCHEMA).sort("site", "person_id", "exam_day")

"""Declared schemas of the run folder's tables (documented in docs/run-folder.md).

The event log's schema is derived from the typed exam record and the programme
(:func:`sandbox.workflow.exam.events_schema`); the people table's is the programme's.
"""

from __future__ import annotations

import polars as pl

BACKLOG_SCHEMA = {"site": pl.Int16, "day": pl.Int32, "backlog": pl.Int32}

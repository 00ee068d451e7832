"""One exam as the engine sees it, and the typed record it leaves in the event log.

:class:`ExamRecord` is declared once: its fields are the event log's columns, in order (the
``report`` field is written under the programme's report column), and
:func:`events_schema` derives the Parquet schema from it and the programme's vocabularies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import polars as pl

from sandbox.rng import item_key

if TYPE_CHECKING:
    from sandbox.programmes.base import Programme
    from sandbox.workflow.site import SiteModel


@dataclass(slots=True)
class Exam:
    """An exam in progress: who, which round and exam in the round, when, what it shows.

    ``shows`` (the findings) and ``prior`` (what earlier reports said) belong to the programme;
    the engine passes them through. ``taken`` holds the ids of radiologists who read it.
    """

    site: SiteModel
    row: int
    person_id: int
    round: int
    seq: int
    kind: str
    due_day: float
    day: float
    shows: Any
    prior: Any
    index: int  # exam key in the person's streams: ``exam_key(round, seq)``
    policy_version: int = 0
    taken: set[int] = field(default_factory=set)
    # the AI's reading: (number of candidate regions, kind of the one that drove the score)
    ai_read: tuple[int, str] | None = None
    # the finding at the region that drove the AI's score (None: tissue), where the programme
    # locates marks (Programme.marks_locate)
    ai_mark: int | None = None

    def u(self, stream: str, k: int = 0) -> float:
        """Draw ``k`` of this exam from ``stream`` (keyed by person and exam)."""
        return self.site.streams.u(stream, self.person_id, item_key(self.index, k))


def _col(dtype: Any, doc: str) -> Any:
    return field(metadata={"dtype": dtype, "doc": doc})


@dataclass(slots=True)
class ExamRecord:
    """One exam in the event log (one row of ``events.parquet``), fields in column order.

    The engine builds one per exam positionally (keyword construction of 29 fields costs about
    three times as much, and this is on the workflow's hot path).
    """

    person_id: int = _col(pl.Int64, "the person")
    site: int = _col(pl.Int16, "site index in the scenario")
    round: int = _col(pl.Int16, "screening round (0 = T0)")
    exam_seq: int = _col(pl.Int16, "exam within the round (0 = the screen, then follow-ups)")
    exam_kind: str = _col("exam_kinds", "screen or a follow-up kind")
    due_day: float = _col(pl.Float64, "day the exam was due")
    exam_day: float = _col(pl.Float64, "day it was performed")
    reported_day: float = _col(pl.Float64, "day its final report was issued")
    n_reads: int = _col(pl.Int16, "human reads, arbitration and consensus included")
    reader_minutes: float = _col(pl.Float64, "radiologist minutes spent on it")
    arbitrated: bool = _col(pl.Boolean, "discordance resolved by arbitration or consensus")
    report: str = _col("report_categories", "the report's category (column: the programme's)")
    positive: bool = _col(pl.Boolean, "positive under the programme's protocol")
    management: str = _col("management_kinds", "what the report ordered")
    top_finding_mm: float = _col(pl.Float64, "size of the finding driving the report (0: none)")
    malignant_visible: bool = _col(pl.Boolean, "the person's cancer was in the image")
    malignant_reported: bool = _col(pl.Boolean, "the final report included it")
    malignant_diameter_mm: float = _col(pl.Float64, "its true diameter (0: none)")
    workup_day: float = _col(pl.Float64, "day of the work-up this exam triggered (null: none)")
    workup_diagnosis_day: float = _col(pl.Float64, "day the work-up diagnosed cancer (null)")
    workup_stage: str | None = _col(pl.Utf8, "stage at that diagnosis (null)")
    benign_biopsy: bool = _col(pl.Boolean, "the work-up included a benign biopsy")
    benign_resection: bool = _col(pl.Boolean, "that benign biopsy was a surgical resection")
    ai_score: float | None = _col(pl.Float64, "the AI device's score (null: not scored)")
    ai_positive: bool | None = _col(pl.Boolean, "the score at or above the operating point")
    ai_candidates: int | None = _col(pl.Int16, "candidate regions the AI scored (null: not scored)")
    ai_driver: str | None = _col(
        "candidate_kinds", "what the candidate behind the AI's score was (null: not scored)"
    )
    ai_autonomous: bool = _col(pl.Boolean, "reported by the AI with no human read")
    human_positive: bool | None = _col(pl.Boolean, "the first radiologist's call (null: none)")
    policy_version: int = _col(pl.Int16, "version of the site's policy that read it (0: as run)")


RECORD_FIELDS = tuple(f.name for f in fields(ExamRecord))
NAN = math.nan


def events_schema(programme: type[Programme] | Programme) -> dict[str, pl.DataType]:
    """Column -> dtype of ``events.parquet`` for ``programme`` (enums from its vocabularies)."""
    out: dict[str, pl.DataType] = {}
    for f in fields(ExamRecord):
        dtype = f.metadata["dtype"]
        if isinstance(dtype, str):
            dtype = pl.Enum(list(getattr(programme, dtype)))
        name = programme.report_column if f.name == "report" else f.name
        out[name] = dtype
    return out

"""The Programme seam: what a screening programme owns, and what the engine asks of it.

The engine (:mod:`sandbox.workflow`) runs calendars, worklists, readers, AI batching and time
for any programme; everything about the disease, the image, the report and what follows it is
the programme's. A programme is a subclass of :class:`Programme` registered by name in
:data:`sandbox.programmes.PROGRAMMES`; a scenario names it (``programme.name``).

The engine treats a programme's findings, per-person prior state and image specification as
opaque values; it reads only the :class:`Read` a reader produces and the
:class:`WorkupOutcome` of a work-up.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import polars as pl

from sandbox.config import Scanner, Scenario
from sandbox.rng import Streams

if TYPE_CHECKING:
    from sandbox.agents.readers import Reader
    from sandbox.workflow.exam import Exam


class Cohort(Protocol):
    """What the engine needs of a programme's cohort (a struct of arrays, one entry per person).

    ``people`` holds at least ``person_id``, ``site`` (site index), ``entry_day`` (first
    invitation) and ``end_day`` (end of follow-up); ``horizon_day`` is the last day simulated.
    """

    people: dict[str, np.ndarray]
    horizon_day: float

    def __len__(self) -> int: ...

    def exit_days(self) -> np.ndarray:
        """Per person, the day they leave screening for reasons of their own (death, symptoms)."""
        ...


@dataclass(slots=True)
class Read:
    """One reader's report of one exam, in the programme's reporting scheme.

    ``category`` is the scheme's category as an index in ascending order of suspicion (so two
    reports compare by it); ``findings`` are the programme's reported findings; ``top_key`` is
    the finding that drives the category (-1 if none); ``suspicious`` are the keys of the
    findings a work-up would examine.
    """

    reader_id: int
    slot: int
    findings: list[Any]
    category: int
    positive: bool
    minutes: float
    top_key: int = -1
    suspicious: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class WorkupOutcome:
    """What a work-up found: a cancer (with its stage) or not, whether an invasive procedure found
    no cancer (a benign biopsy), and whether that procedure was a surgical resection."""

    diagnosed: bool
    stage: str | None = None
    benign_biopsy: bool = False
    benign_resection: bool = False


@dataclass(frozen=True, slots=True)
class PersonEvent:
    """A diagnosis or a death, when it happens (``day``), for observers.

    ``kind``: ``diagnosis`` (``route`` ``screen`` or ``clinical``, with ``stage``) or ``death``
    (``route`` is the cause: ``cancer`` or ``other``).
    """

    kind: str
    person_id: int
    day: float
    route: str
    stage: str | None = None


def source_digest(label: str, folder: Path, files: Sequence[str]) -> str:
    """``label:`` and 16 hex digits of the sha256 of ``files`` (under ``folder``), in order: a
    renderer's code and parameters, which key its cached scores."""
    h = hashlib.sha256()
    for name in files:
        h.update((folder / name).read_bytes())
    return f"{label}:" + h.hexdigest()[:16]


DIAGNOSIS_MODES = ("none", "screen", "interval", "not_screened", "after_screening")
"""How a person's cancer was diagnosed (the people table's ``diagnosis_mode``): by a screen's
work-up; clinically within the interval window after a screen that did not find it; before
their first screen; or clinically later than that window after their last screen."""


def diagnosis_modes(
    person_id: np.ndarray,
    diagnosed: np.ndarray,
    dx_day: np.ndarray,
    screen_first: np.ndarray,
    screens: pl.DataFrame,
    window_days: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per person, the index of their diagnosis mode in :data:`DIAGNOSIS_MODES` and the round of
    their last screen on or before the diagnosis (-1: none). ``screens`` holds the screening
    exams (``person_id``, ``round``, ``exam_day``); ``screen_first``: the diagnosis came from a
    screen's work-up before symptoms."""
    by_person = screens.group_by("person_id").agg(
        pl.col("exam_day").sort(), pl.col("round").sort_by("exam_day")
    )
    ids = by_person["person_id"].to_list()
    days = dict(zip(ids, by_person["exam_day"].to_list(), strict=True))
    rounds = dict(zip(ids, by_person["round"].to_list(), strict=True))
    mode = np.zeros(len(person_id), dtype=np.int8)
    dx_round = np.full(len(person_id), -1, dtype=np.int16)
    for i in np.flatnonzero(diagnosed):
        pid = int(person_id[i])
        sday = days.get(pid, [])
        before = [k for k, d in enumerate(sday) if d <= dx_day[i]]
        if screen_first[i]:
            mode[i] = 1
        elif not before:
            mode[i] = 3
        elif dx_day[i] - sday[before[-1]] <= window_days:
            mode[i] = 2
        else:
            mode[i] = 4
        if before:
            dx_round[i] = rounds[pid][before[-1]]
    return mode, dx_round


class Programme(ABC):
    """A screening programme: cohort and disease, exam findings, reporting, management, work-up.

    Subclasses set the class attributes and implement the abstract methods; the engine never
    branches on a programme's name. Methods called per exam take the engine's
    :class:`~sandbox.workflow.exam.Exam` (person, round, day, site scanner, what the exam shows,
    the person's prior state, keyed draws via ``exam.u``).

    Args:
        scenario: the validated scenario (its ``cohort``, ``disease`` and ``programme`` are of
            the types :meth:`config_types` names).
    """

    name: ClassVar[str]
    #: exam kinds: the screen first, then the follow-up exams management can order
    exam_kinds: ClassVar[tuple[str, ...]]
    #: management outcomes: ``next_round``, the follow-up kinds, ``workup``
    management_kinds: ClassVar[tuple[str, ...]]
    #: days from the exam to each follow-up kind
    follow_up_days: ClassVar[dict[str, float]]
    #: disease stages, earliest first
    stages: ClassVar[tuple[str, ...]]
    #: the people table's ``death_cause`` / ``lifetime_death_cause`` for a death from the
    #: programme's cancer (the others are ``alive`` and ``other``)
    cancer_death_cause: ClassVar[str]
    #: the report column of the event log (the scheme's category) and its categories
    report_column: ClassVar[str]
    report_categories: ClassVar[tuple[str, ...]]
    #: a malignant finding at least this large counts as missed if the AI alone cleared it
    reportable_mm: ClassVar[float] = 0.0
    #: columns of the people table that metrics are broken down by (each value a subgroup)
    subgroups: ClassVar[tuple[str, ...]] = ("sex", "race", "age_band")
    #: the programme's own metrics in a run's headline summary (``sandbox run``, ``compare``)
    summary_metrics: ClassVar[tuple[str, ...]] = ()
    #: what its renderer gives an AI device: pixel units and spatial dimensions (None: no images)
    image_units: ClassVar[str | None] = None
    image_spatial_dims: ClassVar[int] = 0
    #: whether economics presets (conf/economics: screening, work-up, treatment and
    #: terminal-care costs, utilities) can price this programme; a preset names the programme
    #: it prices (``programme``) and has the programme's stages
    has_cost_model: ClassVar[bool] = False
    #: what a candidate region that drove an AI score can be (the event log's ``ai_driver``)
    candidate_kinds: ClassVar[tuple[str, ...]] = ("cancer", "benign", "background")

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    # ---------------------------------------------------------------- configuration
    @classmethod
    @abstractmethod
    def config_types(cls) -> dict[str, type]:
        """The config dataclasses of the scenario sections ``cohort``, ``disease``, ``programme``."""

    # ---------------------------------------------------------------- cohort and disease
    @abstractmethod
    def sample_cohort(
        self, streams: Streams, progress: Callable[[int], None] | None = None
    ) -> Cohort:
        """The cohort with its disease histories (independent of any policy)."""

    def add_arrivals(self, cohort: Cohort, streams: Streams, arrivals: Sequence[tuple]) -> Cohort:
        """``cohort`` with more people (a population shift, ``drift.population_changes``): for
        each ``(site index, day, size, spread_days, cohort config, reason)``, ``size`` people
        drawn as the cohort config says, invited at that site over ``spread_days`` from
        ``day``, with ids no other person has. The cohort's own people stay as they are."""
        from sandbox.errors import SandboxInputError

        raise SandboxInputError(
            f"config key 'drift.population_changes': programme '{self.name}' has no population shifts"
        )

    # ---------------------------------------------------------------- one exam
    def exam_scanner(self, site_scanner: Scanner, modality: str) -> Scanner:
        """The imaging device a screen of ``modality`` uses at a site whose scanner is
        ``site_scanner`` (the policy chooses the modality; the programme says what it is)."""
        if modality == site_scanner.modality:
            return site_scanner
        from sandbox.errors import SandboxInputError

        raise SandboxInputError(
            f"config key 'policy.modality': programme '{self.name}' has no {modality} screening"
        )

    @abstractmethod
    def exam_shows(self, cohort: Cohort, row: int, day: float, scanner: Scanner) -> Any:
        """What an exam of person ``row`` on ``day`` on ``scanner`` shows (the findings)."""

    @abstractmethod
    def new_prior(self) -> Any:
        """A person's prior state before their first report (what earlier reports said)."""

    @abstractmethod
    def read(
        self,
        reader: Reader,
        exam: Exam,
        slot: int,
        boost: float = 1.0,
        marked: frozenset[int] | None = None,
    ) -> Read:
        """One reader's independent read in read slot ``slot``; ``boost`` multiplies conspicuity
        (of the findings in ``marked``, the keys another reader marked for a consensus review,
        where the programme locates marks; of every finding otherwise)."""

    @abstractmethod
    def normal_report(self) -> Read:
        """The report of an exam cleared with no human read (the AI alone)."""

    @abstractmethod
    def consensus(self, exam: Exam, positive: Read, negative: Read, review: Read) -> Read:
        """The report two discordant readers agree on, after ``negative``'s reader reviews."""

    has_high_risk_recall: ClassVar[bool] = False  # a policy's ``recall_top`` works here

    def high_risk_recall(self, exam: Exam, reads: list[Read]) -> Read | None:
        """The recall of a negatively reported exam the AI flagged high risk (a policy's
        ``recall_top``), or None when the readers judge the flag obviously false."""
        raise NotImplementedError(f"programme '{self.name}' has no high-risk recall rule")

    @abstractmethod
    def manage(self, exam: Exam, final: Read) -> str:
        """What follows the report: ``next_round``, a follow-up kind, or ``workup``."""

    @abstractmethod
    def after_report(self, exam: Exam, final: Read) -> None:
        """Record the report in the person's prior state (the comparison for the next exam)."""

    @abstractmethod
    def workup(self, cohort: Cohort, exam: Exam, final: Read, day: float) -> WorkupOutcome:
        """The work-up on ``day`` of the findings ``final`` calls suspicious."""

    @abstractmethod
    def exam_fields(self, exam: Exam, final: Read) -> tuple[str, float, bool, bool, float]:
        """The programme's fields of the exam record, in this order: the report category (a name
        in ``report_categories``), ``top_finding_mm``, ``malignant_visible``,
        ``malignant_reported``, ``malignant_diameter_mm`` (:class:`~sandbox.workflow.exam.ExamRecord`)."""

    # ---------------------------------------------------------------- the person's timeline
    @abstractmethod
    def person_timeline(
        self, cohort: Cohort, rows: np.ndarray
    ) -> Iterable[tuple[int, PersonEvent]]:
        """(row, event) for the clinical diagnoses (with stage) and the deaths from other causes
        that the natural history of people ``rows`` holds, whatever screening does."""

    @abstractmethod
    def clinical_day(self, cohort: Cohort, row: int) -> float:
        """Day person ``row``'s cancer would surface clinically (inf: never)."""

    def cancer_death_day(self, cohort: Cohort, row: int, dx_day: float, stage: str | None) -> float:
        """Day person ``row`` dies of the cancer diagnosed on ``dx_day`` (inf: does not)."""
        return float("inf")

    # ---------------------------------------------------------------- AI devices
    @classmethod
    def networks(cls) -> dict[str, type]:
        """The programme's own networks that device folders may name (imports torch)."""
        return {}

    def check_input_shape(self, shape: tuple[int, ...]) -> str:
        """Why a device input of ``shape`` cannot be rendered ("" if it can)."""
        return ""

    def render_bytes(self, shape: tuple[int, ...]) -> int:
        """Memory the renderer needs for one image of ``shape``."""
        return 4 * math.prod(shape)

    def image_of(self, person_id: int, day: float, scanner: Scanner, shows: Any) -> Any:
        """What an AI device is shown of an exam (None: this programme has no images).

        An image specification has ``person_id``, ``exam_day`` (int), ``scanner`` and
        ``candidates``: the candidate regions a CAD system would propose, each with an opaque
        int ``location`` and nothing that says what it is (``sandbox.agents.inference.ImageSpec``).
        """
        return None

    def render(
        self,
        patches: Sequence[tuple[Any, Any]],
        seed: int,
        size: int,
        device: str,
        out: Any = None,
    ) -> Any:
        """Render ``(image, candidate)`` pairs as a tensor ``[B, *input_shape]``: one patch per
        candidate region; into ``out`` (a tensor of that shape on ``device``, every element
        overwritten) when given, so that a scorer can reuse one batch's memory for the next."""
        raise NotImplementedError(f"programme '{self.name}' renders no images")

    def candidate_kind(self, image: Any, index: int, shows: Any) -> str:
        """What candidate ``index`` of ``image`` is, one of :attr:`candidate_kinds`, from what
        the exam ``shows`` (outcome-side: never passed to a renderer or device)."""
        raise NotImplementedError(f"programme '{self.name}' renders no images")

    #: whether the AI's marks point at one region (:meth:`marked_finding`): a mark (a boost
    #: above 1) then helps readers see that finding only; otherwise every finding
    marks_locate: ClassVar[bool] = False

    def marked_finding(self, image: Any, index: int, shows: Any) -> int | None:
        """The key of the finding at candidate ``index`` of ``image`` (the region the AI marks),
        or None for a region of tissue (outcome-side, as :meth:`candidate_kind`)."""
        raise NotImplementedError(f"programme '{self.name}' does not locate its marks")

    def ai_read_of(
        self, image: Any, driver: int, candidates: int, shows: Any
    ) -> tuple[tuple[int, str], int | None]:
        """What an exam records of the AI's reading (``Exam.ai_read``, ``Exam.ai_mark``): the
        number of candidates and the kind of the one that drove the score, and where marks are
        located, the finding a mark helps the readers see (None: tissue, or not located)."""
        kind = self.candidate_kind(image, driver, shows)
        mark = self.marked_finding(image, driver, shows) if self.marks_locate else None
        return (candidates, kind), mark

    def renderer_version(self) -> str:
        """Identifies the renderer (code and parameters); part of every cached score's key."""
        return f"{self.name}:no-renderer"

    def image_relevant(self) -> dict[str, Any]:
        """The parts of the scenario that change what an exam's image shows (score cache key)."""
        return {"cohort": self.scenario.cohort, "disease": self.scenario.disease}

    def schedule_relevant(self) -> dict[str, Any]:
        """The schedule keys that set each person's entry days and follow-up, and so what is
        in their body on a given programme day (part of :meth:`image_relevant`)."""
        p = self.scenario.programme
        return {
            "rounds": p.rounds,
            "interval_years": p.interval_years,
            "follow_up_years_after_last_round": p.follow_up_years_after_last_round,
            "schedule_spread_days": p.schedule_spread_days,
        }

    # ---------------------------------------------------------------- outcomes
    @abstractmethod
    def resolve_people(
        self,
        cohort: Cohort,
        screen_dx_day: np.ndarray,
        screen_dx_stage: np.ndarray,
        screens: pl.DataFrame,
    ) -> pl.DataFrame:
        """One row per person: subgroup columns, diagnosis route and stage, death."""

    def subgroup_labels(self, cohort: Cohort) -> dict[str, np.ndarray]:
        """Each person's label in each of :attr:`subgroups` (row order), as the people table
        gives them: what a monitor watching a subgroup sees of a person."""
        return {}

    @classmethod
    def metric_definitions(cls) -> dict[str, Sequence[Any]]:
        """The programme's own metrics (:class:`sandbox.outcomes.metrics.Metric`) by view:
        ``screen`` (one row per screen) and ``people`` (one row per person)."""
        return {}

    def screen_aggregations(self) -> list[pl.Expr]:
        """Polars aggregations feeding the programme's screen metrics."""
        return []

    def people_aggregations(self) -> list[pl.Expr]:
        """Polars aggregations feeding the programme's people metrics."""
        return []

"""A toy screening programme for tests: one finding type, a two-category report, its own management.

It shares nothing with the lung programme but the engine: its own cohort and lesion growth, a
``normal``/``abnormal`` report, a ``recheck`` follow-up for small findings and a work-up for
large ones. Running it through the site model under every policy and AI role shows that the
Programme seam is real. ``ToyDevice`` scores its images deterministically (no network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl

from sandbox.agents.inference import ExamReads
from sandbox.config import PROB, ProgrammeConfig, Scanner
from sandbox.programmes import PROGRAMMES, PersonEvent, Programme, Read, WorkupOutcome
from sandbox.rng import Streams, declare_streams, read_key

YEAR = 365.25
declare_streams({"toy.*": "the toy programme's cohort, lesions, reads and work-ups"})


@dataclass(frozen=True)
class ToyCohortConfig:
    size: int = field(metadata={"ge": 1})


@dataclass(frozen=True)
class ToyDiseaseConfig:
    prevalence: float = field(metadata=PROB)
    growth_mm_per_year: float = field(metadata={"gt": 0})
    symptomatic_mm: float = field(metadata={"gt": 0})


@dataclass(frozen=True, kw_only=True)
class ToyProgrammeConfig(ProgrammeConfig):
    protocol: str = field(metadata={"choices": ("two_category",)})
    workup_mm: float = field(default=6.0, metadata={"gt": 0})


@dataclass(frozen=True)
class ToyCohort:
    people: dict[str, np.ndarray]
    onset_day: np.ndarray
    growth_mm_per_day: float
    symptomatic_mm: float
    horizon_day: float

    def __len__(self) -> int:
        return len(self.people["person_id"])

    def size_mm(self, row: int, day: float) -> float:
        return max(0.0, (day - self.onset_day[row]) * self.growth_mm_per_day)

    def clinical_days(self) -> np.ndarray:
        return self.onset_day + self.symptomatic_mm / self.growth_mm_per_day

    def exit_days(self) -> np.ndarray:
        return self.clinical_days()


@dataclass(slots=True)
class Lesion:
    key: int  # 0: the lesion; 1: a reader's spurious call
    size_mm: float
    conspicuity: float


@dataclass(frozen=True, slots=True)
class ToyImage:
    person_id: int
    exam_day: int
    scanner: Scanner
    size_mm: float


class Toy(Programme):
    name: ClassVar[str] = "toy"
    exam_kinds: ClassVar[tuple[str, ...]] = ("screen", "recheck")
    management_kinds: ClassVar[tuple[str, ...]] = ("next_round", "recheck", "workup")
    follow_up_days: ClassVar[dict[str, float]] = {"recheck": 120.0}
    stages: ClassVar[tuple[str, ...]] = ("small", "large")
    report_column: ClassVar[str] = "toy_report"
    report_categories: ClassVar[tuple[str, ...]] = ("normal", "abnormal")
    reportable_mm: ClassVar[float] = 2.0

    @classmethod
    def config_types(cls) -> dict[str, type]:
        return {
            "cohort": ToyCohortConfig,
            "disease": ToyDiseaseConfig,
            "programme": ToyProgrammeConfig,
        }

    def sample_cohort(self, streams: Streams, progress: Callable[[int], None] | None = None):
        scn = self.scenario
        n, p, d = scn.cohort.size, scn.programme, scn.disease
        ids = np.arange(n, dtype=np.int64)
        shares = np.array([s.share for s in scn.sites]) / sum(s.share for s in scn.sites)
        site = np.searchsorted(np.cumsum(shares), streams.uniform("toy.site", ids), side="right")
        follow = ((p.rounds - 1) * p.interval_years + p.follow_up_years_after_last_round) * YEAR
        entry = streams.uniform("toy.entry", ids) * p.schedule_spread_days
        has = streams.uniform("toy.lesion", ids) < d.prevalence
        onset = np.where(has, entry - YEAR + streams.uniform("toy.onset", ids) * follow, np.inf)
        people = {
            "person_id": ids,
            "site": np.minimum(site, len(shares) - 1).astype(np.int16),
            "entry_day": entry,
            "end_day": entry + follow,
            "female": (streams.uniform("toy.sex", ids) < 0.5).astype(np.int8),
        }
        if progress:
            progress(n)
        return ToyCohort(
            people,
            onset,
            d.growth_mm_per_year / YEAR,
            d.symptomatic_mm,
            p.schedule_spread_days + follow,
        )

    def person_timeline(
        self, cohort: ToyCohort, rows: np.ndarray
    ) -> Iterable[tuple[int, PersonEvent]]:
        clinical = cohort.clinical_days()
        for r in rows[clinical[rows] < cohort.people["end_day"][rows]]:
            r = int(r)
            yield r, PersonEvent("diagnosis", r, float(clinical[r]), "clinical", "large")

    def clinical_day(self, cohort: ToyCohort, row: int) -> float:
        return float(cohort.clinical_days()[row])

    def exam_shows(self, cohort: ToyCohort, row: int, day: float, scanner: Scanner) -> list[Lesion]:
        size = cohort.size_mm(row, day)
        return [Lesion(0, size, 6.0 * size)] if size > 0 else []

    def new_prior(self) -> None:
        return None

    def _report(self, reader_id: int, slot: int, found: list[Lesion], minutes: float) -> Read:
        top = max(found, key=lambda f: f.size_mm, default=None)
        big = frozenset(f.key for f in found if f.size_mm >= self.scenario.programme.workup_mm)
        return Read(
            reader_id,
            slot,
            found,
            int(bool(found)),
            bool(found),
            minutes,
            top.key if top else -1,
            big,
        )

    def read(self, reader, exam, slot: int, boost: float = 1.0, marked=None) -> Read:
        u = exam.site.streams.u
        found = [
            f
            for f in exam.shows
            if u("toy.detect", exam.person_id, read_key(exam.index, slot, f.key))
            < reader.detect_probability(f.conspicuity * boost)
        ]
        if u("toy.fp", exam.person_id, read_key(exam.index, slot)) < reader.fp_per_exam:
            found.append(Lesion(1, 3.0, 0.0))
        minutes = reader.read_minutes(u("toy.minutes", exam.person_id, read_key(exam.index, slot)))
        return self._report(reader.reader_id, slot, found, minutes)

    def normal_report(self) -> Read:
        return Read(-1, 0, [], 0, False, 0.0)

    def consensus(self, exam, positive: Read, negative: Read, review: Read) -> Read:
        seen = {f.key for f in review.findings} | {f.key for f in negative.findings}
        kept = [f for f in positive.findings if f.key in seen]
        return self._report(positive.reader_id, 3, kept, review.minutes)

    def manage(self, exam, final: Read) -> str:
        if not final.positive:
            return "next_round"
        return "workup" if final.suspicious else "recheck"

    def after_report(self, exam, final: Read) -> None:
        pass

    def workup(self, cohort: ToyCohort, exam, final: Read, day: float) -> WorkupOutcome:
        if 0 in final.suspicious and cohort.onset_day[exam.row] <= day:
            size = cohort.size_mm(exam.row, day)
            return WorkupOutcome(True, "small" if size < 10.0 else "large")
        return WorkupOutcome(False, None, exam.u("toy.biopsy") < 0.3)

    def exam_fields(self, exam, final: Read):
        lesion = next((f for f in exam.shows if f.key == 0), None)
        top = next((f.size_mm for f in final.findings if f.key == final.top_key), 0.0)
        return (
            self.report_categories[final.category],
            top,
            lesion is not None,
            any(f.key == 0 for f in final.findings),
            lesion.size_mm if lesion else 0.0,
        )

    def image_of(self, person_id: int, day: float, scanner: Scanner, shows: Any) -> ToyImage:
        return ToyImage(person_id, int(day), scanner, shows[0].size_mm if shows else 0.0)

    def candidate_kind(self, image: ToyImage, index: int, shows: Any) -> str:
        return "cancer" if any(f.key == 0 for f in shows) else "background"

    def resolve_people(
        self, cohort: ToyCohort, screen_dx_day, screen_dx_stage, screens
    ) -> pl.DataFrame:
        p = cohort.people
        clinical = cohort.clinical_days()
        screen_first = screen_dx_day < clinical
        dx_day = np.where(screen_first, screen_dx_day, clinical)
        diagnosed = dx_day < p["end_day"]
        last = dict(
            screens.group_by("person_id")
            .agg(pl.col("exam_day").max(), pl.col("round").max())
            .select("person_id", pl.struct("exam_day", "round"))
            .iter_rows()
        )
        mode, rnd, stage = [], [], []
        for i in range(len(cohort)):
            s = last.get(int(p["person_id"][i]))
            if not diagnosed[i]:
                mode.append("none"), rnd.append(-1), stage.append(None)
                continue
            rnd.append(s["round"] if s else -1)
            if screen_first[i]:
                mode.append("screen"), stage.append(self.stages[screen_dx_stage[i]])
            else:
                mode.append("interval" if s else "not_screened"), stage.append("large")
        years = (p["end_day"] - p["entry_day"]) / YEAR
        return pl.DataFrame(
            {
                "person_id": p["person_id"],
                "site": p["site"],
                "sex": np.where(p["female"] == 1, "F", "M"),
                "race": ["any"] * len(cohort),
                "age_band": ["all_ages"] * len(cohort),
                "diagnosis_day": np.where(diagnosed, dx_day, math.nan),
                "diagnosis_mode": mode,
                "diagnosis_round": np.array(rnd, dtype=np.int16),
                "stage": stage,
                "person_years": years,
            }
        ).with_columns(pl.col("diagnosis_day").fill_nan(None))


class ToyDevice:
    """Scores toy images from the lesion's size plus a keyed jitter (a stand-in device)."""

    def __init__(self, seed: int) -> None:
        self.streams = Streams(seed)

    def scores(self, images) -> np.ndarray:
        out = np.empty(len(images))
        for i, im in enumerate(images):
            jitter = self.streams.u("toy.device", im.person_id, im.exam_day)
            out[i] = 1.0 / (1.0 + math.exp(-(im.size_mm - 3.0))) * 0.8 + 0.2 * jitter
        return out

    def cutoff(self, point) -> float:
        """An operating point's cut-off: its value (the toy's scores spread over [0, 1])."""
        return point.value if point.mode in ("absolute", "percentile") else 0.5

    def read(self, images) -> ExamReads:
        """One candidate per image: the whole image."""
        n = len(images)
        return ExamReads(
            self.scores(images), np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)
        )


PROGRAMMES.setdefault(Toy.name, Toy)

SCENARIO = {
    "description": "toy world",
    "cohort": {"size": 1500},
    "disease": {"prevalence": 0.08, "growth_mm_per_year": 4.0, "symptomatic_mm": 14.0},
    "sites": [
        {
            "name": f"site_{k}",
            "share": 1.0,
            "scanner": {
                "model": "toy_scanner",
                "dose_mgy": 1.0,
                "noise_hu_at_1mgy": 20.0,
                "kernel_fwhm_mm": 1.0,
                "slice_mm": 1.0,
            },
            "scanners": 1,
            "exams_per_scanner_day": 30,
            "readers": {"thoracic_radiologist": 3, "general_radiologist": 1},
            "reading_hours_per_day": 6.0,
            "workup_slots_per_day": 4,
            "workup_days_to_result": 7.0,
        }
        for k in range(2)
    ],
    "programme": {
        "name": "toy",
        "rounds": 3,
        "interval_years": 1.0,
        "protocol": "two_category",
        "follow_up_years_after_last_round": 1.0,
        "schedule_spread_days": 200.0,
    },
}

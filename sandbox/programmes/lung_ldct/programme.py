"""Lung cancer screening with low-dose CT, as a :class:`~sandbox.programmes.base.Programme`.

The cohort is drawn by PLCOm2012, USPSTF 2021 or NLST eligibility; each person carries a lung
cancer natural history and benign nodules; an exam shows the nodules present that day with
their conspicuity on the site's scanner; readers report in Lung-RADS v2022, and the scheme
(Lung-RADS v2022 or the NLST rule) decides positivity and management; the work-up (PET-CT,
biopsy) examines the suspicious findings; an AI device reads a rendered CT patch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from sandbox.agents.readers import Reader
from sandbox.config import Scanner, Scenario
from sandbox.programmes.base import Cohort as CohortProtocol
from sandbox.programmes.base import PersonEvent, Programme, Read, WorkupOutcome, source_digest
from sandbox.programmes.lung_ldct import metrics as lung_metrics
from sandbox.programmes.lung_ldct.config import STAGES, Cohort, Disease, LungProgrammeConfig
from sandbox.programmes.lung_ldct.disease.history import LungCohort, concat_cohorts, sample_history
from sandbox.programmes.lung_ldct.disease.natural_history import (
    YEAR,
    stage_at,
)
from sandbox.programmes.lung_ldct.imaging.findings import (
    CANDIDATE_KINDS,
    MALIGNANT_KEY,
    Candidate,
    candidate_kind,
    candidates,
)
from sandbox.programmes.lung_ldct.lung_rads import (
    C1,
    CATEGORIES,
    FOLLOW_UP_DAYS,
    MANAGEMENT,
    SCHEMES,
    ChestRadiographRule,
    LungRadsV2022,
    NLSTRule,
)
from sandbox.programmes.lung_ldct.people import resolve_people, subgroup_labels
from sandbox.programmes.lung_ldct.reading import (
    CT_REFERENCE,
    SPURIOUS_KEY,
    Finding,
    Prior,
    RadiographFindings,
    categorise,
    read_exam,
    update_prior,
    visible_findings,
)
from sandbox.rng import Streams, declare_streams

AUTONOMOUS_READER = -1
# a digital posteroanterior chest radiograph; its visibility model is imaging/radiograph.py (the
# CT fields are not used for a projection)
CXR = Scanner("dr_chest_pa", 0.02, 1.0, 1.0, 1.0, modality="cxr")
# a spurious finding survives the consensus discussion with this probability
CONSENSUS_KEEP_SPURIOUS = 0.35
# the renderer's code and parameters: a change to either invalidates cached scores
_RENDERER_FILES = ("imaging/render.py", "imaging/conspicuity.py", "imaging/findings.py")

declare_streams(
    {
        "cohort.*": "a candidate's age, sex, race, smoking, risk factors and site",
        "disease.*": "a person's lung cancer: onset, histology, growth, spread, symptoms, survival, other-cause death",
        "benign.*": "a person's benign nodules: count, size, type, growth, resolution",
        "schedule.entry": "the day a person is first invited",
        "read.*": "one read: detection and size of each finding, spurious findings, reading time, the look-back at earlier images",
        "workup.biopsy": "whether a work-up without cancer includes a benign biopsy",
        "workup.resection": "whether that benign invasive procedure is a surgical resection",
        "imaging.cxr_overlap": "whether a finding lies behind ribs, heart, hila or diaphragm on a chest radiograph (index: finding key)",
        "imaging.cxr_mimic": "whether a person's chest radiograph shows a nodule mimic, and its size (index 0, 1)",
    }
)


@dataclass(frozen=True, slots=True)
class ExamImage:
    """What the device is shown: the exam's key and its candidate regions
    (:mod:`sandbox.programmes.lung_ldct.imaging.findings`), none marked as the tumour."""

    person_id: int
    exam_day: int  # integer programme day of the scan
    scanner: Scanner
    candidates: tuple[Candidate, ...]


class LungLDCT(Programme):
    """Lung LDCT screening: Lung-RADS v2022 or NLST reporting, management and work-up."""

    name: ClassVar[str] = "lung_ldct"
    exam_kinds: ClassVar[tuple[str, ...]] = ("screen", "ct_6m", "ct_3m")
    management_kinds: ClassVar[tuple[str, ...]] = MANAGEMENT
    follow_up_days: ClassVar[dict[str, float]] = FOLLOW_UP_DAYS
    stages: ClassVar[tuple[str, ...]] = STAGES
    cancer_death_cause: ClassVar[str] = "lung_cancer"
    report_column: ClassVar[str] = "lung_rads"
    report_categories: ClassVar[tuple[str, ...]] = CATEGORIES
    # a tumour this large is reportable (the NLST positivity size)
    reportable_mm: ClassVar[float] = 4.0
    image_units: ClassVar[str | None] = "HU"  # a CT patch, [1, D, H, W]
    image_spatial_dims: ClassVar[int] = 3
    candidate_kinds: ClassVar[tuple[str, ...]] = CANDIDATE_KINDS
    has_cost_model: ClassVar[bool] = True
    subgroups: ClassVar[tuple[str, ...]] = ("sex", "race", "age_band", "smoking")
    summary_metrics: ClassVar[tuple[str, ...]] = (
        "lung_cancers_diagnosed",
        "overdiagnosed_cancers",
        "stage_I_share",
        "stage_IV_share",
        "lung_cancer_deaths",
        "lung_cancer_deaths_per_100k_person_years",
        "all_cause_deaths",
    )

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        p: LungProgrammeConfig = scenario.programme
        self.scheme: LungRadsV2022 = (
            NLSTRule(
                p.nlst_threshold_mm,
                p.stable_exempt_years * YEAR,
                p.subsolid_workup_mm,
                p.subsolid_workup_years * YEAR,
            )
            if SCHEMES[p.protocol] is NLSTRule
            else SCHEMES[p.protocol]()
        )
        self._n2 = scenario.disease.n2_over_n1
        self.cxr_scheme = ChestRadiographRule()

    def _scheme(self, exam: Any) -> LungRadsV2022:
        """The reporting rule of ``exam``: the radiograph rule for a chest radiograph."""
        return self.cxr_scheme if isinstance(exam.shows, RadiographFindings) else self.scheme

    def _fp_scale(self, exam: Any) -> float:
        """The reader's rate of spurious findings on this exam: on a chest radiograph relative
        to CT (``programme.radiograph.spurious_ratio``), and lower with earlier images of the
        person to compare (``programme.spurious_with_earlier``)."""
        prog = self.scenario.programme
        scale = prog.spurious_with_earlier if exam.prior.screened else 1.0
        if isinstance(exam.shows, RadiographFindings):
            return scale * prog.radiograph.spurious_ratio
        return scale

    def exam_scanner(self, site_scanner: Scanner, modality: str) -> Scanner:
        """A chest radiograph (``modality: cxr``) is taken on :data:`CXR`, whatever CT the site has."""
        if modality == "cxr":
            return CXR
        return super().exam_scanner(site_scanner, modality)

    @classmethod
    def config_types(cls) -> dict[str, type]:
        return {"cohort": Cohort, "disease": Disease, "programme": LungProgrammeConfig}

    # ---------------------------------------------------------------- cohort and disease
    def sample_cohort(
        self, streams: Streams, progress: Callable[[int], None] | None = None
    ) -> LungCohort:
        return sample_history(self.scenario, streams, progress=progress)

    def add_arrivals(
        self, cohort: LungCohort, streams: Streams, arrivals: Sequence[tuple]
    ) -> LungCohort:
        parts = [cohort]
        for k, (site, day, size, spread, cohort_cfg, _) in enumerate(arrivals):
            scn = dataclasses.replace(
                self.scenario,
                cohort=cohort_cfg,
                programme=dataclasses.replace(self.scenario.programme, schedule_spread_days=spread),
            )
            # the k-th change's candidates are numbered from (k + 1) 2^40: nobody else's ids
            parts.append(
                sample_history(
                    scn, streams, size, first_id=(k + 1) * 2**40, entry_day=day, site=site
                )
            )
        return concat_cohorts(parts)

    def person_timeline(
        self, cohort: LungCohort, rows: np.ndarray
    ) -> Iterable[tuple[int, PersonEvent]]:
        c, pid, end = cohort.cancer, cohort.people["person_id"], cohort.people["end_day"]
        clinical, other = c["clinical_day"][rows], c["other_death_day"][rows]
        stage = c["clinical_stage"][rows]
        dx = c["has_cancer"][rows] & (clinical < np.minimum(other, end[rows]))
        for i in np.flatnonzero(dx):
            r = int(rows[i])
            day = float(clinical[i])
            yield r, PersonEvent("diagnosis", int(pid[r]), day, "clinical", STAGES[stage[i]])
        for i in np.flatnonzero(other < end[rows]):
            r = int(rows[i])
            yield r, PersonEvent("death", int(pid[r]), float(other[i]), "other")

    def clinical_day(self, cohort: LungCohort, row: int) -> float:
        return float(cohort.cancer["clinical_day"][row])

    def cancer_death_day(
        self, cohort: LungCohort, row: int, dx_day: float, stage: str | None
    ) -> float:
        return cohort.cancer_death_day(row, stage, dx_day, self.scenario.disease)

    # ---------------------------------------------------------------- one exam
    def exam_shows(
        self, cohort: LungCohort, row: int, day: float, scanner: Scanner
    ) -> list[Finding]:
        return visible_findings(cohort, row, day, scanner, self.scenario.programme.radiograph)

    def new_prior(self) -> Prior:
        return Prior({})

    def read(
        self,
        reader: Reader,
        exam: Any,
        slot: int,
        boost: float = 1.0,
        marked: frozenset[int] | None = None,
    ) -> Read:
        # lung marks are not located: a boost applies to every finding
        return read_exam(
            reader,
            exam.shows,
            exam.prior,
            exam.site.streams,
            exam.person_id,
            exam.index,
            slot,
            exam.day,
            self._scheme(exam),
            boost,
            self._fp_scale(exam),
            self._earlier(exam) if self.scenario.programme.look_back_boost > 0.0 else None,
            self.scenario.programme.look_back_boost,
        )

    def _earlier(self, exam: Any) -> Callable[[float], dict[int, Finding]]:
        """What the person's earlier images showed, by day (for the reader's comparison; the
        images were taken on this site's scanner, as it was that day)."""
        site, rg = exam.site, self.scenario.programme.radiograph

        def shown(day: float) -> dict[int, Finding]:
            return {
                f.key: f
                for f in visible_findings(site.cohort, exam.row, day, site.scanner_at(day), rg)
            }

        return shown

    def normal_report(self) -> Read:
        return Read(AUTONOMOUS_READER, 0, [], C1, False, 0.0, -1, frozenset())

    def consensus(self, exam: Any, positive: Read, negative: Read, review: Read) -> Read:
        """A true lesion is kept if the reviewing reader, now looking at the marked location,
        sees it (or had reported it); a spurious one survives discussion with probability
        :data:`CONSENSUS_KEEP_SPURIOUS`."""
        kept_keys = {f.key for f in review.findings} | {f.key for f in negative.findings}
        kept = []
        for f in positive.findings:
            if f.key == SPURIOUS_KEY:
                if exam.u("consensus", f.key) < CONSENSUS_KEEP_SPURIOUS:
                    kept.append(f)
            elif f.key in kept_keys:
                kept.append(f)
        cat, pos, top, suspicious = categorise(kept, exam.prior, exam.day, self._scheme(exam))
        return Read(positive.reader_id, 3, kept, cat, pos, review.minutes, top, suspicious)

    def manage(self, exam: Any, final: Read) -> str:
        return self._scheme(exam).manage(
            final.category, final.positive, final.suspicious, exam.seq > 0
        )

    def after_report(self, exam: Any, final: Read) -> None:
        update_prior(
            exam.prior, final.findings, exam.day, self.scenario.programme.look_back_boost > 0.0
        )

    def workup(self, cohort: LungCohort, exam: Any, final: Read, day: float) -> WorkupOutcome:
        """PET-CT and biopsy of every suspicious finding of the report.

        A positive chest radiograph is worked up by a diagnostic CT of the chest first
        (``programme.radiograph.ct_workup_mm``): the CT shows every nodule of at least that size,
        wherever the film's finding was, so it finds a tumour the film did not show, and a
        finding the film alone showed (a mimic, a spurious one) ends there, without a biopsy.
        """
        row, c, prog = exam.row, cohort.cancer, self.scenario.programme
        found = MALIGNANT_KEY in final.suspicious
        radiograph = isinstance(exam.shows, RadiographFindings)
        ct_mm = prog.radiograph.ct_workup_mm
        # what the diagnostic CT after a radiograph shows (nodules of at least ct_workup_mm)
        on_ct = (
            [f for f in visible_findings(cohort, row, day, CT_REFERENCE) if f.size_mm >= ct_mm]
            if radiograph
            else []
        )
        if ct_mm > 0:
            found = found or any(f.key == MALIGNANT_KEY for f in on_ct)
        if found and c["onset_day"][row] <= day:
            d = cohort.cancer_diameter(row, day) * float(c["solid_fraction"][row])
            stage = stage_at(d, float(c["nodal_mm"][row]), self._n2, float(c["distant_mm"][row]))
            return WorkupOutcome(True, stage)
        # after a radiograph, an invasive procedure needs a benign nodule on the chest CT of at
        # least biopsy_min_mm to sample: a mimic or a reader's spurious finding is not on the
        # CT, and the work-up ends there
        min_mm = prog.radiograph.biopsy_min_mm
        target = not radiograph or any(
            f.key != MALIGNANT_KEY and f.size_mm >= min_mm for f in on_ct
        )
        biopsy = target and exam.u("workup.biopsy") < prog.benign_biopsy_given_workup
        resection = biopsy and exam.u("workup.resection") < prog.benign_resection_given_biopsy
        return WorkupOutcome(False, None, biopsy, resection)

    def exam_fields(self, exam: Any, final: Read) -> tuple[str, float, bool, bool, float]:
        malignant_mm = -1.0
        for f in exam.shows:
            if f.key == MALIGNANT_KEY:
                malignant_mm = f.size_mm
        top, reported = 0.0, False
        for f in final.findings:
            if f.key == final.top_key:
                top = f.size_mm
            if f.key == MALIGNANT_KEY:
                reported = True
        visible = malignant_mm >= 0.0
        return CATEGORIES[final.category], top, visible, reported, max(malignant_mm, 0.0)

    # ---------------------------------------------------------------- AI devices
    @classmethod
    def networks(cls) -> dict[str, type]:
        from sandbox.programmes.lung_ldct.nets import NoduleCNN

        return {"NoduleCNN": NoduleCNN}

    def check_input_shape(self, shape: tuple[int, ...]) -> str:
        if shape[0] != 1 or len(set(shape[1:])) != 1:
            return "the lung renderer makes one-channel cubic CT patches, [1, N, N, N]"
        return ""

    def render_bytes(self, shape: tuple[int, ...]) -> int:
        # about eight float32 volumes per patch while rendering (imaging/render.py, "Cost")
        return 8 * 4 * math.prod(shape)

    def image_of(self, person_id: int, day: float, scanner: Scanner, shows: Any) -> ExamImage:
        return ExamImage(person_id, int(day), scanner, candidates(person_id, shows))

    def render(
        self,
        patches: Sequence[tuple[ExamImage, Candidate]],
        seed: int,
        size: int,
        device: str,
        out: Any = None,
    ) -> Any:
        return render_patches(patches, seed, size, device, out)

    def candidate_kind(self, image: ExamImage, index: int, shows: Any) -> str:
        return candidate_kind(image.person_id, image.candidates[index].location, shows)

    def renderer_version(self) -> str:
        return renderer_version()

    def image_relevant(self) -> dict[str, Any]:
        return {
            "cohort": self.scenario.cohort,
            "disease": self.scenario.disease,
            "schedule": self.schedule_relevant(),
        }

    # ---------------------------------------------------------------- outcomes
    def resolve_people(
        self,
        cohort: CohortProtocol,
        screen_dx_day: np.ndarray,
        screen_dx_stage: np.ndarray,
        screens: pl.DataFrame,
    ) -> pl.DataFrame:
        return resolve_people(self.scenario, cohort, screen_dx_day, screen_dx_stage, screens)

    def subgroup_labels(self, cohort: LungCohort) -> dict[str, np.ndarray]:
        return subgroup_labels(cohort.people)

    @classmethod
    def metric_definitions(cls):
        return lung_metrics.definitions()

    def screen_aggregations(self) -> list[pl.Expr]:
        return lung_metrics.screen_aggregations()

    def people_aggregations(self) -> list[pl.Expr]:
        return lung_metrics.people_aggregations()


def render_patches(
    patches: Sequence[tuple[ExamImage, Candidate]],
    seed: int,
    size: int,
    device: str,
    out: Any = None,
) -> Any:
    """CT patches ``[B, 1, size, size, size]`` in HU, one per (exam, candidate) (imports torch);
    into ``out`` when given (``render_batch``)."""
    from sandbox.programmes.lung_ldct.imaging.render import PatchSpec, render_batch

    specs = [
        PatchSpec(
            (e.person_id, e.exam_day),
            c.diameter_mm,
            c.nodule_type,
            c.spiculated,
            e.scanner,
            c.location,
        )
        for e, c in patches
    ]
    return render_batch(specs, seed, size=size, device=device, out=out)


def render_images(images: Sequence[ExamImage], seed: int, size: int, device: str) -> Any:
    """Every candidate patch of ``images``, exam by exam, ``[sum of candidates, 1, S, S, S]``."""
    return render_patches([(e, c) for e in images for c in e.candidates], seed, size, device)


def renderer_version() -> str:
    """Digest of the renderer's source (its code and its parameters)."""
    return source_digest("lung_ct_patch", Path(__file__).parent, _RENDERER_FILES)

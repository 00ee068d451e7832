"""Breast cancer screening with 2-D mammography, as a :class:`~sandbox.programmes.base.Programme`.

Women 40-74 (scenario-configurable) with breast density, risk factors, invasive cancer, DCIS and
benign findings (:mod:`.history`, :mod:`.benign`); an exam shows what is present that day with
its conspicuity on the site's mammography system (:mod:`.visibility`); readers report BI-RADS
1, 2 or 0 (recall), read singly or doubly with consensus or arbitration (the policy); a recall
goes to assessment (diagnostic mammography, ultrasound, needle biopsy) with each site's
capacity. Screening continues every ``interval_years`` (two by default).
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
from sandbox.programmes.base import (
    DIAGNOSIS_MODES,
    PersonEvent,
    Programme,
    Read,
    WorkupOutcome,
    diagnosis_modes,
    source_digest,
)
from sandbox.programmes.breast_mammo import metrics as breast_metrics
from sandbox.programmes.breast_mammo.benign import sample_benign
from sandbox.programmes.breast_mammo.config import (
    DENSITIES,
    STAGES,
    BreastCohortConfig,
    BreastDisease,
    BreastProgrammeConfig,
)
from sandbox.programmes.breast_mammo.history import (
    YEAR,
    cancer_death_day,
    diameter_mm,
    sample_histories,
    sample_women,
    stage,
)
from sandbox.programmes.breast_mammo.imaging import (
    CANDIDATE_KINDS,
    MARGINS,
    Candidate,
    MammoImage,
    PatchSpec,
    candidate_kind,
    candidates,
    finding_at,
)
from sandbox.programmes.breast_mammo.reading import (
    CATEGORIES,
    DCIS_KEY,
    INVASIVE_KEY,
    KINDS,
    SPURIOUS_KEY,
    Finding,
    Prior,
    categorise,
    consensus,
    detector,
    read_exam,
    visible_findings,
)
from sandbox.rng import Streams, declare_streams

AUTONOMOUS_READER = -1
# the renderer's code and parameters: a change to either invalidates cached scores
_RENDERER_FILES = ("imaging.py", "visibility.py", "reading.py")
# longest preclinical (screen-detectable) phase sampled: at the slowest growth (doubling time
# at its 99th percentile) a tumour takes about 8 years from 5 mm to its clinical size
PRECLINICAL_YEARS = 10.0
DEATH_CAUSES = ("alive", "breast_cancer", "other")
AGE_BANDS = ((40, 50, "40-49"), (50, 60, "50-59"), (60, 70, "60-69"), (70, 200, "70+"))

declare_streams(
    {
        "breast.site": "the site a woman is invited to",
        "breast.morphology.*": "how a woman's findings look: a mass's margin and shape, calcifications' arrangement",
        "breast.previous.*": "whether a woman had a screen before the simulation, and whether it found her cancer or DCIS",
        "breast.entry": "the day a woman is first invited",
        "breast.consensus": "whether a spurious call survives consensus discussion",
        "breast.assessment.*": "an assessment: whether it finds a recalled cancer, a benign biopsy, benign surgery",
    }
)


def categorical(u: np.ndarray, shares) -> np.ndarray:
    """Index of the share each uniform ``u`` falls in (shares need not sum to one)."""
    cdf = np.cumsum(np.asarray(shares, dtype=np.float64))
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(cdf) - 1).astype(np.int8)


def _irregular(margin: np.ndarray, indistinct: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A mass's irregular shape: spiculated always, circumscribed never, indistinct with the
    kind's probability ``indistinct``."""
    return (margin == MARGINS.index("spiculated")) | (
        (margin == MARGINS.index("indistinct")) & (u < indistinct)
    )


def _morphology(m, streams: Streams, ids: np.ndarray, h: dict, benign: dict) -> None:
    """Margins, shapes and calcification arrangements (:class:`~.config.Morphology`), into
    ``h`` and ``benign``."""
    h["margin"] = categorical(streams.uniform("breast.morphology.margin", ids), m.invasive_margin)
    shape_u = streams.uniform("breast.morphology.shape", ids)
    h["irregular"] = _irregular(h["margin"], np.float64(m.indistinct_irregular[0]), shape_u)
    h["dcis_pleomorphic"] = streams.uniform("breast.morphology.dcis", ids) < m.dcis_pleomorphic
    pid, kind = ids[benign["row"]], benign["kind"]
    j = np.arange(len(pid)) - np.searchsorted(benign["row"], benign["row"])
    u = streams.uniform("breast.morphology.benign", pid, j)
    margin = np.where(
        kind == 0, categorical(u, m.cyst_margin), categorical(u, m.fibroadenoma_margin)
    )
    benign["margin"] = margin.astype(np.int8)
    p_irregular = np.asarray(m.indistinct_irregular, dtype=np.float64)[1:][np.minimum(kind, 1)]
    shape_u = streams.uniform("breast.morphology.benign_shape", pid, j)
    benign["irregular"] = (kind < 2) & _irregular(benign["margin"], p_irregular, shape_u)
    benign["pleomorphic"] = (kind == 2) & (u < m.benign_calcifications_pleomorphic)


def age_band(age: np.ndarray) -> np.ndarray:
    """Ten-year age bands at the first invitation (40-49, ..., 70+)."""
    out = np.full(len(age), "under 40", dtype=object)
    for lo, hi, name in AGE_BANDS:
        out[(age >= lo) & (age < hi)] = name
    return out.astype(str)


@dataclass
class BreastCohort:
    """The invited women (``people``), their cancer histories (``history``: programme days)
    and benign findings (``benign``, flat; woman ``r``'s are rows ``benign_start[r]`` to
    ``benign_start[r + 1]``)."""

    people: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    benign: dict[str, np.ndarray]
    benign_start: np.ndarray
    horizon_day: float

    def __len__(self) -> int:
        return len(self.people["person_id"])

    def exit_days(self) -> np.ndarray:
        h = self.history
        return np.minimum(h["clinical_day"], h["other_death_day"])

    def clinical_stage(self, rows) -> np.ndarray:
        """Stage index (1-4) of invasive cancers at their clinical diameter."""
        h = self.history
        return stage(
            h["clinical_diameter_mm"][rows],
            h["node_diameter_mm"][rows],
            h["distant_diameter_mm"][rows],
        )


class BreastMammo(Programme):
    """Breast screening with 2-D mammography: BI-RADS screening reports, recall to assessment."""

    name: ClassVar[str] = "breast_mammo"
    exam_kinds: ClassVar[tuple[str, ...]] = ("screen",)
    management_kinds: ClassVar[tuple[str, ...]] = ("next_round", "workup")
    follow_up_days: ClassVar[dict[str, float]] = {}
    stages: ClassVar[tuple[str, ...]] = STAGES
    cancer_death_cause: ClassVar[str] = DEATH_CAUSES[1]
    report_column: ClassVar[str] = "bi_rads"
    report_categories: ClassVar[tuple[str, ...]] = CATEGORIES
    reportable_mm: ClassVar[float] = 5.0
    subgroups: ClassVar[tuple[str, ...]] = ("age_band", "density", "family_history")
    image_units: ClassVar[str | None] = "mammo_relative"  # a 2-D patch, [1, H, W]
    image_spatial_dims: ClassVar[int] = 2
    candidate_kinds: ClassVar[tuple[str, ...]] = CANDIDATE_KINDS
    has_cost_model: ClassVar[bool] = True  # conf/economics/sweden_breast.yaml
    summary_metrics: ClassVar[tuple[str, ...]] = (
        "breast_cancers_diagnosed",
        "dcis_share_screen_detected",
        "invasive_stage_II_plus_share",
        "breast_cancer_deaths",
        "all_cause_deaths",
    )

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        self._detectors: dict[Scanner, Any] = {}

    @classmethod
    def config_types(cls) -> dict[str, type]:
        return {
            "cohort": BreastCohortConfig,
            "disease": BreastDisease,
            "programme": BreastProgrammeConfig,
        }

    # ---------------------------------------------------------------- cohort and disease
    def sample_cohort(
        self, streams: Streams, progress: Callable[[int], None] | None = None
    ) -> BreastCohort:
        scn = self.scenario
        n, p, d = scn.cohort.size, scn.programme, scn.disease
        ids = np.arange(n, dtype=np.int64)
        shares = np.array([s.share for s in scn.sites], dtype=np.float64)
        shares = shares / shares.sum()
        site = np.searchsorted(np.cumsum(shares), streams.uniform("breast.site", ids), side="right")
        follow = ((p.rounds - 1) * p.interval_years + p.follow_up_years_after_last_round) * YEAR
        entry = streams.uniform("breast.entry", ids) * p.schedule_spread_days
        w = sample_women(scn.cohort.women, streams, ids)
        # cancers surfacing up to PRECLINICAL_YEARS after follow-up ends may already show on
        # a screen within it
        h = sample_histories(scn.cohort.women, d, streams, w, follow / YEAR + PRECLINICAL_YEARS)
        for col in (
            "clinical_day",
            "onset_day",
            "dcis_onset_day",
            "dcis_end_day",
            "other_death_day",
        ):
            h[col] = h[col] + entry
        benign = sample_benign(d.benign, streams, w, follow / YEAR)
        benign["appear_day"] = benign["appear_day"] + entry[benign["row"]]
        benign["resolve_day"] = benign["resolve_day"] + entry[benign["row"]]
        start = np.searchsorted(benign["row"], np.arange(n + 1))
        _morphology(d.morphology, streams, w["person_id"], h, benign)
        site = np.minimum(site, len(shares) - 1).astype(np.int16)
        prev = p.previous_screen
        screened = streams.uniform("breast.previous.screened", ids) < prev.share
        people = {
            **w,
            "site": site,
            "entry_day": entry,
            "end_day": entry + follow,
            "previous_day": np.where(screened, entry - prev.years_before * YEAR, -np.inf),
        }
        cohort = BreastCohort(people, h, benign, start, p.schedule_spread_days + follow)
        self._previous_screen(cohort, streams)
        if progress:
            progress(n)
        return cohort

    def _previous_screen(self, cohort: BreastCohort, streams: Streams) -> None:
        """Treat what the screen before the simulation found (:class:`~.config.PreviousScreen`):
        a cancer or DCIS it detected and recalled is removed from the woman's history."""
        prev, h, p = self.scenario.programme.previous_screen, cohort.history, cohort.people
        rd = self.scenario.programme.reading
        scanners = [s.scanner for s in self.scenario.sites]
        rows = np.flatnonzero(
            np.isfinite(p["previous_day"])
            & ((h["onset_day"] <= p["previous_day"]) | (h["dcis_onset_day"] <= p["previous_day"]))
        )
        for r in rows:
            day = float(p["previous_day"][r])
            det = self._detector(scanners[p["site"][r]])
            for f in visible_findings(cohort, int(r), day, det, rd):
                if f.key not in (INVASIVE_KEY, DCIS_KEY):
                    continue
                one = (
                    1.0 / (1.0 + (prev.c50 / f.conspicuity) ** prev.slope)
                    if f.conspicuity > 0
                    else 0.0
                )
                one *= rd.recall_invasive if f.key == INVASIVE_KEY else rd.recall_dcis
                found = 1.0 - (1.0 - one) ** prev.readers
                if streams.u("breast.previous.found", int(p["person_id"][r]), f.key) < found:
                    if f.key == INVASIVE_KEY:
                        h["has_cancer"][r] = False
                        for col in ("clinical_day", "onset_day"):
                            h[col][r] = np.inf
                    else:
                        h["has_dcis"][r] = False
                        h["dcis_onset_day"][r] = h["dcis_end_day"][r] = np.inf

    def person_timeline(
        self, cohort: BreastCohort, rows: np.ndarray
    ) -> Iterable[tuple[int, PersonEvent]]:
        h, pid, end = cohort.history, cohort.people["person_id"], cohort.people["end_day"]
        clinical, other = h["clinical_day"][rows], h["other_death_day"][rows]
        dx = h["has_cancer"][rows] & (clinical < np.minimum(other, end[rows]))
        st = cohort.clinical_stage(rows)
        for i in np.flatnonzero(dx):
            r = int(rows[i])
            yield (
                r,
                PersonEvent(
                    "diagnosis", int(pid[r]), float(clinical[i]), "clinical", STAGES[st[i]]
                ),
            )
        for i in np.flatnonzero(other < end[rows]):
            r = int(rows[i])
            yield r, PersonEvent("death", int(pid[r]), float(other[i]), "other")

    def clinical_day(self, cohort: BreastCohort, row: int) -> float:
        return float(cohort.history["clinical_day"][row])

    def cancer_death_day(
        self, cohort: BreastCohort, row: int, dx_day: float, stage_: str | None
    ) -> float:
        if stage_ is None:
            return math.inf
        k = np.array([STAGES.index(stage_)])
        return float(
            cancer_death_day(cohort.history, np.array([row]), k, dx_day, self.scenario.disease)[0]
        )

    # ---------------------------------------------------------------- one exam
    def exam_scanner(self, site_scanner: Scanner, modality: str) -> Scanner:
        if modality in ("ct", "mammo"):  # the policy's default modality is the site's system
            return site_scanner
        return super().exam_scanner(site_scanner, modality)

    def _detector(self, scanner: Scanner) -> Any:
        det = self._detectors.get(scanner)
        if det is None:
            det = self._detectors[scanner] = detector(scanner)
        return det

    def exam_shows(
        self, cohort: BreastCohort, row: int, day: float, scanner: Scanner
    ) -> list[Finding]:
        return visible_findings(
            cohort, row, day, self._detector(scanner), self.scenario.programme.reading
        )

    def new_prior(self) -> Prior:
        return Prior()

    def _prior(self, exam: Any) -> Prior:
        """The woman's prior state; at her first simulated screen, what her screen before the
        simulation showed, if she had one."""
        prior = exam.prior
        if not prior.screened and not prior.started:
            prior.started = True
            cohort = exam.site.cohort
            day = float(cohort.people["previous_day"][exam.row])
            if math.isfinite(day):
                prior.screened = True
                scanner = exam.site.scanner_at(day)
                prior.seen.update(f.key for f in self.exam_shows(cohort, exam.row, day, scanner))
        return prior

    def read(
        self,
        reader: Reader,
        exam: Any,
        slot: int,
        boost: float = 1.0,
        marked: frozenset[int] | None = None,
    ) -> Read:
        """One read of ``exam``; a mark (``boost`` above 1) helps the reader see the finding at
        the region the AI marked, and the findings in ``marked`` (another reader's, in a
        consensus review), and nothing else (a mark on tissue helps see nothing); a ``boost``
        below 1 (readers relaxing on a negative AI) applies to every finding."""
        if boost > 1.0 and exam.ai_read is not None:
            ai = frozenset(() if exam.ai_mark is None else (exam.ai_mark,))
            marked = ai if marked is None else marked | ai
        return read_exam(
            reader,
            exam.shows,
            self._prior(exam),
            exam.site.streams,
            exam.person_id,
            exam.index,
            slot,
            self.scenario.programme.reading,
            boost,
            marked,
        )

    def normal_report(self) -> Read:
        return Read(AUTONOMOUS_READER, 0, [], 0, False, 0.0, -1, frozenset())

    def consensus(self, exam: Any, positive: Read, negative: Read, review: Read) -> Read:
        keep = self.scenario.programme.reading.consensus_keep_spurious
        kept = consensus(positive, negative, review, keep, exam.u("breast.consensus"))
        cat, pos, top, sus = categorise(kept)
        return Read(positive.reader_id, 3, kept, cat, pos, review.minutes, top, sus)

    has_high_risk_recall: ClassVar[bool] = True
    marks_locate: ClassVar[bool] = True

    def marked_finding(self, image: MammoImage, index: int, shows: Any) -> int | None:
        return finding_at(image.person_id, image.candidates[index].location, shows)

    def high_risk_recall(self, exam: Any, reads: list[Read]) -> Read | None:
        """MASAI's rule for the exams the AI scores in its top 1%: recalled unless the readers,
        looking where the AI marks, judge the flag obviously false positive. They do when there
        is nothing there to act on: the mark is on tissue, on a finding none of them detected,
        or on a benign finding unchanged since the earlier mammogram. Otherwise the marked
        finding is recalled. (Without a located mark: anything they saw that is not a stable
        benign finding.)"""
        kept, keys = [], set()
        located = exam.ai_read is not None
        for r in reads:
            for f in r.findings:
                stable = KINDS[f.kind] not in ("invasive", "dcis") and f.key in exam.prior.seen
                if f.key == SPURIOUS_KEY or stable or f.key in keys:
                    continue
                if located and f.key != exam.ai_mark:
                    continue
                keys.add(f.key)
                kept.append(dataclasses.replace(f, suspicious=True))
        if not kept:
            return None
        cat, pos, top, sus = categorise(kept)
        return Read(reads[0].reader_id, 3, kept, cat, pos, 0.0, top, sus)

    def manage(self, exam: Any, final: Read) -> str:
        return "workup" if final.positive else "next_round"

    def after_report(self, exam: Any, final: Read) -> None:
        exam.prior.screened = True
        exam.prior.seen.update(f.key for f in exam.shows)

    def workup(self, cohort: BreastCohort, exam: Any, final: Read, day: float) -> WorkupOutcome:
        """Assessment of the recalled findings: a recalled invasive cancer or DCIS is diagnosed
        unless the assessment is falsely negative; otherwise a benign needle biopsy or surgery
        may follow (:class:`~.config.Assessment`)."""
        a, h, row = self.scenario.programme.assessment, cohort.history, exam.row
        if exam.u("breast.assessment.finds") < a.finds_recalled_cancer:
            if INVASIVE_KEY in final.suspicious and h["onset_day"][row] <= day:
                d = float(diameter_mm(h, row, day))
                st = stage(
                    np.array([d]),
                    h["node_diameter_mm"][row : row + 1],
                    h["distant_diameter_mm"][row : row + 1],
                    self.scenario.disease.invasive.extensive_nodes_factor,
                )[0]
                return WorkupOutcome(True, STAGES[st])
            if DCIS_KEY in final.suspicious:
                return WorkupOutcome(True, STAGES[0])
        biopsy = exam.u("breast.assessment.biopsy") < a.benign_biopsy
        surgery = biopsy and exam.u("breast.assessment.surgery") < a.benign_surgery
        return WorkupOutcome(False, None, biopsy, surgery)

    def exam_fields(self, exam: Any, final: Read) -> tuple[str, float, bool, bool, float]:
        malignant_mm = -1.0
        for f in exam.shows:
            if f.key in (INVASIVE_KEY, DCIS_KEY):
                malignant_mm = max(malignant_mm, f.size_mm)
        top, reported = 0.0, False
        for f in final.findings:
            if f.key == final.top_key:
                top = f.size_mm
            if f.key in (INVASIVE_KEY, DCIS_KEY) and f.suspicious:
                reported = True
        return (
            CATEGORIES[final.category],
            top,
            malignant_mm >= 0.0,
            reported,
            max(malignant_mm, 0.0),
        )

    # ---------------------------------------------------------------- AI devices
    def check_input_shape(self, shape: tuple[int, ...]) -> str:
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            return "the breast renderer makes one-channel square mammogram patches, [1, N, N]"
        return ""

    def render_bytes(self, shape: tuple[int, ...]) -> int:
        # tissue, quantum noise and their transforms: about twelve float64 images per patch
        return 12 * 8 * math.prod(shape)

    def image_of(self, person_id: int, day: float, scanner: Scanner, shows: Any) -> MammoImage:
        return MammoImage(person_id, int(day), scanner, shows.density, candidates(person_id, shows))

    def render(
        self,
        patches: Sequence[tuple[MammoImage, Candidate]],
        seed: int,
        size: int,
        device: str,
        out: Any = None,
    ) -> Any:
        return render_patches(patches, seed, size, device, out, self._detector)

    def candidate_kind(self, image: MammoImage, index: int, shows: Any) -> str:
        loc = image.candidates[index].location
        return candidate_kind(image.person_id, loc, shows, (INVASIVE_KEY, DCIS_KEY))

    def renderer_version(self) -> str:
        return source_digest("breast_mammo_patch", Path(__file__).parent, _RENDERER_FILES)

    def image_relevant(self) -> dict[str, Any]:
        previous = self.scenario.programme.previous_screen
        return {
            "cohort": self.scenario.cohort,
            "disease": self.scenario.disease,
            "schedule": {**self.schedule_relevant(), "previous_screen": previous},
        }

    # ---------------------------------------------------------------- outcomes
    def subgroup_labels(self, cohort: BreastCohort) -> dict[str, np.ndarray]:
        p = cohort.people
        return {
            "age_band": age_band(p["age"]),
            "density": np.array(DENSITIES)[p["density"]],
            "family_history": np.where(p["family_history"] == 1, "yes", "no"),
        }

    def resolve_people(
        self,
        cohort: BreastCohort,
        screen_dx_day: np.ndarray,
        screen_dx_stage: np.ndarray,
        screens: pl.DataFrame,
    ) -> pl.DataFrame:
        """One row per woman: how and when her cancer was diagnosed (a screen-detected cancer
        is invasive or DCIS; a clinical one invasive), at what stage, and who died of what
        (the modes: :data:`~sandbox.programmes.base.DIAGNOSIS_MODES`)."""
        p, h = cohort.people, cohort.history
        n = len(cohort)
        entry, end = p["entry_day"], p["end_day"]
        window = self.scenario.programme.interval_cancer_window_years * YEAR
        clinical, other = h["clinical_day"], h["other_death_day"]
        screen_first = screen_dx_day < clinical
        dx_day = np.where(screen_first, screen_dx_day, clinical)
        diagnosed = np.isfinite(dx_day) & (dx_day < np.minimum(other, end))
        mode, dx_round = diagnosis_modes(
            p["person_id"], diagnosed, dx_day, screen_first, screens, window
        )
        clin_stage = cohort.clinical_stage(np.arange(n))
        stage_idx = np.where(
            diagnosed, np.where(screen_first, screen_dx_stage, clin_stage), -1
        ).astype(np.int8)
        rows = np.arange(n)
        cd = cancer_death_day(
            h,
            rows,
            np.maximum(stage_idx, 0),
            np.where(diagnosed, dx_day, np.inf),
            self.scenario.disease,
        )
        cd = np.where(diagnosed, cd, np.inf)
        # without screening: the invasive cancer surfaces at its clinical stage
        later = h["has_cancer"] & ~diagnosed & (clinical < other)
        cd_life = np.where(
            later, cancer_death_day(h, rows, clin_stage, clinical, self.scenario.disease), cd
        )
        death = np.minimum(other, cd)
        cause = np.where(cd < other, 1, 2)
        cause = np.where(death < end, cause, 0).astype(np.int8)
        death = np.where(cause > 0, death, np.inf)
        life_death = np.minimum(other, cd_life)
        life_dx = np.where(diagnosed, dx_day, np.where(later, clinical, np.nan))
        stage_names = np.array(["", *STAGES], dtype=object)
        stage_col = stage_names[stage_idx + 1]
        life_stage = np.where(later, stage_names[clin_stage + 1], stage_col)
        return pl.DataFrame(
            {
                "person_id": p["person_id"],
                "site": p["site"],
                **self.subgroup_labels(cohort),
                "sex": np.full(n, "F"),  # the cohort is women (utility norms are by sex)
                "age": p["age"],
                "entry_day": entry,
                "end_day": end,
                "has_cancer": h["has_cancer"] | h["has_dcis"],
                "invasive": h["has_cancer"],
                "dcis": h["has_dcis"],
                "onset_day": h["onset_day"],
                "clinical_day": clinical,
                "diagnosis_day": np.where(diagnosed, dx_day, math.nan),
                "diagnosis_mode": np.array(DIAGNOSIS_MODES)[mode],
                "diagnosis_round": dx_round,
                "stage": stage_col.astype(str),
                "death_day": np.where(np.isfinite(death), death, math.nan),
                "death_cause": np.array(DEATH_CAUSES)[cause],
                "person_years": (np.minimum(death, end) - entry) / YEAR,
                "overdiagnosed": (mode == 1) & ~(clinical < other),
                "lifetime_death_day": life_death,
                "other_cause_death_day": other,
                "lifetime_death_cause": np.array(DEATH_CAUSES)[np.where(cd_life < other, 1, 2)],
                "lifetime_years": (life_death - entry) / YEAR,
                "lifetime_diagnosis_day": life_dx,
                "lifetime_stage": life_stage.astype(str),
            },
            schema_overrides={
                "site": pl.Int16,
                "diagnosis_mode": pl.Enum(list(DIAGNOSIS_MODES)),
                "death_cause": pl.Enum(list(DEATH_CAUSES)),
                "lifetime_death_cause": pl.Enum(list(DEATH_CAUSES)),
            },
        ).with_columns(
            pl.col("diagnosis_day", "death_day", "lifetime_diagnosis_day").fill_nan(None),
            pl.col("stage", "lifetime_stage").replace("", None),
        )

    @classmethod
    def metric_definitions(cls):
        return breast_metrics.definitions()

    def screen_aggregations(self) -> list[pl.Expr]:
        return breast_metrics.screen_aggregations()

    def people_aggregations(self) -> list[pl.Expr]:
        return breast_metrics.people_aggregations()


def render_patches(
    patches: Sequence[tuple[MammoImage, Candidate]],
    seed: int,
    size: int,
    device: str,
    out: Any = None,
    detector_of: Callable[[Scanner], Any] = detector,
) -> Any:
    """Mammogram patches ``[B, 1, size, size]``, one per (exam, candidate) (imports torch)."""
    from sandbox.programmes.breast_mammo.imaging import render_batch

    specs = [
        PatchSpec(
            e.person_id,
            e.exam_day,
            c.view,
            c.location,
            e.density,
            detector_of(e.scanner),
            c.mass_mm,
            c.margin,
            c.calc_mm,
            c.pleomorphic,
            c.irregular,
        )
        for e, c in patches
    ]
    return render_batch(specs, seed, size=size, device=device, out=out)

"""Reading a screening mammogram: what it shows, what a reader sees and calls, the report.

An exam shows every finding present that day, with its conspicuity on the site's mammography
system: the invasive tumour (a mass, with calcifications in some), non-progressive DCIS (a
cluster of calcifications), the woman's benign findings. A reader detects each with the
probability their skill gives its conspicuity (``Reader.detect_probability``), judges each
detected finding suspicious or benign (:class:`~.config.Reading`), and may make a spurious call
of their own. The report is BI-RADS as screening uses it: 1 (negative), 2 (benign finding) or
0 (recall for assessment). Readers act on conspicuity and their own judgement, never on the
truth: whether a finding is malignant only sets how suspicious it looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sandbox.agents.readers import Reader
from sandbox.config import Scanner
from sandbox.programmes.base import Read
from sandbox.programmes.breast_mammo.config import BENIGN_KINDS, Reading
from sandbox.programmes.breast_mammo.history import diameter_mm
from sandbox.programmes.breast_mammo.visibility import (
    Detector,
    calcification_detectability,
    mass_detectability,
)
from sandbox.rng import declare_streams, read_key

INVASIVE_KEY, DCIS_KEY, BENIGN_KEY0 = 0, 1, 2  # benign finding j of a woman: key 2 + j
SPURIOUS_KEY = 63  # the last item of a read (sandbox.rng.ITEMS)
KINDS = ("invasive", "dcis", *BENIGN_KINDS, "spurious")
CATEGORIES = ("1", "2", "0")  # BI-RADS screening reports by rising suspicion: 0 is a recall
NEGATIVE, BENIGN, RECALL = 0, 1, 2
FWHM_TO_SD = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
SPURIOUS_MM = 8.0  # a summation or asymmetry, about the size of a small mass

declare_streams(
    {
        "breast.read.*": "one read of a mammogram: detection and judgement of each finding, a spurious call, reading time",
    }
)


@dataclass(slots=True)
class Finding:
    """One finding of an exam: ``key`` (:data:`INVASIVE_KEY`, :data:`DCIS_KEY`, benign keys from
    :data:`BENIGN_KEY0`, :data:`SPURIOUS_KEY`), ``kind`` (an index into :data:`KINDS`), its size
    and conspicuity; in a report, whether the reader called it suspicious."""

    key: int
    kind: int
    size_mm: float
    conspicuity: float
    suspicious: bool = False
    # how it looks (the rendered image): a mass's diameter, margin and shape (irregular, else
    # round to oval), a cluster's extent and whether its specks are pleomorphic
    mass_mm: float = 0.0
    margin: int = 0
    calc_mm: float = 0.0
    pleomorphic: bool = False
    irregular: bool = False


class Shows(list):
    """The findings an exam shows (a list of :class:`Finding`), with the breast's BI-RADS
    density (0-3): the tissue its image is drawn with."""

    def __init__(self, findings=(), density: int = 0) -> None:
        super().__init__(findings)
        self.density = density


@dataclass
class Prior:
    """What a woman's earlier mammograms showed: whether she has one, and the keys of the
    findings visible on them (a finding seen before and unchanged is stable)."""

    screened: bool = False
    seen: set[int] = field(default_factory=set)
    started: bool = False  # the screen before the simulation has been looked up


def detector(scanner: Scanner) -> Detector:
    """The mammography system of a site's scanner entry (``modality: mammo``): quantum noise
    ``noise_hu_at_1mgy`` (relative units, at 1 mGy mean glandular dose) scaled by the dose,
    blur ``kernel_fwhm_mm`` (FWHM), pixel pitch ``slice_mm``."""
    return Detector(
        scanner.model,
        quantum_noise=scanner.noise_hu_at_1mgy / math.sqrt(scanner.dose_mgy),
        blur_mm=scanner.kernel_fwhm_mm * FWHM_TO_SD,
        pixel_mm=scanner.slice_mm,
    )


def visible_findings(
    cohort: Any, row: int, day: float, det: Detector, reading: Reading
) -> list[Finding]:
    """The findings a mammogram of woman ``row`` on ``day`` on ``det`` shows."""
    h, density = cohort.history, int(cohort.people["density"][row])
    out = Shows(density=density)
    if h["has_cancer"][row] and h["onset_day"][row] <= day:
        d = float(diameter_mm(h, row, day))
        if d > 0.0:
            c = reading.mass_efficiency * float(mass_detectability(d, density, det))
            calc_mm = d if h["calcifications"][row] else 0.0
            if calc_mm:
                calc = float(calcification_detectability(d, density, det))
                c = max(c, reading.calcification_efficiency * calc)
            margin, irregular = int(h["margin"][row]), bool(h["irregular"][row])
            out.append(
                Finding(INVASIVE_KEY, 0, d, c, False, d, margin, calc_mm, calc_mm > 0, irregular)
            )
    if h["has_dcis"][row] and h["dcis_onset_day"][row] <= day < h["dcis_end_day"][row]:
        extent = float(h["dcis_extent_mm"][row])
        c = reading.calcification_efficiency * float(
            calcification_detectability(extent, density, det)
        )
        out.append(
            Finding(DCIS_KEY, 1, extent, c, False, 0.0, 0, extent, bool(h["dcis_pleomorphic"][row]))
        )
    b = cohort.benign
    for i in range(cohort.benign_start[row], cohort.benign_start[row + 1]):
        if b["appear_day"][i] <= day < b["resolve_day"][i]:
            kind, size = int(b["kind"][i]), float(b["size_mm"][i])
            key = BENIGN_KEY0 + int(i - cohort.benign_start[row])
            if BENIGN_KINDS[kind] == "calcifications":
                c = reading.calcification_efficiency * float(
                    calcification_detectability(size, density, det)
                )
                pleo = bool(b["pleomorphic"][i])
                out.append(Finding(key, 2 + kind, size, c, False, 0.0, 0, size, pleo))
            else:
                c = reading.mass_efficiency * float(mass_detectability(size, density, det))
                margin, irregular = int(b["margin"][i]), bool(b["irregular"][i])
                out.append(
                    Finding(key, 2 + kind, size, c, False, size, margin, 0.0, False, irregular)
                )
    return out


def _recall_probability(f: Finding, prior: Prior, reading: Reading) -> float:
    kind = KINDS[f.kind]
    if kind == "invasive":
        return reading.recall_invasive
    if kind == "dcis":
        return reading.recall_dcis
    p = (
        reading.recall_benign_calcifications
        if kind == "calcifications"
        else reading.recall_benign_mass
    )
    return p * (reading.stable_benign_factor if f.key in prior.seen else 1.0)


def categorise(findings: list[Finding]) -> tuple[int, bool, int, frozenset[int]]:
    """(category, positive, top key, suspicious keys) of a report's findings."""
    suspicious = frozenset(f.key for f in findings if f.suspicious)
    if suspicious:
        top = max((f for f in findings if f.suspicious), key=lambda f: f.conspicuity).key
        return RECALL, True, top, suspicious
    if findings:
        return BENIGN, False, max(findings, key=lambda f: f.size_mm).key, suspicious
    return NEGATIVE, False, -1, suspicious


def read_exam(
    reader: Reader,
    shows: list[Finding],
    prior: Prior,
    streams: Any,
    person_id: int,
    exam_index: int,
    slot: int,
    reading: Reading,
    boost: float = 1.0,
    marked: frozenset[int] | None = None,
) -> Read:
    """One reader's independent read: each finding detected with the reader's probability at
    its conspicuity times ``boost`` (above 1, a mark shown to the reader: only the findings in
    ``marked``, where it is given; below 1, a relaxed reader: every finding), judged suspicious
    with its kind's probability; a spurious call at the reader's rate, times ``boost`` where it
    is below 1 (a reader relaxed by a low AI score acts on a vague density less often, as on a
    faint finding: readers follow the AI's suggestion both ways, Dratsch et al., Radiology
    2023)."""
    u = streams.u
    reported = []
    for f in shows:
        k = read_key(exam_index, slot, f.key)
        b = boost if boost <= 1.0 or marked is None or f.key in marked else 1.0
        if u("breast.read.detect", person_id, k) < reader.detect_probability(f.conspicuity * b):
            sus = u("breast.read.judge", person_id, k) < _recall_probability(f, prior, reading)
            reported.append(
                Finding(
                    f.key,
                    f.kind,
                    f.size_mm,
                    f.conspicuity,
                    sus,
                    f.mass_mm,
                    f.margin,
                    f.calc_mm,
                    f.pleomorphic,
                    f.irregular,
                )
            )
    rate = reader.fp_per_exam * (1.0 if prior.screened else reading.first_screen_spurious_factor)
    rate *= min(boost, 1.0)
    k = read_key(exam_index, slot)
    if u("breast.read.spurious", person_id, k) < rate:
        reported.append(Finding(SPURIOUS_KEY, len(KINDS) - 1, SPURIOUS_MM, 0.0, True))
    minutes = reader.read_minutes(u("breast.read.minutes", person_id, k))
    cat, pos, top, sus = categorise(reported)
    return Read(reader.reader_id, slot, reported, cat, pos, minutes, top, sus)


def consensus(
    positive: Read, negative: Read, review: Read, keep_spurious: float, u_spurious: float
) -> list[Finding]:
    """The findings two discordant readers agree to recall: a real finding the positive reader
    called suspicious stays if the other reader, shown its location, sees it too (or had
    reported it); a spurious call survives the discussion when ``u_spurious < keep_spurious``."""
    seen = {f.key for f in review.findings} | {f.key for f in negative.findings}
    kept = []
    for f in positive.findings:
        if f.key == SPURIOUS_KEY:
            if u_spurious < keep_spurious:
                kept.append(f)
        elif f.key in seen or not f.suspicious:
            kept.append(f)
    return kept


def malignant_keys(shows: list[Finding]) -> np.ndarray:
    """Keys of the malignant findings an exam shows."""
    return np.array([f.key for f in shows if f.key in (INVASIVE_KEY, DCIS_KEY)], dtype=np.int64)

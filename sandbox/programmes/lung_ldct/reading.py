"""What an exam shows, and what a reader reports from it.

``visible_findings`` lists the nodules present on the exam day with their conspicuity on the
site's scanner; ``read_exam`` is one reader's independent read: which findings they detect,
the sizes they measure, the spurious findings they call, and the Lung-RADS category that
follows given the person's prior reports and images (a finding the reports never mentioned is
looked for on the earlier images before it is called new: :func:`read_exam`). Every draw is
keyed by (person, round, exam in round, read slot, finding), so the same read is the same under
every policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy.special import ndtri

from sandbox.agents.readers import Reader
from sandbox.config import Scanner
from sandbox.programmes.base import Read
from sandbox.programmes.lung_ldct.config import Radiograph
from sandbox.programmes.lung_ldct.disease.history import LungCohort
from sandbox.programmes.lung_ldct.imaging.conspicuity import conspicuity
from sandbox.programmes.lung_ldct.imaging.findings import MALIGNANT_KEY
from sandbox.programmes.lung_ldct.imaging.radiograph import conspicuity_cxr
from sandbox.programmes.lung_ldct.lung_rads import C1, C3, GROWTH_MM, LungRadsV2022, nodule_category
from sandbox.rng import Streams, read_key, uniform_scalar

# a reader's spurious finding (vessel, scar, artefact): never carried into the prior report
SPURIOUS_KEY = 32
# a persistent nodule mimic on a chest radiograph (nipple shadow, bone island, healed rib
# fracture): the same at every exam, so a reported mimic is carried into the prior report
MIMIC_KEY = 33
MIMIC_SIZE_MM = 10.0
# any CT scanner: a radiograph's findings are the nodules present, whatever a CT would show
CT_REFERENCE = Scanner("reference", 1.0, 1.0, 1.0, 1.0)


@dataclass(slots=True)
class Finding:
    key: int  # benign nodule index within person (0-11), MALIGNANT_KEY or SPURIOUS_KEY
    size_mm: float  # true diameter for visible findings, measured diameter for reported ones
    nodule_type: int
    spiculated: bool
    conspicuity: float = 0.0
    # a reported finding that earlier reports never mentioned but the reader found on an earlier
    # image: the day of that image and the diameter measured on it (nan: not found there)
    seen_day: float = math.nan
    seen_mm: float = math.nan


class RadiographFindings(list):
    """The findings of a chest radiograph (reported under the radiograph rule)."""


def visible_findings(
    history: LungCohort,
    row: int,
    day: float,
    scanner: Scanner,
    radiograph: Radiograph | None = None,
) -> list[Finding]:
    """Nodules present in person ``row``'s lungs on ``day``, with conspicuity on ``scanner``
    (a CT scanner, or a chest radiograph with ``radiograph``'s parameters:
    :mod:`..imaging.radiograph`)."""
    if scanner.modality == "cxr":
        return _radiograph_findings(history, row, day, radiograph)
    out: list[Finding] = []
    sc = history.scalars
    entry = sc.entry_day[row]
    first = sc.nodule_start[row]
    for k in range(first, sc.nodule_start[row + 1]):
        appear = sc.appear_day[k]
        if appear > day or sc.resolve_day[k] <= day:
            continue
        size = sc.size_mm[k]
        vdt = sc.nodule_vdt_days[k]
        if math.isfinite(vdt):
            size *= 2.0 ** ((day - max(appear, entry)) / (3.0 * vdt))
        t = sc.nodule_type[k]
        out.append(Finding(k - first, size, t, False, conspicuity(size, t, scanner)))
    if sc.onset_day[row] <= day:
        d = history.cancer_diameter(row, day)
        t = sc.cancer_type[row]
        c = conspicuity(d, t, scanner)
        if sc.central[row]:
            c *= history.central_conspicuity
        out.append(Finding(MALIGNANT_KEY, d, t, sc.spiculated[row], c))
    return out


def _radiograph_findings(
    history: LungCohort, row: int, day: float, rg: Radiograph | None
) -> RadiographFindings:
    """What a chest radiograph of person ``row`` on ``day`` shows: the same nodules, with their
    conspicuity on a projection (each finding's place behind anatomy is a keyed draw), a
    tumour's mediastinal or distant spread once it has happened (at least
    ``nodal_conspicuity``, wherever the primary is), and the person's nodule mimic if they
    have one (a keyed draw: the same at every exam)."""
    rg = rg or Radiograph()
    pid = int(history.people["person_id"][row])
    out = RadiographFindings()
    central = history.scalars.central[row]
    for f in visible_findings(history, row, day, CT_REFERENCE):
        if f.key == MALIGNANT_KEY and central:
            u = -1.0  # a central tumour lies behind the hila
        else:
            u = uniform_scalar(history.overlap_key, pid, f.key)
        f.conspicuity = conspicuity_cxr(f.size_mm, f.nodule_type, u, rg)
        if f.key == MALIGNANT_KEY and rg.nodal_conspicuity > 0.0:
            c = history.cancer
            solid_mm = f.size_mm * c["solid_fraction"][row]
            if solid_mm >= min(c["nodal_mm"][row] * history.n2_over_n1, c["distant_mm"][row]):
                f.conspicuity = max(f.conspicuity, rg.nodal_conspicuity)
        out.append(f)
    if rg.mimic_share > 0.0 and uniform_scalar(history.mimic_key, pid, 0) < rg.mimic_share:
        z = float(ndtri(uniform_scalar(history.mimic_key, pid, 1)))
        size = MIMIC_SIZE_MM * math.exp(0.3 * z)
        out.append(Finding(MIMIC_KEY, size, 0, False, rg.mimic_conspicuity))
    return out


@dataclass(slots=True)
class Prior:
    """What earlier reports said about a person's nodules: key -> (first seen day, last size);
    and the days of the earlier exams whose images a reader can compare with."""

    seen: dict[int, tuple[float, float]]
    screened: bool = False
    image_days: tuple[float, ...] = ()  # kept only where readers compare with earlier images


def categorise(
    findings: list[Finding], prior: Prior, day: float, scheme: LungRadsV2022
) -> tuple[int, bool, int, frozenset[int]]:
    """(Lung-RADS category, positive under ``scheme``, key of the driving finding,
    keys of the suspicious findings (category 3 or above))."""
    cat, top, top_size, positive = C1, -1, -1.0, False
    suspicious = []
    per_finding = scheme.per_finding
    for f in findings:
        if not prior.screened:
            status, first = "baseline", day
        elif f.key not in prior.seen:
            if f.seen_day == f.seen_day:  # not reported before, but on an earlier image
                first = f.seen_day
                status = "growing" if f.size_mm - f.seen_mm > GROWTH_MM else "stable"
            else:
                status, first = "new", day
        else:
            first, last = prior.seen[f.key]
            status = "growing" if f.size_mm - last > GROWTH_MM else "stable"
        c = nodule_category(f.size_mm, f.nodule_type, status, f.spiculated)
        if c > cat or (c == cat and f.size_mm > top_size):
            cat, top, top_size = c, f.key, f.size_mm
        worked_up = scheme.finding_suspicious(f, status, first, day)
        if c >= C3 or scheme.all_suspicious or worked_up:
            suspicious.append(f.key)
        if per_finding and (worked_up or scheme.finding_positive(f.size_mm, status, first, day)):
            positive = True
    if not per_finding:
        positive = scheme.positive(cat)
    return cat, positive, top, frozenset(suspicious)


def read_exam(
    reader: Reader,
    visible: list[Finding],
    prior: Prior,
    streams: Streams,
    person_id: int,
    exam_index: int,
    slot: int,
    day: float,
    scheme: LungRadsV2022,
    boost: float = 1.0,
    fp_scale: float = 1.0,
    earlier: Callable[[float], dict[int, Finding]] | None = None,
    look_back_boost: float = 0.0,
) -> Read:
    """One reader's independent read of one exam.

    ``boost`` multiplies conspicuity (a second look at a marked location during consensus);
    ``fp_scale`` multiplies the reader's rate of spurious findings (a radiograph's).

    Comparison with earlier images: a finding the reader reports that no earlier report
    mentioned is looked for at the same place on the person's earlier images
    (``prior.image_days``; ``earlier(day)`` gives what an image of that day showed, by key),
    earliest first, with its conspicuity there times ``look_back_boost`` (the reader knows
    where to look). Found on one, it is not new: it was there on that day, at the size the
    reader measures on it, and it is stable or growing against that. One keyed draw per
    finding decides (stream ``read.look_back``), so the earliest image clear enough is the
    one found. ``look_back_boost`` 0 compares with the reports alone.
    """
    reported: list[Finding] = []
    # finding keys are below ITEMS by construction (benign 0-11, MALIGNANT_KEY, SPURIOUS_KEY)
    k0 = read_key(exam_index, slot)
    for f in visible:
        k = k0 + f.key
        if streams.u("read.detect", person_id, k) < reader.detect_probability(
            f.conspicuity * boost
        ):
            size = reader.measure_mm(f.size_mm, streams.u("read.size", person_id, k))
            spic = f.spiculated and f.size_mm >= 8.0
            g = Finding(f.key, size, f.nodule_type, spic, f.conspicuity)
            if look_back_boost > 0.0 and prior.screened and f.key not in prior.seen:
                _look_back(g, reader, prior, earlier, streams, person_id, k, look_back_boost)
            reported.append(g)
    if streams.u("read.fp", person_id, k0) < reader.fp_per_exam * fp_scale:
        z = float(ndtri(streams.u("read.fp_size", person_id, k0)))
        size = reader.fp_size_median_mm * math.exp(0.3 * z)
        reported.append(Finding(SPURIOUS_KEY, size, 0, False, 0.0))
    cat, positive, top, suspicious = categorise(reported, prior, day, scheme)
    minutes = reader.read_minutes(streams.u("read.minutes", person_id, k0))
    return Read(reader.reader_id, slot, reported, cat, positive, minutes, top, suspicious)


def _look_back(
    g: Finding,
    reader: Reader,
    prior: Prior,
    earlier: Callable[[float], dict[int, Finding]] | None,
    streams: Streams,
    person_id: int,
    k: int,
    look_back_boost: float,
) -> None:
    """Look for reported finding ``g`` on the earlier images; mark it seen on the first found."""
    if earlier is None or not prior.image_days:
        return
    u = streams.u("read.look_back", person_id, k)
    for d in prior.image_days:
        was = earlier(d).get(g.key)
        if was is not None and u < reader.detect_probability(was.conspicuity * look_back_boost):
            g.seen_day = d
            g.seen_mm = reader.measure_mm(
                was.size_mm, streams.u("read.look_back_size", person_id, k)
            )
            return


def update_prior(
    prior: Prior, findings: list[Finding], day: float, keep_image: bool = False
) -> None:
    """Record the reported findings of an exam as the comparison for the next one, and, with
    ``keep_image``, the exam's image as one to compare with.

    Spurious findings are not carried over: the next reader does not find them again. A finding
    first reported now but found on an earlier image keeps that image's day as first seen.
    """
    for f in findings:
        if f.key == SPURIOUS_KEY:
            continue
        if f.key in prior.seen:
            first = prior.seen[f.key][0]
        else:
            first = f.seen_day if f.seen_day == f.seen_day else day
        prior.seen[f.key] = (first, f.size_mm)
    prior.screened = True
    if keep_image and (not prior.image_days or prior.image_days[-1] != day):
        prior.image_days += (day,)

"""What an AI device is shown of an exam: candidate regions, as a CAD system proposes them
(torch-free, shared by imaging, training and workflow).

A CAD system first proposes candidate regions and then scores each (Setio et al., Medical Image
Analysis 2017, the LUNA16 challenge: candidate detection, then false-positive reduction). Here the
proposals of one exam are

* every nodule in the lungs that day that is conspicuous enough to be proposed: Rose-model
  conspicuity (:func:`..conspicuity.conspicuity`, the same number the readers act on) of at
  least :data:`CANDIDATE_MIN_CONSPICUITY`, the Rose criterion (Rose, JOSA 1948: an object of
  CNR times square-root area about 5 is at the limit of detection). At most
  :data:`MAX_FINDING_CANDIDATES` findings are proposed, the most conspicuous first;
* :data:`BACKGROUND_CANDIDATES` background regions at fixed places in the person's lungs (the
  same places at every exam), which hold vessels, texture and noise only: the proposals a
  candidate detector makes at vessel crossings and noise, which the classifier must reject.

Nothing in a candidate says what it is. Each carries only what the renderer draws (diameter,
type, margin) and an opaque ``location``: a hash of the person and the finding's identity (or the
background region's number) that keys the anatomy drawn around it, so the same nodule sits in
the same lungs at every exam. Candidates are ordered by ``location``, so the tumour has no
privileged place; the device scores every candidate and the exam score is its declared
aggregation (``output.aggregation``, max by default). Which candidate drove the score is
resolved afterwards, outcome-side, by :func:`candidate_kind`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sandbox.rng import stream_key, uniform_scalar

# key of a person's tumour among their findings (benign nodules are 0-11)
MALIGNANT_KEY = 15
CANDIDATE_MIN_CONSPICUITY = 5.0  # the Rose criterion
MAX_FINDING_CANDIDATES = 8
BACKGROUND_CANDIDATES = 2
# what drove an exam's AI score (the event log's ``ai_driver``)
CANDIDATE_KINDS = ("cancer", "benign", "background")
_LOCATION_KEY = stream_key(0, "render.location")
_BACKGROUND_CODE = 1 << 20  # background region j hashes code _BACKGROUND_CODE + j
_LOCATION_BITS = 31


class _Finding(Protocol):
    key: int
    size_mm: float
    nodule_type: int
    spiculated: bool
    conspicuity: float


F = TypeVar("F", bound=_Finding)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate region of an exam's image: what the renderer draws there.

    Attributes:
        location: opaque place in the person's lungs (keys the anatomy around it).
        diameter_mm: the nodule's diameter that day; 0.0 for a background region.
        nodule_type: 0 solid, 1 part-solid, 2 ground-glass.
        spiculated: whether the margin has radial spicules.
    """

    location: int
    diameter_mm: float
    nodule_type: int
    spiculated: bool


def location_of(person_id: int, code: int) -> int:
    """The opaque location of finding ``code`` (a finding key, or ``_BACKGROUND_CODE + j``)."""
    return int(uniform_scalar(_LOCATION_KEY, person_id, code) * 2.0**_LOCATION_BITS)


def candidates(person_id: int, findings: Sequence[F]) -> tuple[Candidate, ...]:
    """The candidate regions of an exam showing ``findings``, ordered by location.

    Args:
        person_id: the person (keys the locations).
        findings: what the exam shows (``sandbox.programmes.lung_ldct.reading.visible_findings``),
            with their conspicuity on the exam's scanner.
    """
    shown = [f for f in findings if f.conspicuity >= CANDIDATE_MIN_CONSPICUITY]
    if len(shown) > MAX_FINDING_CANDIDATES:
        # the most conspicuous (ties by key, which is the order findings come in)
        shown = sorted(shown, key=lambda f: -f.conspicuity)[:MAX_FINDING_CANDIDATES]
    out = [
        Candidate(location_of(person_id, f.key), f.size_mm, f.nodule_type, bool(f.spiculated))
        for f in shown
    ]
    out += [
        Candidate(location_of(person_id, _BACKGROUND_CODE + j), 0.0, 0, False)
        for j in range(BACKGROUND_CANDIDATES)
    ]
    return tuple(sorted(out, key=lambda c: c.location))


def candidate_kind(person_id: int, location: int, findings: Sequence[F]) -> str:
    """What the candidate at ``location`` is (one of :data:`CANDIDATE_KINDS`): outcome-side,
    from the exam's findings."""
    for f in findings:
        if location_of(person_id, f.key) == location:
            return "cancer" if f.key == MALIGNANT_KEY else "benign"
    return "background"

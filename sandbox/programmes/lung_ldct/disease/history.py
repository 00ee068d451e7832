"""The cohort with its disease histories: who is screened, and what is in their lungs."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sandbox.config import Scenario
from sandbox.errors import SandboxInputError
from sandbox.programmes.lung_ldct.cohort import assign_sites, sample_candidates
from sandbox.programmes.lung_ldct.config import Disease
from sandbox.programmes.lung_ldct.disease.natural_history import (
    YEAR,
    lung_cancer_death_day,
    sample_cancers,
)
from sandbox.programmes.lung_ldct.disease.nodules import sample_benign_nodules
from sandbox.rng import Streams


@dataclass(frozen=True, slots=True)
class Scalars:
    """Memoryviews of a cohort's per-person and per-nodule columns (see ``LungCohort.scalars``)."""

    entry_day: memoryview
    nodule_start: memoryview
    appear_day: memoryview
    resolve_day: memoryview
    size_mm: memoryview
    nodule_vdt_days: memoryview
    nodule_type: memoryview
    onset_day: memoryview
    vdt_days: memoryview
    cancer_type: memoryview
    spiculated: memoryview
    central: memoryview


@dataclass(frozen=True)
class LungCohort:
    """Struct of arrays. ``people`` and ``cancer`` are aligned (one entry per person);
    ``nodules`` is flat, with person ``i``'s nodules at ``nodule_start[i]:nodule_start[i+1]``.

    All days are programme days. Person ``i`` enters (is invited) on ``people["entry_day"][i]``
    and is followed until ``people["end_day"][i]``; their natural history is drawn relative to
    entry and shifted, so every person has the same follow-up however invitations are spread.
    """

    people: dict[str, np.ndarray]
    cancer: dict[str, np.ndarray]
    nodules: dict[str, np.ndarray]
    nodule_start: np.ndarray
    horizon_day: float
    candidates_drawn: int
    onset_diameter_mm: float
    overlap_key: int = 0  # stream key of where a finding lies on a radiograph (imaging.cxr_overlap)
    mimic_key: int = 0  # stream key of a person's radiographic nodule mimic (imaging.cxr_mimic)
    central_conspicuity: float = 1.0  # the conspicuity a central tumour keeps on CT
    n2_over_n1: float = 1.3  # N2 (mediastinal) spread at this multiple of the N1 diameter

    def __len__(self) -> int:
        return len(self.people["person_id"])

    def exit_days(self) -> np.ndarray:
        """Per person, the day they leave screening: symptoms lead to a diagnosis, or death."""
        return np.minimum(self.cancer["clinical_day"], self.cancer["other_death_day"])

    def __getstate__(self) -> dict:
        # memoryviews do not pickle: a copy sent to another process rebuilds them on first use
        state = dict(self.__dict__)
        state.pop("scalars", None)
        return state

    @functools.cached_property
    def scalars(self) -> Scalars:
        """Zero-copy views of the columns read exam by exam (indexing one gives a Python number,
        several times faster than indexing a numpy array)."""
        v = lambda a: memoryview(np.ascontiguousarray(a))  # noqa: E731
        nod, c = self.nodules, self.cancer
        return Scalars(
            v(self.people["entry_day"]),
            v(self.nodule_start),
            v(nod["appear_day"]),
            v(nod["resolve_day"]),
            v(nod["size_mm"]),
            v(nod["vdt_days"]),
            v(nod["nodule_type"]),
            v(c["onset_day"]),
            v(c["vdt_days"]),
            v(c["nodule_type"]),
            v(c["spiculated"]),
            v(c["central"]),
        )

    def cancer_diameter(self, row: int, day: float) -> float:
        """Diameter (mm) of person ``row``'s tumour on ``day`` (0 before onset or without cancer)."""
        sc = self.scalars
        onset = sc.onset_day[row]
        if day < onset:
            return 0.0
        return self.onset_diameter_mm * 2.0 ** ((day - onset) / (3.0 * sc.vdt_days[row]))

    def cancer_death_day(self, row: int, stage: str, dx_day: float, disease: Disease) -> float:
        """Day person ``row`` dies of the lung cancer diagnosed at ``stage`` on ``dx_day`` (inf if
        cured), the T descriptor taken from the solid component's diameter that day."""
        c = self.cancer
        return lung_cancer_death_day(
            stage,
            dx_day,
            float(c["clinical_day"][row]),
            float(c["cure_u"][row]),
            float(c["survival_u"][row]),
            disease,
            solid_mm=self.cancer_diameter(row, dx_day) * float(c["solid_fraction"][row]),
            subsolid=bool(c["nodule_type"][row] > 0),
        )


def follow_up_days(scenario: Scenario) -> float:
    """Days each person is followed from entry: the rounds, then the follow-up period."""
    p = scenario.programme
    return ((p.rounds - 1) * p.interval_years + p.follow_up_years_after_last_round) * YEAR


def horizon_day(scenario: Scenario) -> float:
    """Last programme day simulated: the last invitation plus the follow-up."""
    return scenario.programme.schedule_spread_days + follow_up_days(scenario)


def sample_history(
    scenario: Scenario,
    streams: Streams,
    size: int | None = None,
    progress: Callable[[int], None] | None = None,
    first_id: int = 0,
    entry_day: float = 0.0,
    site: int | None = None,
) -> LungCohort:
    """Draw the eligible cohort (in candidate-id order) with cancers and benign nodules.

    Candidates who had a clinically diagnosed lung cancer before entry are not screened (a
    history of lung cancer excludes them), as in the trials; nor are those whose cancer would
    be diagnosed from symptoms within ``cohort.eligibility.symptom_free_days`` of entry (they
    have the symptoms already), and, with ``symptom_free_tail_days``, fewer of those whose
    cancer would surface soon after that window (early symptoms keep some away).

    Candidates are numbered from ``first_id``; invitations spread over
    ``programme.schedule_spread_days`` from ``entry_day``; ``site`` (an index) puts everyone at
    one site instead of spreading them by the sites' shares.
    """
    n = scenario.cohort.size if size is None else size
    horizon = follow_up_days(scenario)
    parts_p, parts_c = [], []
    got, next_id = 0, first_id
    block = max(4 * n, 20_000)
    while got < n:
        ids = np.arange(next_id, next_id + block, dtype=np.int64)
        next_id += block
        cand = sample_candidates(scenario.cohort, streams, ids)
        keep = cand.pop("eligible")
        cand = {k: v[keep] for k, v in cand.items()}
        canc = sample_cancers(scenario.disease, streams, cand, horizon)
        elig = scenario.cohort.eligibility
        ok = canc["clinical_day"] >= elig.symptom_free_days
        if elig.symptom_free_tail_days > 0:
            after = np.maximum(canc["clinical_day"] - elig.symptom_free_days, 0.0)
            enrol = -np.expm1(-after / elig.symptom_free_tail_days)
            ok &= streams.uniform("cohort.enrol", cand["person_id"]) < enrol
        cand = {k: v[ok] for k, v in cand.items()}
        canc = {k: v[ok] for k, v in canc.items()}
        parts_p.append(cand)
        parts_c.append(canc)
        got += len(cand["person_id"])
        if progress:
            progress(min(len(cand["person_id"]), n - (got - len(cand["person_id"]))))
        if next_id - first_id > 1000 * max(n, 1000):
            raise SandboxInputError(
                "config key 'cohort.eligibility': the rule accepts almost no candidates from cohort.population"
            )
    people = {k: np.concatenate([p[k] for p in parts_p])[:n] for k in parts_p[0]}
    cancer = {k: np.concatenate([c[k] for c in parts_c])[:n] for k in parts_c[0]}
    people["site"] = (
        assign_sites(streams, people["person_id"], [s.share for s in scenario.sites])
        if site is None
        else np.full(n, site, dtype=np.int16)
    )
    nod = sample_benign_nodules(scenario.disease.benign, streams, people["person_id"], horizon)
    start = np.zeros(n + 1, dtype=np.int64)
    np.add.at(start, nod["row"] + 1, 1)
    entry = entry_day + (
        streams.uniform("schedule.entry", people["person_id"])
        * scenario.programme.schedule_spread_days
    )
    people["entry_day"] = entry
    people["end_day"] = entry + horizon
    for key in ("onset_day", "clinical_day", "other_death_day"):
        cancer[key] = cancer[key] + entry
    nod["appear_day"] = nod["appear_day"] + entry[nod["row"]]
    nod["resolve_day"] = nod["resolve_day"] + entry[nod["row"]]
    return LungCohort(
        people,
        cancer,
        nod,
        np.cumsum(start),
        entry_day + horizon_day(scenario),
        next_id - first_id,
        scenario.disease.onset_diameter_mm,
        streams.key("imaging.cxr_overlap"),
        streams.key("imaging.cxr_mimic"),
        scenario.disease.central_conspicuity,
        scenario.disease.n2_over_n1,
    )


def concat_cohorts(parts: list[LungCohort]) -> LungCohort:
    """One cohort of the people of ``parts``, in order (their ids must differ); its horizon is
    the latest of theirs."""
    first = parts[0]
    if len(parts) == 1:
        return first
    people = {k: np.concatenate([p.people[k] for p in parts]) for k in first.people}
    cancer = {k: np.concatenate([p.cancer[k] for p in parts]) for k in first.cancer}
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    nodules = {
        k: np.concatenate(
            [p.nodules[k] + (o if k == "row" else 0) for p, o in zip(parts, offsets, strict=True)]
        )
        for k in first.nodules
    }
    starts, base = [first.nodule_start], int(first.nodule_start[-1])
    for p in parts[1:]:
        starts.append(p.nodule_start[1:] + base)
        base += int(p.nodule_start[-1])
    return dataclasses.replace(
        first,
        people=people,
        cancer=cancer,
        nodules=nodules,
        nodule_start=np.concatenate(starts),
        horizon_day=max(p.horizon_day for p in parts),
        candidates_drawn=sum(p.candidates_drawn for p in parts),
    )

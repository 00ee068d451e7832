"""What if? Policy knobs answered in a fraction of a second by a queue-free replay.

A full run simulates every site event by event: scanner books, worklists, readers in their
working hours. Most of what a regulator asks first ("what does triage at the 85th percentile do
to cancers found, interval cancers, recalls and reads?") does not depend on queues, and can be
answered from a **prepared** cohort:

* :func:`prepare` (slow, once per scenario, seed, reading rule and interval; cached under the
  results root) draws the cohort, places every person's screens on their due days (the first
  working day on or after it, as an empty scanner book would), renders and scores each screen
  with the AI device (the run's score cache is shared), and reads each screen under the policy's
  human reading rule and under every AI role, for both AI calls (positive, negative), through
  the same policy classes and read model the full run uses. Reads are keyed by person, exam and
  read slot, as in the full run; the radiologist of each slot is fixed by person and slot (the
  full run gives the read to whoever takes it off the worklist first).
* :func:`answer` (fast, vectorised over people) walks the rounds under the knobs: AI role,
  operating point, audit fraction, attendance, radiologists per site. A screen's AI call selects
  the prepared decision; a reported cancer is diagnosed after the work-up's fixed lead time
  unless symptoms come first; interval cancers follow from the natural history. Standard of
  care (the policy's human reading rule alone) runs over the same people in the same pass.

What the replay leaves out, and so where the full run differs: reading waits and scanner or
work-up backlogs (a site whose demand exceeds its radiologists' hours is flagged, and its waits
are estimated with the Erlang C formula for an M/M/c queue); the follow-up exams after a
category 3 or 4A report (counted as one read each, times the follow-up adherence, and as a
fixed delay to diagnosis); and priors: every policy's next-round comparison is the standard
of care's report. ``benchmarks/whatif_latency.py`` measures the latency and the agreement with
the full run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl

from sandbox.config import AI_ROLES, RunConfig, Site
from sandbox.errors import SandboxInputError
from sandbox.outcomes.intervals import wilson
from sandbox.programmes import programme_for
from sandbox.rng import Streams, exam_key, item_key
from sandbox.typed import to_dict
from sandbox.workflow.calendar import Calendar
from sandbox.workflow.exam import Exam
from sandbox.workflow.policies import make_policy
from sandbox.workflow.site import SCAN_TIME, WORKUP_LEAD_DAYS, YEAR

ROLES = ("none", *AI_ROLES)
# the decisions prepared per screen: standard of care, and each AI role with each AI call
VARIANTS = ("none", *(f"{r}:{c}" for r in AI_ROLES for c in ("pos", "neg")))
DTYPES = {
    "positive": bool,  # the screen's report is positive
    "recall": bool,  # followed by extra imaging or work-up
    "found": bool,  # the cancer is diagnosed from this screen's report (follow-ups included)
    "delay": np.float32,  # days from the screen to that diagnosis
    "stage": np.int8,  # stage index at that diagnosis (-1: none)
    "reads": np.int8,  # human reads of the screen
    "minutes": np.float32,  # their reading minutes
    "fu_reads": np.int8,  # reads of the follow-up exams the report led to
    "fu_minutes": np.float32,
    "fp_workups": np.int8,  # work-ups that found no cancer
    "benign_biopsies": np.int8,
    "benign_resections": np.int8,  # of which surgical resections
}
FIELDS = tuple(DTYPES)
# a report's follow-up exams are followed this many steps at most (a chain of interval
# imaging before a work-up is rarely longer than three)
MAX_FOLLOW_UPS = 4
FORMAT = 4  # bump when what a prepared file holds changes
UTILISATION_EXACT = 0.85  # above this share of reading capacity, waits change outcomes
# site fields that set capacity only (how fast, not what is read)
CAPACITY = ("scanners", "exams_per_scanner_day", "reading_hours_per_day", "workup_slots_per_day")


class _Now:
    """A read or a score that is ready the moment it is asked for (no queue)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __and__(self, other: _Now) -> _Now:
        return _Now(None)


class _Service:
    """The reading service of a queue-free pass: the policy classes ask it for reads as they
    would ask a site; reads are remembered per exam, so variants share them."""

    def __init__(self, programme: Any, readers: list) -> None:
        self.programme = programme
        self.readers = readers
        self.by_id = {r.reader_id: r for r in readers}
        self.memo: dict[tuple, Any] = {}
        self.score = 0.0

    def read(
        self,
        exam: Exam,
        slot: int,
        boost: float = 1.0,
        reviewer: int | None = None,
        marked: frozenset[int] | None = None,
    ) -> _Now:
        key = (slot, boost, reviewer, marked)
        r = self.memo.get(key)
        if r is None:
            if reviewer is not None:
                reader = self.by_id[reviewer]
            else:
                reader = self.readers[(exam.person_id + slot) % len(self.readers)]
            r = self.memo[key] = self.programme.read(reader, exam, slot, boost, marked)
        return _Now(r)

    def ai_score(self, exam: Exam) -> _Now:
        return _Now(self.score)


class _Chain:
    """What a report leads to, with no queues: the follow-up exams it orders (each read once,
    attended with the follow-up adherence), then the work-up, through the programme's own
    management and work-up, as the full run does."""

    def __init__(
        self, programme: Any, cohort: Any, streams: Streams, scn: Any, fake_site, modality: str
    ) -> None:
        self.programme, self.cohort, self.streams = programme, cohort, streams
        self.adherence = scn.programme.followup_adherence
        self.sites = scn.sites
        self.scanners = [programme.exam_scanner(s.scanner, modality) for s in scn.sites]
        self.fake_site = fake_site

    def follow(self, exam: Exam, final: Any, readers: list, exit_day: float, out, row, k) -> None:
        prog = self.programme
        mgmt = prog.manage(exam, final)
        out["recall"][row, k] = mgmt != "next_round"
        if mgmt == "next_round":
            return
        site_index = int(self.cohort.people["site"][row])
        site = self.sites[site_index]
        now, seq, fu_reads, fu_minutes = exam.day, 0, 0, 0.0
        # the screen's report is what the follow-up exam is compared with
        prior = copy.deepcopy(exam.prior)
        prog.after_report(_with_prior(exam, prior), final)
        current, report = exam, final
        for _ in range(MAX_FOLLOW_UPS):
            if mgmt == "workup":
                wday = now + WORKUP_LEAD_DAYS
                if wday >= exit_day:
                    break
                outcome = prog.workup(self.cohort, current, report, wday)
                if outcome.diagnosed:
                    out["found"][row, k] = True
                    out["delay"][row, k] = wday + site.workup_days_to_result - exam.day
                    out["stage"][row, k] = prog.stages.index(outcome.stage)
                else:
                    out["fp_workups"][row, k] += 1
                    out["benign_biopsies"][row, k] += outcome.benign_biopsy
                    out["benign_resections"][row, k] += outcome.benign_resection
                break
            if mgmt not in prog.follow_up_days:
                break
            seq += 1
            due = now + prog.follow_up_days[mgmt]
            key = exam_key(exam.round, seq)
            if self.streams.u("schedule.adhere", exam.person_id, key) >= self.adherence:
                break
            fday = math.ceil(due) + SCAN_TIME
            if fday >= exit_day:
                break
            shows = prog.exam_shows(self.cohort, row, fday, self.scanners[site_index])
            current = Exam(
                self.fake_site,
                row,
                exam.person_id,
                exam.round,
                seq,
                mgmt,
                due,
                fday,
                shows,
                prior,
                key,
            )
            reader = readers[(exam.person_id + seq) % len(readers)]
            report = prog.read(reader, current, 0)
            fu_reads += 1
            fu_minutes += report.minutes
            mgmt = prog.manage(current, report)
            prog.after_report(current, report)
            now = fday
        out["fu_reads"][row, k] = fu_reads
        out["fu_minutes"][row, k] = fu_minutes


def _with_prior(exam: Exam, prior: Any) -> Exam:
    return dataclasses.replace(exam, prior=prior, taken=set())


def _decide(policy: Any, service: _Service, exam: Exam) -> Any:
    """Drive a policy's SimPy process to its decision with every read done at once."""
    gen = policy.process(service, exam)
    try:
        ev = next(gen)
        while True:
            ev = gen.send(ev.value)
    except StopIteration as stop:
        return stop.value


# ---------------------------------------------------------------- preparing
@dataclass
class Prepared:
    """A cohort's screens read every way a policy knob can read them (arrays people x rounds)."""

    key: str
    meta: dict[str, Any]
    people: dict[str, np.ndarray]  # site, clinical_dx_day, exit_day, end_day
    rounds: dict[str, np.ndarray]  # due, day, score, attend_u, audit_u, reportable
    variants: dict[str, dict[str, np.ndarray]]  # variant -> field -> [n, rounds]

    @property
    def shape(self) -> tuple[int, int]:
        return self.rounds["day"].shape


def check_screens(cfg: RunConfig) -> None:
    """One line if ``cfg``'s policy screens nobody (there is nothing to replay)."""
    if not make_policy(cfg.policy, 0.5).invites:
        raise SandboxInputError(
            f"policy '{cfg.policy.name}' screens nobody: a what-if needs a screening policy "
            "(its human reading rule is the standard of care)"
        )
    if cfg.policy.modality != "ct":
        raise SandboxInputError(
            f"policy '{cfg.policy.name}' screens with {cfg.policy.modality}: a what-if asks about "
            "AI roles, and AI devices read CT"
        )
    pol = cfg.policy
    if pol.marks is not None or pol.recall_top is not None or pol.relaxed_below is not None:
        raise SandboxInputError(
            f"policy '{pol.name}' has AI marks, a high-risk recall or a relaxed-reading point: the what-if "
            "replay reads each screen for one AI call (positive or negative); run it with "
            "sandbox run"
        )
    if (
        cfg.drift.scanner_changes
        or cfg.drift.device_changes
        or cfg.drift.staffing_changes
        or cfg.drift.population_changes
        or cfg.monitoring.cusums
        or cfg.monitoring.windows
        or cfg.monitoring.ewmas
        or cfg.monitoring.labels
    ):
        raise SandboxInputError(
            f"drift '{cfg.drift.name}', monitoring '{cfg.monitoring.name}': the what-if replay "
            "has no timeline of scanner changes or monitors; run them with sandbox run"
        )


def prepare_key(cfg: RunConfig, device_digest: str = "") -> str:
    """What a prepared cohort depends on: the scenario (attendance aside, a knob), the seed, the
    policy's human reading rule and concurrent-reading effects, the device and the code format."""
    scn = to_dict(cfg.scenario)
    scn["programme"] = {k: v for k, v in scn["programme"].items() if k != "attendance"}
    # capacity changes waits, which the replay does not simulate: not part of what is prepared
    scn["sites"] = [{k: v for k, v in s.items() if k not in CAPACITY} for s in scn["sites"]]
    pol = cfg.policy
    blob = json.dumps(
        {
            "format": FORMAT,
            "seed": cfg.seed,
            "scenario": scn,
            "reading": [pol.reading, pol.discordance, pol.concurrent_gain, pol.automation_bias],
            "device": device_digest,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _due_days(entry: np.ndarray, rounds: int, interval_years: float) -> np.ndarray:
    due = entry[:, None] + np.arange(rounds)[None, :] * interval_years * YEAR
    book = Calendar(1 << 30)  # an empty book: the first working day on or after the due day
    day = np.vectorize(book.book, otypes=[float])(due) + SCAN_TIME
    return due, day


def prepare(
    cfg: RunConfig,
    profiles: dict,
    progress: Callable[[str, float], None] | None = None,
) -> Prepared:
    """Read every screen of ``cfg``'s cohort every way the knobs can (slow; see :func:`load_or_prepare`).

    ``progress(stage, fraction)`` is told how far it is.
    """
    from sandbox.runners.devices import prepare_device
    from sandbox.simulate import build_cohort, site_readers

    check_screens(cfg)
    tell = progress or (lambda stage, f: None)
    scn = cfg.scenario
    programme = programme_for(scn)
    streams = Streams(cfg.seed)
    ai_cfg = cfg if cfg.policy.role != "none" else _with_role(cfg, "triage")
    dev = prepare_device(ai_cfg)
    try:
        tell("cohort", 0.0)
        cohort = build_cohort(cfg, None, programme)
        n, R = len(cohort), scn.programme.rounds
        p = cohort.people
        pid = np.asarray(p["person_id"], dtype=np.int64)
        site = np.asarray(p["site"], dtype=np.int64)
        due, day = _due_days(np.asarray(p["entry_day"], float), R, scn.programme.interval_years)
        exit_day = np.asarray(cohort.exit_days(), dtype=float)
        end_day = np.asarray(p["end_day"], dtype=float)
        clinical = np.full(n, np.inf)
        for row, ev in programme.person_timeline(cohort, np.arange(n)):
            if ev.kind == "diagnosis":
                clinical[row] = ev.day
        live = (exit_day[:, None] > day) & (end_day[:, None] > due)  # could be screened
        attend_u = streams.uniform("schedule.attend", pid[:, None], np.arange(R)[None, :])
        audit_u = np.stack(
            [streams.uniform("ai.audit", pid, item_key(exam_key(k, 0), 0)) for k in range(R)], 1
        )
        # the AI's score of every screen that could happen
        shows: dict[tuple[int, int], Any] = {}
        score = np.full((n, R), np.nan)
        todo = np.argwhere(live)
        images = []
        for row, k in todo:
            sc = programme.exam_scanner(scn.sites[site[row]].scanner, cfg.policy.modality)
            s = programme.exam_shows(cohort, int(row), float(day[row, k]), sc)
            shows[(int(row), int(k))] = s
            images.append(programme.image_of(int(pid[row]), float(day[row, k]), sc, s))
        chunk = max(dev.scorer.batch_size, 1)
        ai_read: dict[tuple[int, int], tuple[tuple[int, str], int | None]] = {}
        for start in range(0, len(images), chunk):
            tell("AI scores", start / max(len(images), 1))
            part = dev.scorer.read(images[start : start + chunk])
            rows, ks = todo[start : start + chunk].T
            score[rows, ks] = part.score
            # what drove each score, as a run records it (where marks are located, the
            # finding a mark helps the readers see)
            for i, (r, k) in enumerate(zip(rows.tolist(), ks.tolist(), strict=True)):
                ai_read[(r, k)] = programme.ai_read_of(
                    images[start + i], int(part.driver[i]), int(part.candidates[i]), shows[(r, k)]
                )
        dev.scorer.cache.save()
        device_digest = dev.scorer.model.digest
    finally:
        dev.close()

    # every variant's decision on every screen that could happen
    policies = {"none": make_policy(_with_role(cfg, "none").policy)}
    for role in AI_ROLES:
        rc = _with_role(cfg, role).policy
        if role == "rule_out":
            rc = dataclasses.replace(rc, audit_fraction=1.0)  # the audited read
        policies[f"{role}:pos"] = make_policy(rc, 0.0)
        policies[f"{role}:neg"] = make_policy(rc, math.inf)
    readers = [site_readers(profiles, s, i, streams) for i, s in enumerate(scn.sites)]
    # a role that needs more radiologists than a site has cannot be asked about there
    unavailable: dict[str, str] = {}
    for v, policy in list(policies.items()):
        for i, s in enumerate(scn.sites):
            try:
                policy.check_site(s, i)
            except SandboxInputError as e:
                unavailable[v.split(":")[0]] = str(e)
    if "none" in unavailable:
        raise SandboxInputError(unavailable["none"])
    policies = {v: p for v, p in policies.items() if v.split(":")[0] not in unavailable}
    variants = {v: {f: np.zeros((n, R), DTYPES[f]) for f in FIELDS} for v in VARIANTS}
    for fields in variants.values():
        fields["stage"][:] = -1
    reportable = np.zeros((n, R), bool)
    fake_site = SimpleNamespace(streams=streams)
    chain = _Chain(programme, cohort, streams, scn, fake_site, cfg.policy.modality)
    live_rows = np.flatnonzero(live.any(1))
    t0 = time.perf_counter()
    for j, row in enumerate(live_rows):
        if j % 2000 == 0:
            tell("reads", j / max(len(live_rows), 1))
        row = int(row)
        prior = programme.new_prior()
        service = _Service(programme, readers[site[row]])
        for k in range(R):
            if not live[row, k]:
                continue
            exam = Exam(
                fake_site,  # type: ignore[arg-type]  (only its streams are used)
                row,
                int(pid[row]),
                k,
                0,
                "screen",
                float(due[row, k]),
                float(day[row, k]),
                shows[(row, k)],
                prior,
                exam_key(k, 0),
            )
            exam.ai_read, exam.ai_mark = ai_read[(row, k)]
            service.memo = {}
            service.score = float(score[row, k])
            soc_final = None
            for v, policy in policies.items():
                d = _decide(policy, service, exam)
                final = d.final
                out = variants[v]
                out["positive"][row, k] = final.positive
                out["reads"][row, k] = len(d.reads)
                out["minutes"][row, k] = sum(r.minutes for r in d.reads)
                chain.follow(exam, final, service.readers, float(exit_day[row]), out, row, k)
                if v == "none":
                    soc_final = final
                    _, _, visible, _, mm = programme.exam_fields(exam, final)
                    reportable[row, k] = visible and mm >= programme.reportable_mm
            programme.after_report(exam, soc_final)
    tell("reads", 1.0)
    meta = {
        "format": FORMAT,
        "scenario": scn.name,
        "policy": cfg.policy.name,
        "reading": cfg.policy.reading,
        "discordance": cfg.policy.discordance,
        "seed": cfg.seed,
        "people": n,
        "rounds": R,
        "interval_years": scn.programme.interval_years,
        "interval_window_days": scn.programme.interval_cancer_window_years * YEAR,
        "followup_adherence": scn.programme.followup_adherence,
        "sites": [s.name for s in scn.sites],
        "device": device_digest,
        "agent": cfg.agent,
        "reads_s": time.perf_counter() - t0,
        "unavailable": unavailable,
    }
    return Prepared(
        prepare_key(cfg, device_digest),
        meta,
        {"site": site, "clinical_dx_day": clinical, "exit_day": exit_day, "end_day": end_day},
        {
            "due": due,
            "day": day,
            "score": score,
            "attend_u": attend_u,
            "audit_u": audit_u,
            "reportable": reportable,
        },
        variants,
    )


def _with_role(cfg: RunConfig, role: str) -> RunConfig:
    return dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, role=role))


# ---------------------------------------------------------------- storing
def save(prep: Prepared, folder: Path) -> Path:
    """Write ``prep`` as one Parquet file (one row per person and round), atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    n, R = prep.shape
    cols: dict[str, Any] = {
        "row": np.repeat(np.arange(n), R),
        "round": np.tile(np.arange(R), n).astype(np.int16),
    }
    for name, a in prep.people.items():
        cols[f"person.{name}"] = np.repeat(a, R)
    for name, a in prep.rounds.items():
        cols[name] = a.reshape(-1)
    for v, fields in prep.variants.items():
        for f, a in fields.items():
            cols[f"{v}.{f}"] = a.reshape(-1)
    frame = pl.DataFrame(cols)
    path = folder / f"{prep.key}.parquet"
    tmp = folder / f".{prep.key}.{os.getpid()}.tmp"
    frame.write_parquet(tmp)
    meta = folder / f"{prep.key}.json"
    meta_tmp = folder / f".{prep.key}.{os.getpid()}.json.tmp"
    meta_tmp.write_text(json.dumps(prep.meta, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    os.replace(meta_tmp, meta)  # the metadata last: a prepared cohort is complete when it is there
    return path


def load(folder: Path, key: str) -> Prepared | None:
    """The prepared cohort ``key`` from ``folder``; None if it is not there. A damaged file is a
    one-line error naming it."""
    path, meta_path = folder / f"{key}.parquet", folder / f"{key}.json"
    if not meta_path.is_file() or not path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        frame = pl.read_parquet(path)
        n, R = int(meta["people"]), int(meta["rounds"])
        if meta.get("format") != FORMAT or frame.height != n * R:
            raise ValueError("written by another version, or cut short")

        def grid(name: str) -> np.ndarray:
            return frame[name].to_numpy().reshape(n, R)

        people = {
            c.split(".", 1)[1]: frame[c].to_numpy()[::R]
            for c in frame.columns
            if c.startswith("person.")
        }
        rounds = {c: grid(c) for c in ("due", "day", "score", "attend_u", "audit_u", "reportable")}
        variants = {v: {f: grid(f"{v}.{f}") for f in FIELDS} for v in VARIANTS}
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as e:
        raise SandboxInputError(
            f"{path}: a damaged prepared cohort ({type(e).__name__}: {e}); delete it and prepare again"
        ) from e
    return Prepared(key, meta, people, rounds, variants)


def load_or_prepare(
    cfg: RunConfig,
    profiles: dict,
    folder: Path,
    progress: Callable[[str, float], None] | None = None,
) -> Prepared:
    """The prepared cohort for ``cfg`` from ``folder``, preparing and saving it if absent."""
    check_screens(cfg)
    key = prepare_key(cfg, agent_digest(cfg.agent))
    try:
        found = load(folder, key)
    except SandboxInputError as e:  # our own cache, damaged: prepare it again, over it
        found = None
        if progress:
            progress(f"preparing again ({' '.join(str(e).split())[:160]})", 0.0)
    if found is not None:
        return found
    prep = prepare(cfg, profiles, progress)
    save(prep, folder)
    return prep


def agent_digest(agent: str) -> str:
    """The digest of the device a what-if reads with (``agent``: a name under agents/ or a path)."""
    from sandbox.agents.bundle import load_bundle
    from sandbox.runners.devices import agent_folder

    return load_bundle(agent_folder(agent), "cpu").digest


# ---------------------------------------------------------------- answering
@dataclass(frozen=True)
class Knobs:
    """What a regulator turns. ``threshold`` is the resolved score cut-off; ``readers`` the
    radiologists per site (reading capacity only; None: the scenario's)."""

    role: str = "triage"
    threshold: float = 0.5
    audit_fraction: float = 0.0
    attendance: float = 0.9
    readers: tuple[int, ...] | None = None

    def check(self) -> None:
        if self.role not in ROLES:
            raise SandboxInputError(f"role {self.role!r}: one of {', '.join(ROLES)}")
        for name in ("threshold", "audit_fraction", "attendance"):
            v = getattr(self, name)
            if not (isinstance(v, float | int) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise SandboxInputError(f"{name} {v!r}: must be a number in [0, 1]")


SUMMED = (
    "positive",
    "recall",
    "reads",
    "minutes",
    "fu_reads",
    "fu_minutes",
    "fp_workups",
    "benign_biopsies",
    "benign_resections",
)


def _walk(prep: Prepared, pick: Callable[[int], dict[str, np.ndarray]], attendance: float):
    """One arm over the rounds: who is screened, what each screen decides, who is diagnosed."""
    n, R = prep.shape
    ppl, rnd = prep.people, prep.rounds
    dx_day = np.full(n, np.inf)
    screened = np.zeros((n, R), bool)
    last_screen = np.full(n, -np.inf)
    last_round = np.full(n, -1)
    cols = {f: np.zeros((n, R), np.float64) for f in (*SUMMED, "ai_missed")}
    delay = np.full(n, np.nan)
    stage = np.full(n, -1)
    for k in range(R):
        day = rnd["day"][:, k]
        ok = (
            np.isinf(dx_day)
            & (ppl["exit_day"] > day)
            & (ppl["end_day"] > rnd["due"][:, k])
            & (rnd["attend_u"][:, k] < attendance)
        )
        f = pick(k)
        screened[:, k] = ok
        for c in SUMMED:
            cols[c][:, k] = np.where(ok, f[c], 0)
        cols["ai_missed"][:, k] = ok & f["autonomous"] & rnd["reportable"][:, k]
        last_screen = np.where(ok, day, last_screen)
        last_round = np.where(ok, k, last_round)
        when = day + f["delay"]
        hit = ok & f["found"].astype(bool) & (when < ppl["clinical_dx_day"])
        dx_day[hit], delay[hit], stage[hit] = when[hit], f["delay"][hit], f["stage"][hit]
    clinical = np.isfinite(ppl["clinical_dx_day"]) & np.isinf(dx_day)
    window = prep.meta["interval_window_days"]
    interval = (
        clinical
        & (last_round >= 0)
        & (ppl["clinical_dx_day"] - last_screen <= window)
        & (ppl["clinical_dx_day"] >= last_screen)
    )
    return {
        "screened": screened,
        "screen_detected": np.isfinite(dx_day),
        "interval": interval,
        "delay": delay,
        "stage": stage,
        **cols,
    }


def _choose(prep: Prepared, knobs: Knobs) -> Callable[[int], dict[str, np.ndarray]]:
    none = prep.variants["none"]
    n = prep.shape[0]
    no = np.zeros(n, bool)

    def soc(k: int) -> dict[str, np.ndarray]:
        out = {f: none[f][:, k] for f in FIELDS}
        out["autonomous"] = no
        return out

    if knobs.role == "none":
        return soc
    pos, neg = prep.variants[f"{knobs.role}:pos"], prep.variants[f"{knobs.role}:neg"]

    def ai(k: int) -> dict[str, np.ndarray]:
        call = prep.rounds["score"][:, k] >= knobs.threshold
        out = {f: np.where(call, pos[f][:, k], neg[f][:, k]) for f in FIELDS}
        auto = np.zeros(n, bool)
        if knobs.role == "rule_out":
            auto = ~call & (prep.rounds["audit_u"][:, k] >= knobs.audit_fraction)
            for f in FIELDS:
                out[f] = np.where(auto, np.zeros_like(out[f]), out[f])
        out["autonomous"] = auto
        return out

    return ai


# the answer's rows: metric, its unit, how it is summed
ANSWER = (
    ("screens", "screens"),
    ("screen_detected_cancers", "people"),
    ("cancer_detection_rate_per_1000", "per 1,000 screens"),
    ("interval_cancers", "people"),
    ("interval_cancer_rate_per_1000", "per 1,000 screens"),
    ("programme_sensitivity", "share"),
    ("recalls", "screens"),
    ("recall_rate", "share of screens"),
    ("false_positive_workups", "work-ups"),
    ("benign_biopsies", "biopsies"),
    ("benign_resections", "resections"),
    ("benign_biopsy_rate_per_1000", "per 1,000 screens"),
    ("screen_detected_stage_I", "people"),
    ("human_reads", "reads"),
    ("screen_reads_saved", "reads"),
    ("reader_hours", "hours"),
    ("ai_rule_out_missed_cancers", "screens"),
    ("days_to_diagnosis_median", "days"),
)


def _person_values(arm: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per person, the sums behind each metric (so paired differences have intervals)."""
    screens = arm["screened"].sum(1).astype(float)
    reads = arm["reads"].sum(1)
    early = arm["screen_detected"] & (arm["stage"] == 0)
    return {
        "screens": screens,
        "screen_detected_cancers": arm["screen_detected"].astype(float),
        "screen_detected_stage_I": early.astype(float),
        "interval_cancers": arm["interval"].astype(float),
        "positives": arm["positive"].sum(1),
        "recalls": arm["recall"].sum(1),
        "false_positive_workups": arm["fp_workups"].sum(1),
        "benign_biopsies": arm["benign_biopsies"].sum(1),
        "benign_resections": arm["benign_resections"].sum(1),
        "human_reads": reads + arm["fu_reads"].sum(1),
        "screen_reads_saved": 2.0 * screens - reads,
        "reader_hours": (arm["minutes"].sum(1) + arm["fu_minutes"].sum(1)) / 60.0,
        "ai_rule_out_missed_cancers": arm["ai_missed"].sum(1),
    }


def _ratio_ci(num: np.ndarray, den: np.ndarray, scale: float = 1.0) -> tuple[float, float, float]:
    """Ratio of two per-person sums with a delta-method 95% interval (people are the units)."""
    n = len(num)
    N, D = num.sum(), den.sum()
    if D <= 0:
        return (math.nan, math.nan, math.nan)
    r = N / D
    resid = num - r * den
    se = math.sqrt(n * resid.var()) / D if n > 1 else 0.0
    return (r * scale, max(r - 1.96 * se, 0.0) * scale, (r + 1.96 * se) * scale)


def _total_ci(x: np.ndarray, floor: float | None = None) -> tuple[float, float, float]:
    """A sum over people with its normal-approximation 95% interval (``floor``: its least value)."""
    n = len(x)
    t = float(x.sum())
    se = math.sqrt(n * x.var()) if n > 1 else 0.0
    lo = t - 1.96 * se
    return (t, lo if floor is None else max(lo, floor), t + 1.96 * se)


def _metric(vals: dict[str, np.ndarray], arm: dict[str, np.ndarray], m: str):
    if m == "cancer_detection_rate_per_1000":
        return _ratio_ci(vals["screen_detected_cancers"], vals["screens"], 1000.0)
    if m == "interval_cancer_rate_per_1000":
        return _ratio_ci(vals["interval_cancers"], vals["screens"], 1000.0)
    if m == "benign_biopsy_rate_per_1000":
        return _ratio_ci(vals["benign_biopsies"], vals["screens"], 1000.0)
    if m == "recall_rate":
        return _ratio_ci(vals["recalls"], vals["screens"])
    if m == "programme_sensitivity":
        k = int(vals["screen_detected_cancers"].sum())
        t = k + int(vals["interval_cancers"].sum())
        est, lo, hi = wilson(np.array([k]), np.array([t]))
        return (float(est[0]), float(lo[0]), float(hi[0]))
    if m == "days_to_diagnosis_median":
        d = arm["delay"][np.isfinite(arm["delay"])]
        v = float(np.median(d)) if len(d) else math.nan
        return (v, v, v)  # fixed lead times in the replay: no sampling interval
    return _total_ci(vals[m], None if m == "screen_reads_saved" else 0.0)


def _diff(a: dict, b: dict, m: str) -> tuple[float, float, float]:
    """B - A with a paired 95% interval (same people in both arms)."""
    if m in {"programme_sensitivity", "days_to_diagnosis_median"} or m.endswith(
        ("_rate", "_per_1000")
    ):
        return (math.nan, math.nan, math.nan)
    return _total_ci(b[m] - a[m])


@dataclass
class Answer:
    """The replay's answer: a table (one row per metric: standard of care, the policy, B - A,
    each with a 95% interval), the capacity check per site, and how long it took."""

    table: pl.DataFrame
    capacity: pl.DataFrame
    exact: bool
    why_inexact: str
    seconds: float


def answer(prep: Prepared, knobs: Knobs, sites: list[Site] | None = None) -> Answer:
    """The fast answer for ``knobs`` against standard of care on the same people."""
    t0 = time.perf_counter()
    knobs.check()
    if knobs.role in prep.meta.get("unavailable", {}):
        raise SandboxInputError(prep.meta["unavailable"][knobs.role])
    soc = _walk(prep, _choose(prep, Knobs(role="none")), knobs.attendance)
    arm = soc if knobs.role == "none" else _walk(prep, _choose(prep, knobs), knobs.attendance)
    va, vb = _person_values(soc), _person_values(arm)
    rows = []
    for m, unit in ANSWER:
        a, b, d = _metric(va, soc, m), _metric(vb, arm, m), _diff(va, vb, m)
        rows.append(
            {
                "metric": m,
                "unit": unit,
                "standard_of_care": a[0],
                "soc_lo": a[1],
                "soc_hi": a[2],
                "policy": b[0],
                "lo": b[1],
                "hi": b[2],
                "difference": d[0],
                "diff_lo": d[1],
                "diff_hi": d[2],
            }
        )
    cap = capacity(prep, arm, knobs, sites)
    busy = cap.filter(
        (pl.col("utilisation") > UTILISATION_EXACT) | (pl.col("scanner_utilisation") > 1.0)
    )
    why = []
    for r in busy.iter_rows(named=True):
        if r["utilisation"] > UTILISATION_EXACT:
            why.append(
                f"{r['site']}: reads need {r['utilisation']:.0%} of its radiologists' reading hours"
            )
        if r["scanner_utilisation"] > 1.0:
            why.append(
                f"{r['site']}: {r['screens_per_working_day']:.0f} screens per working day for "
                f"{r['scanner_slots_per_day']} scanner slots (screens are pushed later)"
            )
    why = "; ".join(why)
    return Answer(pl.DataFrame(rows), cap, not busy.height, why, time.perf_counter() - t0)


def erlang_c_wait(servers: int, arrivals: float, service_rate: float) -> float:
    """Mean wait in queue of an M/M/c queue (Erlang C); inf when it is over capacity."""
    a = arrivals / service_rate
    if servers <= 0 or a >= servers:
        return math.inf
    term, total = 1.0, 1.0
    for i in range(1, servers):
        term *= a / i
        total += term
    last = term * a / servers
    p_wait = last / (1 - a / servers) / (total + last / (1 - a / servers))
    return p_wait / (servers * service_rate - arrivals)


def capacity(
    prep: Prepared, arm: dict[str, np.ndarray], knobs: Knobs, sites: list[Site] | None
) -> pl.DataFrame:
    """Per site: reading demand against the radiologists' hours, and the Erlang C wait."""
    rows = []
    site_of = prep.people["site"]
    day = prep.rounds["day"]
    for s, name in enumerate(prep.meta["sites"]):
        mine = site_of == s
        screened = arm["screened"][mine]
        if not screened.any():
            continue
        minutes = arm["minutes"][mine].sum() + arm["fu_minutes"][mine].sum()
        reads = arm["reads"][mine].sum() + arm["fu_reads"][mine].sum()
        days = day[mine][screened]
        span_workdays = max((days.max() - days.min()) * 5.0 / 7.0, 1.0)
        site = sites[s] if sites else None
        readers = knobs.readers[s] if knobs.readers else (sum(site.readers.values()) if site else 0)
        hours = site.reading_hours_per_day if site else 0.0
        per_read = minutes / max(reads, 1.0)
        demand_h = minutes / 60.0 / span_workdays
        util = demand_h / (readers * hours) if readers and hours else math.inf
        lam = reads / span_workdays  # reads per working day
        mu = hours * 60.0 / per_read if per_read > 0 else math.inf  # reads per reader-day
        wait = erlang_c_wait(readers, lam, mu) if math.isfinite(mu) else 0.0
        screens_per_day = screened.sum() / span_workdays
        scan_capacity = site.scanners * site.exams_per_scanner_day if site else math.inf
        rows.append(
            {
                "site": name,
                "screens_per_working_day": screens_per_day,
                "scanner_slots_per_day": scan_capacity,
                "scanner_utilisation": screens_per_day / scan_capacity,
                "radiologists": readers,
                "reads_per_working_day": lam,
                "reading_hours_needed_per_day": demand_h,
                "reading_hours_available_per_day": readers * hours,
                "utilisation": util,
                "mean_wait_working_days": wait,
            }
        )
    return pl.DataFrame(rows)


def resolve_knob_threshold(agent: str, mode: str, value: float) -> float:
    """A score cut-off from an operating point on the device's validation set (no model load)."""
    from sandbox.agents.operating_point import resolve_threshold
    from sandbox.config import OperatingPoint
    from sandbox.runners.devices import agent_folder

    if mode == "target_sensitivity":
        op = OperatingPoint(mode=mode, target_sensitivity=value)
    else:
        op = OperatingPoint(mode=mode, value=value)
    return resolve_threshold(op, agent_folder(agent))


def run_overrides(base: list[str], knobs: Knobs, mode: str, value: float, sites) -> list[str]:
    """The ``sandbox run`` overrides of the full run that confirms a fast answer."""
    out = [o for o in base if not o.lstrip("+").startswith(("policy.", "programme.attendance"))]
    out.append(f"policy.role={knobs.role}")
    if knobs.role != "none":
        # "++": set the key whether or not the policy's file has it
        out.append(f"++policy.threshold.mode={mode}")
        key = "target_sensitivity" if mode == "target_sensitivity" else "value"
        out.append(f"++policy.threshold.{key}={value}")
        out.append(f"++policy.audit_fraction={knobs.audit_fraction}")
    out.append(f"programme.attendance={knobs.attendance}")
    if knobs.readers and sites:
        for i, (site, n) in enumerate(zip(sites, knobs.readers, strict=True)):
            have = sum(site.readers.values())
            if n != have:
                main = max(sorted(site.readers), key=lambda p: site.readers[p])
                out.append(f"sites.{i}.readers.{main}={site.readers[main] + n - have}")
    return out


def staffing_problem(cfg: RunConfig, role: str, readers: tuple[int, ...] | None) -> str:
    """Why ``role`` cannot run with ``readers`` radiologists per site ("" if it can)."""
    policy = make_policy(_with_role(cfg, role).policy, 0.5)
    for i, site in enumerate(cfg.scenario.sites):
        n = readers[i] if readers else sum(site.readers.values())
        if n < policy.min_readers:
            return (
                f"{role} with {cfg.policy.reading} reading needs at least {policy.min_readers} "
                f"radiologists at site '{site.name}' ({n} set)"
            )
    return ""


DESCRIPTIONS = {
    "recalls": "screens followed by extra imaging or work-up",
    "screen_detected_stage_I": "screen-detected cancers at stage I",
}
"""Definitions of the answer's rows that are not metrics of a run folder."""
BETTER = {"recalls": "lower", "screen_detected_stage_I": "higher"}
"""Directions of the answer's rows that are not metrics of a run folder."""

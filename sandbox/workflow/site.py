"""One screening site as a SimPy model.

Scanner appointments and work-up slots are appointment books with a fixed number of slots per
working day; the reading worklist is a queue served by the site's radiologists in their working
hours. Exams flow: invitation -> scan -> reads (as the policy says) -> Lung-RADS -> next round,
follow-up LDCT, or work-up -> diagnosis. Backlogs delay reports and work-ups, and a tumour keeps
growing while it waits.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sandbox.agents.inference import DeviceReader, ExamImage
from sandbox.agents.readers import Reader
from sandbox.config import Programme, Site
from sandbox.disease.history import History
from sandbox.disease.natural_history import YEAR, stage_at
from sandbox.rng import Streams
from sandbox.workflow.calendar import Calendar, is_workday
from sandbox.workflow.exam_log import ExamLog
from sandbox.workflow.lung_rads import CATEGORIES, FOLLOW_UP_DAYS, management
from sandbox.workflow.policies import ReadingPolicy
from sandbox.workflow.reading import (
    MALIGNANT_KEY,
    Finding,
    Prior,
    Read,
    categorise,
    most_suspicious,
    read_exam,
    update_prior,
    visible_findings,
)

DAY_START = 8.0 / 24.0
SCAN_TIME = 9.0 / 24.0
WORKUP_LEAD_DAYS = 7.0
# key space for exams within a round (screen + follow-ups): draws for exam k of round r use r * 32 + k
EXAMS_PER_ROUND = 32
STAGES = ("I", "II", "III", "IV")

EXAM_COLUMNS = (
    "person_id",
    "site",
    "round",
    "exam_seq",
    "exam_kind",
    "due_day",
    "exam_day",
    "reported_day",
    "n_reads",
    "reader_minutes",
    "arbitrated",
    "lung_rads",
    "positive",
    "management",
    "top_finding_mm",
    "malignant_visible",
    "malignant_reported",
    "malignant_diameter_mm",
    "workup_day",
    "workup_diagnosis_day",
    "workup_stage",
    "benign_biopsy",
    "ai_score",
    "ai_positive",
    "ai_autonomous",
    "human_positive",
)
# exams scanned at the same moment are scored by the AI as one batch, this long after the scan
AI_BATCH_DELAY_DAYS = 1.0 / 1440.0
# booked screens are scored this many days ahead, in batches of runtime.ai_batch_size
AI_PREFETCH_DAYS = 14


@dataclass(slots=True)
class Exam:
    site: SiteModel
    row: int
    person_id: int
    round: int
    seq: int
    kind: str
    due_day: float
    day: float
    visible: list[Finding]
    prior: Prior
    taken: set[int] = field(default_factory=set)

    @property
    def index(self) -> int:
        return self.round * EXAMS_PER_ROUND + self.seq

    def u(self, stream: str, k: int = 0) -> float:
        return self.site.streams.u(stream, self.person_id, self.index * 64 + k)

    def categorise(self, findings: list[Finding], reader_id: int, minutes: float) -> Read:
        p = self.site.programme
        cat, pos, top, suspicious = categorise(
            findings,
            self.prior,
            self.day,
            p.protocol,
            p.nlst_threshold_mm,
            p.stable_exempt_years * YEAR,
        )
        return Read(reader_id, 3, findings, cat, pos, minutes, top, suspicious)


class Worklist(simpy.FilterStore):
    """The reading worklist: a filter store that stops offering itself to waiting readers once it
    is empty (SimPy's FilterStore walks every pending get after every put and get)."""

    def _do_get(self, event):  # type: ignore[override]
        if not self.items:
            return False
        return super()._do_get(event)


@dataclass(slots=True)
class ReadTask:
    exam: Exam
    slot: int
    boost: float
    reviewer: int | None
    done: simpy.Event


class SiteModel:
    """The SimPy model of one site over the programme's horizon.

    Args:
        env: the SimPy environment (one per site: sites share nothing).
        index: site index in the scenario. site: its config. readers: its radiologists.
        history: the cohort. rows: indices into ``history`` of the people screened here.
    """

    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        site: Site,
        readers: list[Reader],
        history: History,
        rows: np.ndarray,
        programme: Programme,
        policy: ReadingPolicy,
        streams: Streams,
        n2_over_n1: float,
        on_days: Callable[[int], None] | None = None,
        ai: DeviceReader | None = None,
    ) -> None:
        self.env, self.index, self.site, self.readers = env, index, site, readers
        self.history, self.rows, self.programme, self.policy, self.streams = (
            history,
            rows,
            programme,
            policy,
            streams,
        )
        self.scanner_book = Calendar(site.scanners * site.exams_per_scanner_day)
        self.workup_book = Calendar(site.workup_slots_per_day)
        self.worklist = Worklist(env)
        self.heap: list[tuple[int, int, tuple]] = []
        self._seq = 0
        self.priors: dict[int, Prior] = {}
        n = len(history)
        self.screen_dx_day = np.full(n, np.inf)
        self.screen_dx_stage = np.full(n, -1, dtype=np.int8)
        self.exams = ExamLog(EXAM_COLUMNS)
        self.backlog: list[tuple[int, int]] = []
        self.pending_reads = 0  # reads requested and not yet completed
        self.reader_minutes = {r.reader_id: 0.0 for r in readers}
        c, p = history.cancer, history.people
        self._pid = p["person_id"]
        self._death = c["other_death_day"]
        self._clinical = c["clinical_day"]
        self._end = p["end_day"]
        self._hours = site.reading_hours_per_day / 24.0
        self._n2 = n2_over_n1
        self._on_days = on_days
        self.ai = ai
        self._prefetched_until = -1
        self._ai_pending: list[tuple[Exam, simpy.Event]] = []

    # ------------------------------------------------------------ scheduling
    def start(self) -> None:
        base = self.history.people["entry_day"][self.rows]
        self._base = dict(zip(self.rows.tolist(), base.tolist(), strict=True))
        for i in np.argsort(base, kind="stable"):
            self.schedule(int(self.rows[i]), 0, 0, "screen", float(base[i]))
        self.env.process(self.dispatcher())
        for r in self.readers:
            self.env.process(self.reader_loop(r))

    def schedule(self, row: int, rnd: int, seq: int, kind: str, due: float) -> None:
        pid = int(self._pid[row])
        while (
            kind == "screen"
            and self.streams.u("schedule.attend", pid, rnd) >= self.programme.attendance
        ):
            rnd += 1
            if rnd >= self.programme.rounds:
                return
            due = self._base[row] + rnd * self.programme.interval_years * YEAR
        if (
            kind != "screen"
            and self.streams.u("schedule.adhere", pid, rnd * EXAMS_PER_ROUND + seq)
            >= self.programme.followup_adherence
        ):
            return
        if due >= self._end[row]:
            return
        day = self.scanner_book.book(due)
        self._seq += 1
        heapq.heappush(self.heap, (day, self._seq, (row, rnd, seq, kind, due)))

    def dispatcher(self) -> Generator[Any, Any, None]:
        horizon = self.history.horizon_day
        while self.env.now < horizon:
            today = int(self.env.now)
            if self.ai is not None and today >= self._prefetched_until:
                self._prefetch(today, today + AI_PREFETCH_DAYS)
            while self.heap and self.heap[0][0] <= today:
                _, _, item = heapq.heappop(self.heap)
                self.env.process(self.exam_process(*item, day=today + SCAN_TIME))
            self.backlog.append((today, self.pending_reads))
            if self._on_days and today % 30 == 29:
                self._on_days(30)
            yield self.env.timeout(1.0)

    # ------------------------------------------------------------ reading
    def read(
        self, exam: Exam, slot: int, boost: float = 1.0, reviewer: int | None = None
    ) -> simpy.Event:
        done = self.env.event()
        self.pending_reads += 1
        self.worklist.put(ReadTask(exam, slot, boost, reviewer, done))
        return done

    def ai_score(self, exam: Exam) -> simpy.Event:
        """The AI's score of ``exam``'s image; exams scanned together are scored as one batch."""
        if self.ai is None:
            raise RuntimeError("this policy needs an AI device, and none was loaded")
        event = self.env.event()
        if not self._ai_pending:
            self.env.process(self._ai_flush())
        self._ai_pending.append((exam, event))
        return event

    def _ai_flush(self) -> Generator[Any, Any, None]:
        yield self.env.timeout(AI_BATCH_DELAY_DAYS)
        pending, self._ai_pending = self._ai_pending, []
        images = [self._image(e) for e, _ in pending]
        for (_, event), score in zip(pending, self.ai.scores(images), strict=True):
            event.succeed(float(score))

    def _image(self, exam: Exam) -> ExamImage:
        return self._image_of(exam.person_id, exam.day, exam.visible)

    def _image_of(self, person_id: int, day: float, visible: list[Finding]) -> ExamImage:
        f = most_suspicious(visible)
        scanner = self.site.scanner
        if f is None:
            return ExamImage(person_id, int(day), scanner, 0.0, 0, False)
        return ExamImage(person_id, int(day), scanner, f.size_mm, f.nodule_type, f.spiculated)

    def _prefetch(self, start: int, end: int) -> None:
        """Score the screens booked in [start, end) in large batches ahead of time.

        What an exam's image shows depends only on the person and the day, so booked screens
        can be rendered and scored before they happen; when they do, their scores come from
        the cache. Screens that end up not happening (death, diagnosis) cost an inference only.
        """
        self._prefetched_until = end
        scanner = self.site.scanner
        images = []
        for day, _, item in self.heap:
            if start <= day < end and item[3] == "screen":
                row = item[0]
                exam_day = day + SCAN_TIME
                visible = visible_findings(self.history, row, exam_day, scanner)
                images.append(self._image_of(int(self._pid[row]), exam_day, visible))
        if images:
            self.ai.scores(images)

    def _next_working_time(self, t: float) -> float:
        day = math.floor(t)
        while True:
            if is_workday(day):
                start, end = day + DAY_START, day + DAY_START + self._hours
                if t < end:
                    return max(t, start)
            day += 1

    def reader_loop(self, reader: Reader) -> Generator[Any, Any, None]:
        rid = reader.reader_id

        def mine(task: ReadTask) -> bool:
            if task.reviewer is not None:
                return task.reviewer == rid
            return rid not in task.exam.taken

        p = self.programme
        while True:
            task = yield self.worklist.get(mine)
            task.exam.taken.add(rid)
            start = self._next_working_time(self.env.now)
            if start > self.env.now:
                yield self.env.timeout(start - self.env.now)
            e = task.exam
            result = read_exam(
                reader,
                e.visible,
                e.prior,
                self.streams,
                e.person_id,
                e.index,
                task.slot,
                e.day,
                p.protocol,
                p.nlst_threshold_mm,
                p.stable_exempt_years * YEAR,
                task.boost,
            )
            self.reader_minutes[rid] += result.minutes
            yield self.env.timeout(result.minutes / 1440.0)
            self.pending_reads -= 1
            task.done.succeed(result)

    # ------------------------------------------------------------ exams
    def exam_process(
        self, row: int, rnd: int, seq: int, kind: str, due: float, day: float
    ) -> Generator[Any, Any, None]:
        if day > self.env.now:
            yield self.env.timeout(day - self.env.now)
        if (
            self._death[row] <= day
            or self._clinical[row] <= day
            or self.screen_dx_day[row] < math.inf  # found by an earlier work-up
            or self._end[row] <= day  # pushed past the person's follow-up by a full calendar
        ):
            return
        prior = self.priors.setdefault(row, Prior({}))
        scanner = self.site.scanner
        exam = Exam(
            self,
            row,
            int(self._pid[row]),
            rnd,
            seq,
            kind,
            due,
            day,
            visible_findings(self.history, row, day, scanner),
            prior,
        )
        decision = yield from self.policy.process(self, exam)
        final = decision.final
        mgmt = management(final.category)
        if self.programme.protocol == "nlst":
            # NLST: a negative screen returns to the annual round; a positive one with no
            # Lung-RADS-actionable nodule (e.g. a stable or 4-6 mm nodule) gets a 6-month LDCT
            if not final.positive:
                mgmt = "next_round"
            elif mgmt == "next_round":
                mgmt = "ct_6m"
        malignant = next((f for f in exam.visible if f.key == MALIGNANT_KEY), None)
        top = next((f.size_mm for f in final.findings if f.key == final.top_key), 0.0)
        rec = self.exams.append(
            (
                exam.person_id,
                self.index,
                rnd,
                seq,
                kind,
                due,
                day,
                self.env.now,
                len(decision.reads),
                sum(r.minutes for r in decision.reads),
                decision.arbitrated,
                CATEGORIES[final.category],
                final.positive,
                mgmt,
                top,
                malignant is not None,
                any(f.key == MALIGNANT_KEY for f in final.findings),
                malignant.size_mm if malignant else 0.0,
                math.nan,
                math.nan,
                None,
                False,
                decision.ai_score,
                decision.ai_positive,
                decision.autonomous,
                decision.reads[0].positive if decision.reads else None,
            )
        )
        update_prior(prior, final.findings, day)
        if kind == "screen" and rnd + 1 < self.programme.rounds:
            self.schedule(
                row,
                rnd + 1,
                0,
                "screen",
                self._base[row] + (rnd + 1) * self.programme.interval_years * YEAR,
            )
        if mgmt in FOLLOW_UP_DAYS:
            self.schedule(row, rnd, seq + 1, mgmt, day + FOLLOW_UP_DAYS[mgmt])
        elif mgmt == "workup":
            self.env.process(self.workup_process(row, exam, final, rec))

    def workup_process(
        self, row: int, exam: Exam, final: Read, rec: int
    ) -> Generator[Any, Any, None]:
        wday = self.workup_book.book(self.env.now + WORKUP_LEAD_DAYS) + DAY_START
        yield self.env.timeout(wday - self.env.now)
        if (
            self._death[row] <= wday
            or self._clinical[row] <= wday
            or self.screen_dx_day[row] < math.inf  # already found by another work-up
        ):
            return
        self.exams.set(rec, "workup_day", wday)
        result_day = wday + self.site.workup_days_to_result
        c = self.history.cancer
        # the work-up (PET-CT, biopsy) examines every suspicious finding of the report
        if MALIGNANT_KEY in final.suspicious and c["onset_day"][row] <= wday:
            d = self.history.cancer_diameter(row, wday)
            stage = stage_at(d, float(c["nodal_mm"][row]), self._n2, float(c["distant_mm"][row]))
            self.screen_dx_day[row] = result_day
            self.screen_dx_stage[row] = STAGES.index(stage)
            self.exams.set(rec, "workup_diagnosis_day", result_day)
            self.exams.set(rec, "workup_stage", stage)
        elif exam.u("workup.biopsy") < self.programme.benign_biopsy_given_workup:
            self.exams.set(rec, "benign_biopsy", True)

    def run(self) -> None:
        self.start()
        self.env.run(until=self.history.horizon_day + 1.0)

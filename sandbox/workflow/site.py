"""One screening site as a SimPy model: the engine every programme shares.

Scanner appointments and work-up slots are appointment books with a fixed number of slots per
working day; the reading worklist is a queue served by the site's radiologists in their working
hours. Exams flow: invitation -> scan -> reads (as the policy in force says) -> the
programme's report and management -> next round, a follow-up exam, or work-up -> diagnosis.
Backlogs delay reports and work-ups, and disease keeps progressing while it waits.

What an exam shows, how a reader reports it, what follows a report and what a work-up finds
are the programme's (:class:`sandbox.programmes.base.Programme`); who reads is the policy's.
Observers hear of every report, work-up, diagnosis and death, and of each day's start.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from sandbox.agents.readers import Reader
from sandbox.config import ProgrammeConfig, Scanner, Site
from sandbox.programmes.base import Cohort, PersonEvent, Programme, Read
from sandbox.rng import Streams, exam_key
from sandbox.workflow.calendar import Calendar, is_workday
from sandbox.workflow.exam import NAN, Exam, ExamRecord
from sandbox.workflow.observers import LivePolicy, Observer, WorkupDone
from sandbox.workflow.policies import ReadingPolicy

YEAR = 365.25
DAY_START = 8.0 / 24.0
SCAN_TIME = 9.0 / 24.0
WORKUP_LEAD_DAYS = 7.0
# exams scanned at the same moment are scored by the AI as one batch, this long after the scan
AI_BATCH_DELAY_DAYS = 1.0 / 1440.0
# booked screens are scored this many days ahead, in batches of runtime.ai_batch_size
AI_PREFETCH_DAYS = 14


def _view(a: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(a))


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
    marked: frozenset[int] | None
    done: simpy.Event


@dataclass(frozen=True)
class SiteSetup:
    """Everything a site model needs besides its environment.

    Args:
        index: site index in the scenario. site: its config. readers: its radiologists.
        programme: the programme object. cohort: the programme's cohort (all sites').
        rows: indices into ``cohort`` of the people screened here. schedule: the scenario's
        ``programme`` section. policy: the run's policy (version 0 of the live policy).
        streams: keyed random streams. ai: the AI device reader, when the policy uses one.
        observers: told of reports, work-ups, diagnoses, deaths and days (the exam log first).
        on_days: progress callback, called with simulated days every 30 days.
        scanner_changes: the site's scanner from given days on (``drift``), in day order.
    """

    index: int
    site: Site
    readers: Sequence[Reader]
    programme: Programme
    cohort: Cohort
    rows: np.ndarray
    schedule: ProgrammeConfig
    policy: ReadingPolicy
    streams: Streams
    ai: Any = None  # sandbox.agents.inference.DeviceScorer
    # drift: (from_day, scanner, reason) for each change of the site's scanner, by day
    scanner_changes: Sequence[tuple[float, Scanner, str]] = ()
    staffing_changes: Sequence[tuple[float, Sequence[Reader], float, str]] = ()
    observers: Sequence[Observer] = ()
    on_days: Callable[[int], None] | None = None


class SiteModel:
    """The SimPy model of one site over the programme's horizon.

    Args:
        env: the SimPy environment (its own, or one shared by the sites of a unit of work:
            sites share nothing but the clock).
        setup: the site's parts (:class:`SiteSetup`).
    """

    def __init__(self, env: simpy.Environment, setup: SiteSetup) -> None:
        self.env = env
        self.index, self.site, self.readers = setup.index, setup.site, list(setup.readers)
        self.name = setup.site.name
        self.programme, self.cohort, self.rows = setup.programme, setup.cohort, setup.rows
        self.schedule_cfg, self.streams, self.ai = setup.schedule, setup.streams, setup.ai
        self.observers = list(setup.observers)
        self._on_exam = [ob.on_exam for ob in self.observers]
        self.policy = LivePolicy(self, setup.policy)
        # the imaging device of this site's screens: its scanner, or what the policy's modality
        # (a chest radiograph) uses instead
        self.scanner = setup.programme.exam_scanner(
            setup.site.scanner, setup.policy.config.modality
        )
        self._scanner_from = [float(d) for d, _, _ in setup.scanner_changes]
        self._scanners = [self.scanner] + [
            setup.programme.exam_scanner(sc, setup.policy.config.modality)
            for _, sc, _ in setup.scanner_changes
        ]
        self.scanner_book = Calendar(setup.site.scanners * setup.site.exams_per_scanner_day)
        self.workup_book = Calendar(setup.site.workup_slots_per_day)
        self.worklist = Worklist(env)
        self.heap: list[tuple[int, int, tuple]] = []
        self._seq = 0
        self.priors: dict[int, Any] = {}
        n = len(setup.cohort)
        self.screen_dx_day = np.full(n, np.inf)
        self.screen_dx_stage = np.full(n, -1, dtype=np.int8)
        self.backlog: list[tuple[int, int]] = []
        self.pending_reads = 0  # reads requested and not yet completed
        self.reader_minutes = {r.reader_id: 0.0 for r in self.readers}
        people = setup.cohort.people
        # read exam by exam: memoryviews give Python numbers, several times faster than numpy
        self._pid = _view(people["person_id"])
        self._exit = _view(setup.cohort.exit_days())
        self._end = _view(people["end_day"])
        self._dx_day = memoryview(self.screen_dx_day)  # the same buffer: sees every write
        self._hours = setup.site.reading_hours_per_day / 24.0
        self._staffing = list(setup.staffing_changes)
        self._active = {r.reader_id for r in self.readers}  # who takes new reads
        self._on_days = setup.on_days
        self._prefetched_until = -1
        self._ai_pending: dict[Any, list[tuple[Exam, simpy.Event]]] = {}  # by device
        self._person_events: list[tuple[float, int, int, PersonEvent]] = []
        self._dead: set[int] = set()

    @property
    def now(self) -> float:
        return self.env.now

    # ------------------------------------------------------------ scheduling
    def start(self) -> None:
        base = self.cohort.people["entry_day"][self.rows]
        self._base = dict(zip(self.rows.tolist(), base.tolist(), strict=True))
        if self.policy.current.policy.invites:
            for i in np.argsort(base, kind="stable"):
                self.schedule(int(self.rows[i]), 0, 0, "screen", float(base[i]))
        self._queue_clinical_events()
        self.env.process(self.dispatcher())
        for r in self.readers:
            self.env.process(self.reader_loop(r))
        if self._staffing:
            self.env.process(self.staffing())

    def staffing(self) -> Generator[Any, Any, None]:
        """The drift's staffing changes: from each one's day, its team takes new reads (those
        who join start then) for its hours a day; those who leave only finish their reviews."""
        started = {r.reader_id for r in self.readers}
        for day, roster, hours, _ in self._staffing:
            if day > self.env.now:
                yield self.env.timeout(day - self.env.now)
            self._hours = hours / 24.0
            self._active = {r.reader_id for r in roster}
            for r in roster:
                if r.reader_id not in started:
                    started.add(r.reader_id)
                    self.readers.append(r)
                    self.reader_minutes[r.reader_id] = 0.0
                    self.env.process(self.reader_loop(r))

    def schedule(self, row: int, rnd: int, seq: int, kind: str, due: float) -> None:
        pid = int(self._pid[row])
        p = self.schedule_cfg
        while kind == "screen" and self.streams.u("schedule.attend", pid, rnd) >= p.attendance:
            rnd += 1
            if rnd >= p.rounds:
                return
            due = self._base[row] + rnd * p.interval_years * YEAR
        if kind != "screen" and (
            self.streams.u("schedule.adhere", pid, exam_key(rnd, seq)) >= p.followup_adherence
        ):
            return
        if due >= self._end[row]:
            return
        day = self.scanner_book.book(due)
        self._seq += 1
        heapq.heappush(self.heap, (day, self._seq, (row, rnd, seq, kind, due)))

    def dispatcher(self) -> Generator[Any, Any, None]:
        horizon = self.cohort.horizon_day
        while self.env.now < horizon:
            today = int(self.env.now)
            self._emit_person_events(today)
            for ob in self.observers:
                ob.on_day(self, today)
            if self.ai is not None and today >= self._prefetched_until:
                self._prefetch(today, today + AI_PREFETCH_DAYS)
            while self.heap and self.heap[0][0] <= today:
                _, _, item = heapq.heappop(self.heap)
                self.env.process(self.exam_process(*item, day=today + SCAN_TIME))
            self.backlog.append((today, self.pending_reads))
            if self._on_days and today % 30 == 29:
                self._on_days(30)
            yield self.env.timeout(1.0)
        self._emit_person_events(math.inf)  # what happened on the last, partial day

    # ------------------------------------------------------------ diagnoses and deaths
    def _queue_clinical_events(self) -> None:
        """Queue the clinical diagnoses and other-cause deaths of this site's people."""
        for row, event in self.programme.person_timeline(self.cohort, self.rows):
            self._push_person(event.day, row, event)

    def _push_person(self, day: float, row: int, event: PersonEvent) -> None:
        if day < self._end[row]:
            self._seq += 1
            heapq.heappush(self._person_events, (day, self._seq, row, event))

    def _emit_person_events(self, today: int) -> None:
        """Tell observers of the diagnoses and deaths that happened before ``today``.

        A cancer is diagnosed by the route that comes first: a screen's work-up result before
        the day symptoms surface, or else clinically. A diagnosis queues the cancer death the
        programme's survival model gives; nothing is told of a person after their death.
        """
        q = self._person_events
        while q and q[0][0] < today:
            day, _, row, ev = heapq.heappop(q)
            if row in self._dead:
                continue
            if ev.kind == "diagnosis":
                screen_first = self.screen_dx_day[row] < self.programme.clinical_day(
                    self.cohort, row
                )
                if (ev.route == "screen") != screen_first:
                    continue  # the other route diagnosed this cancer first
                death = self.programme.cancer_death_day(self.cohort, row, day, ev.stage)
                if math.isfinite(death):
                    self._push_person(
                        death, row, PersonEvent("death", ev.person_id, death, "cancer")
                    )
            else:
                self._dead.add(row)
            for ob in self.observers:
                ob.on_person(self, ev)

    # ------------------------------------------------------------ reading
    def read(
        self,
        exam: Exam,
        slot: int,
        boost: float = 1.0,
        reviewer: int | None = None,
        marked: frozenset[int] | None = None,
    ) -> simpy.Event:
        done = self.env.event()
        self.pending_reads += 1
        self.worklist.put(ReadTask(exam, slot, boost, reviewer, marked, done))
        return done

    def scanner_at(self, day: float) -> Scanner:
        """The scanner an exam performed on ``day`` is taken on (after any drift before it)."""
        if not self._scanner_from:
            return self.scanner
        return self._scanners[bisect.bisect_right(self._scanner_from, day)]

    def _device_of(self, exam: Exam) -> Any:
        """The device of the policy version that reads ``exam`` (a device update's, or the run's)."""
        if self.ai is None:
            raise RuntimeError("this policy needs an AI device, and none was loaded")
        return self.policy.versions[exam.policy_version].policy.device or self.ai

    def ai_score(self, exam: Exam) -> simpy.Event:
        """The AI's score of ``exam``'s image; exams scanned together are scored as one batch."""
        device = self._device_of(exam)
        event = self.env.event()
        pending = self._ai_pending.setdefault(device, [])
        if not pending:
            self.env.process(self._ai_flush(device))
        pending.append((exam, event))
        return event

    def ai_cutoff(self, exam: Exam, point: Any) -> float:
        """The score cut-off of operating point ``point`` on the device that reads ``exam``."""
        return self._device_of(exam).cutoff(point)

    def _ai_flush(self, device: Any) -> Generator[Any, Any, None]:
        yield self.env.timeout(AI_BATCH_DELAY_DAYS)
        pending = self._ai_pending.pop(device)
        prog = self.programme
        images = [
            prog.image_of(e.person_id, e.day, self.scanner_at(e.day), e.shows) for e, _ in pending
        ]
        reads = device.read(images)
        for i, (exam, event) in enumerate(pending):
            exam.ai_read, exam.ai_mark = prog.ai_read_of(
                images[i], int(reads.driver[i]), int(reads.candidates[i]), exam.shows
            )
            event.succeed(float(reads.score[i]))

    def _prefetch(self, start: int, end: int) -> None:
        """Score the screens booked in [start, end) in large batches ahead of time.

        What an exam's image shows depends only on the person and the day, so booked screens
        can be rendered and scored before they happen; when they do, their scores come from
        the cache. Screens that end up not happening (death, diagnosis) cost an inference only.
        """
        self._prefetched_until = end
        prog = self.programme
        images = []
        for day, _, item in self.heap:
            if start <= day < end and item[3] == "screen":
                row = item[0]
                exam_day = day + SCAN_TIME
                scanner = self.scanner_at(exam_day)
                shows = prog.exam_shows(self.cohort, row, exam_day, scanner)
                images.append(prog.image_of(int(self._pid[row]), exam_day, scanner, shows))
        if images:
            (self.policy.current.policy.device or self.ai).scores(images)

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
            return rid in self._active and rid not in task.exam.taken

        prog = self.programme
        while True:
            task = yield self.worklist.get(mine)
            task.exam.taken.add(rid)
            start = self._next_working_time(self.env.now)
            if start > self.env.now:
                yield self.env.timeout(start - self.env.now)
            result = prog.read(reader, task.exam, task.slot, task.boost, task.marked)
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
            self._exit[row] <= day  # died, or symptoms led to a diagnosis
            or self._dx_day[row] < math.inf  # found by an earlier work-up
            or self._end[row] <= day  # pushed past the person's follow-up by a full calendar
        ):
            return
        prog = self.programme
        prior = self.priors.get(row)
        if prior is None:
            prior = self.priors[row] = prog.new_prior()
        version = self.policy.at(day)
        exam = Exam(
            self,
            row,
            int(self._pid[row]),
            rnd,
            seq,
            kind,
            due,
            day,
            prog.exam_shows(self.cohort, row, day, self.scanner_at(day)),
            prior,
            exam_key(rnd, seq),
            version.version,
        )
        decision = yield from version.policy.process(self, exam)
        final = decision.final
        ai_candidates, ai_driver = exam.ai_read or (None, None)  # set only when the AI scored it
        mgmt = prog.manage(exam, final)
        report, top_mm, malignant_visible, malignant_reported, malignant_mm = prog.exam_fields(
            exam, final
        )
        record = ExamRecord(
            exam.person_id,  # person_id
            self.index,  # site
            rnd,  # round
            seq,  # exam_seq
            kind,  # exam_kind
            due,  # due_day
            day,  # exam_day
            self.env.now,  # reported_day
            len(decision.reads),  # n_reads
            sum(r.minutes for r in decision.reads),  # reader_minutes
            decision.arbitrated,  # arbitrated
            report,  # report (the programme's report column)
            final.positive,  # positive
            mgmt,  # management
            top_mm,  # top_finding_mm
            malignant_visible,  # malignant_visible
            malignant_reported,  # malignant_reported
            malignant_mm,  # malignant_diameter_mm
            NAN,  # workup_day (filled in by the exam log when the work-up happens)
            NAN,  # workup_diagnosis_day
            None,  # workup_stage
            False,  # benign_biopsy
            False,  # benign_resection
            decision.ai_score,  # ai_score
            decision.ai_positive,  # ai_positive
            ai_candidates,  # ai_candidates
            ai_driver,  # ai_driver
            decision.autonomous,  # ai_autonomous
            decision.reads[0].positive if decision.reads else None,  # human_positive
            exam.policy_version,  # policy_version
        )
        for on_exam in self._on_exam:
            on_exam(self, record)
        prog.after_report(exam, final)
        p = self.schedule_cfg
        if kind == "screen" and rnd + 1 < p.rounds:
            self.schedule(
                row, rnd + 1, 0, "screen", self._base[row] + (rnd + 1) * p.interval_years * YEAR
            )
        if mgmt in prog.follow_up_days:
            self.schedule(row, rnd, seq + 1, mgmt, day + prog.follow_up_days[mgmt])
        elif mgmt == "workup":
            self.env.process(self.workup_process(row, exam, final))

    def workup_process(self, row: int, exam: Exam, final: Read) -> Generator[Any, Any, None]:
        wday = self.workup_book.book(self.env.now + WORKUP_LEAD_DAYS) + DAY_START
        yield self.env.timeout(wday - self.env.now)
        if (
            self._exit[row] <= wday
            or self._dx_day[row] < math.inf  # already found by another work-up
        ):
            return
        outcome = self.programme.workup(self.cohort, exam, final, wday)
        dx_day = None
        if outcome.diagnosed:
            dx_day = wday + self.site.workup_days_to_result
            self.screen_dx_day[row] = dx_day
            self.screen_dx_stage[row] = self.programme.stages.index(outcome.stage)
            self._push_person(
                dx_day,
                row,
                PersonEvent("diagnosis", exam.person_id, dx_day, "screen", outcome.stage),
            )
        event = WorkupDone(
            exam.person_id,
            exam.round,
            exam.seq,
            wday,
            dx_day,
            outcome.stage if outcome.diagnosed else None,
            outcome.benign_biopsy,
            outcome.benign_resection,
        )
        for ob in self.observers:
            ob.on_workup(self, event)

    def run(self) -> None:
        """Run this site alone in its environment to the end of the horizon."""
        self.start()
        self.env.run(until=self.cohort.horizon_day + 1.0)

"""Post-market surveillance: monitors that watch a site's AI reads in simulated time.

A :class:`CusumMonitor` is an observer (:mod:`sandbox.workflow.observers`). It sees each exam
when its report is issued, as a monitoring team would, and closes each calendar day at the
next day's tick. Per site and per statistic of that day's AI reads (the AI-positive rate, or
the mean score) it keeps a two-sided CUSUM, as FDA's AIM-CU does:

    z_t = (x_t - mu_0) / (sd_0 / sqrt(n_t))
    S+_t = max(0, S+_{t-1} + z_t - k),   S-_t = max(0, S-_{t-1} - z_t - k)

where ``x_t`` is the day's statistic over its ``n_t`` reads and ``mu_0``, ``sd_0`` the
in-control mean and per-read SD. An alarm is raised when ``S+`` or ``S-`` exceeds ``h``; the
CUSUM then restarts from zero. With ``k = 0.5`` and ``h = 5`` a one-sided CUSUM of standard
normal ``z`` has an in-control average run length of about 930 days (Siegmund's
approximation), two-sided about 465: fewer than one false alarm per site-year of reading days.

The in-control reference is either the site's own first ``baseline_days`` of AI reads
(``reference: baseline``) or the device's validation reference, the screening population it
was validated on (``reference: validation``), at the run's operating point.

The delayed-label tests (``labels``) watch outcomes only as the simulated world reveals them:
a work-up's result once its result time has passed (``ppv``), a screen's screen-detected and
interval cancers once its interval window has passed (``sensitivity``,
``interval_cancer_rate``; a cancer counts for the person's last screen before its diagnosis).
Each compares consecutive windows with the site's own first labels by Fisher's exact test.

After an alarm, the plan's action takes effect ``days_to_act`` days later through the site's
live policy handle: ``alert`` (recorded only), ``standard_of_care`` (the AI is switched off at
that site), ``recalibrate`` (the operating point moved to the quantile of the scores read
during the delay to act that restores the in-control AI-positive rate; the charts then take a
new baseline) or ``roll_back`` (the run's own policy, the device as validated, back in force).
A site acts once; later alarms are recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sandbox.workflow.observers import Observer

if TYPE_CHECKING:
    from sandbox.config import Monitoring
    from sandbox.programmes.base import PersonEvent
    from sandbox.workflow.exam import ExamRecord
    from sandbox.workflow.observers import WorkupDone
    from sandbox.workflow.site import SiteModel

MONITORING_SCHEMA = {
    "site": pl.String,
    "statistic": pl.String,
    "day": pl.Int32,
    "reads": pl.Int32,
    "value": pl.Float64,
    "z": pl.Float64,
    "cusum_up": pl.Float64,
    "cusum_down": pl.Float64,
    "alarm": pl.Boolean,
    "action": pl.String,
    "p_value": pl.Float64,
    "ewma": pl.Float64,
    "limit": pl.Float64,
    "reference": pl.Float64,
    "group": pl.String,
}
WINDOW_STATISTICS = ("psi", "ks")
EWMA_STATISTICS = ("recall_rate",)
LABEL_STATISTICS = ("ppv", "sensitivity", "interval_cancer_rate")
PSI_BINS = 10
PSI_FLOOR = 1e-4  # a bin's share below this counts as this (an empty bin has no logarithm)


@dataclass
class _Chart:
    statistic: str
    k: float
    h: float
    mean: float = math.nan
    sd: float = math.nan
    up: float = 0.0
    down: float = 0.0


@dataclass
class _Ewma:
    statistic: str
    lam: float
    L: float
    mean: float = math.nan
    sd: float = math.nan
    value: float = 0.0
    steps: int = 0
    baseline_n: int = 0  # screens the in-control rate was estimated from


@dataclass
class _Window:
    statistic: str
    days: int
    limit: float
    min_reads: int = 1
    start: int | None = None
    scores: list[float] = field(default_factory=list)


@dataclass
class _Label:
    """One delayed-label test at one site: per stratum (0: people's first screens, 1: later
    screens) its baseline counts [hits, n], then the open window's."""

    statistic: str
    days: int
    limit: float
    min_labels: int
    baseline_days: int
    base_start: list[int | None] = field(default_factory=lambda: [None, None])
    base: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])
    ready: list[bool] = field(default_factory=lambda: [False, False])
    start: int | None = None
    win: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])

    @property
    def scale(self) -> float:
        return 1000.0 if self.statistic == "interval_cancer_rate" else 1.0


@dataclass
class _SiteState:
    charts: list[_Chart]
    windows: list[_Window] = field(default_factory=list)
    ewmas: list[_Ewma] = field(default_factory=list)
    reference: np.ndarray | None = None  # the in-control score distribution
    recalls: dict[int, list[bool]] = field(default_factory=dict)  # every screen's, by day
    recall_baseline: list[bool] = field(default_factory=list)
    recall_first: int | None = None
    days: dict[int, list[tuple[float, bool]]] = field(default_factory=dict)
    baseline: list[tuple[float, bool]] = field(default_factory=list)
    recalibrate: tuple[int, str] | None = None  # (alarm day, reason) while collecting
    since_alarm: list[float] = field(default_factory=list)
    first_day: int | None = None
    acted: bool = False
    labels: list[_Label] = field(default_factory=list)
    # work-up results by (day known, stratum): [cancers, work-ups]
    results: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    # screens by (day, stratum): [screens, screen-detected, interval cancers]
    screens: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    last_screen: dict[int, tuple[int, int]] = field(default_factory=dict)  # person -> its key
    first_round: dict[int, int] = field(default_factory=dict)  # person -> first screen's round
    target_rate: float = math.nan  # the in-control AI-positive rate (recalibration's target)
    group: str = ""  # "" (the whole site) or a subgroup within it ("sex=F")


class CusumMonitor(Observer):
    """Two-sided CUSUMs on each site's daily AI reads (see the module docstring).

    Args:
        plan: the monitoring plan (``cusums``, ``reference``, ``baseline_days``, ``action``,
            ``days_to_act``).
        threshold: the run's operating point (the AI-positive cut-off of the reference).
        reference_scores: the device's validation reference scores (``reference: validation``).
    """

    def __init__(
        self, plan: Monitoring, threshold: float, reference_scores: np.ndarray | None = None
    ) -> None:
        self.plan, self.threshold = plan, float(threshold)
        self.reference = None
        if plan.reference == "validation":
            if reference_scores is None or len(reference_scores) < 30:
                raise ValueError("reference: validation needs the device's reference scores")
            self.reference = np.asarray(reference_scores, dtype=np.float64)
        self.sites: dict[tuple[str, str], _SiteState] = {}  # by (site, group)
        self._by_site: dict[str, list[_SiteState]] = {}
        self._people: dict[str, dict[int, tuple[str, ...]]] = {}  # site -> person -> groups
        self.rows: list[tuple] = []

    # ------------------------------------------------------------------ observer hooks
    def on_exam(self, site: SiteModel, record: ExamRecord) -> None:
        for st in self._states(site, record):
            self._exam(st, record)

    def on_workup(self, site: SiteModel, event: WorkupDone) -> None:
        for st in self._states(site, event):
            self._workup(site, st, event)

    def on_person(self, site: SiteModel, event: PersonEvent) -> None:
        for st in self._states(site, event):
            self._person(site, st, event)

    def on_day(self, site: SiteModel, day: int) -> None:
        self._state(site, "")
        for st in self._by_site[site.name]:
            for d in sorted(k for k in st.days if k < day):
                self._close(site, st, d, st.days.pop(d))
            for d in sorted(k for k in st.recalls if k < day):
                self._close_recalls(site, st, d, st.recalls.pop(d))
            if st.labels:
                self._labels(site, st, day)

    def _exam(self, st: _SiteState, record: ExamRecord) -> None:
        day = int(record.reported_day)
        if st.ewmas and record.exam_kind == "screen":
            st.recalls.setdefault(day, []).append(record.management != "next_round")
        if st.labels and record.exam_kind == "screen":
            pid = record.person_id
            first = st.first_round.setdefault(pid, record.round)
            key = (int(record.exam_day), int(record.round != first))
            st.screens.setdefault(key, [0, 0, 0])[0] += 1
            st.last_screen[pid] = key
        score = record.ai_score
        if score is None or score != score:
            return
        st.days.setdefault(day, []).append((float(score), bool(record.ai_positive)))

    def _workup(self, site: SiteModel, st: _SiteState, event: WorkupDone) -> None:
        if st.labels:
            # the result is known once the work-up's result time has passed, found or not
            known = int(event.workup_day + site.site.workup_days_to_result)
            later = int(event.round != st.first_round.get(event.person_id, event.round))
            counts = st.results.setdefault((known, later), [0, 0])
            counts[0] += event.diagnosis_day is not None
            counts[1] += 1

    def _person(self, site: SiteModel, st: _SiteState, event: PersonEvent) -> None:
        if not st.labels:
            return
        key = st.last_screen.pop(event.person_id, None)
        if event.kind != "diagnosis" or key is None or key not in st.screens:
            return  # a death, no screen yet, or a screen whose labels are already final
        if event.route == "screen":
            st.screens[key][1] += 1
        elif event.day - key[0] <= _interval_days(site):
            st.screens[key][2] += 1

    # ------------------------------------------------------------------ the charts
    def _states(self, site: SiteModel, about: Any) -> list[_SiteState]:
        """The states that see what happened to a person (``about.person_id``): the site's,
        and each of the plan's subgroups the person belongs to."""
        states = [self._state(site, "")]
        if self.plan.subgroups:
            groups = self._people.get(site.name)
            if groups is None:
                groups = self._people[site.name] = _person_groups(site, self.plan.subgroups)
            states.extend(self._state(site, g) for g in groups.get(about.person_id, ()))
        return states

    def _emit(self, st: _SiteState, row: tuple) -> None:
        self.rows.append((*row, st.group))

    def _state(self, site: SiteModel, group: str) -> _SiteState:
        st = self.sites.get((site.name, group))
        if st is None:
            charts = [_Chart(c.statistic, c.k, c.h) for c in self.plan.cusums]
            windows = [
                _Window(w.statistic, w.days, w.limit, w.min_reads) for w in self.plan.windows
            ]
            ewmas = [_Ewma(e.statistic, e.lam, e.L) for e in self.plan.ewmas]
            st = self.sites[(site.name, group)] = _SiteState(charts, windows, ewmas)
            st.group = group
            self._by_site.setdefault(site.name, []).append(st)
            st.labels = [
                _Label(lb.statistic, lb.days, lb.limit, lb.min_labels, lb.baseline_days)
                for lb in self.plan.labels
            ]
            if self.reference is not None:
                ref = self.reference
                self._calibrate(st, ref, ref >= self.threshold)
        return st

    @staticmethod
    def _calibrate(st: _SiteState, scores: np.ndarray, positive: np.ndarray) -> None:
        st.reference = np.sort(np.asarray(scores, dtype=np.float64))
        if math.isnan(st.target_rate):
            st.target_rate = float(positive.mean())
        for c in st.charts:
            x = positive.astype(np.float64) if c.statistic == "ai_positive_rate" else scores
            c.mean = float(x.mean())
            c.sd = max(float(x.std(ddof=1)), 1e-9)

    def _close(self, site: SiteModel, st: _SiteState, day: int, reads: list) -> None:
        if not st.charts and not st.windows:
            return
        if st.first_day is None:
            st.first_day = day
        scores = np.array([s for s, _ in reads])
        positive = np.array([p for _, p in reads], dtype=np.float64)
        if st.recalibrate is not None:
            st.since_alarm.extend(scores.tolist())
            if day >= st.recalibrate[0] + max(1.0, self.plan.days_to_act):
                self._recalibrate(site, st, day)
            return
        if st.reference is None:
            # still in the baseline window: collect, then calibrate once it is full
            st.baseline.extend(zip(scores.tolist(), positive.tolist(), strict=True))
            if day - st.first_day + 1 >= self.plan.baseline_days:
                b = np.array(st.baseline)
                self._calibrate(st, b[:, 0], b[:, 1] > 0.5)
                st.baseline = []
            return
        n = len(reads)
        alarm_now = False
        for c in st.charts:
            x = float(positive.mean() if c.statistic == "ai_positive_rate" else scores.mean())
            z = (x - c.mean) / (c.sd / math.sqrt(n))
            c.up = max(0.0, c.up + z - c.k)
            c.down = max(0.0, c.down - z - c.k)
            alarm = c.up > c.h or c.down > c.h
            action = ""
            if alarm:
                action = self._act(site, st, day, c.statistic) if not alarm_now else "alarm"
                alarm_now = True
            self._emit(
                st,
                (site.name, c.statistic, day, n, x, z, c.up, c.down, alarm, action)
                + (math.nan, math.nan, c.h, c.mean),
            )
            if alarm:
                c.up = c.down = 0.0
        for w in st.windows:
            if w.start is None:
                w.start = day
            w.scores.extend(scores.tolist())
            if day - w.start + 1 < w.days or len(w.scores) < w.min_reads:
                continue
            x = np.asarray(w.scores)
            value, p = window_statistic(w.statistic, x, st.reference)
            alarm = (value > w.limit) if w.statistic == "psi" else (p < w.limit)
            action = ""
            if alarm:
                action = self._act(site, st, day, w.statistic) if not alarm_now else "alarm"
                alarm_now = True
            nan = math.nan
            self._emit(
                st,
                (site.name, w.statistic, day, len(x), value, nan, nan, nan, alarm, action, p)
                + (nan, w.limit, nan),
            )
            w.start, w.scores = None, []

    def _close_recalls(self, site: SiteModel, st: _SiteState, day: int, flags: list) -> None:
        """One day of EWMA charts on the share of the day's screens that were recalled."""
        if not st.ewmas or st.recalibrate is not None:
            return
        if st.recall_first is None:
            st.recall_first = day
        if math.isnan(st.ewmas[0].mean):
            st.recall_baseline.extend(flags)
            if day - st.recall_first + 1 >= self.plan.baseline_days:
                p = float(np.mean(st.recall_baseline))
                for e in st.ewmas:
                    e.mean, e.sd = p, max(math.sqrt(p * (1.0 - p)), 1e-9)
                    e.baseline_n = len(st.recall_baseline)
                st.recall_baseline = []
            return
        n, x = len(flags), float(np.mean(flags))
        for e in st.ewmas:
            z = (x - e.mean) / (e.sd / math.sqrt(n))
            e.value = e.lam * z + (1.0 - e.lam) * e.value
            e.steps += 1
            # the day's noise, plus the error of the estimated in-control rate: a constant offset
            # of variance n / (baseline screens) in z units, which the EWMA carries whole
            var = e.lam / (2.0 - e.lam) * (1.0 - (1.0 - e.lam) ** (2 * e.steps))
            var += n / max(e.baseline_n, 1) * (1.0 - (1.0 - e.lam) ** e.steps) ** 2
            limit = e.L * math.sqrt(var)
            alarm = abs(e.value) > limit
            action = self._act(site, st, day, e.statistic) if alarm else ""
            nan = math.nan
            self._emit(
                st,
                (site.name, e.statistic, day, n, x, z, nan, nan, alarm, action, nan)
                + (e.value, limit, e.mean),
            )
            if alarm:
                e.value, e.steps = 0.0, 0

    def _act(self, site: SiteModel, st: _SiteState, day: int, statistic: str) -> str:
        plan = self.plan
        if plan.action == "alert" or st.acted or st.group:
            return "alert"  # a subgroup's chart alerts; the plan acts on the site's
        when = max(float(day + 1 + plan.days_to_act), site.now)
        kind = (
            "test"
            if statistic in WINDOW_STATISTICS
            else "EWMA"
            if statistic in EWMA_STATISTICS
            else "label test"
            if statistic in LABEL_STATISTICS
            else "CUSUM"
        )
        reason = f"{plan.name}: {statistic} {kind} alarm on day {day}"
        if plan.action == "standard_of_care":
            site.policy.standard_of_care(when, reason)
            st.acted = True
            return "standard_of_care"
        if plan.action == "roll_back":
            site.policy.roll_back(when, reason)
            st.acted = True
            return "roll_back"
        # recalibrate: from the scores read after the alarm, during the delay to act
        st.acted = True
        st.recalibrate = (day, reason)
        st.since_alarm = []
        return "recalibrate"

    def _recalibrate(self, site: SiteModel, st: _SiteState, day: int) -> None:
        """At the end of the delay to act: the operating point that gives the in-control
        AI-positive rate on the reads since the alarm, in force from tomorrow."""
        _, reason = st.recalibrate
        st.recalibrate = None
        scores = np.array(st.since_alarm)
        target = st.target_rate
        if len(scores) == 0 or not 0.0 < target < 1.0:
            return
        threshold = float(np.quantile(scores, 1.0 - target))
        site.policy.set_threshold(threshold, max(float(day + 1), site.now), reason)
        self._emit(
            st,
            (
                site.name,
                "recalibration",
                day,
                len(scores),
                threshold,
                math.nan,
                0.0,
                0.0,
                False,
                f"threshold {threshold:.4g}",
                math.nan,
                math.nan,
                math.nan,
                math.nan,
            ),
        )
        # the recalibrated device is a new in-control state: the charts take a new baseline
        for c in st.charts:
            c.mean, c.sd, c.up, c.down = math.nan, math.nan, 0.0, 0.0
        for w in st.windows:
            w.start, w.scores = None, []
        for e in st.ewmas:
            e.mean, e.sd, e.value, e.steps = math.nan, math.nan, 0.0, 0
        st.first_day, st.baseline, st.reference = None, [], None
        st.recall_first, st.recall_baseline = None, []

    def _labels(self, site: SiteModel, st: _SiteState, today: int) -> None:
        """Feed the delayed-label tests what the world has revealed by ``today``: work-up
        results known before it, and screens whose interval window has passed; then close the
        windows that are full."""
        day = today - 1
        for key in sorted(k for k in st.results if k[0] < today):
            found, n = st.results.pop(key)
            for lab in st.labels:
                if lab.statistic == "ppv":
                    _feed_label(lab, day, key[1], found, n)
        mature = today - 1 - _interval_days(site)
        for key in sorted(k for k in st.screens if k[0] < mature):
            screens, found, interval = st.screens.pop(key)
            for lab in st.labels:
                if lab.statistic == "sensitivity":
                    _feed_label(lab, day, key[1], found, found + interval)
                elif lab.statistic == "interval_cancer_rate":
                    _feed_label(lab, day, key[1], interval, screens)
        for lab in st.labels:
            n = lab.win[0][1] + lab.win[1][1]
            if lab.start is None or day - lab.start + 1 < lab.days or n < lab.min_labels:
                continue
            p, value, reference = label_test(lab.win, lab.base)
            scale = 1000.0 if lab.statistic == "interval_cancer_rate" else 1.0
            alarm = p < lab.limit
            action = self._act(site, st, day, lab.statistic) if alarm else ""
            nan = math.nan
            self._emit(
                st,
                (site.name, lab.statistic, day, n, scale * value, nan, nan, nan, alarm, action)
                + (p, nan, lab.limit, scale * reference),
            )
            lab.start, lab.win = None, [[0, 0], [0, 0]]

    def frame(self) -> pl.DataFrame:
        """The monitors' daily series: one row per site (and subgroup), statistic and closed
        day."""
        cols = list(MONITORING_SCHEMA)
        data: dict[str, Any] = {c: [r[i] for r in self.rows] for i, c in enumerate(cols)}
        return pl.DataFrame(data, schema=MONITORING_SCHEMA)


def _person_groups(site: SiteModel, columns: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    """Each of a site's people's subgroups (``"sex=F"``, ...) in the plan's ``columns``."""
    labels = site.programme.subgroup_labels(site.cohort)
    missing = [c for c in columns if c not in labels]
    if missing:
        from sandbox.errors import SandboxInputError

        raise SandboxInputError(
            f"config key 'monitoring.subgroups': programme '{site.programme.name}' gives "
            f"monitors no labels for {', '.join(missing)}"
        )
    rows = site.rows
    pids = site.cohort.people["person_id"][rows].tolist()
    cols = [[f"{c}={v}" for v in labels[c][rows].tolist()] for c in columns]
    return {p: tuple(col[i] for col in cols) for i, p in enumerate(pids)}


def _feed_label(lab: _Label, day: int, stratum: int, hits: int, n: int) -> None:
    """Add labels of one stratum to its baseline until that holds ``baseline_days`` of labels
    and at least ``min_labels``; from then on to the open window."""
    if not lab.ready[stratum]:
        if lab.base_start[stratum] is None:
            lab.base_start[stratum] = day
        base = lab.base[stratum]
        base[0] += hits
        base[1] += n
        start = lab.base_start[stratum]
        if day - start + 1 >= lab.baseline_days and base[1] >= lab.min_labels:
            lab.ready[stratum] = True
        return
    if lab.start is None:
        lab.start = day
    lab.win[stratum][0] += hits
    lab.win[stratum][1] += n


def label_test(window: list[list[int]], base: list[list[int]]) -> tuple[float, float, float]:
    """(p, value, reference) of a window's labels against the baseline, stratum by stratum
    (``[hits, n]`` per stratum): Fisher's exact test when one stratum holds labels, else the
    Cochran-Mantel-Haenszel test with continuity correction (Mantel and Haenszel 1959);
    ``value`` is the window's share of hits, ``reference`` the baseline's share at the window's
    mix of strata (direct standardisation)."""
    used = [k for k in range(len(window)) if window[k][1] > 0 and base[k][1] > 0]
    n = sum(window[k][1] for k in used)
    if not used or n == 0:
        return 1.0, math.nan, math.nan
    value = sum(window[k][0] for k in used) / n
    reference = sum(window[k][1] / n * base[k][0] / base[k][1] for k in used)
    tables = [
        (window[k][0], window[k][1] - window[k][0], base[k][0], base[k][1] - base[k][0])
        for k in used
    ]
    if len(tables) == 1:
        from scipy.stats import fisher_exact

        a, b, c, d = tables[0]
        return float(fisher_exact([[a, b], [c, d]]).pvalue), value, reference
    from scipy.stats import chi2

    diff = var = 0.0
    for a, b, c, d in tables:
        t = a + b + c + d
        diff += a - (a + b) * (a + c) / t
        var += (a + b) * (c + d) * (a + c) * (b + d) / (t * t * (t - 1.0))
    if var <= 0:
        return 1.0, value, reference
    stat = max(abs(diff) - 0.5, 0.0) ** 2 / var
    return float(chi2.sf(stat, 1)), value, reference


def _interval_days(site: SiteModel) -> float:
    """The programme's interval window in days: how long a screen's labels take to be final."""
    return site.schedule_cfg.interval_cancer_window_years * 365.25


def psi(scores: np.ndarray, reference: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``scores`` against ``reference``, over the reference's
    quantile bins: sum over bins of (a - e) ln(a / e), a and e the bin's shares (each at least
    :data:`PSI_FLOOR`). About 0 when the distributions agree; 0.1 to 0.25 is read as a
    moderate shift, above 0.25 a large one (Siddiqi 2006, *Credit risk scorecards*; Yurdakul
    2018, PhD thesis, Western Michigan University, on its sampling distribution)."""
    reference = np.sort(np.asarray(reference, dtype=np.float64))
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(edges) + 1)
    e = np.maximum(e / max(len(reference), 1), PSI_FLOOR)
    a = np.maximum(a / max(len(scores), 1), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def window_statistic(
    statistic: str, scores: np.ndarray, reference: np.ndarray
) -> tuple[float, float]:
    """(value, p-value) of a window test: PSI (no p-value: NaN) or the two-sample KS
    statistic D and its p-value."""
    if statistic == "psi":
        return psi(scores, reference), math.nan
    from scipy.stats import ks_2samp

    res = ks_2samp(scores, reference)
    return float(res.statistic), float(res.pvalue)


def empty_monitoring() -> pl.DataFrame:
    return pl.DataFrame(schema=MONITORING_SCHEMA)


def site_summary(monitoring: pl.DataFrame, drift_days: dict[str, float]) -> pl.DataFrame:
    """Per site, all of the plan's charts together: the days to the first alarm on or after the
    site's drift (null: no drift there, or not detected), and the alarm days before it (false
    alarms) over the site-years monitored before it. Subgroup charts are left out: the plan
    acts on the site's."""
    rows = []
    charts = _site_charts(monitoring)
    for (site,), g in charts.group_by("site", maintain_order=True):
        drift = drift_days.get(str(site))
        days = g["day"].unique().to_numpy()
        alarms = g.filter(pl.col("alarm"))["day"].unique().to_numpy()
        end = float(drift) if drift is not None else math.inf
        watched = days[days < end]
        after = alarms[alarms >= end]
        rows.append(
            {
                "site": str(site),
                "drift_day": drift,
                "days_to_detection": float(after.min() - end) if len(after) else None,
                "false_alarms": int((alarms < end).sum()),
                "site_years": (float(watched.max() - watched.min()) + 1.0) / 365.25
                if len(watched)
                else 0.0,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "site": pl.String,
            "drift_day": pl.Float64,
            "days_to_detection": pl.Float64,
            "false_alarms": pl.Int64,
            "site_years": pl.Float64,
        },
    )


def _site_charts(monitoring: pl.DataFrame) -> pl.DataFrame:
    """The charts of whole sites (no subgroup), recalibrations left out."""
    charts = monitoring.filter(pl.col("statistic") != "recalibration")
    if "group" in charts.columns:
        charts = charts.filter(pl.col("group") == "")
    return charts


def alarm_summary(
    monitoring: pl.DataFrame, drift_days: dict[str, float], horizon_days: float
) -> pl.DataFrame:
    """Per site, subgroup ("" for the whole site) and statistic: days monitored, alarms, the
    first alarm after the site's drift and the days it took (null: no drift there, or none
    detected), and false alarms (alarms before the drift, or any where there is none) per
    site-year monitored before it."""
    rows = []
    charts = monitoring.filter(pl.col("statistic") != "recalibration")
    if "group" not in charts.columns:  # a run folder from before subgroup charts
        charts = charts.with_columns(group=pl.lit(""))
    charts = charts.sort("site", "group", "statistic", maintain_order=True)
    for (site, group, stat), g in charts.group_by(
        "site", "group", "statistic", maintain_order=True
    ):
        drift = drift_days.get(str(site))
        days = g["day"].to_numpy()
        alarms = g.filter(pl.col("alarm"))["day"].to_numpy()
        end = float(drift) if drift is not None else horizon_days
        watched = days[days < end]
        span = (float(watched.max()) - float(watched.min()) + 1.0) if len(watched) else 0.0
        false = int((alarms < end).sum())
        after = alarms[alarms >= drift] if drift is not None else alarms[:0]
        first = float(after.min()) if len(after) else None
        rows.append(
            {
                "site": str(site),
                "group": str(group),
                "statistic": str(stat),
                "days_monitored": int(len(days)),
                "alarms": int(len(alarms)),
                "drift_day": drift,
                "first_alarm_after_drift": first,
                "days_to_detection": None if first is None else first - float(drift),
                "false_alarms": false,
                "false_alarms_per_site_year": false / (span / 365.25) if span > 0 else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "site": pl.String,
            "group": pl.String,
            "statistic": pl.String,
            "days_monitored": pl.Int64,
            "alarms": pl.Int64,
            "drift_day": pl.Float64,
            "first_alarm_after_drift": pl.Float64,
            "days_to_detection": pl.Float64,
            "false_alarms": pl.Int64,
            "false_alarms_per_site_year": pl.Float64,
        },
    )


#: what a drift costs patients and the service, counted over a window's screens
HARM = {
    "cancers_missed": pl.col("malignant_visible") & ~pl.col("malignant_reported"),
    "positive_reports": pl.col("positive"),
    "human_reads": pl.col("n_reads"),
    "ai_positive": pl.col("ai_positive").fill_null(False),
}
HARM_COLUMNS = ("site", "exam_kind", "exam_day", "malignant_visible", "malignant_reported")
HARM_COLUMNS += ("positive", "n_reads", "ai_positive")


def window_counts(events: pl.DataFrame, site: int, start: float, end: float) -> dict[str, float]:
    """Screens at site index ``site`` performed in [start, end), and the :data:`HARM` counts
    among them: visible cancers no report named, positive reports (recalls), human reads and
    AI-positive screens."""
    e = events.filter(
        (pl.col("site") == site)
        & (pl.col("exam_kind") == "screen")
        & (pl.col("exam_day") >= start)
        & (pl.col("exam_day") < end)
    )
    out = {"screens": float(e.height)}
    out.update({k: float(e.select(v.cast(pl.Int64).sum()).item() or 0) for k, v in HARM.items()})
    return out


def action_day(monitoring: pl.DataFrame | None, site: str, drift: float, days_to_act: float):
    """The day a plan's action could first take effect at ``site`` after its drift on ``drift``
    (its first site-level alarm on or after it, + 1 + ``days_to_act``); inf: no plan, or no
    alarm."""
    if monitoring is None or monitoring.height == 0:
        return math.inf
    charts = _site_charts(monitoring).filter(
        (pl.col("site") == site) & pl.col("alarm") & (pl.col("day") >= drift)
    )
    if charts.height == 0:
        return math.inf
    return float(charts["day"].min()) + 1.0 + days_to_act


def delay_harm(
    pairs: list[tuple[dict[str, float], dict[str, float]]], replicates: int = 2000
) -> dict[str, Any]:
    """Harm during detection delays: ``pairs`` of (:func:`window_counts` of a drift run, of the
    no-drift run of the same people over the same window). Per 1,000 of the drift runs'
    screens in those windows: the excess of each :data:`HARM` count, with a 95% bootstrap
    interval over the pairs (resampled whole: seeds and sites)."""
    screens = np.array([a["screens"] for a, _ in pairs], dtype=np.float64)
    out: dict[str, Any] = {"screens": float(screens.sum()), "pairs": len(pairs)}
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(pairs), size=(replicates, len(pairs))) if pairs else None
    for k in HARM:
        excess = np.array([a[k] - b[k] for a, b in pairs], dtype=np.float64)
        rate = 1000.0 * excess.sum() / screens.sum() if screens.sum() else math.nan
        lo = hi = math.nan
        if idx is not None and len(pairs) > 1:
            tot = screens[idx].sum(axis=1)
            boot = 1000.0 * excess[idx].sum(axis=1) / np.where(tot > 0, tot, np.nan)
            lo, hi = float(np.nanquantile(boot, 0.025)), float(np.nanquantile(boot, 0.975))
        out[k] = (rate, lo, hi)
    return out


def drift_days(changes: Iterable[tuple[str, float]]) -> dict[str, float]:
    """The first day each site drifts, from ``(site, day)`` of every scanner change."""
    out: dict[str, float] = {}
    for site, day in changes:
        out[str(site)] = min(out.get(str(site), math.inf), float(day))
    return out


def drift_start(drift: Any) -> dict[str, float]:
    """The first day of any drift (a scanner, device, staffing or population change) at each
    site, from a run's drift config: the dataclass or its resolved mapping
    (config.yaml)."""
    pairs = []
    for kind in ("scanner_changes", "device_changes", "staffing_changes", "population_changes"):
        items = (drift.get(kind) or []) if isinstance(drift, dict) else getattr(drift, kind)
        for c in items:
            pairs.append((c["site"], c["day"]) if isinstance(c, dict) else (c.site, c.day))
    return drift_days(pairs)


def chart_limits(plan: dict[str, Any]) -> dict[str, float]:
    """Each statistic's limit in a run's resolved plan (config.yaml): a CUSUM's ``h``, a window
    test's or a delayed-label test's ``limit``."""
    limits = {str(c["statistic"]): float(c["h"]) for c in plan.get("cusums") or []}
    limits.update({str(w["statistic"]): float(w["limit"]) for w in plan.get("windows") or []})
    limits.update({str(w["statistic"]): float(w["limit"]) for w in plan.get("labels") or []})
    return limits


def monitor_figure(
    monitoring: pl.DataFrame,
    drift: dict[str, float],
    h: dict[str, float],
    changes: dict[str, list[tuple[float, str]]] | None = None,
):
    """One panel per site (and subgroup, a row of its own) and chart: for a CUSUM ``S+`` above
    zero and ``-S-`` below it over programme days with the limits ``+-h``; for a window test
    its statistic with its limit (``h`` holds each statistic's limit); alarms (red), the drift
    day (dashed) and the policy versions the plan put in force (dotted)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    charts = monitoring.filter(pl.col("statistic") != "recalibration")
    if "group" not in charts.columns:
        charts = charts.with_columns(group=pl.lit(""))
    rows = charts.select("site", "group").unique(maintain_order=True).sort("site", "group")
    stats_ = charts["statistic"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(
        rows.height, len(stats_), figsize=(5.5 * len(stats_), 2.6 * rows.height), squeeze=False
    )
    for i, (site, group) in enumerate(rows.iter_rows()):
        for j, stat in enumerate(stats_):
            ax = axes[i][j]
            g = charts.filter(
                (pl.col("site") == site)
                & (pl.col("group") == group)
                & (pl.col("statistic") == stat)
            )
            if stat in WINDOW_STATISTICS:
                _window_panel(ax, g, stat, h.get(stat))
            elif stat in EWMA_STATISTICS:
                _ewma_panel(ax, g)
            elif stat in LABEL_STATISTICS:
                _label_panel(ax, g, stat)
            else:
                _cusum_panel(ax, g, h.get(stat))
            if site in drift:
                ax.axvline(drift[site], color="#333333", ls="--", lw=0.9, label="drift")
            for d, _ in (changes or {}).get(site, []):
                ax.axvline(d, color="#8e44ad", ls=":", lw=1.0, label="policy change")
            ax.set_title(f"{site}{' ' + group if group else ''}: {stat}", fontsize=9)
            ax.set_xlabel("programme day", fontsize=8)
            ax.tick_params(labelsize=7)
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="upper center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def _cusum_panel(ax, g: pl.DataFrame, limit: float | None) -> None:
    """``S+`` above zero, ``-S-`` below, the limits and the alarms of one CUSUM chart."""
    day = g["day"].to_numpy()
    ax.plot(day, g["cusum_up"].to_numpy(), lw=0.8, color="#1f4e9c", label="S+")
    ax.plot(day, -g["cusum_down"].to_numpy(), lw=0.8, color="#6b8fd6", label="-S-")
    if limit is not None:
        for y in (limit, -limit):
            ax.axhline(y, color="#999999", lw=0.6, ls="-")
    alarms = g.filter(pl.col("alarm"))
    if alarms.height:
        up = alarms["cusum_up"].to_numpy() >= alarms["cusum_down"].to_numpy()
        y = np.where(up, limit or 0.0, -(limit or 0.0))
        ax.scatter(alarms["day"].to_numpy(), y, s=10, color="#c0392b", zorder=3, label="alarm")


def _ewma_panel(ax, g: pl.DataFrame) -> None:
    """An EWMA chart: ``E_t`` with its limits ``+-L sd(E_t)`` and the alarms."""
    day, e, lim = g["day"].to_numpy(), g["ewma"].to_numpy(), g["limit"].to_numpy()
    ax.plot(day, e, lw=0.8, color="#1f4e9c", label="EWMA")
    ax.plot(day, lim, lw=0.6, color="#999999")
    ax.plot(day, -lim, lw=0.6, color="#999999")
    alarm = g["alarm"].to_numpy()
    if alarm.any():
        ax.scatter(day[alarm], e[alarm], s=10, color="#c0392b", zorder=3, label="alarm")


def _window_panel(ax, g: pl.DataFrame, stat: str, limit: float | None) -> None:
    """A window test's statistic at each window's last day (PSI, or -log10 p of the KS test)
    with its limit and alarms."""
    day = g["day"].to_numpy()
    if stat == "psi":
        y, lim, label = g["value"].to_numpy(), limit, "PSI"
    else:
        p = np.clip(g["p_value"].to_numpy(), 1e-300, 1.0)
        y, label = -np.log10(p), "-log10 p"
        lim = -math.log10(limit) if limit else None
    ax.plot(day, y, lw=0.8, marker="o", ms=2.5, color="#1f4e9c", label=label)
    if lim is not None:
        ax.axhline(lim, color="#999999", lw=0.6, ls="-")
    alarm = g["alarm"].to_numpy()
    if alarm.any():
        ax.scatter(day[alarm], y[alarm], s=10, color="#c0392b", zorder=3, label="alarm")


def _label_panel(ax, g: pl.DataFrame, stat: str) -> None:
    """A delayed-label test: each window's value on the day its labels were complete, the
    site's baseline value, and the alarms."""
    day, y = g["day"].to_numpy(), g["value"].to_numpy()
    label = {"ppv": "PPV", "sensitivity": "sensitivity"}.get(stat, "per 1,000")
    ax.plot(day, y, lw=0.8, marker="o", ms=2.5, color="#1f4e9c", label=label)
    ax.plot(day, g["reference"].to_numpy(), lw=0.6, color="#999999", drawstyle="steps-post")
    alarm = g["alarm"].to_numpy()
    if alarm.any():
        ax.scatter(day[alarm], y[alarm], s=10, color="#c0392b", zorder=3, label="alarm")


def monitor_plot(figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` (.svg or .png), whole or not at all."""
    import os

    import matplotlib
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    suffix = path.suffix.lower()[1:]
    try:
        with matplotlib.rc_context({"svg.hashsalt": "monitor", "svg.fonttype": "none"}):
            figure.savefig(tmp, format=suffix, metadata={"Date": None} if suffix == "svg" else None)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)
    return path

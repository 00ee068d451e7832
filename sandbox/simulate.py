"""One unit of work: (scenario, policy, seed, site block) -> records. Pure and serial.

A distributed runner calls :func:`simulate_sites` for blocks of sites and concatenates; the
result is identical to one call with every site, because every draw is keyed by person and
sites share no state.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import simpy

from sandbox.agents.inference import DeviceScorer
from sandbox.agents.readers import ReaderProfile, draw_reader
from sandbox.config import RunConfig
from sandbox.errors import SandboxInputError
from sandbox.outcomes.metrics import compute_metrics
from sandbox.outcomes.schema import BACKLOG_SCHEMA
from sandbox.programmes import Cohort, Programme, programme_for
from sandbox.rng import Streams, label_key
from sandbox.workflow.exam_log import ExamLog
from sandbox.workflow.observers import Observer
from sandbox.workflow.policies import make_policy
from sandbox.workflow.site import SiteModel, SiteSetup


@dataclass
class SiteRecords:
    events: pl.DataFrame
    backlog: pl.DataFrame
    screen_dx_day: np.ndarray
    screen_dx_stage: np.ndarray
    rows: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    policy_versions: dict[str, list[dict]] = field(default_factory=dict)
    monitoring: pl.DataFrame | None = None  # the monitors' daily series (a monitoring plan)


def check_policy(cfg: RunConfig, threshold: float | None = None) -> None:
    """Fail before any work if the policy cannot run at some site."""
    policy = make_policy(cfg.policy, threshold)
    programme = programme_for(cfg.scenario)
    for i, site in enumerate(cfg.scenario.sites):
        policy.check_site(site, i)
        programme.exam_scanner(site.scanner, cfg.policy.modality)
    if cfg.policy.recall_top is not None and not programme.has_high_risk_recall:
        raise SandboxInputError(
            f"config key 'policy.recall_top': programme '{programme.name}' has no rule for "
            "recalling exams the AI flags high risk"
        )
    for j, c in enumerate(cfg.drift.staffing_changes):
        i = next(i for i, s in enumerate(cfg.scenario.sites) if s.name == c.site)
        for day, team, _ in cfg.staffing_changes(c.site):
            if day == c.day:
                try:
                    policy.check_site(team, i)
                except SandboxInputError as e:
                    raise SandboxInputError(
                        str(e).replace(
                            f"sites[{i}].readers", f"drift.staffing_changes[{j}].readers"
                        )
                    ) from None


def build_cohort(
    cfg: RunConfig,
    progress: Callable[[int], None] | None = None,
    programme: Programme | None = None,
) -> Cohort:
    """The cohort and its disease histories for ``cfg`` (the same for every policy), with the
    people a population-shift drift brings in."""
    programme = programme or programme_for(cfg.scenario)
    streams = Streams(cfg.seed)
    cohort = programme.sample_cohort(streams, progress=progress)
    if cfg.drift.population_changes:
        cohort = programme.add_arrivals(cohort, streams, cfg.arrivals())
    return cohort


def site_readers(profiles: dict[str, ReaderProfile], site, s: int, streams: Streams) -> list:
    """The radiologists of site ``s``, profile by profile (sorted by profile name).

    Each one's skill is keyed by (site, profile, index within the profile), so adding a
    radiologist of one profile redraws nobody else (common random numbers for staffing).
    """
    readers = []
    for name, count in sorted(site.readers.items()):
        for j in range(count):
            k = len(readers)
            rng = streams.generator("reader", s, label_key(name), j)
            readers.append(draw_reader(profiles[name], rng, s * 1000 + k, s))
    return readers


def staffing_rosters(
    profiles: dict[str, ReaderProfile], cfg: RunConfig, s: int, base: list, streams: Streams
) -> list[tuple[float, list, float, str]]:
    """``(from_day, radiologists, reading hours, reason)`` for each staffing change of site
    ``s``. A radiologist is (profile, index within the profile): those of the site's own team
    are ``base``'s (same skill, same id); one who joins is drawn from the same keyed stream as
    a site's own would be, with an id of its own."""
    site = cfg.scenario.sites[s]
    known = {}
    k = 0
    for name, count in sorted(site.readers.items()):
        for j in range(count):
            known[(name, j)] = base[k]
            k += 1
    out = []
    for day, team, reason in cfg.staffing_changes(site.name):
        roster = []
        for name, count in sorted(team.readers.items()):
            for j in range(count):
                if (name, j) not in known:
                    rng = streams.generator("reader", s, label_key(name), j)
                    rid = s * 1000 + 500 + len(known) - len(base)
                    known[(name, j)] = draw_reader(profiles[name], rng, rid, s)
                roster.append(known[(name, j)])
        out.append((float(day), roster, team.reading_hours_per_day, reason))
    return out


def simulate_sites(
    cfg: RunConfig,
    profiles: dict[str, ReaderProfile],
    cohort: Cohort,
    sites: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    ai: DeviceScorer | None = None,
    threshold: float | None = None,
    observers: Sequence[Observer] = (),
    programme: Programme | None = None,
    updates: dict[str, DeviceScorer] | None = None,
) -> SiteRecords:
    """Run the SimPy model of each site in ``sites`` (default: all) over the whole horizon.

    ``progress`` is called with simulated days as each site's clock advances. AI policies need
    ``ai`` (the device reader, shared by all sites of the unit) and ``threshold`` (the
    resolved operating point). ``observers`` are told of every site's exams, work-ups,
    diagnoses, deaths and days, after the site's exam log. With ``runtime.shared_clock`` all
    sites run in one SimPy environment (one timeline); results are the same either way.
    """
    streams = Streams(cfg.seed)
    scn = cfg.scenario
    programme = programme or programme_for(scn)
    policy = make_policy(cfg.policy, threshold)
    site_ids = list(range(len(scn.sites)) if sites is None else sites)
    shared = simpy.Environment() if cfg.runtime.shared_clock else None
    models, logs = [], []
    changes = _device_updates(cfg, ai, updates)
    if changes is not None:
        observers = (*observers, changes)
    monitor = _monitor(cfg, ai, threshold)
    if monitor is not None:
        observers = (*observers, monitor)
    for s in site_ids:
        site = scn.sites[s]
        log = ExamLog(programme)
        readers = site_readers(profiles, site, s, streams)
        setup = SiteSetup(
            index=s,
            site=site,
            readers=readers,
            programme=programme,
            cohort=cohort,
            rows=np.flatnonzero(cohort.people["site"] == s),
            schedule=scn.programme,
            policy=policy,
            streams=streams,
            ai=ai,
            observers=(log, *observers),
            on_days=progress,
            scanner_changes=cfg.scanner_changes(site.name),
            staffing_changes=staffing_rosters(profiles, cfg, s, readers, streams),
        )
        models.append(SiteModel(shared or simpy.Environment(), setup))
        logs.append(log)
    timings: dict[str, float] = {}
    with _deferred_full_gc():
        if shared is not None:
            t0 = time.perf_counter()
            for m in models:
                m.start()
            shared.run(until=cohort.horizon_day + 1.0)
            timings["sites_shared_clock_s"] = time.perf_counter() - t0
        else:
            for m in models:
                t0 = time.perf_counter()
                m.run()
                timings[f"site_{m.name}_s"] = time.perf_counter() - t0
    rec = _records(models, logs, len(cohort), timings)
    if monitor is not None:
        rec.monitoring = monitor.frame().sort("site", "group", "statistic", "day")
    return rec


def _point(op) -> str:
    value = op.target_sensitivity if op.mode == "target_sensitivity" else op.value
    return f"{op.mode} {value:g}"


def _device_updates(cfg: RunConfig, ai: DeviceScorer | None, updates=None):
    """The drift's device updates as an observer (None: none, or no AI to update);
    ``updates``: the devices with new weights they bring, by agent name."""
    changes = cfg.drift.device_changes
    if not changes or ai is None or cfg.policy.role == "none":
        return None
    from sandbox.agents.operating_point import resolve_threshold
    from sandbox.workflow.observers import OperatingPointChanges

    out = []
    for i, c in enumerate(changes):
        device = None
        if c.agent:
            device = (updates or {}).get(c.agent)
            if device is None:
                raise SandboxInputError(
                    f"config key 'drift.device_changes[{i}].agent': device {c.agent!r} was not "
                    "loaded (sandbox.runners.devices.update_devices)"
                )
        reason = c.reason or f"device update: operating point {_point(c.threshold)}"
        folder = (device or ai).folder
        out.append((c.site, float(c.day), resolve_threshold(c.threshold, folder), reason, device))
    return OperatingPointChanges(out)


def _monitor(cfg: RunConfig, ai: DeviceScorer | None, threshold: float | None):
    """The run's monitoring plan as an observer (None: no plan, or no AI to watch)."""
    plan = cfg.monitoring
    if (
        not (plan.cusums or plan.windows or plan.ewmas or plan.labels)
        or ai is None
        or threshold is None
        or cfg.policy.role == "none"
    ):
        return None
    from sandbox.agents.operating_point import reference_scores
    from sandbox.outcomes.surveillance import CusumMonitor

    ref = None
    if plan.reference == "validation":
        folder = ai.folder
        ref = reference_scores(folder)
        if ref is None:
            raise SandboxInputError(
                f"monitoring '{plan.name}': reference: validation needs reference_scores in "
                f"{folder}/configs/validation.json, and there are none"
            )
    return CusumMonitor(plan, threshold, ref)


@contextmanager
def _deferred_full_gc():
    # full garbage collections walk every record of the run so far and dominate large runs;
    # the model's objects are freed by reference counting, so defer them while it runs
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _records(models: list[SiteModel], logs: list[ExamLog], n: int, timings) -> SiteRecords:
    dx_day = np.full(n, np.inf)
    dx_stage = np.full(n, -1, dtype=np.int8)
    events, backlog, rows_all, versions = [], [], [], {}
    for m, log in zip(models, logs, strict=True):
        events.append(log.frame())
        backlog.append(
            pl.DataFrame(
                {
                    "site": [m.index] * len(m.backlog),
                    "day": [d for d, _ in m.backlog],
                    "backlog": [b for _, b in m.backlog],
                },
                schema=BACKLOG_SCHEMA,
            )
        )
        dx_day[m.rows] = m.screen_dx_day[m.rows]
        dx_stage[m.rows] = m.screen_dx_stage[m.rows]
        rows_all.append(m.rows)
        versions[m.name] = [v.describe() for v in m.policy.versions]
    return SiteRecords(
        pl.concat(events),
        pl.concat(backlog),
        dx_day,
        dx_stage,
        np.concatenate(rows_all) if rows_all else np.array([], dtype=np.int64),
        timings,
        versions,
    )


def merge_records(parts: Sequence[SiteRecords], n: int) -> SiteRecords:
    """Combine site blocks into one record set (order-independent)."""
    dx_day = np.full(n, np.inf)
    dx_stage = np.full(n, -1, dtype=np.int8)
    timings: dict[str, float] = {}
    versions: dict[str, list[dict]] = {}
    for p in parts:
        dx_day[p.rows] = p.screen_dx_day[p.rows]
        dx_stage[p.rows] = p.screen_dx_stage[p.rows]
        timings.update(p.timings)
        versions.update(p.policy_versions)
    events = pl.concat([p.events for p in parts]).sort("site", "person_id", "exam_day")
    backlog = pl.concat([p.backlog for p in parts]).sort("site", "day")
    monitors = [p.monitoring for p in parts if p.monitoring is not None]
    return SiteRecords(
        events,
        backlog,
        dx_day,
        dx_stage,
        np.concatenate([p.rows for p in parts]),
        timings,
        dict(sorted(versions.items())),
        pl.concat(monitors).sort("site", "group", "statistic", "day") if monitors else None,
    )


def outcomes(
    cfg: RunConfig, cohort: Cohort, rec: SiteRecords, programme: Programme | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(people, metrics) frames from merged records."""
    programme = programme or programme_for(cfg.scenario)
    screens = rec.events.filter(pl.col("exam_kind") == "screen").select(
        "person_id", "round", "exam_day"
    )
    people = programme.resolve_people(cohort, rec.screen_dx_day, rec.screen_dx_stage, screens)
    metrics = compute_metrics(
        rec.events,
        people,
        rec.backlog,
        [s.name for s in cfg.scenario.sites],
        cfg.scenario.name,
        cfg.policy.name,
        cfg.seed,
        programme,
    )
    return people, metrics

"""One unit of work: (scenario, policy, seed, site block) -> records. Pure and serial.

A distributed runner calls :func:`simulate_sites` for blocks of sites and concatenates; the
result is identical to one call with every site, because every draw is keyed by person and
sites share no state.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import simpy

from sandbox.agents.inference import DeviceReader
from sandbox.agents.readers import ReaderProfile, draw_reader
from sandbox.config import RunConfig
from sandbox.disease.history import History, sample_history
from sandbox.outcomes.metrics import compute_metrics
from sandbox.outcomes.people import resolve_people
from sandbox.outcomes.schema import BACKLOG_SCHEMA, events_frame
from sandbox.rng import Streams
from sandbox.workflow.policies import make_policy
from sandbox.workflow.site import SiteModel


@dataclass
class SiteRecords:
    events: pl.DataFrame
    backlog: pl.DataFrame
    screen_dx_day: np.ndarray
    screen_dx_stage: np.ndarray
    rows: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def check_policy(cfg: RunConfig, threshold: float | None = None) -> None:
    """Fail before any work if the policy cannot run at some site."""
    policy = make_policy(cfg.policy, threshold)
    for i, site in enumerate(cfg.scenario.sites):
        policy.check_site(site, i)


def build_history(cfg: RunConfig, progress: Callable[[int], None] | None = None) -> History:
    """The cohort and its disease histories for ``cfg`` (the same for every policy)."""
    return sample_history(cfg.scenario, Streams(cfg.seed), progress=progress)


def simulate_sites(
    cfg: RunConfig,
    profiles: dict[str, ReaderProfile],
    history: History,
    sites: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    ai: DeviceReader | None = None,
    threshold: float | None = None,
) -> SiteRecords:
    """Run the SimPy model of each site in ``sites`` (default: all) over the whole horizon.

    ``progress`` is called with simulated days as each site's clock advances. AI policies need
    ``ai`` (the device reader, shared by all sites of the unit) and ``threshold`` (the
    resolved operating point).
    """
    streams = Streams(cfg.seed)
    scn = cfg.scenario
    policy = make_policy(cfg.policy, threshold)
    site_ids = range(len(scn.sites)) if sites is None else sites
    events, backlog, rows_all = [], [], []
    dx_day = np.full(len(history), np.inf)
    dx_stage = np.full(len(history), -1, dtype=np.int8)
    timings = {}
    for s in site_ids:
        t0 = time.perf_counter()
        site = scn.sites[s]
        readers = []
        for name, count in sorted(site.readers.items()):
            for _ in range(count):
                k = len(readers)
                readers.append(
                    draw_reader(profiles[name], streams.generator("reader", s, k), s * 1000 + k, s)
                )
        rows = np.flatnonzero(history.people["site"] == s)
        env = simpy.Environment()
        model = SiteModel(
            env,
            s,
            site,
            readers,
            history,
            rows,
            scn.programme,
            policy,
            streams,
            scn.disease.n2_over_n1,
            progress,
            ai,
        )
        # full garbage collections walk every record of the run so far and dominate large runs;
        # the model's objects are freed by reference counting, so defer them while it runs
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0], thresholds[1], 1000)
        try:
            model.run()
        finally:
            gc.set_threshold(*thresholds)
        events.append(events_frame(model.exams.as_dict()))
        backlog.append(
            pl.DataFrame(
                {
                    "site": [s] * len(model.backlog),
                    "day": [d for d, _ in model.backlog],
                    "backlog": [b for _, b in model.backlog],
                },
                schema=BACKLOG_SCHEMA,
            )
        )
        dx_day[rows] = model.screen_dx_day[rows]
        dx_stage[rows] = model.screen_dx_stage[rows]
        rows_all.append(rows)
        timings[f"site_{site.name}_s"] = time.perf_counter() - t0
    return SiteRecords(
        pl.concat(events),
        pl.concat(backlog),
        dx_day,
        dx_stage,
        np.concatenate(rows_all) if rows_all else np.array([], dtype=np.int64),
        timings,
    )


def merge_records(parts: Sequence[SiteRecords], n: int) -> SiteRecords:
    """Combine site blocks into one record set (order-independent)."""
    dx_day = np.full(n, np.inf)
    dx_stage = np.full(n, -1, dtype=np.int8)
    timings: dict[str, float] = {}
    for p in parts:
        dx_day[p.rows] = p.screen_dx_day[p.rows]
        dx_stage[p.rows] = p.screen_dx_stage[p.rows]
        timings.update(p.timings)
    events = pl.concat([p.events for p in parts]).sort("site", "person_id", "exam_day")
    backlog = pl.concat([p.backlog for p in parts]).sort("site", "day")
    return SiteRecords(
        events, backlog, dx_day, dx_stage, np.concatenate([p.rows for p in parts]), timings
    )


def outcomes(
    cfg: RunConfig, history: History, rec: SiteRecords
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(people, metrics) frames from merged records."""
    screens = rec.events.filter(pl.col("exam_kind") == "screen").select(
        "person_id", "round", "exam_day"
    )
    people = resolve_people(cfg.scenario, history, rec.screen_dx_day, rec.screen_dx_stage, screens)
    metrics = compute_metrics(
        rec.events,
        people,
        rec.backlog,
        [s.name for s in cfg.scenario.sites],
        cfg.scenario.name,
        cfg.policy.name,
        cfg.seed,
    )
    return people, metrics

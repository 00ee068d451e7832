"""The serial local runner: one process, site blocks one after another.

It calls the same pure unit function (:func:`sandbox.simulate.simulate_sites`) that a
distributed runner would send to workers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from sandbox.agents.readers import ReaderProfile
from sandbox.config import RunConfig, resolved
from sandbox.programmes import programme_for
from sandbox.runfolder import (
    check_score_cache,
    claim_run_folder,
    manifest,
    reader_profiles,
    release_run_folder,
    slug,
    write_run,
)
from sandbox.runners.devices import prepare_device, update_devices
from sandbox.simulate import build_cohort, check_policy, merge_records, outcomes, simulate_sites


@dataclass
class RunResult:
    folder: Path | None
    metrics: pl.DataFrame
    people: pl.DataFrame
    events: pl.DataFrame
    timings: dict[str, float]
    agents: dict[str, Any] = field(default_factory=dict)
    policy_versions: dict[str, list[dict]] = field(default_factory=dict)
    economics: pl.DataFrame | None = None  # per-person costs and QALYs (economics=<preset>)
    monitoring: pl.DataFrame | None = None  # the monitors' daily series (monitoring=<plan>)
    equity: pl.DataFrame | None = None  # subgroup and site disparities (written with the run)


def site_blocks(n_sites: int, block: int) -> list[list[int]]:
    """Units of work: consecutive blocks of ``block`` sites (0 = all in one)."""
    size = n_sites if block <= 0 else block
    return [list(range(i, min(i + size, n_sites))) for i in range(0, n_sites, size)]


def simulate(
    cfg: RunConfig, profiles: dict[str, ReaderProfile], progress: bool | None = None
) -> RunResult:
    """Run every unit of work serially and compute outcomes (no files written)."""
    show = cfg.runtime.progress if progress is None else progress
    timings: dict[str, float] = {}
    t_dev = time.perf_counter()
    dev = prepare_device(cfg)
    try:
        return _simulate(cfg, profiles, show, dev, timings, t_dev)
    finally:
        if dev is not None:
            dev.close()


def _simulate(cfg, profiles, show, dev, timings, t_dev) -> RunResult:
    threshold = None if dev is None else dev.threshold
    check_policy(cfg, threshold)
    updates = update_devices(cfg) if dev is not None else {}
    if dev is not None:
        timings["device_load_s"] = time.perf_counter() - t_dev
    t0 = time.perf_counter()
    bar = tqdm(
        total=cfg.scenario.cohort.size,
        desc="cohort and disease histories",
        unit="person",
        disable=not show,
        file=sys.stderr,
        leave=False,
    )
    programme = programme_for(cfg.scenario)
    cohort = build_cohort(cfg, bar.update, programme)
    bar.close()
    timings["cohort_and_disease_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_sites = len(cfg.scenario.sites)
    bar = tqdm(
        total=int(cohort.horizon_day) // 30 * 30 * n_sites,
        desc=f"{cfg.policy.name}: simulating {n_sites} sites",
        unit="site-day",
        disable=not show,
        file=sys.stderr,
        leave=False,
    )
    parts = [
        simulate_sites(
            cfg,
            profiles,
            cohort,
            block,
            bar.update,
            None if dev is None else dev.scorer,
            threshold,
            programme=programme,
            updates=updates,
        )
        for block in site_blocks(len(cfg.scenario.sites), cfg.runtime.site_block_size)
    ]
    bar.close()
    rec = merge_records(parts, len(cohort))
    agents = {}
    if dev is not None:
        stats = dev.scorer.stats
        dev.scorer.cache.save()
        agents[dev.manifest["name"]] = {
            **dev.manifest,
            "inferences": stats.inferences,
            "cache_hits": stats.hits,
            "batches": stats.batches,
        }
    timings["workflow_s"] = time.perf_counter() - t1
    timings.update(rec.timings)
    t2 = time.perf_counter()
    if show:
        print(
            f"computing outcomes and metrics for {len(cohort):,} people ...",
            file=sys.stderr,
            flush=True,
        )
    people, metrics = outcomes(cfg, cohort, rec, programme)
    timings["outcomes_s"] = time.perf_counter() - t2
    return RunResult(
        None,
        metrics,
        people,
        rec.events,
        timings,
        agents,
        rec.policy_versions,
        monitoring=rec.monitoring,
    )


def run(
    cfg: RunConfig,
    profiles: dict[str, ReaderProfile],
    overrides: list[str],
    command: list[str] | None = None,
) -> RunResult:
    """Simulate and write a complete run folder under ``runtime.out_dir``; its config.yaml is
    the fully resolved config."""
    t0 = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    default = f"{cfg.scenario.name}-{cfg.policy.name}-seed{cfg.seed}-{stamp}"
    # preflight: the folder is claimed (or refused) before any simulation
    claim = claim_run_folder(cfg.runtime.out_dir, cfg.runtime.run_name or slug(default))
    try:
        return _run_into(claim, cfg, profiles, overrides, command, stamp, t0)
    except BaseException:
        release_run_folder(claim)
        raise


def _run_into(claim, cfg, profiles, overrides, command, stamp, t0) -> RunResult:
    check_score_cache(cfg)
    result = simulate(cfg, profiles)
    return write_result(claim, cfg, profiles, overrides, command or sys.argv, stamp, result, t0)


def write_result(
    claim: Path,
    cfg: RunConfig,
    profiles: dict[str, ReaderProfile],
    overrides: list[str],
    command: list[str],
    stamp: str,
    result: RunResult,
    t0: float,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Write ``result`` into the claimed run folder (the same files whichever runner made it)."""
    if cfg.economics is not None:
        from sandbox.economics.accounting import economic_metrics, price_run, screen_modality

        modality = screen_modality(
            cfg.policy.modality, [s.scanner.modality for s in cfg.scenario.sites]
        )
        priced = price_run(result.people, result.events, cfg.economics, modality)
        extra_rows = economic_metrics(priced, cfg.scenario.name, cfg.policy.name, cfg.seed)
        result.metrics = pl.concat([result.metrics, extra_rows.cast(result.metrics.schema)])
        result.economics = priced
    if result.equity is None:
        from sandbox.outcomes.equity import run_disparities

        result.equity = run_disparities(
            result.events,
            result.people,
            programme_for(cfg.scenario),
            [s.name for s in cfg.scenario.sites],
            cfg.scenario.name,
            cfg.policy.name,
            cfg.seed,
        )
    tables = {"metrics": result.metrics, "people": result.people, "equity": result.equity}
    if result.economics is not None:
        tables["economics"] = result.economics
    if cfg.runtime.write_events:
        tables["events"] = result.events
    if result.monitoring is not None:
        tables["monitoring"] = result.monitoring
    result.timings["total_s"] = time.perf_counter() - t0
    man = manifest(
        cfg.seed,
        command,
        overrides,
        result.timings,
        {
            "scenario": cfg.scenario.name,
            "policy": cfg.policy.name,
            "created_utc": stamp,
            "people": result.people.height,
            "exams": result.events.height,
            "agents": result.agents,
            "policy_versions": result.policy_versions,
            "reader_profiles": reader_profiles(profiles),
            **(extra or {}),
        },
    )
    result.folder = write_run(claim, resolved(cfg), man, tables)
    return result

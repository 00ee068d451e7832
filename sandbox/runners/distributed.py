"""The Ray runner: a sweep's units of work as Ray tasks, on an embedded local Ray or a cluster.

Three kinds of task, all calling the same pure functions as the serial runner
(:mod:`sandbox.runners.local`), so a run's tables are bit for bit those of ``sandbox run``:

- ``cohort``: the cohort and disease histories of one (scenario, seed), built once and shared
  through the object store by every run and unit that needs it;
- ``unit``: one (scenario, policy, seed, site block): the SimPy model of those sites
  (:func:`sandbox.simulate.simulate_sites`);
- a scoring actor per AI device and cohort (:class:`_Scoring`, on a GPU when the cluster has
  one): it loads the device once and serves every unit and policy on that cohort from one
  in-memory score cache, merged into ``runtime.score_cache`` (under its file lock) at the end;
- ``outcomes``: a run's site blocks merged, people resolved and metrics computed.

The driver writes each run folder as its outcomes arrive (whole or not at all). Tasks are
retried when their worker dies (``max_retries``), never on an exception of their own. Local
Ray binds to a loopback address and runs without its dashboard; Ctrl-C ends what is left
(Ray stops the session's tasks when it shuts down).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from sandbox.config import RunConfig
from sandbox.errors import SandboxInputError

LOOPBACK = "127.0.0.2"
RETRIES = 3


@dataclass
class RayInfo:
    address: str
    mode: str  # "local" (embedded, started here) or "cluster"
    cpus: float
    nodes: int


@contextmanager
def ray_session(address: str = "", num_cpus: int = 0, temp_dir: str = "") -> Iterator[RayInfo]:
    """Ray for the length of a sweep: join ``address`` (or ``$RAY_ADDRESS``), else start an
    embedded local Ray on a loopback address (stopped again on exit: only what we started)."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS", "")
    quiet = {"configure_logging": False, "log_to_driver": False}
    if address and address != "auto":
        _reachable(address)
        _token_auth()
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SandboxInputError(
                f"ray address {address}: cannot join ({' '.join(str(e).split())[:200]})"
            ) from e
        mode = "cluster"
    else:
        kwargs: dict[str, Any] = {
            "num_cpus": num_cpus or os.cpu_count() or 1,
            "_node_ip_address": LOOPBACK,
            "include_dashboard": False,
        }
        if temp_dir:
            kwargs["_temp_dir"] = temp_dir
        ray.init(**kwargs, **quiet)
        mode = "local"
    try:
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        yield RayInfo(address or "local", mode, float(res.get("CPU", 0)), nodes)
    finally:
        ray.shutdown()


def _token_auth() -> None:
    """Clusters started with ``ray start`` require Ray's token authentication (Ray >= 2.59):
    send the token when there is one and ``RAY_AUTH_MODE`` does not say otherwise."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    home = os.path.expanduser("~/.ray/auth_token")
    if (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or os.path.isfile(home)
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def _reachable(address: str) -> None:
    """One line, at once, if nothing listens at ``host:port`` (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        raise SandboxInputError(
            f"ray address {address}: Ray Client (ray://) is not supported; give host:port"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except (OSError, ValueError) as e:
        raise SandboxInputError(
            f"ray address {address}: nothing answers there ({type(e).__name__}); start a cluster "
            "with `ray start --head` or leave RAY_ADDRESS unset for a local Ray"
        ) from e


# ---------------------------------------------------------------- tasks (run in workers)
def _cohort(cfg: RunConfig):
    from sandbox.programmes import programme_for
    from sandbox.simulate import build_cohort

    return build_cohort(cfg, None, programme_for(cfg.scenario))


class _Scoring:
    """A Ray actor serving one AI device's scores for one cohort to every unit and every policy
    of the sweep that needs them: the model loads once, and its score cache (in memory, saved
    to ``runtime.score_cache`` at the end) is shared, so a score is inferred once per sweep."""

    def __init__(self, cfg: RunConfig) -> None:
        from sandbox.runners.devices import prepare_device

        self.dev = prepare_device(cfg)

    def read(self, images: list) -> tuple[Any, int, int]:
        before = self.dev.scorer.stats.inferences
        out = self.dev.scorer.read(images)
        return (
            out,
            self.dev.scorer.stats.inferences - before,
            sum(len(e.candidates) for e in images),
        )

    def info(self) -> dict[str, Any]:
        return dict(self.dev.manifest)

    def save(self) -> dict[str, Any]:
        self.dev.scorer.cache.save()
        s = self.dev.scorer.stats
        return {
            "inferences": s.inferences,
            "batches": s.batches,
            "cached": len(self.dev.scorer.cache.scores),
        }


class RemoteScorer:
    """What the engine calls for scores (``read(images)``, ``scores(images)``, ``cutoff(point)``),
    answered by a :class:`_Scoring` actor; counts what this unit's exams cost (in candidate patches)."""

    def __init__(self, actor: Any, folder: Path) -> None:
        from sandbox.agents.operating_point import Cutoffs

        self.actor, self.inferences, self.hits, self.batches = actor, 0, 0, 0
        self.folder = folder  # the device's folder (its validation set and reference scores)
        # the score cut-off of a policy's second operating points (marks, relaxed reading,
        # a recall flag), as the local scorer resolves them
        self.cutoff = Cutoffs(folder)

    def read(self, images):
        import ray

        out, inferred, patches = ray.get(self.actor.read.remote(list(images)))
        self.inferences += inferred
        self.hits += patches - inferred
        self.batches += 1
        return out

    def scores(self, images):
        return self.read(images).score


def _unit(cfg: RunConfig, profiles: dict, cohort, block: list[int], scoring=None):
    from sandbox.programmes import programme_for
    from sandbox.simulate import simulate_sites

    agent = None
    scorer, threshold, updates = None, None, {}
    if scoring is not None:
        import ray

        from sandbox.agents.operating_point import resolve_threshold
        from sandbox.runners.devices import agent_folder, update_devices
        from sandbox.typed import to_dict

        updates = update_devices(cfg)  # a drift's devices with new weights: loaded here
        folder = agent_folder(cfg.agent)
        scorer = RemoteScorer(scoring, folder)
        threshold = resolve_threshold(cfg.policy.threshold, folder)
        agent = ray.get(scoring.info.remote())
        agent.update(threshold=threshold, operating_point=to_dict(cfg.policy.threshold))
    part = simulate_sites(
        cfg,
        profiles,
        cohort,
        block,
        None,
        scorer,
        threshold,
        programme=programme_for(cfg.scenario),
        updates=updates,
    )
    if agent is not None:
        agent.update(inferences=scorer.inferences, cache_hits=scorer.hits, batches=scorer.batches)
    return part, agent


def _outcomes(cfg: RunConfig, cohort, *units):
    from sandbox.programmes import programme_for
    from sandbox.simulate import merge_records, outcomes

    t0 = time.perf_counter()
    programme = programme_for(cfg.scenario)
    rec = merge_records([u[0] for u in units], len(cohort))
    people, metrics = outcomes(cfg, cohort, rec, programme)
    agents: dict[str, Any] = {}
    for _, agent in units:
        if agent is None:
            continue
        if agent["name"] not in agents:
            agents[agent["name"]] = dict(agent)
        else:
            for k in ("inferences", "cache_hits", "batches"):
                agents[agent["name"]][k] += agent[k]
    timings = dict(rec.timings)
    timings["outcomes_s"] = time.perf_counter() - t0
    return {
        "metrics": metrics,
        "people": people,
        "events": rec.events,
        "timings": timings,
        "agents": agents,
        "policy_versions": rec.policy_versions,
        "monitoring": rec.monitoring,
    }


@dataclass
class Failure:
    run: str
    error: str


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    tasks: int = 0
    reused_units: int = 0


# ---------------------------------------------------------------- unit checkpoints
def unit_folder(units_dir: Path, job: Any, block: Sequence[int]) -> Path:
    return units_dir / job.run.name / f"sites-{'-'.join(map(str, block))}"


def _fingerprint(job: Any) -> str:
    """What a kept unit must match: the run's resolved config (runtime aside)."""
    from sandbox.config import resolved

    cfg = {k: v for k, v in resolved(job.cfg).items() if k != "runtime"}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def save_unit(folder: Path, job: Any, result: tuple[Any, Any]) -> None:
    """Keep a finished unit (its records as Parquet and JSON, no pickle), written whole."""
    from sandbox.runfolder import temporary_name

    part, agent = result
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(folder)
    tmp.mkdir()
    try:
        part.events.write_parquet(tmp / "events.parquet")
        part.backlog.write_parquet(tmp / "backlog.parquet")
        if part.monitoring is not None:
            part.monitoring.write_parquet(tmp / "monitoring.parquet")
        rows = part.rows
        pl.DataFrame(
            {
                "row": rows,
                "screen_dx_day": part.screen_dx_day[rows],
                "screen_dx_stage": part.screen_dx_stage[rows],
            }
        ).write_parquet(tmp / "people.parquet")
        meta = {
            "fingerprint": _fingerprint(job),
            "n": len(part.screen_dx_day),
            "timings": part.timings,
            "policy_versions": part.policy_versions,
            "agent": agent,
        }
        (tmp / "unit.json").write_text(json.dumps(meta, default=str))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_unit(folder: Path, job: Any) -> tuple[Any, Any] | None:
    """A kept unit of ``job``, or None (absent, unreadable, or from another config)."""
    from sandbox.simulate import SiteRecords

    try:
        meta = json.loads((folder / "unit.json").read_text())
        if meta["fingerprint"] != _fingerprint(job):
            return None
        people = pl.read_parquet(folder / "people.parquet")
        n = int(meta["n"])
        rows = people["row"].to_numpy()
        dx_day = np.full(n, np.inf)
        dx_stage = np.full(n, -1, dtype=np.int8)
        dx_day[rows] = people["screen_dx_day"].to_numpy()
        dx_stage[rows] = people["screen_dx_stage"].to_numpy()
        kept = folder / "monitoring.parquet"
        monitoring = pl.read_parquet(kept) if kept.is_file() else None
        part = SiteRecords(
            pl.read_parquet(folder / "events.parquet"),
            pl.read_parquet(folder / "backlog.parquet"),
            dx_day,
            dx_stage,
            rows,
            dict(meta["timings"]),
            dict(meta["policy_versions"]),
            monitoring,
        )
        return part, meta["agent"]
    except (OSError, ValueError, KeyError, TypeError, IndexError, pl.exceptions.PolarsError):
        return None


def execute(
    jobs: Sequence[Any],
    write: Callable[[Any, dict[str, Any]], None],
    show: bool = True,
    units_dir: Path | None = None,
) -> Outcome:
    """Run ``jobs`` (:class:`sandbox.sweep.Job`) on the connected Ray and call ``write(job,
    tables)`` in the driver as each run's outcomes arrive.

    With ``units_dir``, every finished unit of work is kept there (:func:`save_unit`) until its
    run folder is written, and a unit found there is not run again: an interrupted sweep loses
    only the units that had not finished."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    from sandbox.runners.local import site_blocks

    opts = {"num_cpus": 1, "max_retries": RETRIES, "retry_exceptions": False}
    cohort_task = ray.remote(**opts)(_cohort)
    unit_task = ray.remote(**opts)(_unit)
    outcome_task = ray.remote(**opts)(_outcomes)

    scoring_actor = ray.remote(_Scoring)
    gpus = ray.cluster_resources().get("GPU", 0)
    # Units are submitted as slots free up, at most one per CPU of the cluster: a unit that
    # waits on a scoring actor gives its CPU back to Ray, which would then start another unit,
    # whose actor (num_cpus=0) computes too; with one actor per AI cohort, a sweep of many
    # seeds would run them all at once on a few cores.
    slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
    cohorts: dict[str, Any] = {}
    services: dict[str, Any] = {}
    pending: dict[Any, tuple[str, Any, Path | None]] = {}  # ref -> (kind, job, checkpoint)
    todo = deque(
        (i, block)
        for i, job in enumerate(jobs)
        for block in site_blocks(len(job.cfg.scenario.sites), job.cfg.runtime.site_block_size)
    )
    units: list[list[Any]] = [[] for _ in jobs]
    blocks_left = [0] * len(jobs)
    for i, _ in todo:
        blocks_left[i] += 1
    out = Outcome()
    bar = tqdm(total=0, desc="sweep", unit="task", disable=not show, file=sys.stderr)

    def task(ref: Any, kind: str, job: Any, ck: Path | None = None) -> None:
        pending[ref] = (kind, job, ck)
        out.tasks += 1
        bar.total += 1
        bar.refresh()

    def submit() -> bool:
        """Submit the next unit (and its run's cohort, scoring actor and outcomes task when it
        is the first or last to need them); False when it was taken from a checkpoint."""
        i, block = todo.popleft()
        job = jobs[i]
        cfg = job.cfg
        key = json.dumps({"seed": cfg.seed, "scenario": _scenario_key(cfg)}, sort_keys=True)
        if key not in cohorts:
            cohorts[key] = cohort_task.options(name=f"cohort seed {cfg.seed}").remote(cfg)
            task(cohorts[key], "cohort", None)
        scoring = None
        if cfg.policy.role != "none":
            skey = _service_key(cfg)
            if skey not in services:
                on_gpu = gpus >= 1 and cfg.runtime.device != "cpu"
                services[skey] = scoring_actor.options(
                    name=None,
                    num_cpus=0,  # it works while the units that call it wait
                    num_gpus=1 if on_gpu else 0,
                    max_restarts=RETRIES,
                    max_task_retries=RETRIES,
                ).remote(cfg)
            scoring = services[skey]
        ck = None if units_dir is None else unit_folder(units_dir, job, block)
        kept = None if ck is None else load_unit(ck, job)
        submitted = kept is None
        if kept is not None:
            units[i].append(ray.put(kept))
            out.reused_units += 1
        else:
            ref = unit_task.options(name=f"{job.run.name} sites {block}").remote(
                cfg, job.profiles, cohorts[key], block, scoring
            )
            task(ref, "unit", job, ck)
            units[i].append(ref)
        blocks_left[i] -= 1
        if blocks_left[i] == 0:
            ref = outcome_task.options(name=f"{job.run.name} outcomes").remote(
                cfg, cohorts[key], *units[i]
            )
            task(ref, "outcomes", job)
            units[i] = []
        return submitted

    def fill() -> None:
        running = sum(1 for kind, _, _ in pending.values() if kind == "unit")
        while todo and running < slots:
            running += submit()

    try:
        fill()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                kind, job, ck = pending.pop(ref)
                bar.update(1)
                if kind == "unit" and ck is not None:
                    try:
                        save_unit(ck, job, ray.get(ref))
                    except RayError:
                        pass  # the run's outcomes task reports the failure
                if kind == "unit":
                    fill()
                if kind != "outcomes":
                    continue
                try:
                    tables = ray.get(ref)
                except RayTaskError as e:
                    cause = e.cause if isinstance(e.cause, BaseException) else e
                    out.failed.append(Failure(job.run.name, _one_line(cause)))
                    bar.set_postfix(failed=len(out.failed))
                    continue
                except RayError as e:
                    out.failed.append(Failure(job.run.name, _one_line(e)))
                    bar.set_postfix(failed=len(out.failed))
                    continue
                write(job, tables)
                out.finished.append(job.run.name)
                if units_dir is not None:
                    shutil.rmtree(units_dir / job.run.name, ignore_errors=True)
    # On Ctrl-C the tasks left are not cancelled one by one: a cancellation racing with the
    # task's own completion aborts Ray's core worker in the driver ("Tried to complete task that
    # was not pending"; ray-project/ray#54798 fixed one such race), and the exit status with it.
    # Ray ends them when the session shuts down (ray_session): a local cluster stops with the
    # driver, and a cluster ends a job's tasks when its driver leaves.
    finally:
        bar.close()
        _save_scores(services)
    return out


def _save_scores(services: dict[str, Any]) -> None:
    """Merge every scoring actor's new scores into the score cache, then stop the actors."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    refs = [a.save.remote() for a in services.values()]
    try:
        ray.get(refs, timeout=600)
    except (RayError, GetTimeoutError):
        pass  # scores are recomputed next time; results never depend on the cache
    for a in services.values():
        ray.kill(a)


def _service_key(cfg: RunConfig) -> str:
    """One scoring actor per device and cohort (the cache's key) and where it runs."""
    from sandbox.runners.devices import agent_folder, cohort_key

    return json.dumps(
        [str(agent_folder(cfg.agent)), cohort_key(cfg), cfg.runtime.device, cfg.runtime.score_cache]
    )


def _scenario_key(cfg: RunConfig) -> Any:
    """What a run's cohort depends on besides its seed: the scenario, and the people a
    population shift brings in (runs that differ there do not share a cohort)."""
    from sandbox.typed import to_dict

    key = to_dict(cfg.scenario)
    if cfg.drift.population_changes:
        key = {"scenario": key, "arrivals": to_dict(cfg.drift.population_changes)}
    return key


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if not isinstance(e, SandboxInputError):
        text = f"{type(e).__name__}: {text}"
    return text[:300]

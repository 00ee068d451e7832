"""Fit the free natural-history parameters to a trial's targets (derivative-free, keyed streams).

The objective is the sum of z^2 over the fitted rows of every arm of the trial (the LDCT arm and
its chest-radiograph comparator, simulated on the same people), z being the pass rule's own
statistic at the trial's size. Common random numbers make it a deterministic function of the
parameters at a fixed seed and cohort size, so Nelder-Mead on log-parameters converges without
noise chasing. A rejection-ABC stage around the optimum then keeps every parameter vector whose
fitted rows all pass: the set that probabilistic sensitivity analysis draws from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import multiprocessing
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from scipy.optimize import minimize

from sandbox.agents.readers import ReaderProfile
from sandbox.config import RunConfig
from sandbox.errors import SandboxInputError
from sandbox.runners.local import simulate
from sandbox.validation.targets import Target, compare

# name -> (config path under the scenario, lower bound, upper bound)
FREE = {
    "incidence_multiplier": (("disease",), 0.2, 6.0),
    "clinical_hazard_per_year_at_20mm": (("disease",), 0.05, 5.0),
    "clinical_hazard_size_exponent": (("disease",), 1.0, 8.0),
    "metastatic_symptom_hazard_per_year": (("disease",), 0.2, 20.0),
    "subsolid_window_years": (("disease",), 14.0, 45.0),
    "nodal_median_mm": (("disease",), 8.0, 80.0),
    "distant_median_mm": (("disease",), 10.0, 120.0),
    "distant_sigma": (("disease",), 0.2, 2.0),
    "other_cause_volunteer_hr": (("disease",), 0.2, 2.0),
    "central_conspicuity": (("disease",), 0.02, 1.0),
    "mean_count_at_start": (("disease", "benign"), 0.05, 5.0),
    "new_per_year": (("disease", "benign"), 0.0, 3.0),
    "reference_mm": (("programme", "radiograph"), 4.0, 40.0),
    "mimic_share": (("programme", "radiograph"), 0.0, 1.0),
    "mimic_conspicuity": (("programme", "radiograph"), 1.0, 200.0),
    "spurious_ratio": (("programme", "radiograph"), 0.05, 10.0),
    "nodal_conspicuity": (("programme", "radiograph"), 1.0, 200.0),
    "symptom_free_days": (("cohort", "eligibility"), 10.0, 365.0),
    "look_back_boost": (("programme",), 0.5, 20.0),
    "spurious_with_earlier": (("programme",), 0.1, 1.0),
    # the breast programme (its control arm's fitted rows, masai_control): incidence, how fast
    # invasive cancers grow (with incidence, the sojourn time screening sees), and the screen
    # readers' detection c50 and spurious calls, as the scenario sets its readers' profile
    "doubling_days_median": (("disease", "invasive"), 30.0, 1000.0),
    "detection_c50": (("reader_profiles", "breast_radiologist"), 2.0, 60.0),
    "false_positive_per_exam": (("reader_profiles", "breast_radiologist"), 0.001, 0.05),
}
NAN_Z = 10.0  # a row with no value counts as 10 standard errors


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        obj = obj[p] if isinstance(obj, Mapping) else getattr(obj, p)
    return obj


def _value(scn: Any, name: str) -> float | None:
    """Free parameter ``name`` as the scenario sets it, or None where it has no such number
    (another programme's parameter, or a reader profile the scenario does not set)."""
    try:
        value = _get(scn, (*FREE[name][0], name))
    except (AttributeError, KeyError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def get_params(cfg: RunConfig) -> dict[str, float]:
    """The free parameters (:data:`FREE`) that ``cfg``'s scenario has, with their values."""
    values = {name: _value(cfg.scenario, name) for name in FREE}
    return {k: v for k, v in values.items() if v is not None}


def _replaced(obj: Any, path: tuple[str, ...], values: dict[str, float]) -> Any:
    if isinstance(obj, Mapping):
        if not path:
            return {**obj, **values}
        return {**obj, path[0]: _replaced(obj.get(path[0], {}), path[1:], values)}
    if not path:
        return dataclasses.replace(obj, **values)
    head = getattr(obj, path[0])
    return dataclasses.replace(obj, **{path[0]: _replaced(head, path[1:], values)})


def with_params(cfg: RunConfig, params: dict[str, float]) -> RunConfig:
    """A copy of ``cfg`` with the free parameters replaced (a reader profile's keys as the
    scenario's ``reader_profiles``, which :func:`sandbox.compose.scenario_profiles` applies)."""
    scn = cfg.scenario
    by_path: dict[tuple[str, ...], dict[str, float]] = {}
    for k, v in params.items():
        by_path.setdefault(FREE[k][0], {})[k] = v
    for path, values in by_path.items():
        scn = _replaced(scn, path, values)
    return dataclasses.replace(cfg, scenario=scn)


@dataclass(frozen=True)
class Arm:
    """One arm of a trial as calibration simulates it: its run config (cohort size and seed
    included), reader profiles, targets, and the trial's size for scaling counts."""

    trial: str
    cfg: RunConfig
    profiles: dict[str, ReaderProfile]
    targets: list[Target]
    trial_n: float
    # the overrides that compose ``cfg``: a worker process composes it again from them
    overrides: tuple[str, ...] = ()


def z_loss(tables: list[pl.DataFrame]) -> float:
    """Calibration objective: the sum of z^2 over the fitted rows of every arm (z at the trial's
    size, as the pass rule computes it; a row with no value counts as :data:`NAN_Z`)."""
    total = 0.0
    for t in tables:
        z = t.filter(pl.col("fitted"))["z"].fill_nan(NAN_Z).fill_null(NAN_Z).to_numpy()
        total += float((z * z).sum())
    return total


def max_fitted_z(tables: list[pl.DataFrame]) -> float:
    zs = [t.filter(pl.col("fitted"))["z"].fill_nan(NAN_Z).abs().max() for t in tables]
    return float(max(z for z in zs if z is not None))


def pooled(arms: list[Arm], tables: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """One table per trial arm (in order of first appearance): where an arm was simulated at
    several seeds, its simulated values and z are the seeds' means, so that the fit aims at the
    model's expectation rather than at one population's draw."""
    by_trial: dict[str, list[pl.DataFrame]] = {}
    for arm, table in zip(arms, tables, strict=True):
        by_trial.setdefault(arm.trial, []).append(table)
    out = []
    for group in by_trial.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        mean = {
            c: np.mean([t[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for t in group], axis=0)
            for c in ("simulated", "z")
        }
        out.append(group[0].with_columns(pl.Series(c, v) for c, v in mean.items()))
    return out


def arm_table(arm: Arm, params: dict[str, float]) -> pl.DataFrame:
    """One arm simulated with ``params``: its comparison table (a worker's task)."""
    from sandbox.compose import scenario_profiles

    cfg = with_params(arm.cfg, params)
    res = simulate(cfg, scenario_profiles(cfg, arm.profiles), progress=False)
    return compare(res.metrics, arm.targets, 1.0, arm.trial_n, cfg.scenario.cohort.size)


@functools.lru_cache(maxsize=32)
def _composed(overrides: tuple[str, ...]) -> tuple[RunConfig, dict[str, ReaderProfile]]:
    from sandbox.compose import load

    cfg, profiles, _ = load(list(overrides))
    return cfg, profiles


def _worker_arm_table(
    spec: tuple[str, tuple[str, ...], list[Target], float], params: dict[str, float]
) -> pl.DataFrame:
    """:func:`arm_table` in a worker process: the config is composed there (once per arm) from
    its overrides, since a composed config does not pickle."""
    trial, overrides, targets, trial_n = spec
    cfg, profiles = _composed(overrides)
    return arm_table(Arm(trial, cfg, profiles, targets, trial_n, overrides), params)


def worker_pool(workers: int) -> contextlib.AbstractContextManager[Executor | None]:
    """Processes that simulate an evaluation's arms and seeds side by side (``None`` for one
    worker). Spawned, not forked: a forked child of a process that has used Polars' threads can
    deadlock. Every simulation is keyed by its own seed, so the results do not depend on it."""
    if workers <= 1:
        return contextlib.nullcontext()
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def evaluate(
    arms: list[Arm], params: dict[str, float], pool: Executor | None = None
) -> tuple[float, list[pl.DataFrame]]:
    """(loss, one comparison table per trial arm, seeds pooled) of a parameter vector; the
    arms are simulated in ``pool`` when one is given."""
    if pool is None or not all(arm.overrides for arm in arms):
        tables = [arm_table(arm, params) for arm in arms]
    else:
        specs = [(arm.trial, arm.overrides, arm.targets, arm.trial_n) for arm in arms]
        tables = list(pool.map(_worker_arm_table, specs, [params] * len(arms)))
    tables = pooled(arms, tables)
    return z_loss(tables), tables


@dataclass
class Evaluation:
    params: dict[str, float]
    loss: float
    max_z: float
    stage: str  # "fit" (the optimiser's) or "abc" (a draw around the optimum)


def calibrate(
    arms: list[Arm],
    max_evals: int,
    on_eval: Callable[[int, float, dict[str, float]], None] | None = None,
    names: list[str] | None = None,
    pool: Executor | None = None,
) -> tuple[dict[str, float], float, list[pl.DataFrame], list[Evaluation]]:
    """Nelder-Mead over log-parameters, clipped to bounds. Returns (params, loss, tables,
    every evaluation). With ``max_evals`` 0 the scenario's own values are the fit (evaluated
    once): an ABC stage can then draw around a fit made another way (a grid, docs)."""
    start = get_params(arms[0].cfg)
    names = names or list(start)
    if max_evals == 0:
        value, tables = evaluate(arms, start, pool)
        evals = [Evaluation(start, value, max_fitted_z(tables), "fit")]
        if on_eval:
            on_eval(1, value, start)
        return start, value, tables, evals
    fixed = {k: v for k, v in start.items() if k not in names}
    lo = np.log([max(FREE[n][1], 1e-6) for n in names])
    hi = np.log([FREE[n][2] for n in names])
    x0 = np.log([max(start[n], 1e-6) for n in names])
    evals: list[Evaluation] = []

    def unpack(x):
        p = {n: float(math.exp(v)) for n, v in zip(names, np.clip(x, lo, hi), strict=True)}
        return {**fixed, **p}

    def f(x):
        p = unpack(x)
        value, tables = evaluate(arms, p, pool)
        evals.append(Evaluation(p, value, max_fitted_z(tables), "fit"))
        if on_eval:
            on_eval(len(evals), value, p)
        return value

    result = minimize(
        f,
        x0,
        method="Nelder-Mead",
        options={
            "maxfev": max_evals,
            "xatol": 0.01,
            "fatol": 0.05,
            "initial_simplex": _simplex(x0),
        },
    )
    best = min(evals, key=lambda e: e.loss).params if evals else unpack(result.x)
    value, tables = evaluate(arms, best, pool)
    return best, value, tables, evals


def abc_draws(
    arms: list[Arm],
    centre: dict[str, float],
    draws: int,
    width: float,
    seed: int,
    on_eval: Callable[[int, float, dict[str, float]], None] | None = None,
    pool: Executor | None = None,
    names: list[str] | None = None,
) -> list[Evaluation]:
    """Rejection ABC around the fitted vector: ``draws`` vectors, each free parameter
    (``names``; default every one of ``centre``) log-normal about its fitted value with sigma
    ``width`` (clipped to its bounds), the others held at ``centre``, each simulated once;
    :func:`accepted` keeps those whose every fitted row passes."""
    rng = np.random.default_rng(seed)
    names = list(names or centre)
    out = []
    for i in range(draws):
        p = dict(centre)
        for k in names:
            lo_k, hi_k = FREE[k][1], FREE[k][2]
            p[k] = float(
                np.clip(centre[k] * math.exp(width * rng.standard_normal()), max(lo_k, 1e-6), hi_k)
            )
        value, tables = evaluate(arms, p, pool)
        out.append(Evaluation(p, value, max_fitted_z(tables), "abc"))
        if on_eval:
            on_eval(i + 1, value, p)
    return out


def evaluations_frame(evals: list[Evaluation], z_pass: float) -> pl.DataFrame:
    """Every evaluated vector with its loss, largest fitted |z| and whether it is accepted
    (every fitted row of every arm within ``z_pass``): the calibration's parameter set."""
    return pl.DataFrame(
        [
            {
                **e.params,
                "loss": e.loss,
                "max_abs_z": e.max_z,
                "accepted": bool(e.max_z <= z_pass),
                "stage": e.stage,
            }
            for e in evals
        ]
    )


def _simplex(x0: np.ndarray) -> np.ndarray:
    pts = [x0]
    for i in range(len(x0)):
        p = x0.copy()
        p[i] += 0.25
        pts.append(p)
    return np.array(pts)


def write_fit(scenario_file: Path, params: dict[str, float], record: dict) -> None:
    """Write fitted values into the scenario file in place (comments kept) and record the fit."""
    text = scenario_file.read_text()
    for name, value in params.items():
        pattern = re.compile(rf"^(\s*{re.escape(name)}:\s*)([^\s#]+)", re.M)
        if not pattern.search(text):
            raise ValueError(f"{scenario_file}: no line for '{name}' to update")
        text = pattern.sub(lambda m, v=value: f"{m.group(1)}{_fmt(v)}", text, count=1)
    record = {**record, "fitted_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    block = yaml.safe_dump({"calibration": record}, sort_keys=False, width=100)
    text = re.sub(r"^calibration:.*\Z", "", text, flags=re.M | re.S).rstrip() + "\n\n" + block
    tmp = scenario_file.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(scenario_file)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) >= 1e-3 else f"{v:.3e}"


@dataclass(frozen=True)
class CalibrationSets:
    """Parameter vectors drawn from a calibration's accepted sets, as config overrides."""

    source: str  # the accepted-sets file, relative to the project
    kept: tuple[str, ...]  # free parameters the scenario inherits from the calibration
    own: tuple[str, ...]  # fitted parameters the scenario sets itself (left as they are)
    rows: tuple[int, ...]  # the accepted rows drawn
    values: tuple[dict[str, float], ...]  # per set: config path -> value


def calibration_sets(cfg: RunConfig, count: int, seed: int, root: Path) -> CalibrationSets:
    """``count`` vectors of the fitted parameters, drawn without replacement (keyed by ``seed``)
    from the accepted sets of the calibration that ``cfg``'s scenario carries. A fitted parameter that the scenario sets to another value (e.g. a
    programme's own healthy-volunteer ratio) keeps the scenario's value in every set."""
    cal = cfg.scenario.calibration or {}
    where = f"scenario {cfg.scenario.name}"
    if not cal.get("accepted_sets") or not cal.get("fitted"):
        raise SandboxInputError(f"{where}: its calibration records no accepted parameter sets")
    source = str(cal["accepted_sets"]).split(" (")[0]
    path = root / source
    if not path.is_file():
        raise SandboxInputError(f"{where}: calibration.accepted_sets {source}: no such file")
    try:
        frame = pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise SandboxInputError(f"{path}: not a readable Parquet file ({e})") from e
    if "accepted" not in frame.columns:
        raise SandboxInputError(f"{path}: no 'accepted' column")
    frame = frame.with_row_index("row").filter(pl.col("accepted"))
    if frame.height == 0:
        raise SandboxInputError(f"{path}: no accepted parameter set")
    kept, own = [], []
    for name, value in cal["fitted"].items():
        if name not in FREE or name not in frame.columns:
            raise SandboxInputError(f"{path}: no column for the fitted parameter {name}")
        current = _value(cfg.scenario, name)
        if current is None:
            raise SandboxInputError(
                f"{where}: calibration.fitted.{name}: the scenario has no such key"
            )
        (kept if math.isclose(current, float(value), rel_tol=1e-6) else own).append(name)
    if count > frame.height:
        raise SandboxInputError(f"{path}: {count} sets asked for, {frame.height} accepted")
    rng = np.random.default_rng(seed)
    take = rng.choice(frame.height, size=count, replace=False)
    values = tuple(
        {".".join((*FREE[n][0], n)): float(frame[n][int(i)]) for n in kept} for i in take
    )
    rows = tuple(int(frame["row"][int(i)]) for i in take)
    return CalibrationSets(source, tuple(kept), tuple(own), rows, values)

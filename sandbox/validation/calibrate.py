"""Fit the free natural-history parameters to a trial's targets (derivative-free, keyed streams).

Common random numbers make the objective a deterministic function of the parameters at a
fixed seed and cohort size, so Nelder-Mead on log-parameters converges without noise chasing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import minimize

from sandbox.agents.readers import ReaderProfile
from sandbox.config import RunConfig
from sandbox.runners.local import simulate
from sandbox.validation.targets import Target, compare, loss

# name -> (config path under the scenario, lower bound, upper bound)
FREE = {
    "incidence_multiplier": (("disease",), 0.2, 6.0),
    "clinical_hazard_per_year_at_20mm": (("disease",), 0.05, 5.0),
    "clinical_hazard_size_exponent": (("disease",), 1.0, 8.0),
    "nodal_median_mm": (("disease",), 8.0, 80.0),
    "distant_median_mm": (("disease",), 10.0, 120.0),
    "distant_sigma": (("disease",), 0.2, 2.0),
    "mean_count_at_start": (("disease", "benign"), 0.05, 5.0),
    "new_per_year": (("disease", "benign"), 0.0, 3.0),
}


def get_params(cfg: RunConfig) -> dict[str, float]:
    out = {}
    for name, (path, _, _) in FREE.items():
        obj = cfg.scenario
        for p in path:
            obj = getattr(obj, p)
        out[name] = float(getattr(obj, name))
    return out


def with_params(cfg: RunConfig, params: dict[str, float]) -> RunConfig:
    """A copy of ``cfg`` with the free parameters replaced."""
    scn = cfg.scenario
    disease = scn.disease
    benign = dataclasses.replace(
        disease.benign, **{k: v for k, v in params.items() if FREE[k][0] == ("disease", "benign")}
    )
    disease = dataclasses.replace(
        disease, benign=benign, **{k: v for k, v in params.items() if FREE[k][0] == ("disease",)}
    )
    return dataclasses.replace(cfg, scenario=dataclasses.replace(scn, disease=disease))


def evaluate(
    cfg: RunConfig,
    profiles: dict[str, ReaderProfile],
    targets: list[Target],
    params: dict[str, float],
):
    res = simulate(with_params(cfg, params), profiles, progress=False)
    table = compare(res.metrics, targets)
    return loss(table), table


def calibrate(
    cfg: RunConfig,
    profiles: dict[str, ReaderProfile],
    targets: list[Target],
    max_evals: int,
    on_eval: Callable[[int, float, dict[str, float]], None] | None = None,
):
    """Nelder-Mead over log-parameters, clipped to bounds. Returns (params, loss, table, evals)."""
    names = list(FREE)
    start = get_params(cfg)
    lo = np.log([max(FREE[n][1], 1e-6) for n in names])
    hi = np.log([FREE[n][2] for n in names])
    x0 = np.log([max(start[n], 1e-6) for n in names])
    evals = []

    def unpack(x):
        return {n: float(math.exp(v)) for n, v in zip(names, np.clip(x, lo, hi), strict=True)}

    def f(x):
        p = unpack(x)
        value, _ = evaluate(cfg, profiles, targets, p)
        evals.append((value, p))
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
    best = min(evals, key=lambda e: e[0])[1] if evals else unpack(result.x)
    value, table = evaluate(cfg, profiles, targets, best)
    return best, value, table, len(evals)


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

"""Distributions of a price list's uncertain parameters (its ``psa`` section): declared, checked
and frozen, for :mod:`sandbox.economics.psa`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats

from sandbox.errors import SandboxInputError

DISTS = ("gamma", "beta", "lognormal", "normal", "uniform")


@dataclass(frozen=True)
class Param:
    """One uncertain parameter: ``path`` into the price list (``costs.workup``,
    ``costs.initial_by_stage.I``, ``utilities.later_years``, ...)."""

    path: str
    dist: str
    mean: float
    sd: float = 0.0
    low: float = 0.0
    high: float = 0.0

    def frozen(self):
        """The scipy distribution."""
        m, s = self.mean, self.sd
        if self.dist == "gamma":
            return stats.gamma(a=(m / s) ** 2, scale=s * s / m)
        if self.dist == "beta":
            k = m * (1 - m) / (s * s) - 1
            return stats.beta(m * k, (1 - m) * k)
        if self.dist == "lognormal":
            sigma2 = math.log1p((s / m) ** 2)
            return stats.lognorm(s=math.sqrt(sigma2), scale=m / math.sqrt(1 + (s / m) ** 2))
        if self.dist == "normal":
            return stats.norm(m, s)
        return stats.uniform(self.low, self.high - self.low)


def _get(costs: Any, util: Any, path: str) -> float:
    from sandbox.economics.config import PATH_ALIASES

    head, *rest = PATH_ALIASES.get(path, path).split(".")
    obj: Any = {"costs": costs, "utilities": util}.get(head)
    for p in rest:
        obj = obj.get(p) if isinstance(obj, Mapping) else getattr(obj, p, None)
        if obj is None:
            break
    if obj is None or isinstance(obj, Mapping) or isinstance(obj, bool):
        raise SandboxInputError(f"config key 'economics.psa.{path}': not a price or utility")
    return float(obj)


def parse_params(section: Any, costs: Any, util: Any) -> list[Param]:
    """The ``psa`` section of a price list: {path: {dist, sd | low/high [, mean]}}."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        raise SandboxInputError("config key 'economics.psa': expected a mapping of parameters")
    out = []
    for path, spec in section.items():
        key = f"economics.psa.{path}"
        if not isinstance(spec, Mapping):
            raise SandboxInputError(f"config key '{key}': expected {{dist: ..., sd: ...}}")
        unknown = sorted(set(spec) - {"dist", "mean", "sd", "low", "high"})
        if unknown:
            raise SandboxInputError(f"config key '{key}.{unknown[0]}': unknown key")
        dist = spec.get("dist")
        if dist not in DISTS:
            raise SandboxInputError(
                f"config key '{key}.dist': {dist!r} is not one of {', '.join(DISTS)}"
            )
        base = _get(costs, util, str(path))
        vals = {}
        for name in ("mean", "sd", "low", "high"):
            v = spec.get(name, base if name == "mean" else 0.0)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise SandboxInputError(f"config key '{key}.{name}': {v!r} is not a number")
            vals[name] = float(v)
        p = Param(str(path), dist, **vals)
        if dist == "uniform":
            if not vals["low"] < vals["high"]:
                raise SandboxInputError(f"config key '{key}': low must be below high")
        elif vals["sd"] <= 0:
            raise SandboxInputError(f"config key '{key}.sd': must be positive")
        if dist in ("gamma", "lognormal") and vals["mean"] <= 0:
            raise SandboxInputError(f"config key '{key}.mean': must be positive for {dist}")
        if dist == "beta" and not (
            0 < vals["mean"] < 1 and vals["sd"] ** 2 < vals["mean"] * (1 - vals["mean"])
        ):
            raise SandboxInputError(
                f"config key '{key}': a beta needs 0 < mean < 1 and sd^2 < mean (1 - mean)"
            )
        out.append(p)
    return out

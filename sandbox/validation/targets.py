"""Trial targets and the side-by-side comparison of a run's metrics with them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from sandbox.errors import SandboxInputError

TARGETS = {"nlst": Path(__file__).with_name("targets") / "nlst_ldct.yaml"}


@dataclass(frozen=True)
class Target:
    name: str
    metric: str
    round: str
    value: float
    tolerance: float | None  # None: reported, not judged
    note: str = ""


def load_targets(trial: str) -> tuple[dict, list[Target]]:
    """(header, targets) of a trial; one-line error for an unknown trial."""
    if trial not in TARGETS:
        raise SandboxInputError(f"unknown trial '{trial}' (known: {', '.join(sorted(TARGETS))})")
    data = yaml.safe_load(TARGETS[trial].read_text())
    rows = [
        Target(k, v["metric"], v["round"], float(v["value"]), float(v["tolerance"]))
        for k, v in data["rows"].items()
    ]
    rows += [
        Target(k, v["metric"], v["round"], float(v["value"]), None, v.get("note", ""))
        for k, v in data.get("report_only", {}).items()
    ]
    return data, rows


def compare(
    metrics: pl.DataFrame, targets: list[Target], tolerance_scale: float = 1.0
) -> pl.DataFrame:
    """One row per target: published, simulated with 95% interval, |difference|, pass/fail."""
    top = metrics.filter((pl.col("site") == "all") & (pl.col("subgroup") == "all"))
    out = []
    for t in targets:
        row = top.filter((pl.col("metric") == t.metric) & (pl.col("round") == t.round))
        v, lo, hi = (row["value"][0], row["lo"][0], row["hi"][0]) if row.height else (math.nan,) * 3
        tol = None if t.tolerance is None else t.tolerance * tolerance_scale
        ok = None if tol is None else bool(abs(v - t.value) <= tol)
        out.append(
            {
                "target": t.name,
                "published": t.value,
                "tolerance": tol,
                "simulated": v,
                "lo": lo,
                "hi": hi,
                "difference": v - t.value,
                "pass": ok,
            }
        )
    return pl.DataFrame(
        out,
        schema={
            "target": pl.Utf8,
            "published": pl.Float64,
            "tolerance": pl.Float64,
            "simulated": pl.Float64,
            "lo": pl.Float64,
            "hi": pl.Float64,
            "difference": pl.Float64,
            "pass": pl.Boolean,
        },
    )


def loss(table: pl.DataFrame) -> float:
    """Calibration objective: sum of squared differences in units of tolerance."""
    judged = table.filter(pl.col("tolerance").is_not_null())
    d = (judged["difference"] / judged["tolerance"]).fill_nan(10.0).to_numpy()
    return float((d * d).sum())

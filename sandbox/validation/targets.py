"""Trial targets and the side-by-side comparison of a run's metrics with them.

A row passes when the simulated and the published value are **statistically indistinguishable at
the trial's size**: |z| <= 1.96, where z is their difference over the standard error of a
difference between two independent samples, the published one at the trial's size and the
simulated one at the run's:

* proportions (``k / n``): binomial variance ``p (1 - p) / n`` of each; the trial's denominator is
  the run's denominator scaled to the trial's size (screens in a round, cancers diagnosed, ...:
  they scale with the people randomised);
* counts: the simulated count is scaled to the trial's size (``s = trial n / run's people``) and
  compared with Poisson variances, ``k_published + s^2 k_simulated``;
* rates (per 1,000 or per 100,000 person-years): Poisson variance of the events behind each,
  ``rate^2 / events`` (the published events are given with the target).

The hand-picked ``tolerance`` of a row is kept as a coarse second check (``within_tolerance``);
calibration minimises the sum of z^2 over the rows it fits (:mod:`sandbox.validation.calibrate`),
and every row says whether it was fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from sandbox.errors import SandboxInputError

_DIR = Path(__file__).with_name("targets")
TARGETS = {
    "nlst": _DIR / "nlst_ldct.yaml",
    "nlst_cxr": _DIR / "nlst_cxr.yaml",
    "masai_control": _DIR / "masai_control.yaml",
    "masai": _DIR / "masai.yaml",
}
Z_PASS = 1.96


@dataclass(frozen=True)
class Target:
    name: str
    metric: str
    round: str
    value: float
    tolerance: float | None  # None: no coarse check
    note: str = ""
    kind: str = "proportion"  # proportion | count | per_1000 | per_100k_py
    fitted: bool = False  # calibration fits this row (else it is out of sample)
    events: float | None = None  # published events behind a rate
    n: float | None = None  # people the published figure is from (else the trial's n)


def load_targets(trial: str) -> tuple[dict, list[Target]]:
    """(header, targets) of a trial; one-line error for an unknown trial."""
    if trial not in TARGETS:
        raise SandboxInputError(f"unknown trial '{trial}' (known: {', '.join(sorted(TARGETS))})")
    data = yaml.safe_load(TARGETS[trial].read_text())
    rows = []
    for k, v in data["rows"].items():
        tol = v.get("tolerance")
        rows.append(
            Target(
                k,
                v["metric"],
                v["round"],
                float(v["value"]),
                None if tol is None else float(tol),
                v.get("note", ""),
                v.get("kind", "proportion"),
                bool(v.get("fitted", False)),
                None if v.get("events") is None else float(v["events"]),
                None if v.get("n") is None else float(v["n"]),
            )
        )
    return data, rows


def z_score(t: Target, sim: float, n_sim: float, scale: float) -> tuple[float, float]:
    """(simulated value at the trial's size, z) of one row; ``scale`` = trial n / run's people."""
    pub = t.value
    if not math.isfinite(sim):
        return sim, math.nan
    if t.kind == "count":
        at_trial = sim * scale
        var = pub + sim * scale * scale
        return at_trial, (at_trial - pub) / math.sqrt(var) if var > 0 else math.nan
    if t.kind in ("per_1000", "per_100k_py"):
        unit = 1000.0 if t.kind == "per_1000" else 1e5
        events_sim = sim * n_sim / unit
        events_pub = t.events if t.events else pub * n_sim * scale / unit
        var = (pub * pub / events_pub if events_pub > 0 else 0.0) + (
            sim * sim / events_sim if events_sim > 0 else 0.0
        )
        return sim, (sim - pub) / math.sqrt(var) if var > 0 else math.nan
    n_trial = n_sim * scale
    var = (pub * (1 - pub) / n_trial if n_trial > 0 else 0.0) + (
        sim * (1 - sim) / n_sim if n_sim > 0 else 0.0
    )
    return sim, (sim - pub) / math.sqrt(var) if var > 0 else math.nan


def compare(
    metrics: pl.DataFrame,
    targets: list[Target],
    tolerance_scale: float = 1.0,
    trial_n: float | None = None,
    people: float | None = None,
) -> pl.DataFrame:
    """One row per target: published, simulated with its 95% interval (counts at the trial's
    size), z, pass (|z| <= 1.96), and the coarse tolerance check.

    ``trial_n`` and ``people`` (the run's cohort) scale counts and denominators to the trial's
    size; without them the run is taken to be the trial's size.
    """
    top = metrics.filter((pl.col("site") == "all") & (pl.col("subgroup") == "all"))
    scale = (trial_n / people) if trial_n and people else 1.0
    out = []
    for t in targets:
        row = top.filter((pl.col("metric") == t.metric) & (pl.col("round") == t.round))
        if row.height:
            v, lo, hi, n = row["value"][0], row["lo"][0], row["hi"][0], row["n"][0]
        else:
            v, lo, hi, n = math.nan, math.nan, math.nan, 0
        row_scale = (t.n / people) if t.n and people else scale
        at_trial, z = z_score(t, v, float(n or 0), row_scale)
        k = row_scale if t.kind == "count" else 1.0
        tol = None if t.tolerance is None else t.tolerance * tolerance_scale
        out.append(
            {
                "target": t.name,
                "fitted": t.fitted,
                "published": t.value,
                "simulated": at_trial,
                "lo": lo * k,
                "hi": hi * k,
                "difference": at_trial - t.value,
                "z": z,
                "pass": bool(math.isfinite(z) and abs(z) <= Z_PASS),
                "tolerance": tol,
                "within_tolerance": None if tol is None else bool(abs(v * k - t.value) <= tol),
            }
        )
    return pl.DataFrame(
        out,
        schema={
            "target": pl.Utf8,
            "fitted": pl.Boolean,
            "published": pl.Float64,
            "simulated": pl.Float64,
            "lo": pl.Float64,
            "hi": pl.Float64,
            "difference": pl.Float64,
            "z": pl.Float64,
            "pass": pl.Boolean,
            "tolerance": pl.Float64,
            "within_tolerance": pl.Boolean,
        },
    )


def relative_reduction(
    metrics_a: pl.DataFrame,
    metrics_b: pl.DataFrame,
    metric: str,
    published: float,
    ci95,
    kind: str = "reduction",
) -> dict:
    """1 - rate_a / rate_b of a rate ``metric`` (per person-year or per 1,000; a: the screening arm, b: its
    comparator), with the Poisson 95% interval of the rate ratio, and z against the published
    reduction (its standard error on the log scale taken from the published interval).
    ``kind="ratio"``: the same comparison stated as the rate ratio rate_a / rate_b;
    ``kind="count_reduction"``: 1 - count_a / count_b of a count ``metric`` (two arms of the
    same size), each count its own Poisson events (MASAI's screen readings)."""
    if kind == "ratio":
        r = relative_reduction(
            metrics_a, metrics_b, metric, 1 - published, (1 - ci95[1], 1 - ci95[0])
        )
        return {**r, "simulated": 1 - r["simulated"], "lo": 1 - r["hi"], "hi": 1 - r["lo"]}

    def rate_events(m: pl.DataFrame) -> tuple[float, float]:
        row = m.filter(
            (pl.col("site") == "all")
            & (pl.col("subgroup") == "all")
            & (pl.col("round") == "all")
            & (pl.col("metric") == metric)
        )
        if not row.height:
            return math.nan, 0.0
        if kind == "count_reduction":
            return row["value"][0], row["value"][0]
        scale = 1.0
        if metric.endswith("_per_100k_person_years"):
            scale = 1e5
        elif metric.endswith("_per_1000"):
            scale = 1e3
        return row["value"][0], row["value"][0] * row["n"][0] / scale

    ra, ea = rate_events(metrics_a)
    rb, eb = rate_events(metrics_b)
    if not (ea > 0 and eb > 0):
        return {"simulated": math.nan, "lo": math.nan, "hi": math.nan, "z": math.nan, "pass": False}
    log_rr, se = math.log(ra / rb), math.sqrt(1 / ea + 1 / eb)
    lo_pub, hi_pub = ci95
    se_pub = (math.log(1 - lo_pub) - math.log(1 - hi_pub)) / (2 * 1.96)
    z = (log_rr - math.log(1 - published)) / math.sqrt(se * se + se_pub * se_pub)
    return {
        "simulated": 1 - ra / rb,
        "lo": 1 - math.exp(log_rr + 1.96 * se),
        "hi": 1 - math.exp(log_rr - 1.96 * se),
        "z": z,
        "pass": abs(z) <= Z_PASS,
    }

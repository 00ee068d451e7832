"""Paired comparisons of two runs on the same people, and verdicts as trials state them.

Two runs of the same scenario and seed see the same people with the same disease courses
(common random numbers), so a difference between policies is estimated on pairs: each person
contributes to both arms. The interval comes from a paired bootstrap over people: people are
resampled with replacement, the same draw for both runs, and the metric of each run and their
difference (B - A) and ratio (B / A) are recomputed on every replicate; the interval is the
2.5th and 97.5th percentiles. That interval is far narrower than the two runs' own intervals
suggest, because what both runs share cancels.

Every supported metric is a ratio of per-person sums (a count has no denominator), computed
exactly as :mod:`sandbox.outcomes.metrics` computes it at site, subgroup and round ``all``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sandbox.errors import SandboxInputError
from sandbox.rng import Streams, declare_streams

declare_streams({"compare.*": "paired bootstrap of a comparison (people resampled)"})


@dataclass(frozen=True)
class PairedMetric:
    """A metric as sum(num) / sum(den) x scale over people (``den`` empty: a count)."""

    num: str
    den: str = ""
    scale: float = 1.0
    better: str = ""  # "higher", "lower" or "" (no direction)


PAIRED: dict[str, PairedMetric] = {
    "screens": PairedMetric("screens"),
    "positives": PairedMetric("positives", better="lower"),
    "positive_rate": PairedMetric("positives", "screens", better="lower"),
    "recall_rate": PairedMetric("recalls", "screens", better="lower"),
    "screen_detected_cancers": PairedMetric("screen_detected", better="higher"),
    "cancer_detection_rate_per_1000": PairedMetric("screen_detected", "screens", 1000, "higher"),
    "interval_cancers": PairedMetric("interval", better="lower"),
    "interval_cancer_rate_per_1000": PairedMetric("interval", "screens", 1000, "lower"),
    "programme_sensitivity": PairedMetric("screen_detected", "cancers_in_window", better="higher"),
    "ppv": PairedMetric("true_positives", "positives", better="higher"),
    "workups": PairedMetric("workups", better="lower"),
    "false_positive_workups": PairedMetric("fp_workups", better="lower"),
    "benign_biopsies": PairedMetric("benign_biopsies", better="lower"),
    "human_reads": PairedMetric("reads", better="lower"),
    "reader_hours": PairedMetric("reader_hours", better="lower"),
}
"""Metrics with a paired interval, and which way is better."""

COLUMNS = sorted({c for m in PAIRED.values() for c in (m.num, m.den) if c})


def person_table(events: pl.DataFrame, people: pl.DataFrame) -> pl.DataFrame:
    """One row per person (``person_id`` order) with the per-person sums behind :data:`PAIRED`."""
    same_round = pl.col("diagnosis_round") == pl.col("round")
    who = people.select("person_id", "diagnosis_mode", "diagnosis_round")
    screens = (
        events.filter(pl.col("exam_kind") == "screen")
        .join(who, on="person_id", how="left")
        .with_columns(
            screen_detected=(pl.col("diagnosis_mode") == "screen") & same_round,
            interval=(pl.col("diagnosis_mode") == "interval") & same_round,
        )
    )
    per_screen = screens.group_by("person_id").agg(
        pl.len().alias("screens"),
        pl.col("positive").sum().alias("positives"),
        (pl.col("management") != "next_round").sum().alias("recalls"),
        pl.col("screen_detected").sum().alias("screen_detected"),
        pl.col("interval").sum().alias("interval"),
        (pl.col("screen_detected") | pl.col("interval")).sum().alias("cancers_in_window"),
        (pl.col("positive") & pl.col("screen_detected")).sum().alias("true_positives"),
    )
    per_exam = events.group_by("person_id").agg(
        pl.col("n_reads").cast(pl.Int64).sum().alias("reads"),
        (pl.col("reader_minutes").sum() / 60.0).alias("reader_hours"),
        pl.col("workup_day").is_not_null().sum().alias("workups"),
        (pl.col("workup_day").is_not_null() & pl.col("workup_diagnosis_day").is_null())
        .sum()
        .alias("fp_workups"),
        pl.col("benign_biopsy").sum().alias("benign_biopsies"),
    )
    table = (
        people.select("person_id")
        .join(per_screen, on="person_id", how="left")
        .join(per_exam, on="person_id", how="left")
        .fill_null(0)
        .sort("person_id")
    )
    return table.select("person_id", *(pl.col(c).cast(pl.Float64) for c in COLUMNS))


def _values(sums: dict[str, np.ndarray], m: PairedMetric) -> np.ndarray:
    num = sums[m.num]
    if not m.den:
        return num * m.scale
    den = sums[m.den]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan) * m.scale


def paired_differences(
    a: pl.DataFrame,
    b: pl.DataFrame,
    metrics: list[str],
    seed: int,
    replicates: int = 2000,
) -> pl.DataFrame:
    """B - A and B / A with paired-bootstrap 95% intervals, one row per metric.

    ``a`` and ``b`` are :func:`person_table` frames of the same people.
    """
    if a["person_id"].to_list() != b["person_id"].to_list():
        raise SandboxInputError(
            "the two runs do not hold the same people: a paired comparison needs the same scenario and seed"
        )
    unknown = [m for m in metrics if m not in PAIRED]
    if unknown:
        raise SandboxInputError(
            f"no paired interval for metric {unknown[0]!r} (paired metrics: {', '.join(PAIRED)})"
        )
    xa, xb = a.select(COLUMNS).to_numpy(), b.select(COLUMNS).to_numpy()
    n = len(xa)
    rng = Streams(seed).generator("compare.bootstrap", n, replicates)
    sums_a, sums_b = [], []
    for start in range(0, replicates, 200):  # counts of each person in each replicate, in chunks
        k = min(200, replicates - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        sums_a.append(counts @ xa)
        sums_b.append(counts @ xb)
    boot_a, boot_b = np.vstack(sums_a), np.vstack(sums_b)
    index = {c: i for i, c in enumerate(COLUMNS)}
    point_a = {c: xa[:, i].sum(keepdims=True) for c, i in index.items()}
    point_b = {c: xb[:, i].sum(keepdims=True) for c, i in index.items()}
    rep_a = {c: boot_a[:, i] for c, i in index.items()}
    rep_b = {c: boot_b[:, i] for c, i in index.items()}
    rows = []
    for name in metrics:
        m = PAIRED[name]
        va, vb = _values(point_a, m)[0], _values(point_b, m)[0]
        ra, rb = _values(rep_a, m), _values(rep_b, m)
        diff = rb - ra
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ra > 0, rb / np.where(ra > 0, ra, 1.0), np.nan)
        rows.append(
            {
                "metric": name,
                "a": float(va),
                "b": float(vb),
                "diff": float(vb - va),
                "diff_lo": _q(diff, 0.025),
                "diff_hi": _q(diff, 0.975),
                "ratio": float(vb / va) if va > 0 else float("nan"),
                "ratio_lo": _q(ratio, 0.025),
                "ratio_hi": _q(ratio, 0.975),
                "better": m.better,
                "method": f"paired bootstrap over {n:,} people, {replicates} replicates",
            }
        )
    return pl.DataFrame(rows)


def _q(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if len(x) else float("nan")


def verdict(row: dict, margin: float, kind: str = "relative") -> str:
    """A trial's verdict on B against A for one metric row of :func:`paired_differences`.

    ``kind="relative"``: the margin is a fraction of A (judged on the ratio B / A: non-inferior
    if the whole interval lies above 1 - margin when higher is better); ``"absolute"``: in the
    metric's units (judged on B - A). Superior: the interval excludes no difference on the
    better side. Inferior: the interval lies wholly beyond the margin on the worse side.
    """
    if row["better"] not in ("higher", "lower"):
        raise SandboxInputError(f"metric {row['metric']!r} has no better direction to judge")
    if kind == "relative":
        lo, hi, none = row["ratio_lo"], row["ratio_hi"], 1.0
    else:
        lo, hi, none = row["diff_lo"], row["diff_hi"], 0.0
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if row["better"] == "lower":  # mirror: smaller is better
        lo, hi, none = 2 * none - hi, 2 * none - lo, none
    if lo > none:
        return "superior"
    if lo > none - margin:
        return "non-inferior"
    if hi < none - margin:
        return "inferior"
    return "inconclusive"

"""Paired comparisons of policies on the same people, pooled over seeds, and verdicts as trials
state them.

Two runs of the same scenario and seed see the same people with the same disease courses
(common random numbers), so a difference between policies is estimated on pairs: each person
contributes to both arms. Within one seed the interval comes from a **paired bootstrap over
people**: people are resampled with replacement, the same draw for both runs, and each run's
metric, their difference (B - A) and their ratio (B / A) are recomputed on every replicate; the
interval is the 2.5th and 97.5th percentiles. What both runs share cancels, so that interval is
far narrower than the two runs' own intervals suggest. Resampling people (not screens) keeps a
person's screens together, the cluster bootstrap that generalises McNemar's paired interval to
metrics whose screens differ between arms.

Over several seeds (independent cohorts, the same two policies), the per-seed estimates are
**pooled** as a random-effects meta-analysis with equal weights (every seed has the same cohort
size): the pooled estimate is their mean, and its variance the larger of the between-seed
variance and the mean within-run (bootstrap) variance, divided by the number of seeds. When the
seeds disagree more than resampling people explains (between > within), the excess is run-level
variation estimated from the seeds alone, and the interval is t on seeds - 1 degrees of freedom
(Hartung-Knapp-Sidik-Jonkman with the Knapp-Hartung floor; IntHout et al. 2014, BMC Med Res
Methodol 14:25; Roever et al. 2015, Res Synth Methods 6:263); otherwise the within-run variance,
which the bootstrap estimates on thousands of people, carries a normal interval (the
random-effects model with no heterogeneity left). Which case applies is decided once per metric,
on B - A, so its difference and ratio intervals agree. Ratios are pooled on the log scale.
Run-level randomness the person bootstrap cannot see (which readers a site draws, for one) shows
up between seeds.

Every pairable metric (:data:`~sandbox.outcomes.metrics.PAIRABLE_KINDS`) is a ratio of per-person
sums (a count has no denominator), taken from :func:`~sandbox.outcomes.metrics.person_sums`,
so the point estimates are exactly the run's metrics at site, subgroup and round ``all``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from sandbox.errors import SandboxInputError
from sandbox.outcomes.metrics import KIND_SCALE, PAIRABLE_KINDS, Metric, metric_catalogue
from sandbox.rng import Streams, declare_streams

declare_streams({"compare.*": "paired bootstrap of a comparison (people resampled)"})

FEW_DISCORDANT = 10
"""Below this many discordant people (in the seed with fewest) an interval is flagged."""
VERDICTS = ("superior", "non-inferior", "inconclusive", "inferior")


def pairable(programme) -> dict[str, Metric]:
    """The metrics of ``programme``'s runs that have a paired interval, by name."""
    return {n: m for n, m in metric_catalogue(programme).items() if m.kind in PAIRABLE_KINDS}


def _values(sums: dict[str, np.ndarray], m: Metric) -> np.ndarray:
    num = sums[m.num] * KIND_SCALE.get(m.kind, 1.0)
    if not m.den:
        return num
    den = sums[m.den]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _q(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if len(x) else float("nan")


def _sd(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")


def paired_differences(
    a: pl.DataFrame,
    b: pl.DataFrame,
    metrics: Sequence[Metric],
    seed: int,
    replicates: int = 2000,
) -> pl.DataFrame:
    """B - A and B / A with paired-bootstrap 95% intervals, one row per metric.

    ``a`` and ``b`` are :func:`~sandbox.outcomes.metrics.person_sums` frames of the same people. Besides the interval,
    each row carries the bootstrap standard deviations of the difference and of the log ratio
    (``diff_se``, ``log_ratio_se``), which :func:`pool` combines over seeds, and the number of
    people whose share of the metric differs between the runs (``discordant``): the pairs that
    carry the difference. With few of them (below :data:`FEW_DISCORDANT`) the bootstrap
    interval is too narrow (with none it has no width), as McNemar's test has no power; more
    seeds or more people fix it.
    """
    if a["person_id"].to_list() != b["person_id"].to_list():
        raise SandboxInputError(
            "the two runs do not hold the same people: a paired comparison needs the same scenario and seed"
        )
    columns = sorted({c for m in metrics for c in (m.num, m.den) if c})
    missing = [c for c in columns if c not in a.columns or c not in b.columns]
    if missing:
        raise SandboxInputError(f"the runs' records have no per-person {missing[0]!r}")
    xa, xb = a.select(columns).to_numpy(), b.select(columns).to_numpy()
    n = len(xa)
    rng = Streams(seed).generator("compare.bootstrap", n, replicates)
    sums_a, sums_b = [], []
    for start in range(0, replicates, 200):  # counts of each person in each replicate, in chunks
        k = min(200, replicates - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        sums_a.append(counts @ xa)
        sums_b.append(counts @ xb)
    boot_a, boot_b = np.vstack(sums_a), np.vstack(sums_b)
    index = {c: i for i, c in enumerate(columns)}
    point_a = {c: xa[:, i].sum(keepdims=True) for c, i in index.items()}
    point_b = {c: xb[:, i].sum(keepdims=True) for c, i in index.items()}
    rep_a = {c: boot_a[:, i] for c, i in index.items()}
    rep_b = {c: boot_b[:, i] for c, i in index.items()}
    rows = []
    for m in metrics:
        own = [index[c] for c in (m.num, m.den) if c]
        discordant = int(np.any(xa[:, own] != xb[:, own], axis=1).sum())
        va, vb = _values(point_a, m)[0], _values(point_b, m)[0]
        ra, rb = _values(rep_a, m), _values(rep_b, m)
        diff = rb - ra
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (ra > 0) & (rb > 0)
            ratio = np.where(ra > 0, rb / np.where(ra > 0, ra, 1.0), np.nan)
            log_ratio = np.where(ok, np.log(np.where(ok, ratio, 1.0)), np.nan)
        rows.append(
            {
                "metric": m.name,
                "a": float(va),
                "b": float(vb),
                "diff": float(vb - va),
                "diff_lo": _q(diff, 0.025),
                "diff_hi": _q(diff, 0.975),
                "ratio": float(vb / va) if va > 0 else float("nan"),
                "ratio_lo": _q(ratio, 0.025),
                "ratio_hi": _q(ratio, 0.975),
                "diff_se": _sd(diff),
                "log_ratio_se": _sd(log_ratio),
                "better": m.better,
                "discordant": discordant,
                "seeds": 1,
                "method": f"paired bootstrap over {n:,} people, {replicates} replicates",
            }
        )
    return pl.DataFrame(rows)


def pool(per_seed: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Pool :func:`paired_differences` frames of several seeds (same metrics, same order).

    One seed is returned as it is (its interval is within-run only). Several: the mean over
    seeds with a t interval whose variance is max(between-seed, mean within-run) / seeds, the
    difference on its own scale and the ratio on the log scale. ``between_share`` says how much
    of that variance is between seeds (0: the runs agree as closely as resampling people says).
    """
    if len(per_seed) == 1:
        return per_seed[0].with_columns(between_share=pl.lit(float("nan")))
    s = len(per_seed)
    rows = []
    for rs in zip(*(f.iter_rows(named=True) for f in per_seed), strict=True):
        name = rs[0]["metric"]
        if any(r["metric"] != name for r in rs):
            raise SandboxInputError("pooled comparisons need the same metrics for every seed")
        d, d_w, d_b = _pool_one(np.array([r["diff"] for r in rs]), [r["diff_se"] for r in rs])
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.array([r["ratio"] for r in rs]))
        lr, lr_w, lr_b = _pool_one(logs, [r["log_ratio_se"] for r in rs])
        # one decision per metric (from B - A), so the two intervals tell the same story
        between_larger = d_b > d_w
        d_se, d_k = _spread(d_w, d_b, s, between_larger)
        lr_se, lr_k = _spread(lr_w, lr_b, s, between_larger)
        finite = np.isfinite(lr) and np.isfinite(lr_se)
        rows.append(
            {
                "metric": name,
                "a": float(np.mean([r["a"] for r in rs])),
                "b": float(np.mean([r["b"] for r in rs])),
                "diff": d,
                "diff_lo": d - d_k * d_se,
                "diff_hi": d + d_k * d_se,
                "ratio": math.exp(lr) if np.isfinite(lr) else float("nan"),
                "ratio_lo": math.exp(lr - lr_k * lr_se) if finite else float("nan"),
                "ratio_hi": math.exp(lr + lr_k * lr_se) if finite else float("nan"),
                "diff_se": d_se,
                "log_ratio_se": lr_se,
                "better": rs[0]["better"],
                "discordant": int(min(r["discordant"] for r in rs)),
                "seeds": s,
                "method": f"{s} seeds pooled (random effects) over paired bootstraps",
                "between_share": d_b / (d_b + d_w) if d_b + d_w > 0 else 0.0,
            }
        )
    return pl.DataFrame(rows)


def multiplier(seeds: int, between_larger: bool) -> float:
    """The 97.5% quantile a pooled interval uses: t on seeds - 1 df where run-level variation
    (estimated from the seeds) dominates, normal where the within-run variance does."""
    if seeds > 1 and between_larger:
        return float(stats.t.ppf(0.975, seeds - 1))
    return float(stats.norm.ppf(0.975))


def _spread(within: float, between: float, seeds: int, between_larger: bool) -> tuple[float, float]:
    """(standard error of the pooled mean, interval multiplier)."""
    if not (np.isfinite(within) and np.isfinite(between)):
        return float("nan"), float("nan")
    var = max(between, within) if between_larger else within
    return math.sqrt(var / seeds), multiplier(seeds, between_larger)


def _pool_one(y: np.ndarray, se: Sequence[float]) -> tuple[float, float, float]:
    """(mean, mean within-run variance, between-seed variance) of per-seed estimates ``y``."""
    if not np.all(np.isfinite(y)):
        return float("nan"), float("nan"), float("nan")
    v = np.array(se, dtype=float) ** 2
    within = float(np.nanmean(v)) if np.any(np.isfinite(v)) else 0.0
    return float(y.mean()), within, float(np.var(y, ddof=1))


def verdict(row: dict, margin: float, kind: str = "relative") -> str:
    """A trial's verdict on B against A for one metric row of :func:`paired_differences`.

    ``kind="relative"``: the margin is a fraction of A (judged on the ratio B / A: non-inferior
    if the whole interval lies above 1 - margin when higher is better); ``"absolute"``: in the
    metric's units (judged on B - A). Superior: the interval excludes no difference on the
    better side. Inferior: the interval lies wholly beyond the margin on the worse side.
    """
    if row["better"] not in ("higher", "lower"):
        raise SandboxInputError(f"metric {row['metric']!r} has no better direction to judge")
    lo, hi, none = _bounds(row, kind)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if lo > none:
        return "superior"
    if lo > none - margin:
        return "non-inferior"
    if hi < none - margin:
        return "inferior"
    return "inconclusive"


def _bounds(row: dict, kind: str) -> tuple[float, float, float]:
    """(lo, hi, no-difference) on the judged scale, mirrored so that higher is better."""
    if kind == "relative":
        lo, hi, none = row["ratio_lo"], row["ratio_hi"], 1.0
    else:
        lo, hi, none = row["diff_lo"], row["diff_hi"], 0.0
    if row["better"] == "lower":
        lo, hi = 2 * none - hi, 2 * none - lo
    return lo, hi, none


def seeds_to_settle(row: dict, margin: float, kind: str = "relative", limit: int = 400) -> str:
    """What more seeds would do to the verdict, if each seed varied as these did.

    Keeps the pooled estimate and the per-seed variance, shrinks the interval as more seeds
    would (variance / seeds, the multiplier :func:`pool` would use), and names the smallest number of seeds that
    would change the verdict, or says that the verdict is where more seeds leave it.
    """
    s = int(row["seeds"])
    now = verdict(row, margin, kind)
    se = row["log_ratio_se"] if kind == "relative" else row["diff_se"]
    est = math.log(row["ratio"]) if kind == "relative" else row["diff"]
    if not (np.isfinite(se) and np.isfinite(est)) or se <= 0:
        return "the interval has no width: more seeds would not change the verdict"
    per_seed = se * math.sqrt(s)
    between_larger = s > 1 and row["between_share"] > 0.5
    for more in range(s + 1, limit + 1):
        half = multiplier(more, between_larger) * per_seed / math.sqrt(more)
        if kind == "relative":
            new = {**row, "ratio_lo": math.exp(est - half), "ratio_hi": math.exp(est + half)}
        else:
            new = {**row, "diff_lo": est - half, "diff_hi": est + half}
        then = verdict(new, margin, kind)
        if then != now:
            return f"about {more} seeds would make it {then.upper()}, if the estimate holds"
    return f"more seeds (up to {limit}) would not change the verdict at this estimate"

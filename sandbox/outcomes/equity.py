"""Equity gaps: each subgroup's metric against a reference group of the same dimension, as a
difference and a ratio with 95% intervals.

Subgroups of one dimension (sex, race, age band, site) hold different people, so a gap is a
difference of two independent estimates. Its interval is built from the two groups' own
intervals by the method of variance estimates recovery (MOVER; Zou & Donner 2008, Stat Med
27:1693; for two Wilson intervals it is Newcombe's hybrid score interval, Stat Med 1998
17:873): for d = a - r, L = d - sqrt((a - l_a)^2 + (u_r - r)^2) and U = d + sqrt((u_a - a)^2 +
(r - l_r)^2); the ratio a / r applies the same on the log scale. Only rates and proportions
are compared (a count depends on the group's size). A gap is flagged where the interval of the
difference excludes zero.

:func:`gaps` reads a run's metrics table (any rate, any reference: the dashboard's Equity
page). :func:`run_disparities` writes a run's ``equity.parquet``: the rates a classifier's
fairness is judged on (:data:`DISPARITY_METRICS`), per group of every subgroup dimension and of
the sites, their gaps, and each dimension's spread with Fairlearn's summaries; group intervals
there are the wider of Wilson's and a bootstrap over people (a person's screens are correlated),
and spreads take the bootstrap's percentiles. :func:`disparity_changes` says how a second policy
changes them on the same people (a paired bootstrap). docs/equity.md has the account.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl

from sandbox.errors import SandboxInputError
from sandbox.outcomes.intervals import garwood, wilson
from sandbox.outcomes.metrics import KIND_SCALE, Metric
from sandbox.outcomes.paired import _q, _sd
from sandbox.rng import Streams, declare_streams

declare_streams({"equity.*": "bootstrap of a run's disparities (people resampled)"})

RATE_KINDS = ("proportion", "per_1000", "per_100k_py")


def mover_difference(a, la, ua, r, lr, ur):
    """(difference, low, high) of a - r from each estimate's own 95% interval."""
    a, la, ua, r, lr, ur = (np.asarray(x, dtype=float) for x in (a, la, ua, r, lr, ur))
    d = a - r
    return d, d - np.sqrt((a - la) ** 2 + (ur - r) ** 2), d + np.sqrt((ua - a) ** 2 + (r - lr) ** 2)


def mover_ratio(a, la, ua, r, lr, ur):
    """(ratio, low, high) of a / r: :func:`mover_difference` on the log scale (NaN at zeros)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = [np.log(np.asarray(x, dtype=float)) for x in (a, la, ua, r, lr, ur)]
        d, lo, hi = mover_difference(*logs)
    ok = np.isfinite(d) & np.isfinite(lo) & np.isfinite(hi)
    return (
        np.where(ok, np.exp(d), np.nan),
        np.where(ok, np.exp(lo), np.nan),
        np.where(ok, np.exp(hi), np.nan),
    )


def gaps(
    metrics: pl.DataFrame,
    dimension: str,
    reference: str,
    names: list[str],
    site: str = "all",
    rnd: str = "all",
) -> pl.DataFrame:
    """One row per (metric, subgroup of ``dimension``): value with its interval, and the gap to
    ``reference`` (e.g. ``race=white``) as difference and ratio with MOVER intervals;
    ``flagged`` where the difference's interval excludes 0."""
    cells = metrics.filter(
        (pl.col("site") == site)
        & (pl.col("round") == rnd)
        & pl.col("subgroup").str.starts_with(f"{dimension}=")
        & pl.col("metric").is_in(names)
    ).select("metric", "subgroup", "value", "lo", "hi", "n")
    ref = cells.filter(pl.col("subgroup") == reference).select(
        "metric", pl.col("value").alias("r"), pl.col("lo").alias("lr"), pl.col("hi").alias("ur")
    )
    t = cells.join(ref, on="metric", how="inner")
    args = [t[c].to_numpy() for c in ("value", "lo", "hi", "r", "lr", "ur")]
    d, dl, dh = mover_difference(*args)
    q, ql, qh = mover_ratio(*args)
    out = t.select("metric", "subgroup", "value", "lo", "hi", "n").with_columns(
        pl.Series("diff", d),
        pl.Series("diff_lo", dl),
        pl.Series("diff_hi", dh),
        pl.Series("ratio", q),
        pl.Series("ratio_lo", ql),
        pl.Series("ratio_hi", qh),
    )
    out = out.with_columns(
        flagged=(pl.col("subgroup") != reference)
        & ((pl.col("diff_lo") > 0) | (pl.col("diff_hi") < 0))
    )
    order = {n: i for i, n in enumerate(names)}
    return out.sort(pl.col("metric").replace_strict(order, return_dtype=pl.Int64), "subgroup")


# ---------------------------------------------------------------- disparities (run folder)
DISPARITY_METRICS = ("screen_sensitivity", "false_positive_rate", "positive_rate", "recall_rate")
"""What a run's disparity table compares between groups: the true-positive rate (sensitivity
as screening trials report it), the false-positive rate, the positive (selection) rate and
the recall rate."""
AI_DISPARITY_METRICS = ("ai_sensitivity", "ai_positive_rate")
"""... and, where an AI device scored the screens, the device's own sensitivity (AI-positive
among screens showing a cancer) and positive rate."""
SUMMARIES = {
    "demographic_parity": ("positive_rate",),
    "equalized_odds": ("screen_sensitivity", "false_positive_rate"),
}
"""Fairlearn's summaries of a dimension (max - min over its groups, and min / max): demographic
parity on the positive rate; equalised odds, the larger difference (smaller ratio) of the
true- and false-positive rates."""
EQUITY_SCHEMA = {
    "scenario": pl.Utf8,
    "policy": pl.Utf8,
    "seed": pl.Int64,
    "dimension": pl.Utf8,
    "group": pl.Utf8,
    "reference": pl.Utf8,
    "metric": pl.Utf8,
    "value": pl.Float64,
    "lo": pl.Float64,
    "hi": pl.Float64,
    "n": pl.Int64,
    "diff": pl.Float64,
    "diff_lo": pl.Float64,
    "diff_hi": pl.Float64,
    "ratio": pl.Float64,
    "ratio_lo": pl.Float64,
    "ratio_hi": pl.Float64,
    "flagged": pl.Boolean,
}
SPREAD = "max-min"
"""The ``group`` of a row summarising a whole dimension (difference max - min, ratio min / max)."""
REPLICATES = 1000


def disparity_metrics(*events: pl.DataFrame) -> tuple[str, ...]:
    """The rates a disparity table compares for runs with these event logs: the device's own
    where every run's screens were scored by an AI."""
    scored = all(
        "ai_score" in e.columns and bool(e["ai_score"].is_not_null().any()) for e in events
    )
    return DISPARITY_METRICS + (AI_DISPARITY_METRICS if scored else ())


def labels(people: pl.DataFrame, dimensions: Sequence[str], site_names: Sequence[str]) -> dict:
    """Each person's group in each dimension (``site`` by name), in ``people``'s order; a
    dimension whose people all share one group (one site's people by site) is left out."""
    out = {}
    for dim in dimensions:
        if dim == "site":
            lab = np.asarray(site_names, dtype=object)[people["site"].to_numpy()]
        else:
            lab = people[dim].cast(pl.Utf8).to_numpy().astype(object)
        if len(set(lab.tolist())) > 1:
            out[dim] = lab
    return out


class Design:
    """Per-person sums split by group, for every dimension side by side: summing its rows over
    people (or over a bootstrap replicate's counts) gives every group's numerator and
    denominator of every metric at once."""

    def __init__(
        self, sums: pl.DataFrame, groups: dict[str, np.ndarray], metrics: Sequence[Metric]
    ):
        self.metrics = list(metrics)
        self.columns = sorted({c for m in self.metrics for c in (m.num, m.den) if c})
        missing = [c for c in self.columns if c not in sums.columns]
        if missing:
            raise SandboxInputError(f"the run's records have no per-person {missing[0]!r}")
        self.groups: dict[str, list[str]] = {}
        self.offsets: dict[str, int] = {}
        x = sums.select(self.columns).to_numpy()
        blocks, at = [], 0
        for dim, lab in groups.items():
            names = sorted({str(v) for v in lab if v is not None})
            code = np.array([names.index(str(v)) if v is not None else -1 for v in lab])
            onehot = (code[:, None] == np.arange(len(names))[None, :]).astype(np.float64)
            blocks.append((x[:, :, None] * onehot[:, None, :]).reshape(len(x), -1))
            self.groups[dim], self.offsets[dim] = names, at
            at += len(self.columns) * len(names)
        self.x = np.hstack(blocks) if blocks else np.zeros((len(x), 0))

    def counts(self, totals: np.ndarray, dim: str, m: Metric) -> tuple[np.ndarray, np.ndarray]:
        """(numerator, denominator) of metric ``m`` per group of ``dim``: arrays (..., groups);
        the denominator is 1 for a count."""
        g, at = len(self.groups[dim]), self.offsets[dim]

        def part(column: str) -> np.ndarray:
            j = at + self.columns.index(column) * g
            return totals[..., j : j + g]

        num = part(m.num)
        return num, (part(m.den) if m.den else np.ones_like(num))

    def rates(self, totals: np.ndarray, dim: str, m: Metric) -> tuple[np.ndarray, np.ndarray]:
        """(value, denominator) of metric ``m`` per group of ``dim`` (NaN where it is 0)."""
        num, den = self.counts(totals, dim, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = num * KIND_SCALE.get(m.kind, 1.0) / np.where(den > 0, den, 1.0)
        return np.where(den > 0, value, np.nan), den


def bootstrap_totals(xs: Sequence[np.ndarray], seed: int, replicates: int) -> list[np.ndarray]:
    """Column sums of each of ``xs`` (same people, same rows) on ``replicates`` resamples of the
    people, the same resamples for every one of them: arrays (replicates, columns)."""
    n = len(xs[0])
    rng = Streams(seed).generator("equity.bootstrap", n, replicates)
    out: list[list[np.ndarray]] = [[] for _ in xs]
    for start in range(0, replicates, 200):
        k = min(200, replicates - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        for acc, x in zip(out, xs, strict=True):
            acc.append(counts @ x)
    return [np.vstack(a) if a else np.zeros((0, x.shape[1])) for a, x in zip(out, xs, strict=True)]


def _pct(x: np.ndarray) -> tuple[float, float]:
    return _q(x, 0.025), _q(x, 0.975)


def _spread(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max - min, min / max) over the last axis, ignoring groups without a value."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate with no group valued
        hi, lo = np.nanmax(r, axis=-1), np.nanmin(r, axis=-1)
        return hi - lo, np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), np.nan)


def measures(design: Design, totals: np.ndarray, references: dict[str, str]) -> dict:
    """Every statistic of the disparity table on ``totals`` (one vector, or replicates as rows):
    {(dimension, group, metric): (value, diff, ratio, n)}; ``group`` :data:`SPREAD` for the
    dimension's summaries (value None)."""
    out = {}
    for dim, names in design.groups.items():
        ref = names.index(references[dim])
        spread = {}
        for m in design.metrics:
            r, den = design.rates(totals, dim, m)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(r[..., [ref]] > 0, r / r[..., [ref]], np.nan)
            for i, g in enumerate(names):
                out[dim, g, m.name] = (
                    r[..., i],
                    r[..., i] - r[..., ref],
                    ratio[..., i],
                    den[..., i],
                )
            spread[m.name] = _spread(r)
            out[dim, SPREAD, m.name] = (None, *spread[m.name], None)
        for name, parts in SUMMARIES.items():
            if all(p in spread for p in parts):
                d = np.max([spread[p][0] for p in parts], axis=0)
                q = np.min([spread[p][1] for p in parts], axis=0)
                out[dim, SPREAD, name] = (None, d, q, None)
    return out


def largest_groups(groups: dict[str, np.ndarray]) -> dict[str, str]:
    """Each dimension's default reference: its largest group (most people; ties to the first
    by name)."""
    out = {}
    for dim, lab in groups.items():
        names, counts = np.unique(np.asarray(lab, dtype=str), return_counts=True)
        out[dim] = str(names[int(np.argmax(counts))])
    return out


def disparity_table(
    sums: pl.DataFrame,
    groups: dict[str, np.ndarray],
    metrics: Sequence[Metric],
    seed: int,
    replicates: int = REPLICATES,
    references: dict[str, str] | None = None,
) -> pl.DataFrame:
    """A run's disparities (:data:`EQUITY_SCHEMA` less scenario, policy and seed).

    For each dimension and metric: every group's value, and its difference and ratio to the
    reference group; then the dimension's spread (max - min, min / max) per metric and
    Fairlearn's summaries (:data:`SUMMARIES`). Intervals are percentiles of a bootstrap over
    people (a person's screens stay together; every statistic on the same replicates).
    ``flagged``: a group whose difference to the reference has an interval excluding zero. A
    spread is never flagged: max - min over noisy groups is above zero even when the groups do
    not differ (it is biased upwards, most where groups are small).
    """
    design = Design(sums, groups, metrics)
    refs = _references(design, {**largest_groups(groups), **(references or {})})
    totals = design.x.sum(axis=0)
    point = measures(design, totals, refs)
    (boot,) = bootstrap_totals([design.x], seed, replicates)
    reps = measures(design, boot, refs)
    # each group's interval: the wider of its own (Wilson, or Garwood for a rate) and the
    # bootstrap's, which sees a person's screens together but collapses at 0 or 1
    own = {}
    for dim in design.groups:
        for m in design.metrics:
            num, den = design.counts(totals, dim, m)
            if m.kind == "proportion":
                _, lo, hi = wilson(num, den)
            else:
                _, lo, hi = garwood(num, den, KIND_SCALE.get(m.kind, 1.0))
            for i, g in enumerate(design.groups[dim]):
                bl, bh = _pct(reps[dim, g, m.name][0])
                own[dim, g, m.name] = (np.fmin(lo[i], bl), np.fmax(hi[i], bh))
    rows = []
    for key, (value, diff, ratio, den) in point.items():
        dim, group, metric = key
        summary = group == SPREAD
        if summary:  # percentiles of the bootstrap, stretched to hold the estimate
            lo = hi = None
            dl, dh = _pct(reps[key][1])
            ql, qh = _pct(reps[key][2])
            # max - min is biased upwards: where the groups hardly differ, every replicate's
            # spread can exceed the estimate's, and the interval would not hold it
            dl, qh = min(dl, float(diff)), max(qh, float(ratio))
        else:  # MOVER from the group's and the reference's intervals (disjoint people)
            ref = refs[dim]
            lo, hi = own[key]
            args = (value, lo, hi, point[dim, ref, metric][0], *own[dim, ref, metric])
            _, dl, dh = mover_difference(*args)
            _, ql, qh = mover_ratio(*args)
            if group == ref:
                dl = dh = 0.0
                ql = qh = 1.0
        rows.append(
            {
                "dimension": dim,
                "group": group,
                "reference": "" if summary else refs[dim],
                "metric": metric,
                "value": None if value is None else float(value),
                "lo": None if lo is None else float(lo),
                "hi": None if hi is None else float(hi),
                "n": None if den is None else int(den),
                "diff": float(diff),
                "diff_lo": float(dl),
                "diff_hi": float(dh),
                "ratio": float(ratio),
                "ratio_lo": float(ql),
                "ratio_hi": float(qh),
                "flagged": (not summary) and group != refs[dim] and bool((dl > 0) or (dh < 0)),
            }
        )
    schema = {k: v for k, v in EQUITY_SCHEMA.items() if k not in ("scenario", "policy", "seed")}
    return pl.DataFrame(rows, schema=schema)


def run_disparities(
    events: pl.DataFrame,
    people: pl.DataFrame,
    programme,
    site_names: Sequence[str],
    scenario: str,
    policy: str,
    seed: int,
    replicates: int = REPLICATES,
    references: dict[str, str] | None = None,
) -> pl.DataFrame:
    """A run's ``equity.parquet`` (:data:`EQUITY_SCHEMA`): :func:`disparity_table` over the
    programme's subgroups and the sites, bootstrapped on the run's own seed."""
    from sandbox.outcomes.metrics import metric_catalogue, person_sums

    catalogue = metric_catalogue(programme)
    metrics = [catalogue[m] for m in disparity_metrics(events) if m in catalogue]
    people = people.sort("person_id")
    sums = person_sums(events, people, programme)
    groups = labels(people, (*programme.subgroups, "site"), site_names)
    table = disparity_table(sums, groups, metrics, seed, replicates, references)
    return table.with_columns(
        pl.lit(scenario).alias("scenario"),
        pl.lit(policy).alias("policy"),
        pl.lit(seed, dtype=pl.Int64).alias("seed"),
    ).select(list(EQUITY_SCHEMA))


def _references(design: Design, refs: dict[str, str]) -> dict[str, str]:
    """``refs``, checked against the design's dimensions and groups."""
    for dim, ref in refs.items():
        if dim not in design.groups:
            raise SandboxInputError(
                f"reference {dim}={ref}: no dimension {dim!r} ({', '.join(design.groups)})"
            )
        if ref not in design.groups[dim]:
            raise SandboxInputError(
                f"reference {dim}={ref}: no such group ({', '.join(design.groups[dim])})"
            )
    return refs


def disparity_changes(
    sums_a: pl.DataFrame,
    sums_b: pl.DataFrame,
    groups: dict[str, np.ndarray],
    metrics: Sequence[Metric],
    seed: int,
    replicates: int = 2000,
    references: dict[str, str] | None = None,
) -> pl.DataFrame:
    """How policy B changes the disparities of policy A on the same people: one row per
    dimension summary (``race: equalized_odds``; lower is better) and per gap to the reference
    (``race=black vs white: screen_sensitivity``), in the columns of
    :func:`sandbox.outcomes.paired.paired_differences` so that :func:`~sandbox.outcomes.paired.pool`
    pools seeds. ``a`` and ``b`` are the disparity in each arm, ``diff`` B - A with a paired
    bootstrap interval (people resampled, the same draws for both arms); ``ratio`` B / A for the
    summaries (a gap may change sign: no ratio)."""
    if sums_a["person_id"].to_list() != sums_b["person_id"].to_list():
        raise SandboxInputError(
            "the two runs do not hold the same people: a paired comparison needs the same scenario and seed"
        )
    da, db = Design(sums_a, groups, metrics), Design(sums_b, groups, metrics)
    refs = _references(da, {**largest_groups(groups), **(references or {})})
    pa, pb = measures(da, da.x.sum(axis=0), refs), measures(db, db.x.sum(axis=0), refs)
    ba, bb = bootstrap_totals([da.x, db.x], seed, replicates)
    ra, rb = measures(da, ba, refs), measures(db, bb, refs)
    xa, xb = sums_a.select(da.columns).to_numpy(), sums_b.select(da.columns).to_numpy()
    n = len(xa)
    rows = []
    for key in pa:
        dim, group, metric = key
        if group == refs[dim]:
            continue
        summary = group == SPREAD
        a, b = float(pa[key][1]), float(pb[key][1])
        diff = rb[key][1] - ra[key][1]
        own = [
            da.columns.index(c)
            for m in da.metrics
            if m.name in (SUMMARIES.get(metric) or (metric,))
            for c in (m.num, m.den)
            if c
        ]
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (ra[key][1] > 0) & (rb[key][1] > 0)
            log_ratio = np.where(ok, np.log(np.where(ok, rb[key][1] / ra[key][1], 1.0)), np.nan)
        ratio = b / a if summary and a > 0 and b > 0 else float("nan")
        rows.append(
            {
                "metric": f"{dim}: {metric}"
                if summary
                else f"{dim}={group} vs {refs[dim]}: {metric}",
                "a": a,
                "b": b,
                "diff": b - a,
                "diff_lo": _pct(diff)[0],
                "diff_hi": _pct(diff)[1],
                "ratio": ratio,
                "ratio_lo": float(np.exp(_pct(log_ratio)[0])) if summary else float("nan"),
                "ratio_hi": float(np.exp(_pct(log_ratio)[1])) if summary else float("nan"),
                "diff_se": _sd(diff),
                "log_ratio_se": _sd(log_ratio) if summary else float("nan"),
                "better": "lower" if summary else "",
                "discordant": int(np.any(xa[:, own] != xb[:, own], axis=1).sum()),
                "seeds": 1,
                "method": f"paired bootstrap over {n:,} people, {replicates} replicates",
            }
        )
    return pl.DataFrame(rows)

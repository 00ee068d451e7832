"""Comparisons of two arms (policies, devices, operating points) as a trial reports them.

An arm is one configuration run at one or more seeds; two arms of the same scenario are paired
seed by seed (the same people under both), compared with :mod:`sandbox.outcomes.paired`, pooled
over seeds, and judged on a primary metric with a non-inferiority margin. The spec comes from
``sandbox compare`` flags or a small YAML file (:func:`load_spec`); docs/metrics.md defines the
method, docs/run-folder.md the files it reads.
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sandbox.compose import read_yaml_text
from sandbox.config import SCENARIO_KEYS, run_config
from sandbox.errors import SandboxInputError
from sandbox.outcomes.metrics import person_sums
from sandbox.outcomes.paired import (
    pairable,
    paired_differences,
    pool,
    seeds_to_settle,
    verdict,
)
from sandbox.outcomes.text import fmt
from sandbox.programmes import Programme, programme_for
from sandbox.runfolder import read_run, temporary_name
from sandbox.typed import build


@dataclass(frozen=True)
class Primary:
    metric: str
    margin: float = field(default=0.1, metadata={"gt": 0})
    margin_kind: str = field(default="relative", metadata={"choices": ("relative", "absolute")})

    def check(self, path: str) -> None:
        if self.margin_kind == "relative" and self.margin >= 1:
            raise SandboxInputError(
                f"config key '{path}.margin': {self.margin!r} must be below 1 (a fraction of A)"
            )


@dataclass(frozen=True)
class ComparisonSpec:
    """What to compare and how to judge it (the YAML keys of ``sandbox compare --spec``)."""

    baseline: tuple[str, ...]  # run folders (or glob patterns) of arm A
    candidate: tuple[str, ...]  # run folders (or glob patterns) of arm B
    primary: Primary | None = None
    secondary: tuple[str, ...] = ()
    replicates: int = field(default=2000, metadata={"ge": 100, "le": 100_000})
    plot: str = ""  # forest plot file (.svg or .png); empty: none


def load_spec(path: str | Path) -> ComparisonSpec:
    """Read and validate a comparison YAML; relative folders and the plot are relative to it."""
    path = Path(path)
    if not path.is_file():
        raise SandboxInputError(f"{path}: no such comparison file")
    text = read_yaml_text(path)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise SandboxInputError(f"{path}: unreadable YAML ({type(e).__name__})") from e
    if isinstance(data, dict):
        for key in ("baseline", "candidate", "secondary"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
    try:
        spec = build(ComparisonSpec, data, "")
    except SandboxInputError as e:
        raise SandboxInputError(f"{path}: {e}") from e
    here = path.parent

    def rel(p: str) -> str:
        return p if os.path.isabs(p) else str(here / p)

    return ComparisonSpec(
        baseline=tuple(rel(p) for p in spec.baseline),
        candidate=tuple(rel(p) for p in spec.candidate),
        primary=spec.primary,
        secondary=spec.secondary,
        replicates=spec.replicates,
        plot=rel(spec.plot) if spec.plot else "",
    )


def expand(patterns: Sequence[str], what: str) -> list[str]:
    """Run folders named by ``patterns`` (folders, sweep folders or glob patterns), in order,
    no repeats; a sweep folder stands for its finished runs."""
    out: list[str] = []
    for p in patterns:
        hits = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not hits:
            raise SandboxInputError(f"{what}: {p!r} matches no run folder")
        for h in hits:
            runs = sweep_runs(Path(h))
            out += [r for r in (runs if runs is not None else [h]) if r not in out]
    if not out:
        raise SandboxInputError(f"{what}: no run folders")
    return out


def sweep_runs(folder: Path) -> list[str] | None:
    """The finished run folders of a sweep folder (None if ``folder`` is not a sweep)."""
    if not (folder / "sweep.yaml").is_file() or not (folder / "runs").is_dir():
        return None
    runs = sorted(p for p in (folder / "runs").iterdir() if (p / "manifest.json").is_file())
    if not runs:
        raise SandboxInputError(f"{folder}: a sweep with no finished run")
    return [str(p) for p in runs]


# ---------------------------------------------------------------- arms
@dataclass
class Arm:
    """One configuration at one or more seeds (runs in seed order)."""

    label: str
    runs: list[dict[str, Any]]

    @property
    def seeds(self) -> list[int]:
        return [_seed(r) for r in self.runs]

    @property
    def scenario(self) -> str:
        return json.dumps(scenario_of(self.runs[0]), sort_keys=True, default=str)


def scenario_of(run: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run's config that make its people and their disease: the same for two
    runs means the same people at the same seed."""
    cfg = {"reader_profiles": {}, **run["config"]}  # a run folder from before that key: none
    return {k: cfg.get(k) for k in (*SCENARIO_KEYS, "scenario_name") if k != "description"}


def _arm_key(run: dict[str, Any]) -> str:
    cfg = {k: v for k, v in run["config"].items() if k not in ("seed", "runtime")}
    return json.dumps(cfg, sort_keys=True, default=str)


def _label(run: dict[str, Any]) -> str:
    return str(run["manifest"].get("policy", "?"))


def group_arms(runs: Sequence[dict[str, Any]]) -> list[Arm]:
    """Runs grouped by configuration (everything but the seed and runtime), in order of first
    appearance; a repeated configuration and seed (a copy, or the same run again) starts another
    arm. Labels are policy names; where two arms share one, with the sweep's other axes
    (``agent=...``), else the first folder's name."""
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for r in runs:
        key, seed = _arm_key(r), _seed(r)
        home = next((g for k, g in groups if k == key and seed not in map(_seed, g)), None)
        if home is None:
            groups.append((key, [r]))
        else:
            home.append(r)
    arms = [Arm(_label(g[0]), sorted(g, key=_seed)) for _, g in groups]
    labels = [a.label for a in arms]
    for a in arms:
        if labels.count(a.label) > 1:
            a.label = f"{a.label} {_axes(a.runs[0])}".rstrip()
    labels = [a.label for a in arms]
    for a in arms:
        if labels.count(a.label) > 1:
            a.label = f"{a.label} [{a.runs[0]['folder'].name}]"
    return arms


def _axes(run: dict[str, Any]) -> str:
    """A sweep run's axes other than the policy and the seed (``monitoring=aimcu_fallback``)."""
    axes = run["manifest"].get("axes") or {}
    if not isinstance(axes, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in axes.items() if k not in ("seed", "policy"))


def _seed(run: dict[str, Any]) -> int:
    seed = run["manifest"].get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SandboxInputError(f"{run['folder']}/manifest.json: seed {seed!r} is not an integer")
    return seed


def one_arm(runs: Sequence[dict[str, Any]], what: str) -> Arm:
    arms = group_arms(runs)
    if len(arms) != 1:
        raise SandboxInputError(
            f"{what}: its run folders hold {len(arms)} different configurations "
            f"({', '.join(a.label for a in arms)}); an arm is one configuration, each seed once"
        )
    return arms[0]


def programme_of(run: dict[str, Any]) -> Programme:
    """The programme a run folder was simulated with, rebuilt from its config.yaml."""
    cfg = dict(run["config"])
    try:
        return programme_for(run_config(cfg, str(cfg.pop("scenario_name", "?"))).scenario)
    except SandboxInputError as e:
        raise SandboxInputError(f"{run['folder']}/config.yaml: {e}") from e


def run_tables(run: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, people) of a run folder; one line if either is missing or unreadable."""
    folder = run["folder"]
    if not (folder / "events.parquet").is_file() or not (folder / "people.parquet").is_file():
        raise SandboxInputError(
            f"{folder}: no events.parquet/people.parquet (a run with runtime.write_events=false "
            "keeps no event log)"
        )
    try:
        return pl.read_parquet(folder / "events.parquet"), pl.read_parquet(
            folder / "people.parquet"
        )
    except (OSError, pl.exceptions.PolarsError) as e:
        raise SandboxInputError(
            f"{folder}: unreadable events or people ({type(e).__name__})"
        ) from e


def _person_table(
    run: dict[str, Any], programme: Programme, site: str = "all", subgroup: str = "all"
) -> pl.DataFrame:
    events, people = run_tables(run)
    return person_sums(events, _restricted(people, run, site, subgroup, programme), programme)


def paired_seeds(a: Arm, b: Arm) -> tuple[list[int], list[int]]:
    """(seeds both arms ran, seeds only one ran); one line if they share none or simulate
    different people."""
    check_same_scenario(a, b)
    common = [s for s in a.seeds if s in b.seeds]
    if not common:
        raise SandboxInputError(
            f"{a.label} (seeds {_list(a.seeds)}) and {b.label} (seeds {_list(b.seeds)}) "
            "share no seed: a paired comparison needs both policies run at the same seeds"
        )
    return common, sorted(set(a.seeds) ^ set(b.seeds))


def _restricted(
    people: pl.DataFrame, run: dict[str, Any], site: str, subgroup: str, programme: Programme
) -> pl.DataFrame:
    """The people of one site and one subgroup (``sex=F``, ``race=black``, ``age_band=65-69``)."""
    if site != "all":
        names = [str((s or {}).get("name")) for s in run["config"].get("sites") or []]
        if site not in names:
            raise SandboxInputError(
                f"site {site!r}: not a site of {run['folder']} ({', '.join(names)})"
            )
        people = people.filter(pl.col("site") == names.index(site))
    if subgroup != "all":
        column, _, value = subgroup.partition("=")
        if column not in programme.subgroups or not value:
            raise SandboxInputError(
                f"subgroup {subgroup!r}: give one of {', '.join(programme.subgroups)} as "
                "column=value, e.g. sex=F"
            )
        people = people.filter(pl.col(column).cast(pl.String) == value)
    return people


@dataclass
class Comparison:
    """B against A, paired seed by seed and pooled: one row per metric (:func:`pool`)."""

    a: Arm
    b: Arm
    table: pl.DataFrame
    seeds: list[int]
    unpaired: list[int]


def check_same_scenario(a: Arm, b: Arm) -> None:
    """Refuse, in one line, to pair arms that simulate different people."""
    if a.scenario != b.scenario:
        raise SandboxInputError(
            f"{a.label} and {b.label} simulate different scenarios: a paired comparison needs the "
            "same scenario (the same people), with only the policy or device changed"
        )


def compare_arms(
    a: Arm,
    b: Arm,
    metrics: Sequence[str],
    replicates: int = 2000,
    site: str = "all",
    subgroup: str = "all",
) -> Comparison:
    """Paired differences of ``b`` against ``a`` for ``metrics`` (names), pooled over the seeds
    both arms ran; restricted to the people of one ``site`` and one ``subgroup`` if given."""
    common, unpaired = paired_seeds(a, b)
    programme = programme_of(a.runs[0])
    known = pairable(programme)
    bad = [m for m in metrics if m not in known]
    if bad:
        raise SandboxInputError(
            f"no paired interval for metric {bad[0]!r} (paired metrics: {', '.join(known)})"
        )
    chosen = [known[m] for m in metrics]
    by_seed_a = dict(zip(a.seeds, a.runs, strict=True))
    by_seed_b = dict(zip(b.seeds, b.runs, strict=True))
    per_seed = [
        paired_differences(
            _person_table(by_seed_a[s], programme, site, subgroup),
            _person_table(by_seed_b[s], programme, site, subgroup),
            chosen,
            s,
            replicates,
        )
        for s in common
    ]
    return Comparison(a, b, pool(per_seed), common, unpaired)


def _list(xs: Sequence[int]) -> str:
    return ", ".join(map(str, xs))


# ---------------------------------------------------------------- verdict text
def said(word: str) -> str:
    """A verdict as a sentence uses it: ``B is NON-INFERIOR to A``."""
    return f"{word.upper()} {'against' if word == 'inconclusive' else 'to'}"


def verdict_lines(cmp: Comparison, primary: Primary) -> list[str]:
    """The verdict on the primary metric as a trial report words it, and what more seeds do."""
    row = next(r for r in cmp.table.iter_rows(named=True) if r["metric"] == primary.metric)
    if row["better"] not in ("higher", "lower"):
        raise SandboxInputError(
            f"primary metric {primary.metric!r} has no better direction to judge (see docs/metrics.md)"
        )
    word = verdict(row, primary.margin, primary.margin_kind)
    rel = primary.margin_kind == "relative"
    if rel:
        bound = 1 - primary.margin if row["better"] == "higher" else 1 + primary.margin
        est = f"B / A {fmt(row['ratio'])} ({fmt(row['ratio_lo'])} to {fmt(row['ratio_hi'])})"
        margin = f"{primary.margin:g} of A (B / A {'above' if row['better'] == 'higher' else 'below'} {bound:g})"
    else:
        sign = -1 if row["better"] == "higher" else 1
        bound = sign * primary.margin
        est = f"B - A {fmt(row['diff'])} ({fmt(row['diff_lo'])} to {fmt(row['diff_hi'])})"
        margin = f"{primary.margin:g} (B - A {'above' if row['better'] == 'higher' else 'below'} {bound:g})"
    lines = [
        f"primary: {primary.metric} ({row['better']} is better), non-inferiority margin {margin}",
        f"verdict: {cmp.b.label} is {said(word)} {cmp.a.label} ({est})",
    ]
    n = len(cmp.seeds)
    if n == 1:
        lines.append(
            "1 seed: the interval holds what resampling people sees, not run-level variation "
            "(the readers each site draws, which dominates workload metrics); run 3 or more "
            "seeds per arm to include it"
        )
    else:
        lines.append(
            f"{n} seeds pooled; {row['between_share']:.0%} of the variance is between seeds"
        )
    lines.append(seeds_to_settle(row, primary.margin, primary.margin_kind))
    return lines


# ---------------------------------------------------------------- forest plot
NICE_TICKS = (0.1, 0.2, 0.25, 0.33, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 4, 5, 10)


def _side_colour(better: str, lo: float, hi: float) -> str:
    """Green where the whole interval is on the better side of no difference, red where it is
    on the worse side, grey otherwise (or with no better direction)."""
    if better == "higher" and lo > 1 or better == "lower" and hi < 1:
        return "#1a7f37"
    if better == "higher" and hi < 1 or better == "lower" and lo > 1:
        return "#c0392b"
    return "#444444"


def forest_plot(cmp: Comparison, path: str | Path, primary: Primary | None = None) -> Path:
    """Write :func:`forest_figure` to ``path`` (``.svg`` or ``.png``), whole or not at all."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise SandboxInputError(f"plot {path}: must end in .svg or .png")
    if not path.parent.is_dir():
        raise SandboxInputError(f"plot {path}: folder {path.parent} does not exist")
    import matplotlib.pyplot as plt

    fig = forest_figure(cmp, primary)
    tmp = temporary_name(path)
    try:
        with _rc():
            fig.savefig(
                tmp, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None
            )
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _rc():
    import matplotlib

    return matplotlib.rc_context({"svg.hashsalt": "forest", "svg.fonttype": "none"})


def forest_figure(cmp: Comparison, primary: Primary | None = None):
    """A matplotlib figure: B / A with 95% intervals (log axis), one row per metric, the
    primary first with its margin, green/red where B is better/worse, the verdict as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in cmp.table.iter_rows(named=True) if math.isfinite(r["ratio"])]
    if primary is not None:
        rows.sort(key=lambda r: r["metric"] != primary.metric)
    if not rows:
        raise SandboxInputError("plot: no metric has a ratio to plot (A is zero for every one)")
    with _rc():
        return _draw(plt, matplotlib, cmp, rows, primary)


def _draw(plt, matplotlib, cmp, rows, primary):
    n = len(rows)
    fig, ax = plt.subplots(figsize=(9.0, 1.2 + 0.42 * n))
    ys = list(range(n))[::-1]
    lows = [r["ratio_lo"] if math.isfinite(r["ratio_lo"]) else r["ratio"] for r in rows]
    highs = [r["ratio_hi"] if math.isfinite(r["ratio_hi"]) else r["ratio"] for r in rows]
    for y, r, lo, hi in zip(ys, rows, lows, highs, strict=True):
        main = primary is not None and r["metric"] == primary.metric
        colour = "#1f4e9c" if main else _side_colour(r["better"], lo, hi)
        ax.plot([lo, hi], [y, y], color=colour, lw=2.2 if main else 1.4)
        ax.plot([r["ratio"]], [y], "D" if main else "s", color=colour, ms=7 if main else 5)
    ax.axvline(1.0, color="#888888", lw=1)
    if primary is not None and primary.margin_kind == "relative":
        row = rows[0]
        m = 1 - primary.margin if row["better"] == "higher" else 1 + primary.margin
        ax.axvline(m, color="#b2182b", lw=1, ls="--")
        ax.annotate(
            f"margin {m:g}",
            (m, -0.62),
            color="#b2182b",
            fontsize=8,
            ha="center",
            annotation_clip=False,
        )
    ax.set_xscale("log")
    finite = [v for v in [*lows, *highs, 1.0] if math.isfinite(v) and v > 0]
    lo_x, hi_x = min(finite), max(finite)
    pad = (hi_x / lo_x) ** 0.08 if hi_x > lo_x else 1.1
    ax.set_xlim(lo_x / pad, hi_x * pad)
    labels = []
    for r in rows:
        tag = " (primary)" if primary is not None and r["metric"] == primary.metric else ""
        arrow = {"higher": " \u2191", "lower": " \u2193"}.get(r["better"], "")
        labels.append(f"{r['metric']}{tag}{arrow}")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(
        ys,
        [
            f"{fmt(r['ratio'])} ({fmt(lo)}\u2013{fmt(hi)})"
            for r, lo, hi in zip(rows, lows, highs, strict=True)
        ],
        fontsize=8,
    )
    seeds = len(cmp.seeds)
    ax.set_xlabel(
        f"{cmp.b.label} / {cmp.a.label}, paired, 95% interval "
        f"({seeds} seed{'s' if seeds > 1 else ''}; \u2191 higher is better, \u2193 lower is better; "
        "green: better, red: worse)",
        fontsize=8,
    )
    ticks = []
    span = math.log(hi_x * pad) - math.log(lo_x / pad)
    for t in (t for t in NICE_TICKS if lo_x / pad <= t <= hi_x * pad):
        if not ticks or math.log(t / ticks[-1]) >= span / 9:  # no labels on top of each other
            ticks.append(t)
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{t:g}" for t in ticks]))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.tick_params(axis="x", labelsize=8)
    if primary is not None:
        word = verdict(rows[0], primary.margin, primary.margin_kind)
        ax.set_title(
            f"{primary.metric}: {cmp.b.label} is {said(word)} {cmp.a.label}",
            fontsize=9,
            loc="left",
        )
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    fig.tight_layout()
    return fig


__all__ = [
    "Arm",
    "Comparison",
    "ComparisonSpec",
    "Primary",
    "compare_arms",
    "expand",
    "forest_figure",
    "forest_plot",
    "group_arms",
    "load_spec",
    "one_arm",
    "read_run",
    "verdict_lines",
]


def compare_equity(
    a: Arm,
    b: Arm,
    replicates: int = 2000,
    references: dict[str, str] | None = None,
    site: str = "all",
) -> Comparison:
    """How arm B changes arm A's disparities between subgroups and sites, on the same people
    (those of one ``site`` if given): :func:`~sandbox.outcomes.equity.disparity_changes` seed
    by seed, pooled as :func:`pool`."""
    from sandbox.outcomes.equity import (
        disparity_changes,
        disparity_metrics,
        labels,
        largest_groups,
    )
    from sandbox.outcomes.metrics import metric_catalogue

    common, unpaired = paired_seeds(a, b)
    programme = programme_of(a.runs[0])
    catalogue = metric_catalogue(programme)
    by_seed_a = dict(zip(a.seeds, a.runs, strict=True))
    by_seed_b = dict(zip(b.seeds, b.runs, strict=True))
    per_seed = []
    for s in common:
        run = by_seed_a[s]
        (events_a, people_a), (events_b, people_b) = run_tables(run), run_tables(by_seed_b[s])
        people = _restricted(people_a, run, site, "all", programme).sort("person_id")
        sums_a = person_sums(events_a, people, programme)
        sums_b = person_sums(
            events_b, _restricted(people_b, run, site, "all", programme), programme
        )
        chosen = [catalogue[m] for m in disparity_metrics(events_a, events_b) if m in catalogue]
        sites = [str((x or {}).get("name")) for x in run["config"].get("sites") or []]
        groups = labels(people, (*programme.subgroups, "site"), sites)
        if references is None or set(references) != set(groups):
            # one reference per dimension for every seed: the first seed's largest group
            references = {**largest_groups(groups), **(references or {})}
        per_seed.append(
            disparity_changes(sums_a, sums_b, groups, chosen, s, replicates, references)
        )
    # a group absent from one seed's people (a rare race at one site) has no gap there: pool
    # what every seed has
    shared = set.intersection(*(set(f["metric"]) for f in per_seed))
    per_seed = [f.filter(pl.col("metric").is_in(shared)) for f in per_seed]
    return Comparison(a, b, pool(per_seed), common, unpaired)

"""The `sandbox` command: run, compare, validate, calibrate.

Bad input ends with one line on stderr naming what and where, exit code 2, and nothing
written; ``--debug`` (or HYDRA_FULL_ERROR=1) shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from sandbox.config import Scanner
from sandbox.errors import SandboxInputError
from sandbox.outcomes.text import fmt

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: object) -> str:
    """``text`` safe for a terminal: control characters (escape sequences included) other than
    newline and tab are shown as ``\\xNN`` instead of being sent raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


SUMMARY = (
    "screens",
    "positive_rate",
    "recall_rate",
    "screen_detected_cancers",
    "cancer_detection_rate_per_1000",
    "interval_cancers",
    "programme_sensitivity",
    "programme_specificity",
    "ppv",
    "false_positive_workups",
    "benign_biopsies",
    "benign_resections",
    "days_to_diagnosis_median",
    "human_reads",
    "reader_hours",
    "worklist_wait_days_p95",
    "scanner_wait_days_p95",
    "worst_backlog",
    "life_years",
)
"""Headline metrics of every programme; a programme adds its own (``Programme.summary_metrics``)."""


def summary_for(programme_name: str | None) -> tuple[str, ...]:
    """The headline metrics of a run of ``programme_name`` (generic ones if unknown)."""
    from sandbox.programmes import PROGRAMMES

    cls = PROGRAMMES.get(programme_name or "")
    own = cls.summary_metrics if cls is not None else ()
    return (*SUMMARY[:-1], *own, SUMMARY[-1])


AI_SUMMARY = (
    "ai_autonomous_share",
    "ai_human_discordance",
    "screen_reads_saved",
    "ai_rule_out_missed_cancers",
)
BY_SITE = (
    "screens",
    "positive_rate",
    "cancer_detection_rate_per_1000",
    "programme_sensitivity",
    "ppv",
    "days_to_diagnosis_median",
    "reader_hours",
    "worklist_wait_days_p95",
    "scanner_wait_days_p95",
    "worst_backlog",
)


def _cell(v, lo, hi) -> str:
    if lo is None or hi is None or (lo == v and hi == v):
        return fmt(v)
    return f"{fmt(v)} ({fmt(lo)}-{fmt(hi)})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = enumerate(zip(r, widths, strict=True))
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in cells)

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def summary_table(
    frames: dict[str, pl.DataFrame],
    metrics: Sequence[str],
    site: str | list[str],
    subgroup: str,
    rnd: str,
) -> str:
    """Metrics as rows, one column per frame (or per site when ``site`` is a list)."""
    cols = (
        [(label, f, site) for label, f in frames.items()]
        if isinstance(site, str)
        else [(s, next(iter(frames.values())), s) for s in site]
    )
    rows = []
    for m in metrics:
        row = [m]
        for _, f, s in cols:
            r = f.filter(
                (pl.col("metric") == m)
                & (pl.col("site") == s)
                & (pl.col("subgroup") == subgroup)
                & (pl.col("round") == rnd)
            )
            row.append(_cell(r["value"][0], r["lo"][0], r["hi"][0]) if r.height else "-")
        rows.append(row)
    return _table(["metric (95% interval)", *(c[0] for c in cols)], rows)


# ---------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    if args.multirun:  # Hydra's -m: the sweep's expansion and executor
        sweep_args = argparse.Namespace(
            overrides=args.overrides, spec=None, name=None, resume=None, dry_run=False
        )
        return cmd_sweep(sweep_args)
    from sandbox.compose import load
    from sandbox.runners.local import run

    cfg, profiles, _ = load(args.overrides)
    t0 = time.perf_counter()
    res = run(cfg, profiles, list(args.overrides))
    wall = time.perf_counter() - t0
    print(
        f"{cfg.scenario.name} / {cfg.policy.name} / seed {cfg.seed}: {res.people.height:,} people, "
        f"{res.events.height:,} exams, {wall:.1f} s"
    )
    print(shown(f"world:  {cfg.scenario.description}"))
    print(shown(f"policy: {' '.join(cfg.policy.description.split())}"))
    print(
        "all sites, all people, all rounds; shares are fractions, *_days in days; 95% intervals in"
    )
    print("parentheses; definitions in docs/metrics.md\n")
    summary = summary_for(cfg.scenario.programme.name)
    headline = summary if cfg.policy.role == "none" else (*summary, *AI_SUMMARY)
    if cfg.economics is not None:
        from sandbox.economics.accounting import ECONOMIC_METRICS

        headline = (*headline, *ECONOMIC_METRICS)
    print(summary_table({cfg.policy.name: res.metrics}, headline, "all", "all", "all"))
    if cfg.economics is not None:
        e = cfg.economics
        print(
            f"economics: {e.name}, {e.currency} {e.price_year}, discounted "
            f"{e.discount_costs:.1%} / {e.discount_effects:.1%}, per person (economics.parquet; "
            "docs/economics.md)"
        )
    if len(cfg.scenario.sites) > 1:
        print("\nby site")
        print(
            summary_table(
                {cfg.policy.name: res.metrics},
                BY_SITE,
                [s.name for s in cfg.scenario.sites],
                "all",
                "all",
            )
        )
    if res.monitoring is not None:
        from sandbox.outcomes.surveillance import drift_start

        plan = cfg.monitoring
        print(
            monitoring_text(
                f"{plan.name} (action: {plan.action} after {plan.days_to_act:g} days; "
                f"drift: {cfg.drift.name}",
                drift_start(cfg.drift),
                res.monitoring,
            )
        )
    if res.equity is not None:
        gaps = res.equity.filter(pl.col("flagged"))
        print(
            f"\nequity: {gaps.height} gap(s) to a reference group with a 95% interval excluding "
            f"zero{': ' if gaps.height else ''}"
            + ", ".join(
                f"{r['metric']} {r['dimension']}={r['group']} {r['diff']:+.3f}"
                for r in gaps.head(4).iter_rows(named=True)
            )
            + (", ..." if gaps.height > 4 else "")
            + f" (sandbox equity {res.folder})"
        )
        if gaps.height:
            print(
                "        a gap in a positive or recall rate can come from how common findings are "
                "in a group, not from how it is read (docs/equity.md)"
            )
    print(f"\nrun folder: {res.folder}")
    print(f"repeat:     sandbox run {' '.join(args.overrides)}".rstrip())
    return 0


def monitoring_text(title: str, drift: dict[str, float], monitoring) -> str:
    """A monitoring plan's run in a few lines: alarms, days to detection, false alarms."""
    from sandbox.outcomes.surveillance import alarm_summary

    horizon = float(monitoring["day"].max() or 0) + 1.0 if monitoring.height else 0.0
    table = alarm_summary(monitoring, drift, horizon)
    lines = [f"\nmonitoring: {title}; daily series in monitoring.parquet, docs/surveillance.md)"]
    head = ["site", "statistic", "days", "alarms", "drift day", "detected after", "false alarms"]
    rows = []
    for r in table.iter_rows(named=True):
        rows.append(
            [
                f"{r['site']} {r['group']}" if r["group"] else r["site"],
                r["statistic"],
                f"{r['days_monitored']:,}",
                str(r["alarms"]),
                "-" if r["drift_day"] is None else f"{r['drift_day']:g}",
                "-"
                if r["drift_day"] is None
                else (
                    "not detected"
                    if r["days_to_detection"] is None
                    else f"{r['days_to_detection']:g} days"
                ),
                str(r["false_alarms"])
                + (
                    ""
                    if r["false_alarms_per_site_year"] is None
                    else f" ({r['false_alarms_per_site_year']:.2f}/site-year)"
                ),
            ]
        )
    widths = [
        max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) for x in rows)
    return "\n".join(lines)


def cmd_monitor(args: argparse.Namespace) -> int:
    """A run's monitoring plan: its alarm table, and a plot of its charts (``--plot``)."""
    from sandbox.outcomes.surveillance import (
        chart_limits,
        drift_start,
        monitor_figure,
        monitor_plot,
    )
    from sandbox.runfolder import read_run

    run = read_run(args.run)
    folder, cfg, man = run["folder"], run["config"], run["manifest"]
    path = folder / "monitoring.parquet"
    if not path.is_file():
        raise SandboxInputError(f"{folder}: no monitoring.parquet (the run had no monitoring plan)")
    try:
        frame = pl.read_parquet(path)
        plan, drift_cfg = cfg["monitoring"], cfg["drift"]
        drift = drift_start(drift_cfg)
        h = chart_limits(plan)
        title = (
            f"{plan['name']} (action: {plan['action']} after {float(plan['days_to_act']):g} days; "
            f"drift: {drift_cfg['name']}"
        )
    except (pl.exceptions.PolarsError, OSError, KeyError, TypeError, ValueError) as e:
        raise SandboxInputError(f"{folder}: unreadable monitoring plan or series ({e})") from e
    print(monitoring_text(title, drift, frame).lstrip("\n"))
    if args.plot:
        out = Path(args.plot)
        if out.suffix.lower() not in (".svg", ".png"):
            raise SandboxInputError(f"--plot {out}: must end in .svg or .png")
        if not out.parent.is_dir():
            raise SandboxInputError(f"--plot {out}: folder {out.parent} does not exist")
        changes = {
            site: [(float(v["from_day"]), str(v["reason"])) for v in versions[1:]]
            for site, versions in (man.get("policy_versions") or {}).items()
        }
        monitor_plot(monitor_figure(frame, drift, h, changes), out)
        print(f"plot: {out}")
    return 0


def equity_text(table: pl.DataFrame, show_all: bool = False) -> str:
    """A run's disparities: Fairlearn's summaries per dimension, then the gaps to each
    dimension's reference group whose interval excludes zero (every gap with ``show_all``)."""

    def ci(v, lo, hi, digits: int = 3) -> str:
        return f"{v:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"

    lines = ["by dimension: Fairlearn's summaries (max - min over groups; min / max)"]
    head = ("dimension", "demographic parity diff", "ratio", "equalized odds diff", "ratio")
    rows = []
    for dim in table["dimension"].unique(maintain_order=True).to_list():
        cell = {
            r["metric"]: r
            for r in table.filter(
                (pl.col("dimension") == dim) & (pl.col("group") == "max-min")
            ).iter_rows(named=True)
        }
        dp, eo = cell.get("demographic_parity"), cell.get("equalized_odds")
        if dp is None or eo is None:
            continue
        rows.append(
            (
                dim,
                ci(dp["diff"], dp["diff_lo"], dp["diff_hi"]),
                ci(dp["ratio"], dp["ratio_lo"], dp["ratio_hi"], 2),
                ci(eo["diff"], eo["diff_lo"], eo["diff_hi"]),
                ci(eo["ratio"], eo["ratio_lo"], eo["ratio_hi"], 2),
            )
        )
    lines.append(_columns(head, rows))
    gaps = table.filter((pl.col("group") != "max-min") & (pl.col("group") != pl.col("reference")))
    shown_gaps = gaps if show_all else gaps.filter(pl.col("flagged"))
    title = "gaps to each dimension's reference group"
    if not show_all:
        title += f" with a 95% interval excluding zero: {shown_gaps.height} of {gaps.height}"
    lines.append(f"\n{title}")
    if shown_gaps.height:
        lines.append(
            _columns(
                ("group", "reference", "metric", "value", "n", "difference", "ratio"),
                [
                    (
                        f"{r['dimension']}={r['group']}",
                        r["reference"],
                        r["metric"],
                        ci(r["value"], r["lo"], r["hi"]),
                        f"{r['n']:,}",
                        ci(r["diff"], r["diff_lo"], r["diff_hi"]),
                        ci(r["ratio"], r["ratio_lo"], r["ratio_hi"], 2),
                    )
                    for r in shown_gaps.iter_rows(named=True)
                ],
            )
        )
    return "\n".join(lines)


def _columns(head: Sequence[str], rows: list[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(x, widths, strict=True)) for x in (head, *rows)
    )


def cmd_equity(args: argparse.Namespace) -> int:
    """A run's disparities from its folder: equity.parquet as written, or recomputed from its
    events and people with other reference groups (``--reference``)."""
    from sandbox.comparison import programme_of, run_tables
    from sandbox.outcomes.equity import EQUITY_SCHEMA, run_disparities
    from sandbox.runfolder import read_run

    run = read_run(args.run)
    folder, cfg = run["folder"], run["config"]
    refs = _references(args.reference)
    path = folder / "equity.parquet"
    if path.is_file() and not refs:
        try:
            table = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as e:
            raise SandboxInputError(f"{path}: unreadable ({type(e).__name__})") from e
        if table.schema != pl.Schema(EQUITY_SCHEMA):
            raise SandboxInputError(f"{path}: not an equity table (columns differ)")
    else:
        programme = programme_of(run)
        events, people = run_tables(run)
        sites = [str((x or {}).get("name")) for x in cfg.get("sites") or []]
        table = run_disparities(
            events,
            people,
            programme,
            sites,
            str(run["manifest"].get("scenario", "?")),
            str(run["manifest"].get("policy", "?")),
            int(run["manifest"].get("seed", 0)),
            references=refs,
        )
    if args.dimension:
        table = table.filter(pl.col("dimension").is_in(args.dimension))
    print(f"{folder}: disparities between groups, 95% intervals (docs/equity.md)\n")
    print(equity_text(table, args.all))
    if args.csv:
        out = Path(args.csv)
        if not out.parent.is_dir():
            raise SandboxInputError(f"--csv {out}: folder {out.parent} does not exist")
        table.write_csv(out)
        print(f"\ntable: {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from sandbox.comparison import (
        Primary,
        check_same_scenario,
        compare_arms,
        compare_equity,
        expand,
        forest_plot,
        group_arms,
        load_spec,
        one_arm,
        programme_of,
        read_run,
    )
    from sandbox.outcomes.paired import pairable

    spec = load_spec(args.spec) if args.spec else None
    if spec is not None and args.runs:
        raise SandboxInputError("compare: give run folders or --spec, not both")
    if spec is None and not args.runs:
        raise SandboxInputError("compare: give two or more run folders, or --spec FILE")
    primary = spec.primary if spec is not None else None
    if args.primary:
        primary = Primary(args.primary)
    if primary is not None:
        margin = primary.margin if args.margin is None else args.margin
        kind = args.margin_kind or primary.margin_kind
        if not 0 < margin < (1 if kind == "relative" else math.inf):
            raise SandboxInputError(f"--margin {margin}: must be positive (relative: below 1)")
        primary = Primary(primary.metric, margin, kind)
    elif args.margin is not None or args.margin_kind:
        raise SandboxInputError("--margin: a margin needs a primary metric (--primary METRIC)")
    replicates = args.replicates or (spec.replicates if spec is not None else 2000)
    if not 100 <= replicates <= 100_000:
        raise SandboxInputError(f"--replicates {replicates}: must be 100-100000")
    plot = args.plot or (spec.plot if spec is not None else "")

    if spec is not None:
        arms = [
            one_arm([read_run(f) for f in expand(folders, f"{args.spec}: {arm}")], arm)
            for arm, folders in (("baseline", spec.baseline), ("candidate", spec.candidate))
        ]
        runs = arms[0].runs + arms[1].runs
    else:
        runs = [read_run(f) for f in expand(args.runs, "compare")]
        arms = group_arms(runs)
    names = {(r["config"].get("programme") or {}).get("name") for r in runs}
    headline = list(summary_for(names.pop() if len(names) == 1 else None))
    chosen = args.metric or (list(spec.secondary) if spec is not None and spec.secondary else [])
    metrics = chosen or headline
    known = set().union(*(set(r["metrics"]["metric"].unique()) for r in runs))
    bad = [m for m in metrics if m not in known]
    if bad:
        raise SandboxInputError(f"--metric {bad[0]}: not in these runs (see docs/metrics.md)")
    where = (args.site, args.subgroup, args.round)
    pairable_view = args.round == "all"  # a person's share is whole, not per round
    paired = len(arms) == 2 and arms[0].scenario == arms[1].scenario
    need_pair = primary is not None or bool(plot) or spec is not None or args.equity
    if need_pair and len(arms) == 2:
        check_same_scenario(*arms)
    if need_pair and not paired:
        raise SandboxInputError(
            "--primary/--plot/--equity: a paired comparison needs exactly two arms of the same scenario "
            f"(these runs hold {len(arms)}: {', '.join(a.label for a in arms)})"
        )
    if need_pair and not pairable_view:
        raise SandboxInputError(
            "--primary/--plot/--equity: paired comparisons are over all rounds of a person "
            "(drop --round; --site and --subgroup restrict the people)"
        )

    seeds = sorted({r["manifest"].get("seed") for r in runs}, key=str)
    scen = sorted({str(r["manifest"].get("scenario")) for r in runs})
    print(
        shown(
            f"scenario: {', '.join(scen)}; seed: {', '.join(map(str, seeds))}; "
            f"site={args.site} subgroup={args.subgroup} round={args.round}"
        )
    )
    tags = "AB" if len(arms) == 2 else [str(i + 1) for i in range(len(arms))]
    for tag, arm in zip(tags, arms, strict=True):
        folders = ", ".join(str(r["folder"]) for r in arm.runs)
        print(shown(f"{tag}: {arm.label}, seed {', '.join(map(str, arm.seeds))} ({folders})"))
    plans = plans_text(arms, tags)
    if plans:
        print(plans)
    harm = harm_text(arms, tags)
    if harm:
        print(harm)
    if len(runs) <= 4:  # wider is unreadable; the paired table shows each arm's mean
        frames = {}
        for r in runs:
            label = f"{r['manifest'].get('policy', '?')} [{r['folder'].name}]"
            frames[label if label not in frames else str(r["folder"])] = r["metrics"]
        print()
        print(shown(summary_table(frames, metrics, *where)))
    if not (paired and pairable_view):
        return 0
    known_pairs = pairable(programme_of(runs[0]))
    wanted = list(dict.fromkeys([*([primary.metric] if primary else []), *metrics]))
    explicit = [primary.metric] if primary else []
    explicit += list(spec.secondary) if spec is not None else []
    bad = [m for m in explicit if m not in known_pairs]
    if bad:
        raise SandboxInputError(
            f"no paired interval for metric {bad[0]!r} (paired metrics: {', '.join(known_pairs)})"
        )
    skipped = [m for m in wanted if m not in known_pairs]
    wanted = [m for m in wanted if m in known_pairs]
    cmp = compare_arms(arms[0], arms[1], wanted, replicates, args.site, args.subgroup)
    if (args.site, args.subgroup) != ("all", "all"):
        print(f"\npaired over the people of site={args.site} subgroup={args.subgroup}")
    print_paired(cmp, primary)
    if skipped:
        print(f"not paired (quantiles and maxima have no per-person share): {', '.join(skipped)}")
    if plot:
        print(shown(f"\nforest plot: {forest_plot(cmp, plot, primary)}"))
    if args.equity:
        if args.subgroup != "all":
            raise SandboxInputError(
                "--equity compares subgroups: give --site to restrict the people, not --subgroup"
            )
        print_equity(
            compare_equity(arms[0], arms[1], replicates, _references(args.reference), args.site)
        )
    return 0


def _references(given: Sequence[str] | None) -> dict[str, str]:
    refs = {}
    for r in given or []:
        dim, _, group = r.partition("=")
        if not dim or not group:
            raise SandboxInputError(f"--reference {r!r}: give dimension=group, e.g. race=white")
        refs[dim] = group
    return refs


def print_equity(cmp) -> None:
    """How arm B changes arm A's disparities: every dimension's summaries, and the gaps to a
    reference group that B changes with an interval excluding zero."""
    t = cmp.table
    summary = t.filter(
        pl.col("metric").str.ends_with(": demographic_parity")
        | pl.col("metric").str.ends_with(": equalized_odds")
    )
    changed = t.filter(
        pl.col("metric").str.contains(" vs ") & ((pl.col("diff_lo") > 0) | (pl.col("diff_hi") < 0))
    )
    gaps = t.filter(pl.col("metric").str.contains(" vs ")).height
    print(
        "\ndisparities, B - A (Fairlearn's summaries, max - min over a dimension's groups; "
        f"lower is fairer; {t['method'][0]}; docs/equity.md)"
    )
    if cmp.unpaired:
        print(f"seeds run in one arm only, left out: {', '.join(map(str, cmp.unpaired))}")
    per = " (mean per seed)" if len(cmp.seeds) > 1 else ""

    def row(d) -> list[str]:
        return [
            d["metric"],
            fmt(d["a"]),
            fmt(d["b"]),
            f"{fmt(d['diff'])} ({fmt(d['diff_lo'])} to {fmt(d['diff_hi'])})",
        ]

    head = [f"disparity{per}", "A", "B", "B - A (95% interval)"]
    print(_table(head, [row(d) for d in summary.iter_rows(named=True)]))
    print(
        f"\ngaps to a reference group that B changes (interval excluding zero): {changed.height} "
        f"of {gaps}"
    )
    if changed.height:
        print(_table(head, [row(d) for d in changed.iter_rows(named=True)]))


def plans_text(arms, tags) -> str:
    """The arms' monitoring plans side by side: per arm and site, over its seeds, the drift
    detected (runs), days to detection, false alarms per site-year and the policy changes."""
    from sandbox.outcomes.surveillance import drift_start, site_summary

    rows = []
    for tag, arm in zip(tags, arms, strict=True):
        per_site: dict[str, list] = {}
        for r in arm.runs:
            path = r["folder"] / "monitoring.parquet"
            if not path.is_file():
                continue
            try:
                frame = pl.read_parquet(path)
                drift = drift_start(r["config"]["drift"])
            except (OSError, pl.exceptions.PolarsError, KeyError, TypeError) as e:
                raise SandboxInputError(f"{path}: unreadable monitoring series ({e})") from e
            versions = r["manifest"].get("policy_versions") or {}
            for row in site_summary(frame, drift).iter_rows(named=True):
                plan = str(r["config"]["monitoring"].get("name"))
                switched = [  # what the plan did, not a drift's device update
                    v.get("from_day")
                    for v in (versions.get(row["site"]) or [])[1:]
                    if str(v.get("reason", "")).startswith(f"{plan}:")
                ]
                per_site.setdefault(row["site"], []).append((row, switched))
        for site, items in per_site.items():
            drifted = [i for i, _ in items if i["drift_day"] is not None]
            found = [i["days_to_detection"] for i in drifted if i["days_to_detection"] is not None]
            false = sum(i["false_alarms"] for i, _ in items)
            years = sum(i["site_years"] for i, _ in items)
            plan = (arm.runs[0]["config"].get("monitoring") or {}).get("name", "?")
            rows.append(
                [
                    tag,
                    str(plan),
                    site,
                    f"{len(found)} of {len(drifted)}" if drifted else "no drift",
                    (
                        f"{sum(found) / len(found):.1f} ({min(found):g} to {max(found):g})"
                        if found
                        else "-"
                    ),
                    f"{false / years:.2f} ({false} in {years:.1f})" if years else "-",
                    f"{sum(1 for _, s in items if s)} of {len(items)}",
                ]
            )
    if not rows:
        return ""
    head = [
        "arm",
        "plan",
        "site",
        "drift detected",
        "days to detection, mean (range)",
        "false alarms per site-year",
        "runs with a policy change",
    ]
    return "\nmonitoring plans (docs/surveillance.md)\n" + _table(head, rows)


def harm_text(arms, tags) -> str:
    """Where one of two arms has a drift and the other none: the harm during the detection
    delay, per drifted site, seed by seed on the same people (docs/surveillance.md)."""
    from sandbox.outcomes.surveillance import (
        HARM_COLUMNS,
        action_day,
        delay_harm,
        drift_start,
        window_counts,
    )

    if len(arms) != 2:
        return ""
    drifts = [[drift_start(r["config"].get("drift") or {}) for r in arm.runs] for arm in arms]
    drifted_runs = [[bool(d) for d in arm] for arm in drifts]
    if all(drifted_runs[0]) and not any(drifted_runs[1]):
        k = 0
    elif all(drifted_runs[1]) and not any(drifted_runs[0]):
        k = 1
    else:
        return ""  # both or neither drift, or an arm of drift and no-drift runs
    drifted, plain = arms[k], arms[1 - k]
    ref = {int(r["config"]["seed"]): r for r in plain.runs}

    def events(r):
        path = r["folder"] / "events.parquet"
        try:
            return pl.read_parquet(path, columns=list(HARM_COLUMNS))
        except (OSError, pl.exceptions.PolarsError) as e:
            raise SandboxInputError(f"{path}: unreadable event log ({e})") from e

    per_site: dict[str, list] = {}
    for r, drift in zip(drifted.runs, drifts[k], strict=True):
        other = ref.get(int(r["config"]["seed"]))
        if other is None:
            continue
        mon_path = r["folder"] / "monitoring.parquet"
        monitoring = pl.read_parquet(mon_path) if mon_path.is_file() else None
        act = float((r["config"].get("monitoring") or {}).get("days_to_act") or 0.0)
        names = [s["name"] for s in r["config"]["sites"]]
        got, base = events(r), events(other)
        for site, day in drift.items():
            stop = action_day(monitoring, site, day, act)
            i = names.index(site)
            per_site.setdefault(site, []).append(
                (window_counts(got, i, day, stop), window_counts(base, i, day, stop))
            )
    if not per_site:
        return ""
    rows = []
    for site, pairs in per_site.items():
        h = delay_harm(pairs)
        cells = []
        for key in ("cancers_missed", "positive_reports", "human_reads", "ai_positive"):
            rate, lo, hi = h[key]
            cells.append(f"{rate:+.1f}" + ("" if math.isnan(lo) else f" ({lo:+.1f} to {hi:+.1f})"))
        rows.append([site, f"{h['screens']:,.0f} in {h['pairs']}", *cells])
    head = ["drifted site", "screens (runs)", "cancers missed", "positive reports"]
    head += ["human reads", "AI-positive"]
    return (
        f"\nharm until the plan could act ({tags[k]} - {tags[1 - k]} per 1,000 of {tags[k]}'s "
        "screens from the drift to its first alarm + 1 + days_to_act, or to the end of the run "
        "without an alarm; same people; 95% bootstrap over runs)\n" + _table(head, rows)
    )


def print_paired(cmp, primary) -> None:
    """The paired differences of arm B against arm A, and the primary's verdict."""
    from sandbox.comparison import verdict_lines

    a, b = shown(cmp.a.label), shown(cmp.b.label)
    print(
        "\npaired differences, B - A and B / A (same scenario and seed: the same people under "
        f"both; {cmp.table['method'][0]})"
    )
    if cmp.unpaired:
        print(f"seeds run in one arm only, left out: {', '.join(map(str, cmp.unpaired))}")
    from sandbox.outcomes.paired import FEW_DISCORDANT

    rows = []
    few = False
    for d in cmp.table.iter_rows(named=True):
        main = primary is not None and d["metric"] == primary.metric
        flag = len(cmp.seeds) == 1 and d["discordant"] < FEW_DISCORDANT
        few |= flag
        label = d["metric"] + (" (primary)" if main else "") + (" !" if flag else "")
        rows.append(
            [
                label,
                fmt(d["a"]),
                fmt(d["b"]),
                f"{fmt(d['diff'])} ({fmt(d['diff_lo'])} to {fmt(d['diff_hi'])})",
                f"{fmt(d['ratio'])} ({fmt(d['ratio_lo'])} to {fmt(d['ratio_hi'])})",
            ]
        )
    per = " (mean per seed)" if len(cmp.seeds) > 1 else ""
    print(_table([f"metric{per}", "A", "B", "B - A (95% interval)", "B / A (95% interval)"], rows))
    print(f"A = {a}; B = {b}")
    if few:
        print(
            f"! fewer than {FEW_DISCORDANT} people differ between the arms in this metric: its "
            "interval is too narrow (none: no width); run more seeds (pooled intervals include "
            "the spread between seeds) or more people"
        )
    if primary is not None:
        print()
        print("\n".join(shown(line) for line in verdict_lines(cmp, primary)))
        print("other metrics are secondary: reported, not judged")


def cmd_sweep(args: argparse.Namespace) -> int:
    plan, folder, jobs, out_dir = _sweep_plan(args)
    return _execute_sweep(plan, folder, jobs, out_dir, args.dry_run)[0]


def _execute_sweep(plan, folder, jobs, out_dir: str, dry_run: bool = False):
    """Run a composed sweep (new, or resumed when ``folder`` is given) on Ray: (exit code,
    sweep folder or None)."""
    from sandbox.runfolder import check_score_cache
    from sandbox.runners.distributed import ray_session
    from sandbox.sweep import RUNS, done, start_folder

    if folder is None:
        _preflight(jobs)
        if dry_run:
            print("dry run: nothing was written")
            return 0, None
    for job in jobs:
        check_score_cache(job.cfg)
    todo = jobs if folder is None else [j for j in jobs if not done(folder / RUNS, j.run.name)]
    if folder is not None:
        print(shown(f"sweep {plan.name}: {len(jobs) - len(todo)} of {len(jobs)} runs finished"))
        if not todo:
            _close_sweep(folder, plan, "complete", time.perf_counter(), None, None, {})
            return 0, folder
        _preflight(todo)
    ray_cfg = jobs[0].cfg.runtime.ray
    t0 = time.perf_counter()
    times = {}
    result = None
    # Ray first: an unreachable cluster is one line with nothing written
    with ray_session(ray_cfg.address, ray_cfg.num_cpus, ray_cfg.temp_dir) as info:
        times["ray_start"] = round(time.perf_counter() - t0, 3)
        print(
            shown(f"ray: {info.mode} ({info.address}), {info.cpus:g} CPUs on {info.nodes} node(s)")
        )
        if folder is None:
            folder = start_folder(out_dir, plan)
        try:
            t1 = time.perf_counter()
            result = _sweep_on_ray(todo, plan, folder, info, jobs[0].cfg.runtime.progress)
            times["execute"] = round(time.perf_counter() - t1, 3)
        except KeyboardInterrupt:
            _close_sweep(folder, plan, "interrupted", t0, info, None, times)
            print(
                "interrupted: finished runs are kept; resume with the line above", file=sys.stderr
            )
            return 130, folder
    complete = not result.failed and len(todo) == len(result.finished)
    _close_sweep(folder, plan, "complete" if complete else "incomplete", t0, info, result, times)
    return (0 if complete else 1), folder


def _sweep_plan(args: argparse.Namespace):
    """(plan, existing sweep folder or None, composed jobs, output folder) from the options."""
    from pathlib import Path

    from sandbox.compose import load
    from sandbox.sweep import (
        RUNS,
        check_resumable,
        clear_empty_claims,
        compose_jobs,
        load_sweep_file,
        plan_from_overrides,
        read_plan,
    )

    if args.resume:
        if args.overrides or args.spec or args.name:
            raise SandboxInputError(
                "--resume: give only the sweep folder (its sweep.yaml says the rest)"
            )
        folder = Path(args.resume)
        plan = read_plan(folder)
        jobs = compose_jobs(plan, folder / RUNS)
        check_resumable(folder, jobs)
        clear_empty_claims(folder / RUNS)
        return plan, folder, jobs, str(folder.parent.parent)
    if args.spec:
        plan = load_sweep_file(args.spec).with_overrides(args.overrides, args.name)
    else:
        plan = plan_from_overrides(args.overrides, args.name or "")
    # the output folder is not an axis: any run's composition gives it (the base alone may not
    # compose: monitoring.baseline_days=60 needs the plan an axis chooses)
    first = plan.runs[0].overrides if plan.runs else plan.base
    out_dir = load(list(first))[0].runtime.out_dir
    print(shown(f"sweep {plan.name}: {len(plan.runs)} runs over {' x '.join(plan.axes)}"))
    for r in plan.runs[:12]:
        print(shown(f"  {r.name}: {' '.join(f'{k}={v}' for k, v in r.axes.items())}"))
    if len(plan.runs) > 12:
        print(f"  ... and {len(plan.runs) - 12} more (all in sweep.yaml)")
    root = Path(out_dir) / "sweeps" / plan.name
    if root.exists():
        raise SandboxInputError(
            f"{root}: a sweep of this name exists (resume it: sandbox sweep --resume {root}; "
            "or give another --name)"
        )
    return plan, None, compose_jobs(plan, root / RUNS), out_dir


def _preflight(jobs) -> None:
    """Every policy can run and every AI device loads, before anything starts."""
    from sandbox.runners.devices import prepare_device, update_devices
    from sandbox.simulate import check_policy
    from sandbox.typed import to_dict

    seen, agents = set(), set()
    for job in jobs:
        cfg = job.cfg
        new = {c.agent for c in cfg.drift.device_changes if c.agent} - agents
        if new and cfg.policy.role != "none":
            update_devices(cfg)  # each device a drift brings loads and reads the images
            agents |= new
        key = (
            cfg.policy,
            cfg.agent,
            cfg.scenario.name,
            json.dumps([s.name for s in cfg.scenario.sites]),
            json.dumps(to_dict(cfg.drift), sort_keys=True, default=str),  # its teams, its devices
        )
        if key in seen:
            continue
        seen.add(key)
        dev = prepare_device(cfg)
        try:
            check_policy(cfg, None if dev is None else dev.threshold)
        finally:
            if dev is not None:
                dev.close()


def _sweep_on_ray(todo, plan, folder, info, show):
    from datetime import UTC, datetime

    from sandbox.runfolder import claim_run_folder
    from sandbox.runners.distributed import execute
    from sandbox.runners.local import RunResult, write_result
    from sandbox.sweep import UNITS

    def write(job, tables):
        t = time.perf_counter()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        result = RunResult(
            None,
            tables["metrics"],
            tables["people"],
            tables["events"],
            tables["timings"],
            tables["agents"],
            tables["policy_versions"],
            monitoring=tables.get("monitoring"),
        )
        claim = claim_run_folder(job.cfg.runtime.out_dir, job.run.name)
        extra = {"sweep": plan.name, "axes": job.run.axes, "executor": f"ray {info.mode}"}
        write_result(
            claim, job.cfg, job.profiles, list(job.run.overrides), sys.argv, stamp, result, t, extra
        )

    result = execute(todo, write, show, units_dir=folder / UNITS)
    if result.reused_units:
        print(f"reused {result.reused_units} finished unit(s) of unfinished runs")
    return result


def _close_sweep(folder, plan, status, t0, info, result, times) -> None:
    """Combine the finished runs, write the manifest, say where things are and how to resume."""
    from sandbox.sweep import combine, write_manifest

    table = combine(folder, plan)
    failures = [] if result is None else [{"run": f.run, "error": f.error} for f in result.failed]
    executor = (
        {}
        if info is None
        else {"mode": info.mode, "address": info.address, "cpus": info.cpus, "nodes": info.nodes}
    )
    man = write_manifest(
        folder,
        plan,
        status,
        {
            "failures": failures,
            "executor": executor,
            "tasks": 0 if result is None else result.tasks,
            "timings_s": {**times, "total": round(time.perf_counter() - t0, 3)},
        },
    )
    print(f"\nsweep {plan.name}: {man['finished']} of {man['runs']} runs finished ({status})")
    for f in failures:
        print(shown(f"  failed {f['run']}: {f['error']}"))
    print(f"sweep folder: {folder}")
    if table.height:
        print(
            f"one table:    {folder / 'metrics.parquet'} ({table.height:,} rows, axes as columns)"
        )
    if status != "complete":
        print(f"resume:       sandbox sweep --resume {folder}")


def cmd_dashboard(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    from sandbox.compose import project_root

    app = project_root() / "dashboards" / "app.py"
    if not app.is_file():
        raise SandboxInputError(f"{app}: the dashboard is not in this installation")
    runs = Path(args.runs)
    if runs.exists() and not runs.is_dir():
        raise SandboxInputError(f"--runs {runs}: a file, not a folder")
    if not 1 <= args.port <= 65535:
        raise SandboxInputError(f"--port {args.port}: must be 1-65535")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        f"--server.address={args.host}",
        f"--server.port={args.port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]
    print(
        f"dashboard: http://{args.host}:{args.port}  (results root: {runs.resolve()}; Ctrl-C stops it)"
    )
    env = {**os.environ, "SANDBOX_RESULTS": str(runs.resolve())}
    return subprocess.call(cmd, env=env, cwd=project_root())


def cmd_whatif(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sandbox import whatif
    from sandbox.compose import load

    cfg, profiles, _ = load(args.overrides)
    folder = Path(cfg.runtime.out_dir) / ".whatif"
    t0 = time.perf_counter()

    def progress(stage: str, f: float) -> None:
        # one line per step, read by the dashboard's progress bar
        print(f"progress {stage} {f:.3f}", file=sys.stderr, flush=True)

    prep = whatif.load_or_prepare(cfg, profiles, folder, progress)
    prepared_s = time.perf_counter() - t0
    print(
        f"prepared cohort {prep.key}: {prep.meta['people']:,} people x {prep.meta['rounds']} rounds "
        f"({folder}; {prepared_s:.1f} s)"
    )
    if args.prepare_only:
        return 0
    role = args.role or cfg.policy.role
    mode = args.threshold_mode or cfg.policy.threshold.mode
    value = args.threshold
    if value is None:
        op = cfg.policy.threshold
        value = op.target_sensitivity if mode == "target_sensitivity" else op.value
    threshold = whatif.resolve_knob_threshold(cfg.agent, mode, value) if role != "none" else 0.5
    readers = None
    if args.readers:
        try:
            readers = tuple(int(x) for x in args.readers.split(","))
        except ValueError:
            raise SandboxInputError(
                f"--readers {args.readers!r}: radiologists per site, e.g. 4,3"
            ) from None
        if len(readers) != len(cfg.scenario.sites) or min(readers) < 1:
            raise SandboxInputError(
                f"--readers {args.readers!r}: one positive count per site ({len(cfg.scenario.sites)} sites)"
            )
    knobs = whatif.Knobs(
        role=role,
        threshold=threshold,
        audit_fraction=cfg.policy.audit_fraction if args.audit is None else args.audit,
        attendance=cfg.scenario.programme.attendance
        if args.attendance is None
        else args.attendance,
        readers=readers,
    )
    ans = whatif.answer(prep, knobs, list(cfg.scenario.sites))
    print(
        f"role {role}, operating point {mode} {value} (score >= {threshold:.4f}), audit "
        f"{knobs.audit_fraction}, attendance {knobs.attendance}; answered in "
        f"{ans.seconds * 1000:.0f} ms; queue-free replay (docs/dashboard.md, What if?)\n"
    )
    rows = [
        [
            r["metric"],
            _cell(r["standard_of_care"], r["soc_lo"], r["soc_hi"]),
            _cell(r["policy"], r["lo"], r["hi"]),
            "-"
            if math.isnan(r["difference"])
            else _cell(r["difference"], r["diff_lo"], r["diff_hi"]),
        ]
        for r in ans.table.iter_rows(named=True)
    ]
    print(_table(["metric (95% interval)", "standard of care", role, "difference"], rows))
    print("\nreading capacity per site (queue-free: waits are Erlang C estimates)")
    cap = [
        [
            r["site"],
            str(r["radiologists"]),
            fmt(r["reads_per_working_day"]),
            f"{r['utilisation']:.1%}",
            fmt(r["mean_wait_working_days"]),
        ]
        for r in ans.capacity.iter_rows(named=True)
    ]
    print(_table(["site", "radiologists", "reads/day", "utilisation", "mean wait (days)"], cap))
    if not ans.exact:
        print(f"\ncapacity-bound, the full run will differ: {ans.why_inexact}")
    confirm = whatif.run_overrides(
        list(args.overrides), knobs, mode, value, list(cfg.scenario.sites)
    )
    print(f"\nconfirm with the full run: sandbox run {' '.join(confirm)}")
    return 0


def _validate_arm(trial: str, args: argparse.Namespace):
    """Simulate one arm of a trial and print its table; (table, metrics, header)."""
    from sandbox.compose import load
    from sandbox.runners.local import simulate
    from sandbox.validation.targets import Z_PASS, compare, load_targets

    head, targets = load_targets(trial)
    overrides = [f"scenario={head['scenario']}", f"policy={head['policy']}", f"seed={args.seed}"]
    if head.get("agent") and not any(o.startswith("agent=") for o in args.overrides):
        overrides.append(f"agent={head['agent']}")  # the arm's AI device, unless one is given
    if args.size:
        overrides.append(f"cohort.size={args.size}")
    cfg, profiles, _ = load(overrides + list(args.overrides))
    trial_n = float(head.get("n") or cfg.scenario.cohort.size)
    scale = args.tolerance_scale
    if scale is None:
        scale = max(1.0, math.sqrt(cfg.scenario.cohort.size and trial_n / cfg.scenario.cohort.size))
    res = simulate(cfg, profiles)
    table = compare(res.metrics, targets, scale, trial_n, cfg.scenario.cohort.size)
    rows = []
    for r in table.iter_rows(named=True):
        z = r["z"]
        verdict = "PASS" if r["pass"] else "FAIL"
        if r["pass"] is False and math.isfinite(z) and abs(z) <= 3.0:
            verdict = "FAIL (2-3 SE)"
        coarse = (
            "-" if r["within_tolerance"] is None else ("in" if r["within_tolerance"] else "out")
        )
        rows.append(
            [
                r["target"],
                "fitted" if r["fitted"] else "out of sample",
                fmt(r["published"]),
                _cell(r["simulated"], r["lo"], r["hi"]),
                "-" if not math.isfinite(z) else f"{z:+.2f}",
                verdict,
                coarse,
            ]
        )
    size = cfg.scenario.cohort.size
    print(
        f"{trial} ({head['policy']}): {size:,} people, seed {cfg.seed}; counts shown at the "
        f"trial's size ({trial_n:,.0f}: x{trial_n / size:.2f}); pass = |z| <= {Z_PASS} "
        f"(two-sample, at the trial's size); tolerance (coarse check) x{scale:.2f}"
    )
    print(
        _table(
            ["target", "", "published", "simulated (95% interval)", "z", "verdict", "tolerance"],
            rows,
        )
    )
    passed = int(table["pass"].sum())
    fitted = table.filter(pl.col("fitted"))
    coarse = fitted.filter(pl.col("within_tolerance").is_not_null())
    print(
        f"\n{passed}/{table.height} rows statistically indistinguishable from the trial "
        f"({int(fitted['pass'].sum())}/{fitted.height} fitted, "
        f"{passed - int(fitted['pass'].sum())}/{table.height - fitted.height} out of sample); "
        f"{int(coarse['within_tolerance'].sum())}/{coarse.height} fitted rows with a tolerance "
        "within it\n"
    )
    return table, res.metrics, head


def _validate_cea(args: argparse.Namespace) -> tuple[int, pl.DataFrame]:
    """One seed's nlst-cea table, printed; (exit code, rows)."""
    from sandbox.validation.cea import validate

    rows, setup = validate(args.seed, args.size, list(args.overrides))
    print(
        shown(
            f"nlst-cea: {setup['source']}; both NLST arms simulated on the same "
            f"{setup['people']:,} people (seed {setup['seed']}), priced with the paper's unit "
            f"costs (economics={setup['economics']}); increments LDCT minus the radiograph arm "
            "(no screening in the paper), per person, discounted 3%"
        )
    )
    table = []
    for r in rows.iter_rows(named=True):
        pub = fmt(r["published"])
        if r["published_lo"] == r["published_lo"]:  # not NaN
            pub += f" ({fmt(r['published_lo'])}-{fmt(r['published_hi'])})"
        if r["row"].startswith("one_way."):
            sim = f"{fmt(r['simulated'])} ({r['simulated_change']:+.0%}; published {r['published_change']:+.0%})"
        else:
            sim = _cell(r["simulated"], r["lo"], r["hi"])
        verdict = "reported" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        z = "-" if r["z"] != r["z"] else f"{r['z']:+.2f}"
        kind = "fitted" if r["fitted"] else "out of sample"
        table.append([r["row"], kind, pub, sim, z, verdict])
    print(
        _table(
            ["target", "", "published (95% CI)", "simulated (95% interval)", "z", "verdict"], table
        )
    )
    deaths = setup["lung_cancer_deaths"]
    print(
        shown(
            f"\nlung-cancer deaths to the end of the trial: LDCT {deaths['ldct']:,}, radiograph "
            f"{deaths['cxr']:,} ({deaths['cxr'] - deaths['ldct']:+,} averted); discounted life-years "
            f"gained per death averted {setup['life_years_per_death_averted']:.1f}; QALYs per "
            f"life-year gained {setup['qalys_per_life_year']:.2f} (the paper's: "
            f"{setup['published_qalys_per_life_year']:.2f})"
        )
    )
    judged = rows.filter(pl.col("pass").is_not_null())
    passed = int(judged["pass"].sum())
    print(
        f"\n{passed}/{judged.height} judged rows pass (z rows: |z| <= 1.96; one-way rows: the ICER "
        "moves the published way, within 10 points of its relative change); rows without a "
        "published interval are reported"
    )
    return (0 if passed == judged.height else 1), rows


def _print_cea_over_seeds(seeds: list[int], per_seed: list[pl.DataFrame]) -> None:
    """Every nlst-cea row over the seeds: the mean simulated value, the mean z where the row
    has one, and on how many seeds it passed."""
    import numpy as np

    print(f"\nover {len(seeds)} seeds ({', '.join(map(str, seeds))}):")
    table = []
    for i, name in enumerate(per_seed[0]["row"].to_list()):
        got = [r.row(i, named=True) for r in per_seed]
        sims = np.array([g["simulated"] for g in got], dtype=float)
        zs = np.array([g["z"] for g in got], dtype=float)
        judged = [g["pass"] for g in got if g["pass"] is not None]
        table.append(
            [
                name,
                "fitted" if got[0]["fitted"] else "out of sample",
                fmt(got[0]["published"]),
                fmt(float(np.nanmean(sims))) if np.isfinite(sims).any() else "-",
                f"{np.nanmean(zs):+.2f}" if np.isfinite(zs).any() else "-",
                f"{sum(judged)}/{len(seeds)}" if judged else "reported",
            ]
        )
    print(_table(["target", "", "published", "mean simulated", "mean z", "seeds passing"], table))


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise SandboxInputError(
            f"--seed: '{text}' is not a seed or a comma-separated list of seeds"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise SandboxInputError(f"--seed: '{text}' names a seed twice")
    return seeds


def _validate_seed(args: argparse.Namespace) -> tuple[bool, list[tuple[str, str, str, float]]]:
    """Validate a trial (and its comparator) at ``args.seed``; print the tables. Returns
    (every row passes, [(arm, target, "fitted" or "out of sample", z), ...])."""
    from sandbox.validation.targets import relative_reduction

    zs: list[tuple[str, str, str, float]] = []

    def keep(arm: str, table: pl.DataFrame) -> None:
        for r in table.iter_rows(named=True):
            fitted = "fitted" if r["fitted"] else "out of sample"
            zs.append((arm, r["target"], fitted, float(r["z"])))

    table, metrics, head = _validate_arm(args.trial, args)
    keep(args.trial, table)
    ok = bool(table["pass"].all())
    comparator = head.get("comparator")
    if comparator:
        other, other_metrics, _ = _validate_arm(comparator, args)
        keep(comparator, other)
        ok = ok and bool(other["pass"].all())
        rows = []
        for name, spec in (head.get("between_arms") or {}).items():
            r = relative_reduction(
                metrics,
                other_metrics,
                spec["metric"],
                spec["value"],
                spec["ci95"],
                spec.get("kind", "reduction"),
            )
            lo, hi = spec["ci95"]
            rows.append(
                [
                    name,
                    f"{fmt(spec['value'])} ({fmt(lo)}-{fmt(hi)})",
                    _cell(r["simulated"], r["lo"], r["hi"]),
                    "-" if not math.isfinite(r["z"]) else f"{r['z']:+.2f}",
                    "PASS" if r["pass"] else "FAIL",
                ]
            )
            zs.append(("between", name, "out of sample", float(r["z"])))
            ok = ok and r["pass"]
        if rows:
            print(f"between arms: {args.trial} against {comparator} (the same simulated people)")
            print(
                _table(
                    ["target", "published (95% CI)", "simulated (95% interval)", "z", "verdict"],
                    rows,
                )
            )
    return ok, zs


def _print_over_seeds(seeds: list[int], per_seed: list[list[tuple[str, str, str, float]]]) -> None:
    """The rows over several seeds: mean z, how many seeds pass, z at each seed; and each
    seed's pass count per arm."""
    import numpy as np

    from sandbox.validation.targets import Z_PASS

    keys = [(arm, target, fitted) for arm, target, fitted, _ in per_seed[0]]
    z = np.array([[row[3] for row in zs] for zs in per_seed], dtype=float)  # seeds x rows
    print(
        f"\nover {len(seeds)} seeds ({', '.join(map(str, seeds))}): a row whose z keeps its sign "
        "from seed to seed shows a bias; one that fails at one seed and passes at the next, "
        "chance"
    )
    table = []
    for j, (arm, target, fitted) in enumerate(keys):
        col = z[:, j]
        finite = col[np.isfinite(col)]
        mean = f"{finite.mean():+.2f}" if finite.size else "-"
        passing = int((np.abs(col) <= Z_PASS).sum())
        table.append(
            [
                arm,
                target,
                fitted,
                mean,
                f"{passing}/{len(seeds)}",
                " ".join("-" if not math.isfinite(v) else f"{v:+.1f}" for v in col),
            ]
        )
    print(_table(["arm", "target", "", "mean z", "seeds passing", "z per seed"], table))
    arms = list(dict.fromkeys(k[0] for k in keys))
    within = np.ones(len(seeds), dtype=bool)
    for arm in arms:
        cols = [j for j, k in enumerate(keys) if k[0] == arm]
        counts = [int((np.abs(z[i, cols]) <= Z_PASS).sum()) for i in range(len(seeds))]
        print(
            f"{arm}: rows passing per seed "
            + ", ".join(f"{s}: {c}/{len(cols)}" for s, c in zip(seeds, counts, strict=True))
        )
        within &= np.array([within_allowance(z[i, cols]) for i in range(len(seeds))])
    good = [str(s) for s, w in zip(seeds, within, strict=True) if w]
    print(
        "seeds where every arm is within the allowance (at most one row in 20 between 2 and 3 "
        f"SE, none beyond 3): {', '.join(good) if good else 'none'}"
    )


def within_allowance(z) -> bool:
    """Whether one arm's rows at one seed pass but for at most one row in 20 (rounded down)
    between 1.96 and 3 SE, and none beyond 3 (a missing value counts as beyond)."""
    import numpy as np

    from sandbox.validation.targets import Z_PASS

    a = np.abs(np.asarray(z, dtype=float))
    a = np.where(np.isfinite(a), a, np.inf)
    return bool((a <= 3.0).all() and int((a > Z_PASS).sum()) <= len(a) // 20)


def cmd_validate(args: argparse.Namespace) -> int:
    seeds = _seed_list(args.seed)
    if args.trial == "nlst-cea":
        code, tables = 0, []
        for seed in seeds:
            if len(seeds) > 1:
                print(f"\n== seed {seed}")
            c, rows = _validate_cea(argparse.Namespace(**{**vars(args), "seed": seed}))
            code, tables = max(code, c), [*tables, rows]
        if len(seeds) > 1:
            _print_cea_over_seeds(seeds, tables)
        return code
    ok, per_seed = True, []
    for seed in seeds:
        seed_ok, zs = _validate_seed(argparse.Namespace(**{**vars(args), "seed": seed}))
        ok = ok and seed_ok
        per_seed.append(zs)
    if len(seeds) > 1:
        _print_over_seeds(seeds, per_seed)
    return 0 if ok else 1


def cmd_calibrate(args: argparse.Namespace) -> int:
    from sandbox.compose import load, project_root
    from sandbox.validation.calibrate import (
        FREE,
        Arm,
        abc_draws,
        calibrate,
        evaluations_frame,
        get_params,
        worker_pool,
        write_fit,
    )
    from sandbox.validation.targets import Z_PASS, load_targets

    head, _ = load_targets(args.trial)
    names = [args.trial] + ([head["comparator"]] if head.get("comparator") else [])
    seeds = _seed_list(args.seed)
    arms = []
    for name in names:
        h, targets = load_targets(name)
        for seed in seeds:
            overrides = [
                f"scenario={h['scenario']}",
                f"policy={h['policy']}",
                f"seed={seed}",
                f"cohort.size={args.size}",
                "runtime=quiet",
            ]
            cfg, profiles, _ = load(overrides)
            fitted = [t for t in targets if t.fitted]
            trial_n = float(h.get("n") or args.size)
            arms.append(Arm(name, cfg, profiles, fitted, trial_n, tuple(overrides)))
    if args.max_evals < 0 or args.abc < 0 or not args.abc_width > 0:
        raise SandboxInputError(
            "calibrate: --max-evals and --abc must be 0 or more, --abc-width above 0"
        )
    start = get_params(arms[0].cfg)
    free = list(start) if not args.params else args.params.split(",")
    unknown = [p for p in free if p not in start]
    if unknown:
        what = "not a key of" if unknown[0] in FREE else "unknown parameter for"
        raise SandboxInputError(
            f"--params: {what} scenario {arms[0].cfg.scenario.name}: '{unknown[0]}' "
            f"(its free parameters: {', '.join(start)})"
        )

    def on_eval(i: int, value: float, p: dict[str, float]) -> None:
        print(
            f"  eval {i:3d}  loss {value:8.3f}  " + " ".join(f"{k}={v:.4g}" for k, v in p.items()),
            file=sys.stderr,
            flush=True,
        )

    with worker_pool(min(args.workers, len(arms))) as pool:
        best, value, tables, evals = calibrate(arms, args.max_evals, on_eval, free, pool)
        if args.abc:
            evals += abc_draws(arms, best, args.abc, args.abc_width, seeds[0], on_eval, pool, free)
    sets = evaluations_frame(evals, Z_PASS)
    n_acc = int(sets["accepted"].sum())
    print(
        f"best loss {value:.3f} after {len(evals)} evaluations (sum of z^2 over the fitted rows "
        f"of {', '.join(names)}); {n_acc} parameter vectors accepted (every fitted |z| <= {Z_PASS})"
    )
    print(
        _table(
            ["parameter", "start", "fitted"],
            [[k, fmt(start[k]), fmt(v)] for k, v in best.items()],
        )
    )
    for name, table in zip(names, tables, strict=True):
        print(f"\n{name}" + (f" (mean of seeds {args.seed})" if len(seeds) > 1 else ""))
        print(
            _table(
                ["target", "published", "simulated", "z"],
                [
                    [r["target"], fmt(r["published"]), fmt(r["simulated"]), f"{r['z']:+.2f}"]
                    for r in table.iter_rows(named=True)
                ],
            )
        )
    if args.dry_run:
        return 0
    root = project_root() / "scenarios"
    path = root / f"{head['scenario']}.yaml"
    sets_path = root / "calibration" / f"{head['scenario']}.parquet"
    command = (
        f"sandbox calibrate {args.trial} --size {args.size} --seed {args.seed} "
        f"--max-evals {args.max_evals}"
        + (f" --abc {args.abc} --abc-width {args.abc_width}" if args.abc else "")
        + (f" --params {args.params}" if args.params else "")
    )
    record = {
        "trial": args.trial,
        "arms": names,
        "targets": "sandbox/validation/targets",
        "method": (
            "Nelder-Mead on log-parameters minimising the sum of z^2 over the fitted rows "
            f"of {' and '.join(names)} (z the mean over the seeds), keyed streams (common random "
            "numbers)"
            if args.max_evals
            else f"the scenario's values as the fit (made before: docs), evaluated on the fitted "
            f"rows of {' and '.join(names)} (z the mean over the seeds)"
        )
        + (
            f"; then rejection ABC around it: {args.abc} vectors, each free parameter log-normal "
            f"(sigma {args.abc_width}) about its fitted value, accepted when every fitted row of "
            f"every arm passes (|z| <= {Z_PASS})"
            if args.abc
            else ""
        ),
        "command": command,
        "cohort_size": args.size,
        "seed": seeds[0] if len(seeds) == 1 else seeds,
        "evaluations": len(evals),
        "loss": round(value, 4),
        "accepted_sets": f"scenarios/calibration/{head['scenario']}.parquet ({n_acc} accepted)",
        "fitted": {k: float(f"{v:.4g}") for k, v in best.items() if k in free},
        "fit": {
            f"{name}.{r['target']}": {
                "published": r["published"],
                "simulated": round(r["simulated"], 4),
                "z": round(r["z"], 2),
            }
            for name, table in zip(names, tables, strict=True)
            for r in table.iter_rows(named=True)
        },
    }
    sets_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sets_path.with_suffix(".parquet.tmp")
    sets.write_parquet(tmp)
    tmp.replace(sets_path)
    write_fit(path, {k: v for k, v in best.items() if k in free}, record)
    print(f"\nwrote the fitted parameters and the fit record to {path}")
    print(f"wrote every evaluated parameter vector (accepted or not) to {sets_path}")
    return 0


@dataclass(frozen=True)
class TrainRecipe:
    scenario: str
    people: int = field(metadata={"ge": 100, "le": 10_000_000})
    epochs: int = field(metadata={"ge": 1, "le": 1000})
    seed: int = field(metadata={"ge": 0})
    size: int = field(metadata={"ge": 8, "le": 256})
    channels: tuple[int, ...]
    learning_rate: float = field(metadata={"gt": 0, "le": 1})
    scanners: tuple[Scanner, ...]
    # the share of screens on each of `scanners` (breast devices; empty: an even mix)
    scanner_shares: tuple[float, ...] = ()
    stem: int = field(default=0, metadata={"ge": 0, "le": 256})
    centre: bool = False
    network: str = ""  # "": the programme's reference network
    layers: tuple[int, ...] = (1, 1, 1, 1)
    store: str = "project"
    device: str = "cpu"
    # a declared training-set skew: {dimension: {group: share of it kept}} (docs/equity.md)
    skew: dict[str, dict[str, float]] = field(default_factory=dict)


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from sandbox.compose import load, project_root
    from sandbox.typed import build

    opts = dict(o.split("=", 1) for o in args.overrides if "=" in o)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise SandboxInputError(f"train: expected key=value, got {bad[0]!r}")
    agent = opts.pop("agent", None) or load(["runtime=quiet"])[0].agent
    recipe_path = project_root() / "conf" / "train" / f"{agent}.yaml"
    if not recipe_path.is_file():
        raise SandboxInputError(f"train: no training recipe for agent '{agent}' ({recipe_path})")
    data = yaml.safe_load(recipe_path.read_text())
    known = {f.name for f in dataclasses.fields(TrainRecipe)}
    for k, v in opts.items():
        if k not in known:
            raise SandboxInputError(f"train: unknown key '{k}' (known: {', '.join(sorted(known))})")
        data[k] = yaml.safe_load(v)
    try:
        recipe = build(TrainRecipe, data, "")
    except SandboxInputError as e:
        raise SandboxInputError(f"{recipe_path}: {e}") from e
    cfg, _, _ = load([f"scenario={recipe.scenario}", "runtime=quiet"])
    if cfg.scenario.programme.name == "breast_mammo":
        return _train_breast(agent, recipe, recipe_path, cfg, opts)
    from sandbox.programmes.lung_ldct.train import NETWORKS, train_device
    from sandbox.runners.devices import pick_device, user_agents_dir

    network = recipe.network or NETWORKS[0]
    if network not in NETWORKS:
        raise SandboxInputError(
            f"{recipe_path}: network: expected {' or '.join(NETWORKS)}, got {network!r}"
        )
    if recipe.store not in ("project", "cache"):
        raise SandboxInputError(
            f"{recipe_path}: store: expected project (agents/) or cache "
            f"({user_agents_dir()}), got {recipe.store!r}"
        )
    from sandbox.programmes.lung_ldct.train import SKEW_DIMENSIONS, skew_groups

    if recipe.scanner_shares:
        raise SandboxInputError(
            f"{recipe_path}: scanner_shares: not available for lung devices (each scanner "
            "trains on its own screens)"
        )
    for dim, shares in recipe.skew.items():
        if dim not in SKEW_DIMENSIONS:
            raise SandboxInputError(
                f"{recipe_path}: skew.{dim}: expected one of {', '.join(SKEW_DIMENSIONS)}"
            )
        for group, share in shares.items():
            if group not in skew_groups(dim):
                raise SandboxInputError(
                    f"{recipe_path}: skew.{dim}.{group}: expected one of "
                    f"{', '.join(skew_groups(dim))}"
                )
            if not 0.0 <= float(share) <= 1.0:
                raise SandboxInputError(
                    f"{recipe_path}: skew.{dim}.{group}: {share} is not a share in [0, 1]"
                )
    root = project_root() / "agents" if recipe.store == "project" else user_agents_dir()
    folder = root / agent
    command = "sandbox train agent=" + agent + "".join(f" {k}={v}" for k, v in opts.items())
    meta = train_device(
        cfg.scenario,
        list(recipe.scanners),
        folder,
        recipe.seed,
        recipe.people,
        recipe.epochs,
        recipe.size,
        recipe.channels,
        recipe.learning_rate,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        command=command,
        stem=recipe.stem,
        centre=recipe.centre,
        network=network,
        layers=tuple(recipe.layers),
        device=pick_device(recipe.device),
        skew={k: {g: float(v) for g, v in s.items()} for k, s in recipe.skew.items()},
    )
    held = meta["performance"]["held_out"]
    print(
        f"wrote {folder} (held-out exam AUC {held['overall']['auc']} for cancers >= 4 mm, "
        f"{held['all_cancers']['auc']} for all cancers)"
    )
    return 0


def _train_breast(agent: str, recipe: TrainRecipe, recipe_path: Path, cfg, opts: dict) -> int:
    """`sandbox train` for a breast recipe (sandbox/programmes/breast_mammo/train.py)."""
    from sandbox.compose import project_root
    from sandbox.programmes.breast_mammo.train import default_network, train_breast_device
    from sandbox.runners.devices import pick_device, user_agents_dir

    if recipe.network not in ("", "ResNet"):
        raise SandboxInputError(f"{recipe_path}: network: expected ResNet, got {recipe.network!r}")
    if recipe.skew:
        raise SandboxInputError(f"{recipe_path}: skew: not available for breast devices yet")
    try:
        network = default_network(recipe.channels, recipe.layers)
    except ValueError as e:
        raise SandboxInputError(f"{recipe_path}: {e}") from e
    for i, s in enumerate(recipe.scanners):
        if s.modality != "mammo":
            raise SandboxInputError(
                f"{recipe_path}: scanners[{i}]: a breast device trains on mammography systems "
                f"(modality: mammo), got {s.modality!r}"
            )
    shares = recipe.scanner_shares
    if shares and (
        len(shares) != len(recipe.scanners)
        or any(not (v >= 0.0 and math.isfinite(v)) for v in shares)
        or sum(shares) <= 0.0
    ):
        raise SandboxInputError(
            f"{recipe_path}: scanner_shares: {list(shares)} needs a non-negative share for each "
            f"of the {len(recipe.scanners)} scanners, not all zero"
        )
    root = project_root() / "agents" if recipe.store == "project" else user_agents_dir()
    command = "sandbox train agent=" + agent + "".join(f" {k}={v}" for k, v in opts.items())
    meta = train_breast_device(
        cfg.scenario,
        list(recipe.scanners),
        root / agent,
        recipe.seed,
        recipe.people,
        recipe.epochs,
        recipe.size,
        network,
        recipe.learning_rate,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        command=command,
        device=pick_device(recipe.device),
        scanner_shares=list(shares),
    )
    held = meta["performance"]["held_out"]
    print(
        f"wrote {root / agent} (held-out exam AUC {held['overall']['auc']} for the cancers an "
        f"exam shows, {held['all_cancers']['auc']} for every cancer present)"
    )
    return 0


def cmd_economics(args: argparse.Namespace) -> int:
    from sandbox.comparison import expand
    from sandbox.economics.report import (
        by_choices,
        economics_tables,
        parse_wtp,
        price_folders,
        subgroup_tables,
    )

    wtp = parse_wtp(args.wtp)
    if not 100 <= args.replicates <= 100_000:
        raise SandboxInputError(f"--replicates {args.replicates}: must be 100-100000")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise SandboxInputError(f"--out {args.out}: write .parquet or .csv")
    if out is not None and not out.parent.is_dir():
        raise SandboxInputError(f"--out {args.out}: no such folder {out.parent}")
    folders = expand(args.runs, "economics")
    if len(folders) < 1:
        raise SandboxInputError("economics: give one or more run folders")
    priced, econ = price_folders([str(f) for f in folders], args.economics)
    if args.by is not None and args.by not in by_choices(priced[0].programme):
        choices = ", ".join(by_choices(priced[0].programme))
        raise SandboxInputError(f"--by {args.by}: choose one of {choices}")
    icers, nmb, paired = economics_tables(priced, args.effect, wtp, args.replicates)
    unit = "QALYs" if args.effect == "qalys" else "life-years"
    cur = econ.currency
    print(
        shown(
            f"price list: {econ.name} ({econ.description or econ.perspective}); {cur} "
            f"{econ.price_year}; discounting {econ.discount_costs:.1%} costs, "
            f"{econ.discount_effects:.1%} effects; horizon "
            f"{'lifetime' if econ.horizon_years == 0 else f'{econ.horizon_years:g} years'}"
        )
    )
    how = "paired (the same people under every strategy)" if paired else "unpaired"
    print(
        f"per person, discounted; 95% intervals: bootstrap over people, {how}, {args.replicates} replicates"
    )
    for p_ in priced:
        print(shown(f"  {p_.label}: {p_.folder}"))
    print()

    def cell(v, lo, hi, digits=0):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        f = (lambda x: f"{x:,.{digits}f}") if digits >= 0 else fmt
        if lo is None or math.isnan(lo):
            return f(v)
        return f"{f(v)} ({f(lo)} to {f(hi)})"

    def icer_rows(frame: pl.DataFrame, first: tuple[str, ...] = ("Strategy",)) -> list[list]:
        return [
            [
                *(d[k] for k in first),
                cell(d["Cost"], d["Cost_lo"], d["Cost_hi"]),
                cell(d["Effect"], d["Effect_lo"], d["Effect_hi"], 4),
                cell(d["Inc_Cost"], d["Inc_Cost_lo"], d["Inc_Cost_hi"]),
                cell(d["Inc_Effect"], d["Inc_Effect_lo"], d["Inc_Effect_hi"], 4),
                cell(d["ICER"], d["ICER_lo"], d["ICER_hi"]),
                d["Status"],
            ]
            for d in frame.iter_rows(named=True)
        ]

    header = [
        f"Cost ({cur})",
        f"Effect ({unit})",
        "Inc_Cost",
        "Inc_Effect",
        f"ICER ({cur}/{unit[:-1] if unit.endswith('s') else unit})",
        "Status",
    ]
    print(shown(_table(["Strategy", *header], icer_rows(icers))))
    print(
        "Status: ND non-dominated (on the frontier; increments against the previous ND strategy), D dominated, ED extendedly dominated"
    )
    rows = [
        [
            d["Strategy"],
            f"{d['WTP']:,.0f}",
            cell(d["NMB"], d["NMB_lo"], d["NMB_hi"]),
            f"{d['P_cost_effective']:.3f}",
        ]
        for d in nmb.iter_rows(named=True)
    ]
    print()
    print(shown(_table(["Strategy", f"WTP ({cur}/{unit[:-1]})", "NMB", "P(cost-effective)"], rows)))
    tables = {"icers": icers, "nmb": nmb}
    if args.by is not None:
        by_icers, by_nmb = subgroup_tables(priced, args.by, args.effect, wtp, args.replicates)
        print(f"\nby {args.by}: each subgroup's own comparison of the strategies, on its people")
        print(
            shown(
                _table(
                    ["Subgroup", "Strategy", *header], icer_rows(by_icers, ("Subgroup", "Strategy"))
                )
            )
        )
        tables |= {f"icers_by_{args.by}": by_icers, f"nmb_by_{args.by}": by_nmb}
    if out is not None:
        written = []
        for name, frame in tables.items():
            target = out.with_name(f"{out.stem}_{name}{out.suffix}")
            tmp = target.with_name(target.name + ".tmp")
            if out.suffix == ".csv":
                frame.write_csv(tmp)
            else:
                frame.write_parquet(tmp)
            tmp.replace(target)
            written.append(str(target))
        print(shown(f"\nwritten: {', '.join(written)}"))
    return 0


PSA_KEYS = ("policies", "draws", "natural_history")


def _psa_sweep(args: argparse.Namespace) -> Path | None:
    """``sandbox psa KEY=VALUE ...``: simulate every strategy (``policies=``) under
    ``natural_history=`` parameter sets drawn from the scenario's calibration (a sweep on Ray,
    common random numbers within a set); the sweep folder, or None if it did not finish."""
    import dataclasses
    from datetime import UTC, datetime

    from sandbox.compose import load, project_root
    from sandbox.sweep import RUNS, compose_jobs, expand_plan
    from sandbox.validation.calibrate import calibration_sets

    pseudo, base = {}, []
    for o in args.runs:
        key, _, value = o.partition("=")
        if key in PSA_KEYS:
            pseudo[key] = value
        elif key.lstrip("+") == "policy":
            raise SandboxInputError("psa: name the strategies with policies=a,b,c (not policy=)")
        else:
            base.append(o)
    policies = [p.strip() for p in pseudo.get("policies", "").split(",") if p.strip()]
    if len(policies) < 2 or len(set(policies)) != len(policies):
        raise SandboxInputError("psa: policies= needs two or more different policies, a,b,c")
    for key, low, high in (("draws", 10, 100_000), ("natural_history", 1, 1000)):
        if key in pseudo:
            try:
                value = int(pseudo[key])
            except ValueError:
                raise SandboxInputError(f"psa: {key}={pseudo[key]}: not a whole number") from None
            if not low <= value <= high:
                raise SandboxInputError(f"psa: {key}={value}: must be {low}-{high}")
    if "draws" in pseudo:
        args.draws = int(pseudo["draws"])
    n_sets = int(pseudo.get("natural_history", 10))
    cfg = load([*base, f"policy={policies[0]}"])[0]
    sets = calibration_sets(cfg, n_sets, args.seed, project_root())
    if not sets.kept:
        raise SandboxInputError(
            f"scenario {cfg.scenario.name}: it sets every calibrated parameter itself; "
            "no natural-history uncertainty is left to draw"
        )
    name = args.name or f"psa-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    zipped = {path: [repr(v[path]) for v in sets.values] for path in sets.values[0]}
    plan = expand_plan(
        name,
        base,
        {"policy": policies},
        zipped,
        f"PSA: {len(policies)} strategies x {n_sets} natural-history sets "
        f"(rows {', '.join(map(str, sets.rows))} of {sets.source})",
    )
    # short run names: strategy and set (the parameter values are in sweep.yaml)
    runs = tuple(
        dataclasses.replace(r, name=f"{i:03d}-{r.axes['policy']}-set{i % n_sets:02d}")
        for i, r in enumerate(plan.runs)
    )
    plan = dataclasses.replace(plan, runs=runs)
    out_dir = cfg.runtime.out_dir
    root = Path(out_dir) / "sweeps" / name
    if root.exists():
        raise SandboxInputError(f"{root}: a sweep of this name exists (give another --name)")
    print(
        shown(
            f"psa: {len(policies)} strategies x {n_sets} natural-history sets drawn from "
            f"{sets.source} ({', '.join(sets.kept)})"
            + (f"; kept as the scenario sets them: {', '.join(sets.own)}" if sets.own else "")
        )
    )
    code, folder = _execute_sweep(plan, None, compose_jobs(plan, root / RUNS), out_dir)
    if code != 0:
        if folder is not None:
            print(
                f"psa: the sweep did not finish; resume it (sandbox sweep --resume {folder}), "
                f"then price it: sandbox psa {folder}",
                file=sys.stderr,
            )
        return None
    return folder


def _sweep_strategies(folder: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """A finished sweep's runs as strategies (its ``policy`` axis) by set (each combination of
    its other axes, in plan order): ({strategy: [run folder per set]}, the set axes)."""
    from sandbox.sweep import RUNS, done, read_plan

    plan = read_plan(folder)
    if "policy" not in plan.axes:
        raise SandboxInputError(f"{folder}: the sweep has no policy axis (no strategies)")
    others = [a for a in plan.axes if a != "policy"]
    by: dict[str, dict[tuple, Path]] = {}
    keys: list[tuple] = []
    for r in plan.runs:
        if not done(folder / RUNS, r.name):
            raise SandboxInputError(
                f"{folder}: run {r.name} is not finished (sandbox sweep --resume {folder})"
            )
        key = tuple(r.axes[a] for a in others)
        if key not in keys:
            keys.append(key)
        by.setdefault(r.axes["policy"], {})[key] = folder / RUNS / r.name
    for policy, runs in by.items():
        if len(runs) != len(keys):
            raise SandboxInputError(f"{folder}: policy {policy} lacks some of the sweep's sets")
    if len(by) < 2:
        raise SandboxInputError(f"{folder}: the sweep has one policy; psa compares two or more")
    return {p: [runs[k] for k in keys] for p, runs in by.items()}, others


def _psa_simulated(set_axes: list[str]) -> bool:
    """Whether a sweep's sets are parameter vectors (config paths), as `psa` draws them."""
    return bool(set_axes) and all("." in a for a in set_axes)


def cmd_psa(args: argparse.Namespace) -> int:
    import shutil
    from datetime import UTC, datetime

    import numpy as np
    import yaml

    from sandbox.comparison import expand
    from sandbox.economics import plots
    from sandbox.economics.psa import (
        acceptability,
        evppi_params,
        evppi_sets,
        parameter_groups,
        parse_params,
        run_psa,
        tornado,
    )
    from sandbox.economics.report import parse_wtp, price_folders
    from sandbox.runfolder import temporary_name

    if not 10 <= args.draws <= 100_000:
        raise SandboxInputError(f"--draws {args.draws}: must be 10-100000")
    (wtp,) = parse_wtp(args.wtp)[:1] or [0.0]
    (wtp_max,) = parse_wtp(str(args.wtp_max))
    if wtp_max <= 0:
        raise SandboxInputError(f"--wtp-max {args.wtp_max}: must be positive")
    simulate = [a for a in args.runs if "=" in a]
    sweep = None
    if simulate:
        if len(simulate) != len(args.runs):
            raise SandboxInputError("psa: give run folders, a sweep folder, or KEY=VALUE overrides")
        if args.out and Path(args.out).exists():
            raise SandboxInputError(f"--out {args.out}: already exists")
        sweep = _psa_sweep(args)
        if sweep is None:
            return 1
    elif len(args.runs) == 1 and (Path(args.runs[0]) / "sweep.yaml").is_file():
        sweep = Path(args.runs[0])
    if sweep is not None:
        groups, set_axes = _sweep_strategies(sweep)
        folders = [str(f) for runs in groups.values() for f in runs]
    else:
        folders = [str(f) for f in expand(args.runs, "psa")]
        if len(folders) < 2:
            raise SandboxInputError("psa: give two or more run folders (strategies)")
    priced, econ = price_folders(folders, args.economics)
    assert econ.costs is not None and econ.utilities is not None
    params = parse_params(econ.psa, econ.costs, econ.utilities)
    if not params:
        raise SandboxInputError(f"economics {econ.name}: its psa section declares no parameters")
    if sweep is not None:
        at_folder = {str(p.folder.resolve()): p for p in priced}
        by_strategy = {
            name: [at_folder[str(Path(f).resolve())] for f in runs] for name, runs in groups.items()
        }
        strategies = {n: [p.exposures for p in ps] for n, ps in by_strategy.items()}
        mean_cost = {
            n: float(np.mean([p.frame["cost_total"].mean() for p in ps]))
            for n, ps in by_strategy.items()
        }
        n_sets = len(next(iter(strategies.values())))
    else:
        strategies = {p.label: p.exposures for p in priced}
        mean_cost = {p.label: float(p.frame["cost_total"].mean()) for p in priced}
        n_sets = 1
    names = list(strategies)
    reference = args.reference or min(names, key=lambda n: mean_cost[n])
    if reference not in names:
        raise SandboxInputError(f"--reference {reference}: not one of {', '.join(names)}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out or Path("runs") / "psa" / f"psa-{stamp}")
    if out.exists():
        raise SandboxInputError(f"--out {out}: already exists")
    t0 = time.perf_counter()
    draws = run_psa(strategies, econ.costs, econ.utilities, params, args.draws, args.seed)
    per_draw_ms = 1000 * (time.perf_counter() - t0) / args.draws
    # the CEAC's axis reaches --wtp and holds it exactly: what is printed is at --wtp itself
    grid = np.union1d(np.linspace(0.0, max(wtp_max, wtp), 41), [wtp])
    ceac_t, evpi_t = acceptability(draws, grid)
    evppi_t = evppi_sets(draws, grid) if n_sets > 1 else None
    evppi_p = evppi_params(draws, parameter_groups([p.path for p in params]), grid)
    if n_sets == 1:
        uncertainty = "prices and utilities (the runs' clinical outcomes are fixed)"
    else:
        what = "natural-history parameters" if _psa_simulated(set_axes) else "the sweep's axes"
        uncertainty = (
            f"prices, utilities and {n_sets} re-simulated sets of {what} "
            f"(draw d uses set d mod {n_sets})"
        )
    at = acceptability(draws, np.array([wtp]))[0]
    best = at.filter(pl.col("on_frontier"))["strategy"][0]
    strategy = args.strategy or (
        best if best != reference else next(n for n in names if n != reference)
    )
    if strategy not in names or strategy == reference:
        raise SandboxInputError(
            f"--strategy {strategy}: one of {', '.join(n for n in names if n != reference)}"
        )
    torn = tornado(strategies, econ.costs, econ.utilities, params, strategy, reference, wtp)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(out)
    tmp.mkdir()
    try:
        draws.write_parquet(tmp / "psa_draws.parquet")
        ceac_t.write_parquet(tmp / "ceac.parquet")
        evpi_t.write_parquet(tmp / "evpi.parquet")
        if evppi_t is not None:
            evppi_t.write_parquet(tmp / "evppi.parquet")
        evppi_p.write_parquet(tmp / "evppi_parameters.parquet")
        torn.write_parquet(tmp / "tornado.parquet")
        unit = "QALYs"
        plots.ce_plane(draws, reference, wtp, unit, econ.currency, tmp)
        plots.ceac(ceac_t, evpi_t, unit, econ.currency, tmp)
        plots.tornado(
            torn,
            f"{strategy} vs {reference} at WTP {wtp:,.0f}: one-way sensitivity",
            econ.currency,
            tmp,
        )
        (tmp / "psa.yaml").write_text(
            yaml.safe_dump(
                {
                    "command": "sandbox psa " + " ".join(sys.argv[2:])
                    if sys.argv[1:2] == ["psa"]
                    else "",
                    "runs": {p.label: str(p.folder) for p in priced}
                    if sweep is None
                    else {n: [str(f) for f in fs] for n, fs in groups.items()},
                    **({"sweep": str(sweep), "set_axes": set_axes} if sweep is not None else {}),
                    "economics": econ.name,
                    "draws": args.draws,
                    "seed": args.seed,
                    "reference": reference,
                    "parameters": [p.path for p in params],
                    "uncertainty": uncertainty,
                },
                sort_keys=False,
            )
        )
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mean = draws.group_by("strategy", maintain_order=True).agg(
        pl.col("cost").mean(),
        pl.col("cost").quantile(0.025).alias("c_lo"),
        pl.col("cost").quantile(0.975).alias("c_hi"),
        pl.col("effect").mean(),
        pl.col("effect").quantile(0.025).alias("e_lo"),
        pl.col("effect").quantile(0.975).alias("e_hi"),
    )
    print(
        shown(
            f"PSA: {args.draws} draws of {len(params)} prices and utilities ({econ.name}), "
            f"{len(names)} strategies re-priced, {per_draw_ms:.2f} ms per draw; {uncertainty}"
        )
    )
    rows = [
        [
            d["strategy"],
            f"{d['cost']:,.0f} ({d['c_lo']:,.0f} to {d['c_hi']:,.0f})",
            f"{d['effect']:.4f} ({d['e_lo']:.4f} to {d['e_hi']:.4f})",
            f"{at.filter(pl.col('strategy') == d['strategy'])['p_cost_effective'][0]:.3f}",
        ]
        for d in mean.iter_rows(named=True)
    ]
    print(
        shown(
            _table(
                [
                    "strategy",
                    f"cost ({econ.currency})",
                    "QALYs",
                    f"P(cost-effective) at {wtp:,.0f}",
                ],
                rows,
            )
        )
    )
    ev = evpi_t.filter(pl.col("wtp") <= wtp).tail(1)
    print(
        f"EVPI per person at {ev['wtp'][0]:,.0f}: {ev['evpi_per_person'][0]:,.2f} {econ.currency}"
    )
    if evppi_t is not None:
        evp = evppi_t.filter(pl.col("wtp") <= wtp).tail(1)
        print(
            f"EVPPI of the {n_sets} sets per person at {evp['wtp'][0]:,.0f}: "
            f"{evp['evppi_natural_history_per_person'][0]:,.2f} {econ.currency}"
        )
    at_wtp = evppi_p.filter(pl.col("wtp") == ev["wtp"][0]).sort("evppi_per_person", descending=True)
    if at_wtp.height:
        top3 = ", ".join(
            f"{d['group']} {d['evppi_per_person']:,.2f}"
            for d in at_wtp.head(3).iter_rows(named=True)
        )
        print(shown(f"EVPPI per person at {ev['wtp'][0]:,.0f}, largest: {top3} {econ.currency}"))
    if torn.height:
        top = torn.row(0, named=True)
        print(
            shown(
                f"widest one-way swing ({strategy} vs {reference}): {top['parameter']} "
                f"(incremental NMB {top['inmb_low']:,.0f} to {top['inmb_high']:,.0f})"
            )
        )
    print(
        shown(
            f"written: {out} (psa_draws, ceac, evpi, evppi_parameters, tornado .parquet; ce_plane, ceac, tornado .png/.svg)"
        )
    )
    return 0


def cmd_agent_card(args: argparse.Namespace) -> int:
    from sandbox.agents.bundle import load_bundle
    from sandbox.runners.devices import agent_folder

    model = load_bundle(agent_folder(args.agent))
    print(shown(model.model_card or json.dumps(model.metadata, indent=2)))
    print(f"digest: {model.digest}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sandbox", description="In-silico regulatory sandbox for AI in screening."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="simulate a scenario under a policy and write a run folder")
    r.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides, e.g. scenario=nlst policy=soc_single_read cohort.size=50000 seed=7",
    )
    r.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="Hydra multirun: every override with several values is an axis (= sandbox sweep)",
    )
    r.set_defaults(func=cmd_run)
    c = sub.add_parser(
        "compare",
        help="metrics of run folders side by side; two arms (policies) paired on the same people, "
        "pooled over seeds, with a trial-style verdict",
    )
    c.add_argument(
        "runs",
        nargs="*",
        help="run folders (or glob patterns); runs of one configuration at several seeds form an arm",
    )
    c.add_argument(
        "--spec", help="a comparison YAML (baseline, candidate, primary, ...): docs/metrics.md"
    )
    c.add_argument(
        "--metric", action="append", help="metric to show (repeatable); default: the summary set"
    )
    c.add_argument("--site", default="all")
    c.add_argument("--subgroup", default="all", help="e.g. sex=F, race=black, age_band=65-69")
    c.add_argument("--round", default="all", help="T0, T1, ... or all")
    c.add_argument(
        "--primary",
        help="primary metric of a trial-style verdict on arm B against arm A "
        "(paired: same scenario and seeds), e.g. screen_detected_cancers",
    )
    c.add_argument(
        "--margin",
        type=float,
        default=None,
        help="non-inferiority margin (default 0.1: 10%% of arm A's value)",
    )
    c.add_argument("--margin-kind", choices=("relative", "absolute"), default=None)
    c.add_argument(
        "--replicates", type=int, default=None, help="paired bootstrap replicates (default 2000)"
    )
    c.add_argument("--plot", help="write a forest plot of the paired differences (.svg or .png)")
    c.add_argument(
        "--equity",
        action="store_true",
        help="also how B changes A's disparities between subgroups and sites (paired)",
    )
    c.add_argument(
        "--reference",
        action="append",
        help="with --equity: a dimension's reference group (repeatable), e.g. race=black",
    )
    c.set_defaults(func=cmd_compare)
    w = sub.add_parser(
        "sweep",
        help="many runs from one spec on Ray (local or a cluster): one folder, one table, resumable",
    )
    w.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides; sweeps cross: policy=soc_double_read,ai_triage seed=range(1,11)",
    )
    w.add_argument("--spec", help="a sweep file (axes, zip, overrides): docs/sweeps.md")
    w.add_argument("--name", help="the sweep folder's name (default: the file's, or the time)")
    w.add_argument("--resume", help="finish the sweep in this folder (after a crash or Ctrl-C)")
    w.add_argument(
        "--dry-run", action="store_true", help="expand and validate every run, write nothing"
    )
    w.set_defaults(func=cmd_sweep)
    d = sub.add_parser(
        "dashboard", help="the regulator's dashboard in a browser (Streamlit, on localhost)"
    )
    d.add_argument("--runs", default="runs", help="results root: the only folder it reads")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    d.set_defaults(func=cmd_dashboard)
    wi = sub.add_parser(
        "whatif",
        help="answer a policy change in well under a second from a prepared cohort "
        "(queue-free replay against standard of care on the same people)",
    )
    wi.add_argument("overrides", nargs="*", help="Hydra overrides: scenario, policy, seed, sizes")
    wi.add_argument(
        "--role",
        choices=("none", "second_reader", "triage", "rule_out", "concurrent", "safety_net"),
    )
    wi.add_argument("--threshold-mode", choices=("absolute", "percentile", "target_sensitivity"))
    wi.add_argument("--threshold", type=float, help="the operating point's value")
    wi.add_argument("--audit", type=float, help="rule-out audit fraction")
    wi.add_argument("--attendance", type=float, help="share of invitees attending each round")
    wi.add_argument("--readers", help="radiologists per site, e.g. 4,3 (capacity only)")
    wi.add_argument(
        "--prepare-only", action="store_true", help="prepare (and cache) the cohort, answer nothing"
    )
    wi.set_defaults(func=cmd_whatif)
    v = sub.add_parser("validate", help="simulated vs published trial table, pass/fail per row")
    v.add_argument(
        "trial",
        help="nlst, nlst-cea (Black et al. 2014, the NLST cost-effectiveness analysis), masai "
        "(the MASAI trial's AI-supported arm beside its double-reading arm) or masai_control "
        "(the double-reading arm alone)",
    )
    v.add_argument("--size", type=int, default=0, help="cohort size (default: the trial's)")
    v.add_argument(
        "--seed",
        default="2011",
        help="seed, or comma-separated seeds: each validated, then every row's z over the seeds",
    )
    v.add_argument(
        "--tolerance-scale",
        type=float,
        default=None,
        help="multiply tolerances (default: sqrt(trial size / size), at least 1)",
    )
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=cmd_validate)
    k = sub.add_parser(
        "calibrate",
        help="fit free natural-history parameters to a trial and write them to its scenario",
    )
    k.add_argument(
        "trial",
        help="the trial whose fitted rows the fit aims at: nlst (with its comparator), masai_control",
    )
    k.add_argument("--size", type=int, default=15000)
    k.add_argument(
        "--seed",
        default="2011",
        help="seed, or comma-separated seeds whose mean the fit aims at (default 2011)",
    )
    k.add_argument(
        "--max-evals",
        type=int,
        default=120,
        help="optimiser evaluations (default 120; 0: the scenario's values are the fit, and "
        "--abc draws around them)",
    )
    k.add_argument(
        "--params", default="", help="comma-separated free parameters to fit (default: all)"
    )
    k.add_argument(
        "--abc", type=int, default=0, help="rejection-ABC draws around the optimum (default 0)"
    )
    k.add_argument(
        "--abc-width", type=float, default=0.05, help="log-normal sigma of the ABC draws"
    )
    k.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes simulating each evaluation's arms and seeds side by side (default 1; "
        "the result does not depend on it)",
    )
    k.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    k.set_defaults(func=cmd_calibrate)
    t = sub.add_parser(
        "train",
        help="rebuild an AI device's weights from synthetic data (agent=NAME, recipe overrides)",
    )
    t.add_argument(
        "overrides", nargs="*", help="agent=<name under agents/> people=20000 epochs=4 ..."
    )
    t.set_defaults(func=cmd_train)
    e = sub.add_parser(
        "economics",
        help="price run folders and tabulate them as strategies: costs, QALYs, ICERs with "
        "dominance, net monetary benefit (docs/economics.md)",
    )
    e.add_argument("runs", nargs="+", help="run folders (or glob patterns), one per strategy")
    e.add_argument(
        "--economics",
        help="price list: a preset (us_payer, nice; sweden_breast for breast runs) or a YAML "
        "file; default: the runs' own",
    )
    e.add_argument(
        "--wtp",
        default="50000,100000,150000",
        help="willingness-to-pay values per unit of effect, comma-separated",
    )
    e.add_argument("--effect", choices=("qalys", "life_years"), default="qalys")
    e.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates")
    e.add_argument(
        "--by",
        help="also tabulate within each subgroup of the runs' programme or site (lung: sex, "
        "race, age_band, smoking; breast: age_band, density, family_history; site)",
    )
    e.add_argument(
        "--out",
        help="also write the tables: FILE.parquet or FILE.csv (FILE_icers, FILE_nmb; with --by "
        "also FILE_icers_by_<by>, FILE_nmb_by_<by>)",
    )
    e.set_defaults(func=cmd_economics)
    ps = sub.add_parser(
        "psa",
        help="probabilistic sensitivity analysis of run folders (strategies) over the price "
        "list's uncertain prices and utilities: CE plane, CEAC/CEAF, EVPI, tornado",
    )
    ps.add_argument(
        "runs",
        nargs="+",
        help="run folders (or glob patterns), one per strategy; or a sweep folder (its policy "
        "axis are the strategies, its other axes the sets); or KEY=VALUE overrides with "
        "policies=a,b,c [natural_history=K] [draws=N]: simulate the strategies under K "
        "parameter sets drawn from the scenario's calibration (a sweep on Ray)",
    )
    ps.add_argument("--name", help="sweep name when simulating (default psa-<time>)")
    ps.add_argument("--economics", help="price list with a psa section (default: the runs' own)")
    ps.add_argument("--draws", type=int, default=500)
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--wtp", default="100000", help="WTP of the tornado and the summary")
    ps.add_argument("--wtp-max", default="200000", help="upper end of the CEAC's WTP axis")
    ps.add_argument("--reference", help="comparator strategy (default: the cheapest)")
    ps.add_argument("--strategy", help="strategy of the tornado (default: the best at --wtp)")
    ps.add_argument("--out", help="output folder (default runs/psa/psa-<time>)")
    ps.set_defaults(func=cmd_psa)
    mo = sub.add_parser(
        "monitor", help="a run's monitoring plan: alarms, days to detection, a plot of its charts"
    )
    mo.add_argument("run", help="a run folder made with monitoring=<plan>")
    mo.add_argument("--plot", help="write the charts (.svg or .png)")
    mo.set_defaults(func=cmd_monitor)
    eq = sub.add_parser(
        "equity",
        help="a run's disparities between subgroups and sites: gaps to a reference group and "
        "Fairlearn's summaries, with intervals",
    )
    eq.add_argument("run", help="a run folder")
    eq.add_argument(
        "--reference",
        action="append",
        help="a dimension's reference group (repeatable), e.g. race=black; default: its largest",
    )
    eq.add_argument(
        "--dimension", action="append", help="only these dimensions (sex, race, site, ...)"
    )
    eq.add_argument("--all", action="store_true", help="every gap, not only those flagged")
    eq.add_argument("--csv", help="also write the whole table as CSV")
    eq.set_defaults(func=cmd_equity)
    a = sub.add_parser(
        "agent-card", help="what an AI device is, was trained on, and how it performs"
    )
    a.add_argument("agent", help="a folder name under agents/ or a path")
    a.set_defaults(func=cmd_agent_card)
    return p


def main(argv: Sequence[str] | None = None) -> int:  # noqa: D103
    p = parser()
    args, extra = p.parse_known_args(argv)
    # Hydra overrides may follow options (`validate nlst --size 6000 runtime=quiet`)
    unknown = [a for a in extra if a.startswith("-")]
    runs = getattr(args, "runs", None)
    if extra and isinstance(runs, list) and all("=" in a for a in extra):
        args.runs = [*args.runs, *extra]  # `psa KEY=VALUE ... --out F KEY=VALUE`
        extra = []
    if unknown or (extra and not hasattr(args, "overrides")):
        p.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    debug = args.debug or os.environ.get("HYDRA_FULL_ERROR") == "1"
    previous = _terminate_like_interrupt()
    try:
        return args.func(args)
    except SandboxInputError as e:
        if debug:
            raise
        print(shown(f"error: {' '.join(str(e).split())}"), file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _terminate_like_interrupt():
    """SIGTERM unwinds like Ctrl-C (temporary folders removed); returns the previous handler."""
    try:
        return signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        return None


if __name__ == "__main__":
    sys.exit(main())

"""What if? on a prepared cohort: time from a knob change to the answer, and how the fast answer
agrees with the full event-by-event run.

What it measures
    0. The scenario's sites are equipped for its own cohort (20,000 people): with more people,
       their scanners, radiologists and work-up slots are scaled by the same factor
       (``--no-scale-capacity`` keeps them, and the full run becomes a scanner backlog that the
       replay flags as capacity-bound).
    1. Prepare (or load, if the results root already holds it) the cohort of ``--people`` people:
       ``sandbox.whatif.load_or_prepare``, as ``sandbox whatif`` and the dashboard do. The
       preparation is a one-off (the AI device scores every screen); its time is reported, not
       judged.
    2. Latency: ``--changes`` knob changes (AI role, operating point mode and value, audit
       fraction, attendance, radiologists per site, cycled in a fixed order), each timed from the
       new knob values to the answer table: resolving the operating point on the device's
       validation set, the staffing check, both arms of the replay and the capacity table, as
       the dashboard page does on every change. Median, 90th percentile and maximum.
    3. Baseline, in the same invocation: the full run of the same cohort under the policy
       (``sandbox.runners.local.simulate``; its AI scores come from the score cache the
       preparation filled). Speed-up = full-run seconds / median answer seconds.
    4. Agreement: the fast answer for the policy's own knobs against that full run, metric by
       metric: both values, the full run's 95% interval, whether the fast value lies inside it,
       and the relative difference. ``--confirm-rule-out`` adds a second full run (rule-out at
       the policy's operating point) compared the same way.

How to run::

    .venv/bin/python benchmarks/whatif_latency.py                        # 100,000 people (prepares once)
    .venv/bin/python benchmarks/whatif_latency.py --people 20000 --changes 20

Writes ``<out>/whatif_latency.json`` (``--out``, default /tmp). The prepared cohort and the score
cache stay under ``--results`` (default ``runs``), so a second invocation measures latency
without preparing again.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import _common
import polars as pl

KNOB_CYCLE = [
    # (role, mode, value, audit, attendance, extra radiologists per site)
    ("triage", "percentile", 0.90, 0.0, 0.90, 0),
    ("triage", "percentile", 0.80, 0.0, 0.90, 0),
    ("triage", "target_sensitivity", 0.95, 0.0, 0.90, 0),
    ("rule_out", "percentile", 0.50, 0.05, 0.90, 0),
    ("rule_out", "percentile", 0.60, 0.10, 0.90, 0),
    ("rule_out", "absolute", 0.30, 0.00, 0.85, 0),
    ("second_reader", "percentile", 0.90, 0.0, 0.90, 0),
    ("concurrent", "percentile", 0.90, 0.0, 0.90, 0),
    ("none", "percentile", 0.90, 0.0, 0.70, 0),
    ("triage", "percentile", 0.95, 0.0, 0.90, -1),
    ("triage", "absolute", 0.50, 0.0, 1.00, 2),
]
COMPARED = (
    "screens",
    "screen_detected_cancers",
    "interval_cancers",
    "recall_rate",
    "false_positive_workups",
    "benign_biopsies",
    "human_reads",
    "screen_reads_saved",
    "reader_hours",
    "ai_rule_out_missed_cancers",
    "days_to_diagnosis_median",
)


def agreement(fast: pl.DataFrame, full: pl.DataFrame) -> list[dict]:
    full = full.filter(
        (pl.col("site") == "all") & (pl.col("subgroup") == "all") & (pl.col("round") == "all")
    )
    rows = []
    for m in COMPARED:
        f = fast.filter(pl.col("metric") == m)
        g = full.filter(pl.col("metric") == m)
        if not f.height or not g.height:
            continue
        fv, gv, lo, hi = f["policy"][0], g["value"][0], g["lo"][0], g["hi"][0]
        rows.append(
            {
                "metric": m,
                "fast": fv,
                "full": gv,
                "full_lo": lo,
                "full_hi": hi,
                "inside": bool(lo - 1e-9 <= fv <= hi + 1e-9),
                "relative_difference": (fv - gv) / gv if gv else None,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--policy", default="ai_triage")
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--results", default="runs", help="results root holding prepared cohorts")
    ap.add_argument("--confirm-rule-out", action="store_true")
    ap.add_argument(
        "--scale-capacity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scale each site's scanners, radiologists and work-up slots with --people over the "
        "scenario's own cohort size (default on)",
    )
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()

    from sandbox import whatif
    from sandbox.compose import load
    from sandbox.runners.local import simulate

    results = Path(args.results)
    overrides = [
        f"policy={args.policy}",
        f"seed={args.seed}",
        f"cohort.size={args.people}",
        f"runtime.out_dir={results}",
        f"runtime.score_cache={results / '.score_cache'}",
        "runtime.progress=false",
    ]
    cfg, profiles, _ = load(overrides)
    # the scenario's sites are staffed and equipped for its own cohort size: scale their
    # capacity with the cohort, so the full run is not a scanner backlog
    own_size = load([f"policy={args.policy}"])[0].scenario.cohort.size
    factor = args.people / own_size if args.scale_capacity else 1.0
    if factor > 1.0:
        for i, site in enumerate(cfg.scenario.sites):
            overrides += [
                f"sites.{i}.scanners={min(100, math.ceil(site.scanners * factor))}",
                f"sites.{i}.workup_slots_per_day={math.ceil(site.workup_slots_per_day * factor)}",
            ]
            overrides += [
                f"sites.{i}.readers.{p}={math.ceil(n * factor)}" for p, n in site.readers.items()
            ]
        cfg, profiles, _ = load(overrides)
    folder = results / ".whatif"
    t0 = time.perf_counter()
    prep = whatif.load_or_prepare(
        cfg, profiles, folder, lambda s, f: print(f"  {s} {f:.0%}", end="\r", flush=True)
    )
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    whatif.load(folder, prep.key)
    load_s = time.perf_counter() - t0
    sites = list(cfg.scenario.sites)
    staff = tuple(sum(s.readers.values()) for s in sites)

    times, cycle = [], KNOB_CYCLE
    unavailable = prep.meta.get("unavailable", {})
    for i in range(args.changes):
        role, mode, value, audit, attendance, extra = cycle[i % len(cycle)]
        if role in unavailable:
            role = "triage"
        t = time.perf_counter()
        thr = whatif.resolve_knob_threshold(cfg.agent, mode, value) if role != "none" else 0.5
        readers = tuple(max(1, n + extra) for n in staff)
        if whatif.staffing_problem(cfg, role, readers):
            readers = staff
        whatif.answer(prep, whatif.Knobs(role, thr, audit, attendance, readers), sites)
        times.append(time.perf_counter() - t)

    op = cfg.policy.threshold
    value = op.target_sensitivity if op.mode == "target_sensitivity" else op.value
    own = whatif.Knobs(
        cfg.policy.role,
        whatif.resolve_knob_threshold(cfg.agent, op.mode, value),
        cfg.policy.audit_fraction,
        cfg.scenario.programme.attendance,
    )
    fast = whatif.answer(prep, own, sites)
    t0 = time.perf_counter()
    full = simulate(cfg, profiles, progress=False)
    full_s = time.perf_counter() - t0
    checks = {args.policy: agreement(fast.table, full.metrics)}
    if args.confirm_rule_out:
        ro_cfg, _, _ = load([*overrides, "policy.role=rule_out"])
        ro = whatif.Knobs("rule_out", own.threshold, ro_cfg.policy.audit_fraction, own.attendance)
        fast_ro = whatif.answer(prep, ro, sites)
        full_ro = simulate(ro_cfg, profiles, progress=False)
        checks[f"{args.policy} as rule_out"] = agreement(fast_ro.table, full_ro.metrics)

    median = statistics.median(times)
    p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
    print(f"\nprepared cohort: {prep.meta['people']:,} people x {prep.meta['rounds']} rounds")
    print(
        _common.table(
            ["measure", "seconds"],
            [
                ["prepare (or load) the cohort, once", prepare_s],
                ["load the prepared cohort from disk", load_s],
                [f"knob change -> answer, median of {len(times)}", median],
                ["knob change -> answer, 90th percentile", p90],
                ["knob change -> answer, max", max(times)],
                [f"full run, {args.policy} (baseline)", full_s],
            ],
        )
    )
    print(f"speed-up (full run / median answer): {full_s / median:,.0f}x")
    for name, rows in checks.items():
        print(f"\nagreement with the full run: {name}")
        print(
            _common.table(
                ["metric", "fast", "full", "full 95% interval", "inside", "rel. diff"],
                [
                    [
                        r["metric"],
                        r["fast"],
                        r["full"],
                        f"{r['full_lo']:.4g}-{r['full_hi']:.4g}",
                        "yes" if r["inside"] else "no",
                        "-"
                        if r["relative_difference"] is None
                        else f"{r['relative_difference']:+.1%}",
                    ]
                    for r in rows
                ],
            )
        )
    if not fast.exact:
        print(f"\ncapacity-bound: {fast.why_inexact}")
    path = _common.write_json(
        args.out,
        "whatif_latency",
        {
            "people": prep.meta["people"],
            "policy": args.policy,
            "seed": args.seed,
            "prepare_s": prepare_s,
            "load_s": load_s,
            "answer_s": times,
            "answer_median_s": median,
            "answer_p90_s": p90,
            "full_run_s": full_s,
            "speedup": full_s / median,
            "agreement": checks,
            "exact": fast.exact,
        },
    )
    print(f"\n{path}")


if __name__ == "__main__":
    main()

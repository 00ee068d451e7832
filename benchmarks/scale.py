"""Scale: a million-person lung_ldct run, stage by stage, against a 100,000-person run.

What it measures
    One policy (default soc_single_read), scenario lung_ldct, its 3 annual rounds, at
    ``--people`` (default 1,000,000) and at ``--baseline-people`` (default 100,000), each in
    its own fresh subprocess so that peak memory belongs to one run. Per stage: load (Hydra
    compose + validation), cohort_and_disease, workflow (per site), outcomes, write (the run
    folder's Parquet files and manifest, as ``sandbox run`` writes them), and the peak resident
    memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) reached by the end of each stage.
    Reported: wall seconds per stage, people/s and exams/s, peak RSS, and the ratio of each
    stage's time to the baseline run's, next to the ratio of cohort sizes (linear scaling
    means the two are equal; ``linearity`` = time ratio / size ratio, 1.0 is linear).

Site capacity is scaled with the cohort
    lung_ldct's sites are sized for its default cohort of 20,000 (``--reference-people``). A
    run of N people multiplies each site's capacity by f = N / 20,000 so that capacity per
    person stays the same: the config is built with ``sandbox.compose.load`` and then each
    ``Site`` is rebuilt with ``dataclasses.replace``:

    * scanner slots per day (the model only uses scanners x exams_per_scanner_day):
      ``scanners = min(100, round(scanners * f))`` and
      ``exams_per_scanner_day = round(old slots * f / scanners)``;
    * every reader count: ``round(count * f)`` (at least 1), same profiles, each reader drawn
      individually as usual; reading_hours_per_day unchanged;
    * ``workup_slots_per_day = round(slots * f)``.

    The achieved factors (after rounding) are printed and stored. ``dataclasses.replace`` skips
    the config validation (e.g. the 100-scanner cap is respected by construction instead).

Extrapolation
    ``--measure-people M`` (M < ``--people``) runs M instead of ``--people`` and extrapolates
    each stage to ``--people`` two ways: linearly from M, and with the power law through the
    baseline and M (``t = t_M (N / M) ** a``, a fitted from the two runs). Extrapolated figures
    are labelled as such everywhere.

Profile
    ``--profile P`` (e.g. 50000) additionally runs P people under cProfile (same scaling, no
    folder written), writes ``scale-profile-<P>.prof`` and ``.txt`` and prints the top 15
    functions by cumulative time and by own time.

How to run::

    .venv/bin/python benchmarks/scale.py                                   # 1,000,000 vs 100,000
    .venv/bin/python benchmarks/scale.py --measure-people 200000           # extrapolate to 1,000,000
    .venv/bin/python benchmarks/scale.py --people 50000 --baseline-people 10000 --profile 50000
    .venv/bin/python benchmarks/scale.py --profile 50000 --profile-only    # just the profile
    .venv/bin/python benchmarks/scale.py --stop-when-empty-worklist        # diagnostic, see worklist_readers.py

Writes ``<out>/scale-<policy>-<people>.json`` (``--out``, default /tmp). Run folders go to a
temporary folder that is deleted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import _common

STAGES = ("load_s", "cohort_and_disease_s", "workflow_s", "outcomes_s", "write_s", "wall_s")


def scale_sites(cfg, factor: float):
    """The RunConfig with every site's capacity multiplied by ``factor`` (see the module docstring)."""
    sites = []
    for s in cfg.scenario.sites:
        slots = s.scanners * s.exams_per_scanner_day * factor
        scanners = min(100, max(1, round(s.scanners * factor)))
        sites.append(
            replace(
                s,
                scanners=scanners,
                exams_per_scanner_day=max(1, round(slots / scanners)),
                readers={k: max(1, round(v * factor)) for k, v in s.readers.items()},
                workup_slots_per_day=max(1, round(s.workup_slots_per_day * factor)),
            )
        )
    return replace(cfg, scenario=replace(cfg.scenario, sites=tuple(sites)))


def capacity(cfg) -> list[dict]:
    return [
        {
            "site": s.name,
            "scanner_slots_per_day": s.scanners * s.exams_per_scanner_day,
            "scanners": s.scanners,
            "exams_per_scanner_day": s.exams_per_scanner_day,
            "readers": sum(s.readers.values()),
            "workup_slots_per_day": s.workup_slots_per_day,
        }
        for s in cfg.scenario.sites
    ]


def watch_gc() -> dict[str, float]:
    """Seconds spent in CPython's garbage collector, by generation, from now on (updated live)."""
    import gc

    spent = {"gen0": 0.0, "gen1": 0.0, "gen2": 0.0, "gen2_collections": 0}
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[f"gen{info['generation']}"] += time.perf_counter() - started[0]
            if info["generation"] == 2:
                spent["gen2_collections"] += 1

    gc.callbacks.append(callback)
    return spent


def rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- one run (in a child process)
def child(people: int, args: argparse.Namespace, profile_to: Path | None) -> dict:
    """One scaled run; the same steps as sandbox.runners.local.run, timed one by one."""
    from sandbox.compose import load
    from sandbox.runfolder import manifest, write_run
    from sandbox.runners.local import site_blocks
    from sandbox.simulate import (
        build_cohort,
        check_policy,
        merge_records,
        outcomes,
        simulate_sites,
    )

    t: dict[str, float] = {}
    cpu: dict[str, float] = {}
    mem: dict[str, float] = {}
    w0, c0 = time.perf_counter(), time.process_time()
    clock = [w0, c0]

    def lap(stage: str) -> None:
        """Close ``stage``: wall and CPU seconds since the last lap, peak RSS so far."""
        w, c = time.perf_counter(), time.process_time()
        t[f"{stage}_s"], cpu[f"{stage}_s"] = w - clock[0], c - clock[1]
        mem[stage] = rss()
        clock[:] = [w, c]

    if args.stop_when_empty_worklist:
        # diagnostic: the suggested SimPy worklist change, in this process only (see worklist_readers.py)
        import simpy
        from worklist_readers import StopWhenEmptyFilterStore

        simpy.FilterStore = StopWhenEmptyFilterStore
    if args.gc_threshold2:
        # diagnostic: full (generation-2) garbage collections only every N generation-1 ones (default 10)
        import gc

        t0_, t1_, _ = gc.get_threshold()
        gc.set_threshold(t0_, t1_, args.gc_threshold2)
    gc_time = watch_gc()
    overrides = [
        f"scenario={args.scenario}",
        f"policy={args.policy}",
        f"cohort.size={people}",
        f"seed={args.seed}",
        "runtime=quiet",
    ]
    cfg, profiles, raw = load(overrides)
    factor = people / args.reference_people
    reference = capacity(cfg)
    cfg = scale_sites(cfg, factor)
    check_policy(cfg)
    lap("load")

    prof = cProfile.Profile() if profile_to else None
    if prof:
        prof.enable()
    history = build_cohort(cfg)
    lap("cohort_and_disease")
    parts = [
        simulate_sites(cfg, profiles, history, block)
        for block in site_blocks(len(cfg.scenario.sites), cfg.runtime.site_block_size)
    ]
    rec = merge_records(parts, len(history))
    lap("workflow")
    people_frame, metrics = outcomes(cfg, history, rec)
    lap("outcomes")
    if prof:
        prof.disable()
        prof.dump_stats(profile_to)
    if not profile_to:
        tmp = Path(tempfile.mkdtemp(prefix="sandbox-scale-"))
        try:
            man = manifest(
                cfg.seed,
                sys.argv,
                overrides,
                dict(t),
                {
                    "scenario": cfg.scenario.name,
                    "policy": cfg.policy.name,
                    "people": people_frame.height,
                    "exams": rec.events.height,
                },
            )
            tables = {"metrics": metrics, "people": people_frame, "events": rec.events}
            write_run(tmp / "run", {**raw, "scenario_name": cfg.scenario.name}, man, tables)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    lap("write")
    t["wall_s"], cpu["wall_s"] = time.perf_counter() - w0, time.process_time() - c0
    t.update(rec.timings)
    return {
        "people": people_frame.height,
        "exams": rec.events.height,
        "screens": rec.events.filter(rec.events["exam_kind"] == "screen").height,
        "factor": factor,
        "capacity_reference": reference,
        "capacity_scaled": capacity(cfg),
        "timings_s": t,
        "cpu_s": cpu,
        "gc_s": gc_time,
        "peak_rss_mb_after": mem,
        "peak_rss_mb": rss(),
        "worst_backlog": int(rec.backlog["backlog"].max()) if rec.backlog.height else 0,
    }


def spawn(people: int, args: argparse.Namespace, profile_to: Path | None = None) -> dict:
    """Run :func:`child` in a fresh interpreter (clean peak-RSS accounting)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_file = Path(f.name)
    cmd = [
        sys.executable,
        __file__,
        "--_child",
        str(people),
        "--_result",
        str(result_file),
        "--policy",
        args.policy,
        "--scenario",
        args.scenario,
        "--seed",
        str(args.seed),
        "--reference-people",
        str(args.reference_people),
    ]
    if profile_to:
        cmd += ["--_profile_to", str(profile_to)]
    if args.stop_when_empty_worklist:
        cmd.append("--stop-when-empty-worklist")
    if args.gc_threshold2:
        cmd += ["--gc-threshold2", str(args.gc_threshold2)]
    print(
        f"  running {people:,} people{' under cProfile' if profile_to else ''} ...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=_common.ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"the {people:,}-person run failed (exit {proc.returncode})")
    out = json.loads(result_file.read_text())
    result_file.unlink()
    out["process_wall_s"] = time.perf_counter() - t0
    print(f"  done in {out['process_wall_s']:.1f} s", file=sys.stderr, flush=True)
    return out


GROUPS = (  # (label, path fragment) in order of precedence; own time is attributed to the first match
    ("SimPy engine and resources (simpy/)", "/simpy/"),
    (
        "site model: processes, scheduling, records (workflow/site.py, calendar.py)",
        "/sandbox/workflow/site.py",
    ),
    (
        "site model: processes, scheduling, records (workflow/site.py, calendar.py)",
        "/sandbox/workflow/calendar.py",
    ),
    ("reading policies (workflow/policies.py)", "/sandbox/workflow/policies.py"),
    (
        "reading: findings, reads, Lung-RADS (reading.py, lung_rads.py, conspicuity, readers)",
        "/sandbox/workflow/reading.py",
    ),
    (
        "reading: findings, reads, Lung-RADS (reading.py, lung_rads.py, conspicuity, readers)",
        "/sandbox/workflow/lung_rads.py",
    ),
    (
        "reading: findings, reads, Lung-RADS (reading.py, lung_rads.py, conspicuity, readers)",
        "/sandbox/imaging/",
    ),
    (
        "reading: findings, reads, Lung-RADS (reading.py, lung_rads.py, conspicuity, readers)",
        "/sandbox/agents/",
    ),
    ("keyed random numbers (rng.py)", "/sandbox/rng.py"),
    ("outcomes and metrics (sandbox/outcomes/)", "/sandbox/outcomes/"),
    ("cohort and disease history (cohort/, disease/)", "/sandbox/cohort/"),
    ("cohort and disease history (cohort/, disease/)", "/sandbox/disease/"),
    ("polars", "/polars/"),
)


def own_time_by_part(st: pstats.Stats) -> list[tuple[str, float]]:
    """Own (exclusive) profiled time summed by part of the code; builtins go to 'C builtins'."""
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in st.stats.items():  # type: ignore[attr-defined]
        label = (
            "C builtins and extension calls (heapq, numpy, polars engine, ...)"
            if filename == "~"
            else "other Python"
        )
        for name, frag in GROUPS:
            if frag in filename:
                label = name
                break
        totals[label] = totals.get(label, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


def profile_report(path: Path, n: int = 15) -> str:
    buf = io.StringIO()
    st = pstats.Stats(str(path), stream=buf)
    parts = own_time_by_part(st)
    total = sum(v for _, v in parts)
    buf.write("own time by part of the code (profiled seconds, share):\n")
    buf.write(
        _common.table(["part", "seconds", "share"], [[k, v, v / total] for k, v in parts]) + "\n\n"
    )
    st.strip_dirs().sort_stats("cumulative").print_stats(n)
    st.sort_stats("tottime").print_stats(n)
    return buf.getvalue()


# ---------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--baseline-people", type=int, default=100_000)
    ap.add_argument(
        "--measure-people",
        type=int,
        default=0,
        help="run this many instead of --people and extrapolate (0: run --people)",
    )
    ap.add_argument("--policy", default="soc_single_read")
    ap.add_argument("--scenario", default="lung_ldct")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--reference-people",
        type=int,
        default=20_000,
        help="cohort size the scenario's sites are sized for",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        help="also profile a run of this many people with cProfile",
    )
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--profile-only", action="store_true", help="only the --profile run (no timed runs)"
    )
    ap.add_argument(
        "--gc-threshold2",
        type=int,
        default=0,
        help="diagnostic: set the generation-2 GC threshold (CPython default 10) in the runs",
    )
    ap.add_argument(
        "--stop-when-empty-worklist",
        action="store_true",
        help="diagnostic: run with the worklist change suggested in worklist_readers.py (package untouched)",
    )
    ap.add_argument(
        "--out", default="/tmp", help="folder for the JSON result and profile (default /tmp)"
    )
    ap.add_argument("--_child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_result", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_profile_to", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._child:
        out = child(args._child, args, Path(args._profile_to) if args._profile_to else None)
        Path(args._result).write_text(json.dumps(out))
        return 0

    if args.profile_only:
        if not args.profile:
            ap.error("--profile-only needs --profile N")
        prof_path = Path(args.out) / f"scale-profile-{args.profile}.prof"
        prof_path.parent.mkdir(parents=True, exist_ok=True)
        run = spawn(args.profile, args, prof_path)
        text = profile_report(prof_path)
        prof_path.with_suffix(".txt").write_text(text)
        print(
            f"cProfile of {args.profile:,} people ({run['exams']:,} exams; cohort, workflow, outcomes; no writing):"
        )
        print(
            f"stage seconds under the profiler: {json.dumps({k: round(v, 2) for k, v in run['timings_s'].items()})}"
        )
        print(text)
        print(f"profile: {prof_path} (and .txt)")
        return 0

    target = args.measure_people or args.people
    extrapolated = target != args.people
    machine = _common.machine()
    runs = {}
    if not args.skip_baseline:
        runs["baseline"] = spawn(args.baseline_people, args)
    runs["measured"] = spawn(target, args)
    prof_text = None
    if args.profile:
        prof_path = Path(args.out) / f"scale-profile-{args.profile}.prof"
        prof_path.parent.mkdir(parents=True, exist_ok=True)
        runs["profiled"] = spawn(args.profile, args, prof_path)
        prof_text = profile_report(prof_path)
        prof_path.with_suffix(".txt").write_text(prof_text)

    m, b = runs["measured"], runs.get("baseline")
    site_keys = [k for k in m["timings_s"] if k.startswith("site_")]
    keys = [*STAGES[:3], *site_keys, *STAGES[3:]]
    print(
        f"\n{args.scenario} / {args.policy}: capacity x{m['factor']:g} of the {args.reference_people:,}-person sites"
    )
    if args.stop_when_empty_worklist:
        print(
            "  DIAGNOSTIC: the reading worklist is StopWhenEmptyFilterStore (worklist_readers.py), not the package's"
        )
    if args.gc_threshold2:
        print(f"  DIAGNOSTIC: generation-2 GC threshold {args.gc_threshold2} (CPython default 10)")
    for ref, sc in zip(m["capacity_reference"], m["capacity_scaled"], strict=True):
        print(
            f"  {sc['site']}: scanner slots/day {ref['scanner_slots_per_day']} -> {sc['scanner_slots_per_day']} "
            f"({sc['scanners']} x {sc['exams_per_scanner_day']}), readers {ref['readers']} -> {sc['readers']}, "
            f"work-up slots/day {ref['workup_slots_per_day']} -> {sc['workup_slots_per_day']}"
        )
    header = ["stage (s)"]
    if b:
        header.append(f"{b['people']:,} people")
    header.append(f"{m['people']:,} people")
    if b:
        header += ["time ratio", "size ratio", "linearity"]
    rows = []
    size_ratio = m["people"] / b["people"] if b else math.nan
    for k in keys:
        row = [k]
        if b:
            row.append(b["timings_s"][k])
        row.append(m["timings_s"][k])
        if b:
            r = m["timings_s"][k] / b["timings_s"][k] if b["timings_s"][k] > 0 else math.nan
            row += [r, size_ratio, r / size_ratio]
        rows.append(row)
    print(_common.table(header, rows))
    cpu_rows = []
    for k in [x for x in keys if not x.startswith("site_")]:
        row = [k]
        if b:
            row.append(b["cpu_s"][k])
        row.append(m["cpu_s"][k])
        if b:
            r = m["cpu_s"][k] / b["cpu_s"][k] if b["cpu_s"][k] > 0 else math.nan
            row += [r, size_ratio, r / size_ratio]
        cpu_rows.append(row)
    print()
    print(_common.table(["stage (CPU s)", *header[1:]], cpu_rows))
    thr = [
        ["exams", *([b["exams"]] if b else []), m["exams"]],
        [
            "people/s (whole run)",
            *([b["people"] / b["timings_s"]["wall_s"]] if b else []),
            m["people"] / m["timings_s"]["wall_s"],
        ],
        [
            "exams/s (workflow stage)",
            *([b["exams"] / b["timings_s"]["workflow_s"]] if b else []),
            m["exams"] / m["timings_s"]["workflow_s"],
        ],
        [
            "exams/CPU-s (workflow stage)",
            *([b["exams"] / b["cpu_s"]["workflow_s"]] if b else []),
            m["exams"] / m["cpu_s"]["workflow_s"],
        ],
        ["worst reading backlog (tasks)", *([b["worst_backlog"]] if b else []), m["worst_backlog"]],
    ]
    thr.append(
        [
            "garbage collector s (all stages)",
            *(
                [sum(v for k, v in b["gc_s"].items() if k.startswith("gen") and k[3:].isdigit())]
                if b
                else []
            ),
            sum(v for k, v in m["gc_s"].items() if k.startswith("gen") and k[3:].isdigit()),
        ]
    )
    thr.append(
        [
            "  of which full (gen-2) collections s",
            *([b["gc_s"]["gen2"]] if b else []),
            m["gc_s"]["gen2"],
        ]
    )
    thr.append(
        [
            "  full collections",
            *([b["gc_s"]["gen2_collections"]] if b else []),
            m["gc_s"]["gen2_collections"],
        ]
    )
    for stage in ("load", "cohort_and_disease", "workflow", "outcomes", "write"):
        thr.append(
            [
                f"peak RSS MiB after {stage}",
                *([b["peak_rss_mb_after"][stage]] if b else []),
                m["peak_rss_mb_after"][stage],
            ]
        )
    print()
    print(_common.table(["", *header[1 : 3 if b else 2]], thr))

    extrapolation = None
    if extrapolated:
        f = args.people / m["people"]
        extrapolation = {
            "to_people": args.people,
            "from_people": m["people"],
            "linear": {},
            "power_law": {},
            "exponent": {},
        }
        rows = []
        for k in keys:
            lin = m["timings_s"][k] * f
            extrapolation["linear"][k] = lin
            pw, a = math.nan, math.nan
            if b and b["timings_s"][k] > 0 and m["timings_s"][k] > 0:
                a = math.log(m["timings_s"][k] / b["timings_s"][k]) / math.log(
                    m["people"] / b["people"]
                )
                pw = m["timings_s"][k] * f**a
            extrapolation["power_law"][k], extrapolation["exponent"][k] = pw, a
            rows.append([k, lin, a, pw])
        lin_rss = m["peak_rss_mb"] * f
        extrapolation["peak_rss_mb_linear"] = lin_rss
        print(
            f"\nEXTRAPOLATED to {args.people:,} people (not measured) from the {m['people']:,}-person run:"
        )
        print(_common.table(["stage (s)", "linear", "exponent a", "power law t*(N/M)^a"], rows))
        print(f"peak RSS, linear extrapolation (EXTRAPOLATED): {lin_rss:,.0f} MiB")

    if prof_text:
        print(f"\ncProfile of {args.profile:,} people (cohort, workflow, outcomes; no writing):")
        print(prof_text)

    result = {
        "benchmark": "scale",
        "machine": machine,
        "policy": args.policy,
        "scenario": args.scenario,
        "seed": args.seed,
        "requested_people": args.people,
        "measured_people": m["people"],
        "extrapolated": extrapolated,
        "runs": runs,
        "extrapolation": extrapolation,
        "profile_top": prof_text,
    }
    result["stop_when_empty_worklist"] = args.stop_when_empty_worklist
    result["gc_threshold2"] = args.gc_threshold2 or None
    suffix = ("-stop-when-empty" if args.stop_when_empty_worklist else "") + (
        f"-gc{args.gc_threshold2}" if args.gc_threshold2 else ""
    )
    path = _common.write_json(args.out, f"scale-{args.policy}-{args.people}{suffix}.json", result)
    print(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

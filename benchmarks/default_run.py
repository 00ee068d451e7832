"""The default ``sandbox run``: wall time, peak memory and stage timings of the CLI as a user runs it.

What it measures
    Runs ``sandbox run runtime.out_dir=<tmp>`` (the default scenario lung_ldct, the default
    policy soc_double_read, the default cohort of 20,000, seed 7; only the output folder is
    changed so the repository is not littered) as a subprocess under ``/usr/bin/time -v``, and
    reports its wall time and peak resident memory. It also reads the stage timings
    (``timings_s``) from the run folder's ``manifest.json``: cohort_and_disease, workflow (and
    per site), outcomes, total (everything but writing the folder).

    Baseline, measured in the same invocation: a subprocess that only starts Python and imports
    what ``sandbox run`` imports (the CLI, the Hydra boundary, the local runner) and composes the
    same config — the fixed cost every run pays before simulating. The run is reported as a
    ratio to it, so the figure is comparable across machines.

    If ``/usr/bin/time`` is missing, peak RSS comes from ``resource.getrusage(RUSAGE_CHILDREN)``
    (the largest child so far) and wall time from ``time.perf_counter``.

How to run::

    .venv/bin/python benchmarks/default_run.py                     # the default run
    .venv/bin/python benchmarks/default_run.py --repeats 3         # fastest of three
    .venv/bin/python benchmarks/default_run.py -- policy=soc_single_read cohort.size=50000

Writes ``<out>/default_run.json`` (``--out``, default /tmp); run folders go to a temporary
folder that is deleted afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

ROOT = _common.ROOT
SANDBOX = Path(sys.executable).parent / "sandbox"
TIME = Path("/usr/bin/time")
BASELINE_CODE = (
    "import sandbox.cli, sandbox.compose, sandbox.runners.local; "
    "sandbox.compose.load(['runtime.out_dir=/nonexistent'])"
)


def timed(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (MiB), user/sys CPU seconds, exit code, stdout."""
    use_time = TIME.exists()
    full = [str(TIME), "-v", *cmd] if use_time else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = {
        "cmd": " ".join(cmd),
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "wall_s": wall,
        "peak_rss_mb": _common.peak_rss_mb(resource.RUSAGE_CHILDREN),
        "measured_by": "getrusage/perf_counter",
    }
    if proc.returncode != 0:
        raise SystemExit(f"{out['cmd']} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    if use_time:
        err = proc.stderr

        def field(name: str) -> str:
            m = re.search(rf"{re.escape(name)}: (.+)", err)
            return m.group(1).strip() if m else ""

        h_m_s = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
        out["wall_s"] = sum(v * 60**i for i, v in enumerate(reversed(h_m_s)))
        out["peak_rss_mb"] = int(field("Maximum resident set size (kbytes)")) / 1024.0
        out["user_s"] = float(field("User time (seconds)"))
        out["sys_s"] = float(field("System time (seconds)"))
        out["cpu_percent"] = field("Percent of CPU this job got")
        out["measured_by"] = "/usr/bin/time -v"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run this many times; report the fastest (and all in the JSON)",
    )
    ap.add_argument("--out", default="/tmp", help="folder for the JSON result (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    ap.add_argument(
        "overrides",
        nargs="*",
        help="extra Hydra overrides (after --); default: none, the README default run",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    try:
        base = timed([sys.executable, "-c", BASELINE_CODE])
        runs = []
        for i in range(args.repeats):
            cmd = [
                str(SANDBOX),
                "run",
                f"runtime.out_dir={tmp}",
                f"runtime.run_name=bench{i}",
                *args.overrides,
            ]
            r = timed(cmd)
            r["manifest"] = json.loads((tmp / f"bench{i}" / "manifest.json").read_text())
            runs.append(r)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    best = min(runs, key=lambda r: r["wall_s"])
    man = best["manifest"]
    stages = man["timings_s"]
    first_line = best["stdout"].splitlines()[0] if best["stdout"] else ""

    print(first_line)
    print(
        _common.table(
            ["process", "wall s", "peak RSS MiB", "user s", "sys s"],
            [
                [
                    "startup baseline (imports + compose)",
                    base["wall_s"],
                    base["peak_rss_mb"],
                    base.get("user_s", "-"),
                    base.get("sys_s", "-"),
                ],
                [
                    "sandbox run (default)",
                    best["wall_s"],
                    best["peak_rss_mb"],
                    best.get("user_s", "-"),
                    best.get("sys_s", "-"),
                ],
                [
                    "ratio run / baseline",
                    best["wall_s"] / base["wall_s"],
                    best["peak_rss_mb"] / base["peak_rss_mb"],
                    "",
                    "",
                ],
            ],
        )
    )
    total = stages.get("total_s", best["wall_s"])
    rows = [[k, v, v / best["wall_s"]] for k, v in stages.items()]
    rows.append(
        [
            "(outside simulate: startup, compose, write folder)",
            best["wall_s"] - total,
            (best["wall_s"] - total) / best["wall_s"],
        ]
    )
    print()
    print(_common.table(["stage (manifest timings_s)", "seconds", "share of wall"], rows))
    print(
        f"\n{man['people']:,} people, {man['exams']:,} exams; {man['exams'] / stages['workflow_s']:,.0f} exams/s in the workflow stage"
    )

    base.pop("stdout", None)
    for r in runs:
        r.pop("stdout", None)
        r["manifest"] = {
            k: r["manifest"][k]
            for k in ("timings_s", "people", "exams", "scenario", "policy", "seed", "command")
        }
    result = {
        "benchmark": "default_run",
        "machine": _common.machine(),
        "baseline": base,
        "runs": runs,
        "best": {
            "wall_s": best["wall_s"],
            "peak_rss_mb": best["peak_rss_mb"],
            "timings_s": stages,
            "wall_ratio_to_baseline": best["wall_s"] / base["wall_s"],
            "rss_ratio_to_baseline": best["peak_rss_mb"] / base["peak_rss_mb"],
        },
    }
    path = _common.write_json(args.out, "default_run.json", result)
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

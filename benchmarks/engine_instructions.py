"""Engine cost in instructions: ``simulate_sites`` at this checkout against a base commit.

Wall time on a small shared machine varies by about ±10 % between identical runs, too much to
see a few per cent. Instruction counts from ``valgrind --tool=callgrind`` are repeatable. For
each code version the script runs one small simulation twice under callgrind, once stopping
just before ``simulate_sites`` and once through it; the difference is the workflow stage's
instructions. It also prints a digest of the event log, so the comparison is known to be on
identical work when the digests agree.

How to run (about 6 minutes on two cores)::

    .venv/bin/python benchmarks/engine_instructions.py --base 7f9ddd4
    .venv/bin/python benchmarks/engine_instructions.py --base 7f9ddd4 --policy soc_double_read \\
        --legacy-reader-keys    # this side draws readers by (site, index), as before 2026-12

``--here KEY=VALUE ...`` gives config overrides to this checkout only: a base with other
parameter values (an earlier calibration) is then compared on the same work.
``--legacy-reader-keys`` makes this checkout draw radiologists as commits before the reader-key
change did, so that both sides simulate the same reads (used to measure the Programme seam).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, sys
try:  # the older layout first: an installed newer checkout may answer for sandbox.compose
    from sandbox.configure import load
except ImportError:
    from sandbox.compose import load
import sandbox.simulate as sim
build = getattr(sim, "build_cohort", None) or getattr(sim, "build_history")
if sys.argv[4] == "1":
    from sandbox.agents.readers import draw_reader

    def legacy(profiles, site, s, streams):
        out = []
        for name, count in sorted(site.readers.items()):
            for _ in range(count):
                k = len(out)
                out.append(draw_reader(profiles[name], streams.generator("reader", s, k), s * 1000 + k, s))
        return out

    sim.site_readers = legacy
cfg, profiles, _ = load(
    [f"cohort.size={sys.argv[1]}", "runtime=quiet", f"policy={sys.argv[2]}", *sys.argv[5:]]
)
cohort = build(cfg)
if sys.argv[3] == "run":
    ev = sim.simulate_sites(cfg, profiles, cohort).events
    ev = ev.select("person_id", "exam_day", "reported_day", "positive", "n_reads")
    print("EVENTS", ev.height, hashlib.sha256(ev.write_csv().encode()).hexdigest()[:12])
"""


def instructions(
    src: Path, args: argparse.Namespace, stop: str, legacy: bool, extra: list[str]
) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        child = Path(tmp) / "child.py"
        child.write_text(CHILD)
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                str(child),
                str(args.people),
                args.policy,
                stop,
                "1" if legacy else "0",
                *extra,
            ],
            cwd=src,
            env={**os.environ, "PYTHONPATH": str(src)},
            capture_output=True,
            text=True,
            check=True,
        )
    text = out.stdout + out.stderr
    collected = int(re.search(r"Collected : (\d+)", text).group(1))
    events = re.search(r"EVENTS .*", text)
    return collected, events.group(0) if events else ""


def measure(
    src: Path, args: argparse.Namespace, legacy: bool, extra: list[str] = ()
) -> tuple[int, str]:
    run, events = instructions(src, args, "run", legacy, list(extra))
    skip, _ = instructions(src, args, "skip", legacy, list(extra))
    return run - skip, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="commit to compare against")
    ap.add_argument("--people", type=int, default=3000)
    ap.add_argument("--policy", default="soc_single_read")
    ap.add_argument("--legacy-reader-keys", action="store_true")
    ap.add_argument(
        "--here",
        nargs="*",
        default=[],
        help="config overrides for this checkout only (e.g. the base's parameter values, so that "
        "both sides do the same work)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            old, old_events = measure(base, args, False)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    new, new_events = measure(ROOT, args, args.legacy_reader_keys, args.here)
    print(f"{args.people} people, {args.policy}: instructions of simulate_sites")
    print(f"  base {args.base}: {old / 1e6:,.1f} M   {old_events}")
    print(f"  this checkout:   {new / 1e6:,.1f} M   {new_events}")
    print(f"  ratio this/base: {new / old:.3f}")
    same = old_events == new_events
    print("  identical event logs" if same else "  event logs differ: not the same work")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

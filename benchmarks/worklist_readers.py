"""Worklist cost per reader: why the workflow stage scales worse than linearly with site size.

What it measures
    One cohort (default 50,000 people, lung_ldct, soc_single_read) with site capacity scaled
    to it as in ``scale.py``, simulated with each site's reader counts multiplied by 1, 5 and 20
    (``--reader-factors``) and nothing else changed. More readers only shorten waits (there is
    no backlog at factor 1), so an ideal workflow would take the same time at every factor.
    Reported: workflow seconds (wall and CPU), exams/s, and the ratio to factor 1.

    Each factor is run twice: with the package as it is, and with the reading worklist
    replaced for the duration of the run by ``StopWhenEmptyFilterStore`` — a ``FilterStore``
    whose ``_do_get`` returns False once the store is empty, which stops SimPy's
    ``_trigger_get`` from offering an empty store to every idle reader after every put and
    every get (SimPy's ``FilterStore._do_get`` returns None, i.e. "keep going", so each put
    costs one call per waiting reader). The two event logs are compared: identical logs mean
    the change is behaviour-preserving. The patch lives only in this process; the package is
    not changed.

How to run::

    .venv/bin/python benchmarks/worklist_readers.py
    .venv/bin/python benchmarks/worklist_readers.py --people 20000 --reader-factors 1 10 50

Writes ``<out>/worklist_readers-<people>.json`` (``--out``, default /tmp).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import _common
import simpy
from scale import scale_sites

from sandbox.compose import load
from sandbox.simulate import build_cohort, simulate_sites


class StopWhenEmptyFilterStore(simpy.FilterStore):
    """FilterStore that stops scanning pending gets when it has nothing left to give."""

    def _do_get(self, event):  # type: ignore[override]
        if not self.items:
            return False  # no get can succeed: stop _trigger_get's loop over the get queue
        return super()._do_get(event)


def run(cfg, profiles, history, patched: bool):
    stock = simpy.FilterStore
    if patched:
        simpy.FilterStore = StopWhenEmptyFilterStore  # site.py calls simpy.FilterStore(env)
    try:
        w, c = time.perf_counter(), time.process_time()
        rec = simulate_sites(cfg, profiles, history)
        return rec, time.perf_counter() - w, time.process_time() - c
    finally:
        simpy.FilterStore = stock


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--policy", default="soc_single_read")
    ap.add_argument("--reader-factors", type=int, nargs="+", default=[1, 5, 20])
    ap.add_argument("--reference-people", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()

    cfg, profiles, _ = load(
        [
            f"cohort.size={args.people}",
            f"policy={args.policy}",
            f"seed={args.seed}",
            "runtime=quiet",
        ]
    )
    base = scale_sites(cfg, args.people / args.reference_people)
    history = build_cohort(base)
    rows, results, ref = [], [], {}
    for rf in args.reader_factors:
        sites = tuple(
            replace(s, readers={k: v * rf for k, v in s.readers.items()})
            for s in base.scenario.sites
        )
        c = replace(base, scenario=replace(base.scenario, sites=sites))
        readers = [sum(s.readers.values()) for s in sites]
        stock, w0, c0 = run(c, profiles, history, patched=False)
        fixed, w1, c1 = run(c, profiles, history, patched=True)
        same = stock.events.equals(fixed.events)
        n = stock.events.height
        ref.setdefault("stock", c0)
        ref.setdefault("patched", c1)
        rows.append(
            [
                f"x{rf} ({'+'.join(map(str, readers))} readers)",
                w0,
                c0,
                n / c0,
                c0 / ref["stock"],
                w1,
                c1,
                n / c1,
                c1 / ref["stock"],
                c0 / c1,
                "yes" if same else "NO",
            ]
        )
        results.append(
            {
                "reader_factor": rf,
                "readers_per_site": readers,
                "exams": n,
                "stock": {"wall_s": w0, "cpu_s": c0, "exams_per_cpu_s": n / c0},
                "stop_when_empty": {"wall_s": w1, "cpu_s": c1, "exams_per_cpu_s": n / c1},
                "identical_event_log": same,
            }
        )
        print(
            f"  readers x{rf}: stock {c0:.1f} CPU s, patched {c1:.1f} CPU s, identical: {same}",
            file=sys.stderr,
            flush=True,
        )

    print(
        f"{args.people:,} people, {base.policy.name}, site capacity x{args.people / args.reference_people:g}; "
        f"workflow stage only (simulate_sites); ratios against stock at the first factor"
    )
    print(
        _common.table(
            [
                "readers",
                "stock wall s",
                "stock CPU s",
                "exams/CPU-s",
                "vs x1",
                "patched wall s",
                "patched CPU s",
                "exams/CPU-s",
                "vs stock x1",
                "speed-up",
                "same log",
            ],
            rows,
        )
    )
    path = _common.write_json(
        args.out,
        f"worklist_readers-{args.people}.json",
        {
            "benchmark": "worklist_readers",
            "machine": _common.machine(),
            "people": args.people,
            "policy": base.policy.name,
            "results": results,
        },
    )
    print(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

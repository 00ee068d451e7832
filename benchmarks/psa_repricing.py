"""Probabilistic sensitivity analysis: the cost of a draw that re-prices the strategies, against
simulating them again.

What it measures
    1. Baseline: ``--people`` people of the ``nlst`` scenario simulated under each of the
       strategies (no screening, the chest-radiograph arm, LDCT), timed
       (``sandbox.runners.local.simulate``): what a draw would cost if it re-simulated.
    2. Exposures: the discounted quantities of each run under the price list
       (``sandbox.economics.accounting.exposures``), once per run.
    3. Re-pricing: ``--draws`` PSA draws of the price list's declared distributions
       (``sandbox.economics.psa.run_psa``): time per draw, all strategies.
    4. Pricing a run from its tables (``price_run``: exposures and prices) per strategy, for
       scale.

Ratio reported: simulation seconds for the strategies / seconds per re-pricing draw.

How to run::

    .venv/bin/python benchmarks/psa_repricing.py                      # 26,722 people, 1,000 draws
    .venv/bin/python benchmarks/psa_repricing.py --people 10000 --draws 200

Writes ``<out>/psa_repricing.json`` (``--out``, default /tmp).
"""

from __future__ import annotations

import argparse
import sys
import time

import _common

STRATEGIES = ("no_screening", "cxr_single_read", "soc_single_read")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=26722)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--economics", default="us_payer")
    ap.add_argument("--seed", type=int, default=2011)
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()

    from sandbox.compose import load
    from sandbox.economics.accounting import exposures, price
    from sandbox.economics.psa import parse_params, run_psa
    from sandbox.economics.report import load_preset
    from sandbox.runners.local import simulate

    econ = load_preset(args.economics)
    sim_s, exp_s, price_s, exps = 0.0, 0.0, 0.0, {}
    for policy in STRATEGIES:
        cfg, profiles, _ = load(
            [
                "scenario=nlst",
                f"policy={policy}",
                f"seed={args.seed}",
                "runtime=quiet",
                f"cohort.size={args.people}",
            ]
        )
        t0 = time.perf_counter()
        res = simulate(cfg, profiles)
        sim_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        exps[policy] = exposures(res.people, res.events, econ, cfg.policy.modality)
        exp_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        price(exps[policy], econ.costs, econ.utilities)
        price_s += time.perf_counter() - t0
    params = parse_params(econ.psa, econ.costs, econ.utilities)
    t0 = time.perf_counter()
    run_psa(exps, econ.costs, econ.utilities, params, args.draws, 0)
    per_draw = (time.perf_counter() - t0) / args.draws
    rows = [
        ["simulate the 3 strategies (baseline)", f"{sim_s:.2f} s", "1"],
        ["exposures of the 3 runs (once)", f"{exp_s:.2f} s", f"{exp_s / sim_s:.3f}"],
        [
            "price the 3 runs per person (price)",
            f"{price_s * 1000:.1f} ms",
            f"{price_s / sim_s:.5f}",
        ],
        [
            f"one PSA draw, 3 strategies ({len(params)} parameters)",
            f"{per_draw * 1000:.3f} ms",
            f"{per_draw / sim_s:.2e}",
        ],
    ]
    print(f"{args.people:,} people, economics={args.economics}, {args.draws} draws")
    print(_common.table(["step", "time", "vs simulating"], rows))
    print(
        f"a re-pricing draw is {sim_s / per_draw:,.0f} times faster than re-simulating the strategies"
    )
    path = _common.write_json(
        args.out,
        "psa_repricing.json",
        {
            "machine": _common.machine(),
            "code_version": _common.git_rev(),
            "command": "python benchmarks/psa_repricing.py " + " ".join(sys.argv[1:]),
            "people": args.people,
            "draws": args.draws,
            "parameters": len(params),
            "simulate_s": sim_s,
            "exposures_s": exp_s,
            "price_s": price_s,
            "per_draw_s": per_draw,
            "speedup": sim_s / per_draw,
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()

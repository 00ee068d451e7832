"""Do a device's scores on one device (e.g. CUDA) agree with its scores on another (the CPU)?

Renders the candidate patches of ``--exams`` screening-like exams on each device (the renderer
runs on the device too), scores them with the device, and aggregates each exam as a run does.
Reports the largest absolute difference of candidate and exam scores, and the decisions at
three operating points (the device's reference-score quantiles 0.80, 0.90 and 0.95, as a
triage threshold would be set): how many exams are decided differently, and how many of those
are ties, an exam score within ``--tie`` of the threshold. The check passes when the largest
exam-score difference is within ``--tol`` and every differing decision is a tie. Run:

    python benchmarks/gpu_agreement.py --a cpu --b cuda [--agent lung_nodule_cnn] [--exams 3000]
"""

from __future__ import annotations

import argparse
import sys

import _common
import numpy as np
from inference_throughput import exams

from sandbox.agents.bundle import load_bundle
from sandbox.agents.inference import aggregate
from sandbox.agents.operating_point import reference_scores, validation_set
from sandbox.programmes.lung_ldct.programme import render_patches
from sandbox.runners.devices import agent_folder


def scores(agent: str, device: str, batch: list, chunk: int = 256) -> np.ndarray:
    model = load_bundle(agent_folder(agent), device)
    size = int(model.input_shape[-1])
    pairs = [(e, c) for e in batch for c in e.candidates]
    out = []
    for i in range(0, len(pairs), chunk):
        x = render_patches(pairs[i : i + chunk], 7, size, device)
        out.append(model.score(x).detach().cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default="lung_nodule_cnn")
    ap.add_argument("--a", default="cpu")
    ap.add_argument("--b", default="cuda")
    ap.add_argument("--exams", type=int, default=3000)
    ap.add_argument("--tol", type=float, default=2e-3, help="largest exam-score difference")
    ap.add_argument("--tie", type=float, default=2e-3, help="a decision this close is a tie")
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()
    batch = exams(3 * args.exams, 77_000_000)[: args.exams]
    bounds = np.cumsum([0] + [len(e.candidates) for e in batch])
    cand = {d: scores(args.agent, d, batch) for d in (args.a, args.b)}
    exam = {
        d: np.array(
            [aggregate(s[lo:hi], "max") for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        )
        for d, s in cand.items()
    }
    reference = reference_scores(agent_folder(args.agent))
    if reference is None:
        reference = validation_set(agent_folder(args.agent))[0]
    rows, ok = [], True
    for q in (0.80, 0.90, 0.95):
        t = float(np.quantile(reference, q))
        pa, pb = exam[args.a] >= t, exam[args.b] >= t
        differ = pa != pb
        ties = differ & (np.abs(exam[args.a] - t) <= args.tie)
        ok &= bool((differ == ties).all())
        rows.append([f"{q:.2f}", f"{t:.6f}", int(pa.sum()), int(differ.sum()), int(ties.sum())])
    d_cand = float(np.abs(cand[args.a] - cand[args.b]).max())
    d_exam = float(np.abs(exam[args.a] - exam[args.b]).max())
    ok &= d_exam <= args.tol
    print(
        f"{args.agent}: {args.exams:,} exams, {len(cand[args.a]):,} candidates, {args.a} vs {args.b}"
    )
    print(f"largest difference: candidate {d_cand:.3g}, exam {d_exam:.3g} (tolerance {args.tol:g})")
    print(
        _common.table(
            [
                "quantile",
                "threshold",
                f"positive on {args.a}",
                "decided differently",
                "of them ties",
            ],
            rows,
        )
    )
    print("agreement: PASS" if ok else "agreement: FAIL")
    _common.write_json(
        args.out,
        f"gpu_agreement-{args.a}-{args.b}.json",
        {
            "machine": _common.machine(),
            "agent": args.agent,
            "exams": args.exams,
            "max_abs_diff": {"candidate": d_cand, "exam": d_exam},
            "decisions": rows,
            "pass": ok,
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

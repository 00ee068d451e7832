"""In-pipeline AI inference (render + infer + cache) against the bare model forward pass.

Measures, in one process and on the same batch size, in candidate patches per second (an exam
is read as its candidate regions, about three per screening exam):

* **bare forward**: ``LoadedModel.score`` on a batch already rendered and resident in memory
  (windowing, the network's forward pass and the sigmoid: the limit of inference);
* **pipeline**: ``DeviceScorer.scores`` on exams not yet in the cache: rendering each
  candidate's patch from its key, the forward pass, writing the scores to the cache and
  aggregating them by exam;
* **replay**: the same ``DeviceScorer.scores`` call again, served from the cache.

The ratio pipeline / bare is the share of the forward pass's throughput that the whole path
keeps. Run:

    python benchmarks/inference_throughput.py [--batch 256] [--batches 4] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import _common
import torch

from sandbox.agents.bundle import load_bundle
from sandbox.agents.inference import DeviceScorer, ScoreCache
from sandbox.config import Scanner
from sandbox.programmes.lung_ldct.imaging.findings import Candidate, location_of
from sandbox.programmes.lung_ldct.programme import ExamImage, render_images, render_patches
from sandbox.runners.devices import agent_folder

SCANNER = Scanner(
    model="ct_128_2022", dose_mgy=1.0, noise_hu_at_1mgy=70.0, kernel_fwhm_mm=0.9, slice_mm=1.0
)


def exams(patches: int, offset: int) -> list[ExamImage]:
    """Screening-like exams holding ``patches`` candidates in all: two background regions each,
    and a nodule in two exams of three (most small and solid, a few spiculated)."""
    out, total, i = [], 0, 0
    while total < patches:
        pid = offset + i
        d = 0.0 if i % 3 == 0 else 3.0 + (i % 17)
        cands = [Candidate(location_of(pid, 100 + j), 0.0, 0, False) for j in range(2)]
        if d:
            cands.append(Candidate(location_of(pid, 0), d, i % 3, i % 20 == 1))
        cands = cands[: patches - total]
        out.append(ExamImage(pid, 100, SCANNER, tuple(cands)))
        total += len(cands)
        i += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default="lung_nodule_cnn")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: leave torch's default)"
    )
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_bundle(agent_folder(args.agent), args.device)
    size = int(model.input_shape[-1])
    batch = exams(args.batch, 0)
    images = render_images(batch, 7, size, args.device)
    model.score(images)  # warm-up
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    t = time.perf_counter()
    for _ in range(args.batches):
        model.score(images)
    sync()
    bare = args.batches * args.batch / (time.perf_counter() - t)

    scorer = DeviceScorer(
        model,
        ScoreCache(model.digest, "bench"),
        seed=7,
        batch_size=args.batch,
        render=render_patches,
    )
    todo = [exams(args.batch, (k + 1) * 10_000_000) for k in range(args.batches)]
    t = time.perf_counter()
    for b in todo:
        scorer.scores(b)
    sync()
    pipeline = args.batches * args.batch / (time.perf_counter() - t)

    t = time.perf_counter()
    for b in todo:
        scorer.scores(b)
    replay = args.batches * args.batch / (time.perf_counter() - t)

    t = time.perf_counter()
    for b in todo:
        render_images(b, 7, size, args.device)
    sync()
    render_only = args.batches * args.batch / (time.perf_counter() - t)

    rows = [
        ["bare forward (score on a resident batch)", f"{bare:,.0f}", "1.00"],
        ["pipeline (render + infer + cache)", f"{pipeline:,.0f}", f"{pipeline / bare:.2f}"],
        ["render only", f"{render_only:,.0f}", f"{render_only / bare:.2f}"],
        ["replay from cache", f"{replay:,.0f}", f"{replay / bare:.2f}"],
    ]
    print(
        f"device {args.device}, batch {args.batch} x {args.batches}, torch threads {torch.get_num_threads()}, "
        f"model {model.name} {model.digest[:12]}"
    )
    print(_common.table(["path", "candidate patches/s", "ratio to bare forward"], rows))
    _common.write_json(
        args.out,
        f"inference_throughput-{args.device}.json",
        {
            "machine": _common.machine(),
            "batch": args.batch,
            "batches": args.batches,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "patches_per_s": {
                "bare_forward": bare,
                "pipeline": pipeline,
                "render_only": render_only,
                "replay": replay,
            },
            "ratio_pipeline_to_bare": pipeline / bare,
        },
    )


if __name__ == "__main__":
    main()

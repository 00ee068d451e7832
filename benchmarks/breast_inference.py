"""The breast device's inference path, part by part, against its bare network forward pass.

Measures, in one process, on the shipped device (``agents/breast_mammo_cnn``) and on the
candidate regions of breast_masai screening exams (four background regions an exam, and both
views of each finding CAD proposes), in candidate patches per second:

* **network forward**: the network alone on a batch already preprocessed and resident in memory
  (the limit of inference);
* **score**: ``LoadedModel.score`` on a resident batch of rendered patches: the window, the
  detail channel (``input.detail``, the patch less its blur), the forward pass and the sigmoid;
* **window only**: the same with the window and no detail channel (what a one-channel device's
  preprocessing costs), then the forward pass of a one-channel copy of the network;
* **render only**: the patches of new exams rendered into one reused batch buffer, as a run's
  scorer renders them;
* **pipeline**: ``DeviceScorer.scores`` on exams not yet in the cache (render, preprocess,
  forward, cache, aggregate by exam).

Ratios are to the network forward pass measured in the same run. Each path is timed
``--repeats`` times, interleaved, and the best is kept. Run:

    python benchmarks/breast_inference.py [--batch 128] [--batches 8] [--repeats 3]
        [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import _common
import numpy as np
import torch

from sandbox.agents.bundle import load_bundle
from sandbox.agents.inference import DeviceScorer, ScoreCache
from sandbox.compose import load
from sandbox.programmes.breast_mammo.programme import BreastMammo
from sandbox.programmes.breast_mammo.train import screening_exams
from sandbox.rng import Streams

BENCH_SEED = 2024  # the women of the workload


def screening_images(women: int) -> list:
    """The screening exams of ``women`` breast_masai women on the scenario's systems, as the
    device's training builds them (:func:`screening_exams`: one screen a woman, and a second
    for a woman with an invasive cancer), with the candidate regions a run shows the device."""
    cfg, _, _ = load(["scenario=breast_masai", "runtime=quiet"])
    scn = cfg.scenario
    scn = dataclasses.replace(scn, cohort=dataclasses.replace(scn.cohort, size=women))
    programme = BreastMammo(scn)
    streams = Streams(BENCH_SEED)
    cohort = programme.sample_cohort(streams)
    scanners = list({s.scanner.model: s.scanner for s in scn.sites}.values())
    _, cases = screening_exams(programme, cohort, scanners, streams)
    seen, out = set(), []
    for image, _ in cases.pairs:
        if id(image) not in seen:
            seen.add(id(image))
            out.append(image)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timings; the best is kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = _common.ROOT / "agents" / "breast_mammo_cnn"
    model = load_bundle(folder, args.device)
    batch, work = args.batch, args.batch * args.batches
    # enough exams for a fresh set per repeat for the pipeline and for render-only
    per_exam = 4.6  # candidate regions a screening exam shows, about
    images = screening_images(int(work * (2 * args.repeats + 1) / per_exam * 1.3) + 50)
    pairs = [(e, c) for e in images for c in e.candidates]
    cfg, _, _ = load(["scenario=breast_masai", "runtime=quiet"])
    render = BreastMammo(cfg.scenario).render

    size = int(model.input_shape[-1])
    raw = render(pairs[:batch], 7, size, args.device)
    x2 = model.preprocess(raw)
    one = copy.deepcopy(model.network)  # a one-channel network of the same shape
    conv = one.conv1
    one.conv1 = torch.nn.Conv2d(
        1,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    ).to(raw.device)
    window_model = dataclasses.replace(model, detail=None, network=one)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    buffer = torch.empty_like(raw)

    def timed(job) -> float:
        t = time.perf_counter()
        job()
        sync()
        return work / (time.perf_counter() - t)

    def forward():
        with torch.inference_mode():
            for _ in range(args.batches):
                model.network(x2)

    def render_only(ps):
        for s in range(0, len(ps), batch):
            render(ps[s : s + batch], 7, size, args.device, buffer[: min(batch, len(ps) - s)])

    # exams split into disjoint sets of about ``work`` candidates
    groups, cur, n = [], [], 0
    for e in images:
        cur.append(e)
        n += len(e.candidates)
        if n >= work:
            groups.append(cur)
            cur, n = [], 0
    model.score(raw)  # warm-up
    paths = ["forward", "score", "window", "render", "pipeline"]
    best = dict.fromkeys(paths, 0.0)
    for r in range(args.repeats):
        scorer = DeviceScorer(
            model, ScoreCache(model.digest, "bench"), 7, batch_size=batch, render=render
        )
        todo, fresh = groups[2 * r], groups[2 * r + 1]
        fresh_pairs = [(e, c) for e in fresh for c in e.candidates][:work]
        runs = {
            "forward": forward,
            "score": lambda: [model.score(raw) for _ in range(args.batches)],
            "window": lambda: [window_model.score(raw) for _ in range(args.batches)],
            "render": lambda fp=fresh_pairs: render_only(fp),
            "pipeline": lambda s=scorer, t=todo: s.scores(t),
        }
        for name, job in runs.items():
            best[name] = max(best[name], timed(job))
    print(
        f"{model.name} {model.version}; device {args.device}, torch threads "
        f"{torch.get_num_threads()}, batches of {batch} x {args.batches}, best of {args.repeats}"
    )
    names = {
        "forward": "network forward (resident, preprocessed)",
        "score": "score: window + detail channel + forward",
        "window": "window only + one-channel forward",
        "render": "render only",
        "pipeline": "pipeline (render + score + cache)",
    }
    rows = [
        [label, f"{best[k]:,.0f}", f"{best[k] / best['forward']:.2f}"] for k, label in names.items()
    ]
    print(_common.table(["path", "candidate patches/s", "ratio to network forward"], rows))
    _common.write_json(
        args.out,
        f"breast_inference-{args.device}.json",
        {
            "machine": _common.machine(),
            "threads": torch.get_num_threads(),
            "device": args.device,
            "repeats": args.repeats,
            "model": f"{model.name} {model.version}",
            "digest": model.digest,
            "batch": batch,
            "batches": args.batches,
            "patches_per_s": best,
            "ratios_to_forward": {k: best[k] / best["forward"] for k in paths},
            "mean_candidates_per_exam": float(np.mean([len(e.candidates) for e in images])),
        },
    )


if __name__ == "__main__":
    main()

"""In-pipeline AI inference (render + infer + cache) against the bare model forward pass, per
architecture.

Measures, in one process, per device and on the same batch size, in candidate patches per
second (an exam is read as its candidate regions, about three per screening exam):

* **bare forward**: ``LoadedModel.score`` on a batch already rendered and resident in memory
  (windowing, the network's forward pass and the sigmoid: the limit of inference);
* **pipeline**: ``DeviceScorer.scores`` on exams not yet in the cache: rendering each
  candidate's patch from its key (into the scorer's batch buffer), the forward pass, writing
  the scores to the cache and aggregating them by exam;
* **render only**: the patches of other new exams, rendered into one reused batch buffer, as
  the scorer renders them, and dropped;
* **replay**: the pipeline's exams again, served from the cache.

Two workloads: **screening**, the default scenario's own screening exams with the candidates a
run shows the device (two sites' scanners; about 2.9 candidates an exam, 31 % of them nodules
of median 3.7 mm, 1 % spiculated), and **nodule-heavy**, exams on one scanner with a 3-19 mm
nodule in two of three (one in twenty spiculated). The headline ratio is the screening one.

The ratio pipeline / bare is the share of the forward pass's throughput that the whole path
keeps. Each path is timed ``--repeats`` times, interleaved, and the best is kept (as timeit
does: the run least disturbed by the rest of the machine).

Devices (``--agents``, comma-separated): the reference device ``lung_nodule_cnn`` (32^3) and
the GPU-class ``lung_nodule_resnet`` (a MONAI 3-D ResNet at 64^3). Where the ResNet has not
been built (``sandbox train agent=lung_nodule_resnet``: hours on a CPU), its recipe's network
is measured with seeded, untrained weights, and the table says so: the cost of a forward pass
does not depend on the values of the weights. Run:

    python benchmarks/inference_throughput.py [--agents lung_nodule_cnn,lung_nodule_resnet]
        [--batch 128] [--batches 8] [--repeats 3] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import _common
import torch
import yaml

from sandbox.agents.bundle import load_bundle
from sandbox.agents.inference import DeviceScorer, ScoreCache
from sandbox.compose import load
from sandbox.config import Scanner
from sandbox.errors import SandboxInputError
from sandbox.programmes.lung_ldct.disease.history import sample_history
from sandbox.programmes.lung_ldct.imaging.findings import Candidate, location_of
from sandbox.programmes.lung_ldct.programme import ExamImage, render_images, render_patches
from sandbox.programmes.lung_ldct.train import (
    build_network,
    network_spec,
    screening_exams,
    seeded_init,
    write_bundle,
)
from sandbox.rng import Streams
from sandbox.runners.devices import agent_folder

BENCH_SEED = 2024  # the people of the screening workload
SCANNER = Scanner(
    model="ct_128_2022", dose_mgy=1.0, noise_hu_at_1mgy=70.0, kernel_fwhm_mm=0.9, slice_mm=1.0
)


def exams(patches: int, offset: int) -> list[ExamImage]:
    """A nodule-heavy workload holding ``patches`` candidates in all: two background regions per
    exam, and in two exams of three a nodule of 3-19 mm (uniform; one exam in twenty spiculated).
    Heavier than screening: its nodules are three times the median size."""
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


def screening(patches: int) -> list[ExamImage]:
    """The default scenario's screening exams, person by person and round by round, each with
    the candidates a run shows the device (its visible nodules and two background regions, on
    its site's scanner), until ``patches`` candidates (the last exam cut short)."""
    cfg, _, _ = load(["runtime=quiet"])
    scanners = [site.scanner for site in cfg.scenario.sites]
    people = patches // 6 + 200
    while True:
        history = sample_history(cfg.scenario, Streams(BENCH_SEED), size=people)
        ex, cases = screening_exams(history, cfg.scenario.programme.rounds, scanners, Streams(1))
        if len(cases) >= patches:
            break
        people *= 2
    by_exam: list[list[Candidate]] = [[] for _ in range(len(ex))]
    for i in range(patches):
        by_exam[int(cases.exam[i])].append(
            Candidate(
                int(cases.location[i]),
                float(cases.diameter_mm[i]),
                int(cases.nodule_type[i]),
                bool(cases.spiculated[i]),
            )
        )
    return [
        ExamImage(int(ex.person_id[e]), int(ex.exam_day[e]), scanners[int(ex.scanner[e])], tuple(c))
        for e, c in enumerate(by_exam)
        if c
    ]


def split(images: list[ExamImage], patches: int, parts: int) -> list[list[ExamImage]]:
    """``parts`` consecutive workloads of exactly ``patches`` candidates each (an exam that
    straddles two keeps its candidates in order, cut between them)."""
    out: list[list[ExamImage]] = []
    it = iter(images)
    carry: ExamImage | None = None
    for _ in range(parts):
        part, need = [], patches
        while need:
            e = carry if carry is not None else next(it)
            carry = None
            if len(e.candidates) > need:
                carry = ExamImage(e.person_id, e.exam_day, e.scanner, e.candidates[need:])
                e = ExamImage(e.person_id, e.exam_day, e.scanner, e.candidates[:need])
            part.append(e)
            need -= len(e.candidates)
        out.append(part)
    return out


def device_folder(name: str, scratch: Path) -> tuple[Path, str]:
    """The device's folder and how it is measured: as built, or (a recipe's network not yet
    built) with seeded, untrained weights in a scratch folder."""
    try:
        folder = agent_folder(name)
        if folder.is_dir():
            return folder, "trained"
    except SandboxInputError:  # not built: fall through to the recipe's network
        pass
    recipe = yaml.safe_load((_common.ROOT / "conf" / "train" / f"{name}.yaml").read_text())
    spec = network_spec(
        recipe.get("network", "NoduleCNN"),
        recipe["channels"],
        recipe.get("stem", 0),
        recipe.get("centre", False),
        recipe.get("layers", (1, 1, 1, 1)),
    )
    net = build_network(spec)
    seeded_init(net, torch.Generator().manual_seed(int(recipe["seed"])))
    reference = _common.ROOT / "agents" / "lung_nodule_cnn" / "configs"
    meta = json.loads((reference / "metadata.json").read_text())
    meta["name"], meta["version"] = name, "untrained"
    meta["input"]["shape"] = [1, *(int(recipe["size"]),) * 3]
    validation = json.loads((reference / "validation.json").read_text())
    folder = scratch / name
    write_bundle(folder, spec, meta, net.state_dict(), validation, f"# {name} (untrained)\n")
    return folder, "untrained weights (cost only)"


def measure(folder: Path, args: argparse.Namespace, batch: int, batches: int) -> dict:
    model = load_bundle(folder, args.device)
    size = int(model.input_shape[-1])
    work = batch * batches
    # per repeat: fresh exams for the pipeline and for render-only, in each mix
    pool = split(screening(work * (2 * args.repeats + 1)), work, 2 * args.repeats + 1)
    images = render_images(split(pool[0], batch, 1)[0], 7, size, args.device)
    model.score(images)  # warm-up (and the anatomy banks of both sites' scanners)
    render_images(exams(batch, 0), 7, size, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    buffer = torch.empty_like(images)

    def render_only(exam_list: list[ExamImage]) -> None:
        pairs = [(e, c) for e in exam_list for c in e.candidates]
        for s in range(0, len(pairs), batch):
            render_patches(pairs[s : s + batch], 7, size, args.device, buffer[: len(pairs) - s])

    def timed(job) -> float:
        t = time.perf_counter()
        job()
        sync()
        return work / (time.perf_counter() - t)

    paths = ["bare", "pipeline", "render", "pipeline_heavy", "render_heavy", "replay"]
    best = dict.fromkeys(paths, 0.0)
    for r in range(args.repeats):
        # a new scorer (and score cache) per repeat, as a run has: its buffer is made anew
        scorer = DeviceScorer(
            model, ScoreCache(model.digest, "bench"), 7, batch_size=batch, render=render_patches
        )
        base = (r + 1) * 10_000_000
        todo, fresh = pool[1 + 2 * r], pool[2 + 2 * r]
        heavy, heavy_fresh = exams(work, base), exams(work, base + 5_000_000)
        runs = {
            "bare": lambda: [model.score(images) for _ in range(batches)],
            "pipeline": lambda s=scorer, todo=todo: s.scores(todo),
            "render": lambda fresh=fresh: render_only(fresh),
            "pipeline_heavy": lambda s=scorer, heavy=heavy: s.scores(heavy),
            "render_heavy": lambda fresh=heavy_fresh: render_only(fresh),
            "replay": lambda s=scorer, todo=todo: s.scores(todo),
        }
        for name, job in runs.items():
            best[name] = max(best[name], timed(job))
    return {
        "model": f"{model.name} {model.version} ({model.network_config['name']}, {size}^3)",
        "digest": model.digest,
        "batch": batch,
        "batches": batches,
        "patches_per_s": best,
        "ratio_pipeline_to_bare": best["pipeline"] / best["bare"],
        "ratio_pipeline_heavy_to_bare": best["pipeline_heavy"] / best["bare"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="lung_nodule_cnn,lung_nodule_resnet")
    ap.add_argument("--batch", type=int, default=128, help="patches per batch at 32^3")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timings; the best is kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: leave torch's default)"
    )
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="bench-devices-"))
    results = {}
    try:
        for name in args.agents.split(","):
            folder, how = device_folder(name, scratch)
            size = int(
                json.loads((folder / "configs" / "metadata.json").read_text())["input"]["shape"][-1]
            )
            # the same memory per batch at every size; heavy networks take fewer batches
            batch = max(8, args.batch * 32**3 // size**3)
            batches = args.batches if size <= 32 else max(2, args.batches // 4)
            results[name] = {"weights": how, **measure(folder, args, batch, batches)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"device {args.device}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    for r in results.values():
        p = r["patches_per_s"]
        print(f"\n{r['model']}, {r['weights']}; batches of {r['batch']} x {r['batches']}")
        names = {
            "bare": "bare forward (score on a resident batch)",
            "pipeline": "pipeline (render + infer + cache), screening",
            "render": "render only, screening",
            "pipeline_heavy": "pipeline, nodule-heavy",
            "render_heavy": "render only, nodule-heavy",
            "replay": "replay from cache",
        }
        rows = [[label, f"{p[k]:,.0f}", f"{p[k] / p['bare']:.2f}"] for k, label in names.items()]
        print(_common.table(["path", "candidate patches/s", "ratio to bare forward"], rows))
    _common.write_json(
        args.out,
        f"inference_throughput-{args.device}.json",
        {
            "machine": _common.machine(),
            "threads": torch.get_num_threads(),
            "device": args.device,
            "repeats": args.repeats,
            "agents": results,
        },
    )


if __name__ == "__main__":
    main()

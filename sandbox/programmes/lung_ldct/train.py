"""Training the reference device from synthetic screening exams (``sandbox train``).

The training data are exams of a synthetic screening population: people and disease histories
drawn from a scenario, examined at each annual round, each exam rendered with its most
suspicious finding on one of the *declared training scanners*. The label is whether that
finding is the person's cancer. Every case, split and weight initialisation comes from the
seed, so the shipped weights are reproducible from the command in the device's metadata.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sandbox.config import Scanner, Scenario
from sandbox.programmes.lung_ldct.config import RACES
from sandbox.programmes.lung_ldct.disease.history import LungCohort, sample_history
from sandbox.programmes.lung_ldct.disease.natural_history import YEAR
from sandbox.programmes.lung_ldct.imaging.findings import MALIGNANT_KEY, most_suspicious
from sandbox.programmes.lung_ldct.reading import visible_findings
from sandbox.rng import Streams

TYPE_NAMES = ("solid", "part_solid", "ground_glass")
TRAIN_THREADS = 1


@dataclass(frozen=True)
class Cases:
    """Training or evaluation cases (struct of arrays)."""

    person_id: np.ndarray
    exam_day: np.ndarray
    scanner: np.ndarray  # index into the scanner list
    diameter_mm: np.ndarray
    nodule_type: np.ndarray
    spiculated: np.ndarray
    label: np.ndarray
    sex: np.ndarray
    race: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: np.ndarray) -> Cases:
        return Cases(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})


def exam_cases(
    history: LungCohort,
    rounds: int,
    scanners: list[Scanner],
    streams: Streams,
    negatives_per_positive: float,
    empty_share: float,
    representative: float = 0.0,
) -> Cases:
    """Screening exams of ``history`` at each round, balanced: every exam showing a cancer, and
    ``negatives_per_positive`` benign-finding or empty exams per cancer exam.

    With ``representative`` > 0, instead a uniform sample of that fraction of all exams (the
    screening population's own mix, for reference score distributions)."""
    rows: list[tuple] = []
    people = history.people
    for row in range(len(history)):
        entry = float(people["entry_day"][row])
        for r in range(rounds):
            day = entry + r * YEAR
            if (
                day >= history.cancer["other_death_day"][row]
                or day >= history.cancer["clinical_day"][row]
            ):
                break
            f = most_suspicious(visible_findings(history, row, day, scanners[0]))
            label = f is not None and f.key == MALIGNANT_KEY
            rows.append(
                (
                    row,
                    int(day),
                    f.size_mm if f else 0.0,
                    f.nodule_type if f else 0,
                    bool(f.spiculated) if f else False,
                    label,
                )
            )
    arr = np.array([(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows], dtype=float)
    row_idx = arr[:, 0].astype(np.int64)
    pid = people["person_id"][row_idx]
    label = arr[:, 5].astype(bool)
    has_finding = arr[:, 2] > 0
    u = streams.uniform("train.select", pid, arr[:, 1].astype(np.int64))
    n_pos = int(label.sum())
    n_neg_find = int((~label & has_finding).sum())
    n_empty = int((~has_finding).sum())
    want_neg = negatives_per_positive * n_pos
    if representative > 0:
        keep = u < representative
        sel = np.flatnonzero(keep)
        return _cases(people, pid, row_idx, arr, label, sel, scanners, streams)
    keep = label.copy()
    keep |= (~label & has_finding) & (
        u < min(1.0, want_neg * (1 - empty_share) / max(n_neg_find, 1))
    )
    keep |= (~has_finding) & (u < min(1.0, want_neg * empty_share / max(n_empty, 1)))
    sel = np.flatnonzero(keep)
    return _cases(people, pid, row_idx, arr, label, sel, scanners, streams)


def _cases(people, pid, row_idx, arr, label, sel, scanners, streams) -> Cases:
    scanner = (
        streams.uniform("train.scanner", pid[sel], arr[sel, 1].astype(np.int64)) * len(scanners)
    ).astype(np.int64)
    return Cases(
        person_id=pid[sel],
        exam_day=arr[sel, 1].astype(np.int64),
        scanner=np.minimum(scanner, len(scanners) - 1),
        diameter_mm=arr[sel, 2],
        nodule_type=arr[sel, 3].astype(np.int64),
        spiculated=arr[sel, 4].astype(bool),
        label=label[sel],
        sex=np.where(people["female"][row_idx[sel]] == 1, "F", "M"),
        race=np.array(RACES)[people["race"][row_idx[sel]]],
    )


def held_out(person_id: np.ndarray, streams: Streams) -> np.ndarray:
    """The held-out split, by person: a quarter of the people."""
    return streams.uniform("train.split", person_id) < 0.25


def reference_scores(
    net,
    history: LungCohort,
    rounds: int,
    scanners: list[Scanner],
    streams: Streams,
    seed: int,
    size: int,
    window: tuple[float, float],
    n: int = 4000,
) -> np.ndarray:
    """Scores of a uniform sample of held-out people's screening exams: the score distribution
    the device meets in screening (for percentile operating points), unlike the enriched
    validation set."""
    frac = min(1.0, n / max(0.25 * len(history) * rounds, 1.0))
    ref = exam_cases(history, rounds, scanners, streams, 0.0, 0.0, representative=frac)
    ref = ref.take(np.flatnonzero(held_out(ref.person_id, streams)))
    return predict(net, preprocess(render_cases(ref, scanners, seed, size), window))


def render_cases(
    cases: Cases, scanners: list[Scanner], seed: int, size: int, batch: int = 256
) -> torch.Tensor:
    from sandbox.programmes.lung_ldct.imaging.render import PatchSpec, render_batch

    out = []
    for start in range(0, len(cases), batch):
        sl = slice(start, start + batch)
        specs = [
            PatchSpec((int(p), int(d)), float(dm), int(t), bool(s), scanners[int(k)])
            for p, d, dm, t, s, k in zip(
                cases.person_id[sl],
                cases.exam_day[sl],
                cases.diameter_mm[sl],
                cases.nodule_type[sl],
                cases.spiculated[sl],
                cases.scanner[sl],
                strict=True,
            )
        ]
        out.append(render_batch(specs, seed, size=size))
    return torch.cat(out)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney), NaN if one class is absent."""
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    # average ranks over ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _json_auc(value: float) -> float | None:
    """AUC for JSON: None where it is undefined (a subgroup without both classes)."""
    return None if math.isnan(value) else round(value, 4)


def seeded_init(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Re-initialise conv and linear layers from ``gen`` (PyTorch's default scheme), so the
    weights depend on the seed and on nothing global."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv3d | torch.nn.Linear):
            torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                torch.nn.init.uniform_(m.bias, -bound, bound, generator=gen)


def preprocess(x: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    lo, hi = window
    return (x.clamp(lo, hi) - lo) / (hi - lo)


def fit(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    log: Callable[[str], None],
) -> list[float]:
    """Adam on binary cross-entropy with random flips and 90-degree rotations (in-plane)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    pos_weight = torch.tensor([(len(y) - float(y.sum())) / max(float(y.sum()), 1.0)])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    losses = []
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(y), batch):
            idx = perm[start : start + batch]
            xb = x[idx]
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(-1)
            k = int(torch.randint(0, 4, (1,), generator=gen))
            xb = torch.rot90(xb, k, dims=(-2, -1))
            loss = loss_fn(net(xb).squeeze(-1), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(y))
        log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    net.train(False)
    return losses


@torch.inference_mode()
def predict(net: torch.nn.Module, x: torch.Tensor, batch: int = 512) -> np.ndarray:
    net.train(False)
    return torch.cat(
        [torch.sigmoid(net(x[i : i + batch]).squeeze(-1)) for i in range(0, len(x), batch)]
    ).numpy()


def breakdown(scores: np.ndarray, cases: Cases, scanners: list[Scanner]) -> dict[str, Any]:
    """AUC overall and per scanner, nodule type (cancer cases vs all negatives), sex and race."""
    lab = cases.label
    out: dict[str, Any] = {
        "overall": {
            "auc": _json_auc(auc(scores, lab)),
            "cases": len(lab),
            "malignant": int(lab.sum()),
        }
    }
    out["by_scanner"] = {
        s.model: {
            "auc": _json_auc(auc(scores[cases.scanner == i], lab[cases.scanner == i])),
            "cases": int((cases.scanner == i).sum()),
        }
        for i, s in enumerate(scanners)
    }
    out["by_nodule_type"] = {}
    for t, name in enumerate(TYPE_NAMES):
        m = (~lab) | (cases.nodule_type == t)
        out["by_nodule_type"][name] = {
            "auc": _json_auc(auc(scores[m], lab[m])),
            "malignant": int((lab & (cases.nodule_type == t)).sum()),
        }
    out["by_sex"] = {
        s: {
            "auc": _json_auc(auc(scores[cases.sex == s], lab[cases.sex == s])),
            "cases": int((cases.sex == s).sum()),
        }
        for s in ("F", "M")
    }
    out["by_race"] = {
        r: {
            "auc": _json_auc(auc(scores[cases.race == r], lab[cases.race == r])),
            "cases": int((cases.race == r).sum()),
        }
        for r in RACES
        if (cases.race == r).sum() >= 20
    }
    return out


def write_bundle(
    folder: Path,
    network: dict[str, Any],
    metadata: dict[str, Any],
    state: dict[str, torch.Tensor],
    validation: dict[str, Any],
    card: str,
) -> None:
    """Write the device folder next to ``folder`` and swap it in when complete."""
    from safetensors.torch import save_file

    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "configs").mkdir(parents=True)
    (tmp / "models").mkdir()
    (tmp / "docs").mkdir()
    (tmp / "configs" / "network.json").write_text(json.dumps(network, indent=2) + "\n")
    (tmp / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (tmp / "configs" / "validation.json").write_text(json.dumps(validation) + "\n")
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(tmp / "models" / "model.safetensors")
    )
    (tmp / "docs" / "README.md").write_text(card)
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def train_device(
    scenario: Scenario,
    scanners: list[Scanner],
    folder: Path,
    seed: int,
    people: int,
    epochs: int,
    size: int = 32,
    channels: tuple[int, ...] = (8, 16, 32),
    lr: float = 3e-3,
    log: Callable[[str], None] = print,
    command: str = "",
) -> dict[str, Any]:
    """Synthesise cases, train, evaluate on held-out people, write the device folder.

    Runs on one torch thread: floating-point sums, and so the weights, depend on the thread
    count, and one thread makes them reproducible on any CPU.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        return _train_device(
            scenario, scanners, folder, seed, people, epochs, size, channels, lr, log, command
        )
    finally:
        torch.set_num_threads(threads)


def _train_device(
    scenario, scanners, folder, seed, people, epochs, size, channels, lr, log, command
):
    t0 = time.perf_counter()
    streams = Streams(seed)
    history = sample_history(scenario, streams, size=people)
    cases = exam_cases(
        history,
        scenario.programme.rounds,
        scanners,
        streams,
        negatives_per_positive=3.0,
        empty_share=0.25,
    )
    test_mask = held_out(cases.person_id, streams)
    train, test = cases.take(np.flatnonzero(~test_mask)), cases.take(np.flatnonzero(test_mask))
    log(
        f"{len(cases):,} cases from {people:,} people ({int(cases.label.sum()):,} malignant); "
        f"{len(train):,} train / {len(test):,} held out (by person)"
    )
    window = (-1000.0, 400.0)
    x_train = preprocess(render_cases(train, scanners, seed, size), window)
    x_test = preprocess(render_cases(test, scanners, seed, size), window)
    log(f"rendered in {time.perf_counter() - t0:.0f} s")
    from sandbox.programmes.lung_ldct.nets import NoduleCNN

    net = NoduleCNN(1, list(channels), 1)
    seeded_init(net, torch.Generator().manual_seed(seed))
    losses = fit(
        net, x_train, torch.tensor(train.label, dtype=torch.float32), epochs, 64, lr, seed, log
    )
    scores = predict(net, x_test)
    perf = breakdown(scores, test, scanners)
    log(f"held-out AUC {perf['overall']['auc']}")
    network = {
        "name": "NoduleCNN",
        "args": {"in_channels": 1, "channels": list(channels), "out_features": 1},
    }
    metadata = {
        "name": folder.name,
        "version": "1.0.0",
        "intended_use": (
            "Research and regulatory simulation only: scores a low-dose chest CT patch centred on the "
            "most suspicious finding of a lung screening exam for malignancy. Not a medical device."
        ),
        "input": {
            "shape": [1, size, size, size],
            "dtype": "float32",
            "units": "HU",
            "spacing_mm": 1.0,
            "window_hu": list(window),
        },
        "output": {
            "shape": [1],
            "meaning": "probability that the exam's most suspicious finding is malignant",
            "activation": "sigmoid",
        },
        "training_data": {
            "scanners": [s.model for s in scanners],
            "scanner_parameters": [
                {
                    "model": s.model,
                    "dose_mgy": s.dose_mgy,
                    "noise_hu_at_1mgy": s.noise_hu_at_1mgy,
                    "kernel_fwhm_mm": s.kernel_fwhm_mm,
                    "slice_mm": s.slice_mm,
                }
                for s in scanners
            ],
            "population": f"scenario '{scenario.name}': {scenario.description}",
            "people": people,
            "cases": len(train),
            "malignant_cases": int(train.label.sum()),
            "rounds": scenario.programme.rounds,
            "seed": seed,
            "torch_threads": TRAIN_THREADS,
            "command": command,
        },
        "performance": {
            "held_out": perf,
            "training_loss_by_epoch": [round(v, 5) for v in losses],
        },
    }
    reference = reference_scores(
        net, history, scenario.programme.rounds, scanners, streams, seed, size, window
    )
    validation = {
        "scores": [round(float(s), 6) for s in scores],
        "labels": [int(v) for v in test.label],
        "reference_scores": [round(float(s), 6) for s in reference],
    }
    write_bundle(folder, network, metadata, net.state_dict(), validation, model_card(metadata))
    return metadata


def model_card(meta: dict[str, Any]) -> str:
    td, perf = meta["training_data"], meta["performance"]["held_out"]

    def rows(d: dict[str, Any]) -> str:
        return "\n".join(
            f"| {k} | {'-' if v['auc'] is None else format(v['auc'], '.3f')} | {v.get('cases', v.get('malignant', ''))} |"
            for k, v in d.items()
        )

    return f"""# {meta["name"]} {meta["version"]} — model card

**Intended use.** {meta["intended_use"]}

**Input.** {meta["input"]["shape"]} patch, {meta["input"]["units"]}, {meta["input"]["spacing_mm"]} mm voxels,
windowed to {meta["input"]["window_hu"]} HU. **Output.** {meta["output"]["meaning"]} (sigmoid of one logit).

**Network.** `NoduleCNN` (sandbox/programmes/lung_ldct/nets.py), a small 3D CNN.

## Training data

Synthetic screening exams of {td["people"]:,} people from {td["population"]}, annual rounds
{td["rounds"]}, each exam rendered with its most suspicious finding on one of the training
scanners: {", ".join(td["scanners"])}. {td["cases"]:,} training cases ({td["malignant_cases"]:,}
malignant); held-out cases come from other people. Deployment on other scanners (thicker slices,
more noise) or other populations is outside the training distribution: the sandbox measures
the shift rather than assuming it.

Reproduce: `{td["command"]}` (seed {td["seed"]}).

## Performance on held-out synthetic exams

Overall AUC {perf["overall"]["auc"]} ({perf["overall"]["cases"]:,} cases, {perf["overall"]["malignant"]:,} malignant).

| scanner | AUC | cases |
|---|---|---|
{rows(perf["by_scanner"])}

| nodule type (malignant of this type vs all negatives) | AUC | malignant |
|---|---|---|
{rows(perf["by_nodule_type"])}

| sex | AUC | cases |
|---|---|---|
{rows(perf["by_sex"])}

| race/ethnicity | AUC | cases |
|---|---|---|
{rows(perf["by_race"])}
"""

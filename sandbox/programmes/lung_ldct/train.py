"""Training the reference device from synthetic screening exams (``sandbox train``).

The training data are exams of a synthetic screening population: people and disease histories
drawn from a scenario, examined at each annual round on one of the *declared training scanners*,
each exam shown as its candidate regions exactly as in a run
(:func:`sandbox.programmes.lung_ldct.imaging.findings.candidates`: every conspicuous nodule and
background regions, none marked). A training case is one candidate patch; its label is whether
that candidate is the person's cancer. Evaluation is by exam, as the device is used: on
held-out people, each exam's score is the maximum over its candidates, and an exam is positive
when the person's cancer is in the lungs that day. Every case, split and weight initialisation
comes from the seed, so the shipped weights are reproducible from the command in the device's
metadata.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sandbox.config import Scanner, Scenario
from sandbox.programmes.lung_ldct.cohort import age_band
from sandbox.programmes.lung_ldct.config import RACES
from sandbox.programmes.lung_ldct.disease.history import LungCohort, sample_history
from sandbox.programmes.lung_ldct.disease.natural_history import YEAR
from sandbox.programmes.lung_ldct.imaging.findings import (
    BACKGROUND_CANDIDATES,
    CANDIDATE_MIN_CONSPICUITY,
    MALIGNANT_KEY,
    MAX_FINDING_CANDIDATES,
    candidate_kind,
    candidates,
)
from sandbox.programmes.lung_ldct.reading import visible_findings
from sandbox.rng import Streams

TYPE_NAMES = ("solid", "part_solid", "ground_glass")
TRAIN_THREADS = 1
# the exam-level AUC headline: cancers at least this large (the NLST positivity size)
HEADLINE_MM = 4.0
# Lung-RADS v2022 size bands of the cancer on the exam day (mm)
SIZE_BANDS = (
    (0.0, 4.0, "<4"),
    (4.0, 6.0, "4-6"),
    (6.0, 8.0, "6-8"),
    (8.0, 15.0, "8-15"),
    (15.0, math.inf, ">=15"),
)
# exams of held-out people scored for the card: every exam with a cancer, and this many
# exams drawn uniformly (the screening population's own mix: the percentile reference)
REFERENCE_EXAMS = 6000


@dataclass(frozen=True)
class Cases:
    """Candidate patches (struct of arrays); ``exam`` indexes the :class:`Exams` they belong to."""

    person_id: np.ndarray
    exam_day: np.ndarray
    scanner: np.ndarray  # index into the scanner list
    location: np.ndarray
    diameter_mm: np.ndarray
    nodule_type: np.ndarray
    spiculated: np.ndarray
    label: np.ndarray  # the candidate is the person's cancer
    exam: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: np.ndarray) -> Cases:
        return Cases(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class Exams:
    """Screening exams (struct of arrays): who, when, on which scanner, and the truth."""

    person_id: np.ndarray
    exam_day: np.ndarray
    day: np.ndarray  # the exam's programme day, not rounded (what the lungs show follows it)
    scanner: np.ndarray
    cancer: np.ndarray  # the person's cancer is in the lungs that day
    cancer_mm: np.ndarray  # its diameter (0: none)
    cancer_type: np.ndarray  # its nodule type (-1: none)
    sex: np.ndarray
    race: np.ndarray
    age_band: np.ndarray
    smoking: np.ndarray

    def __len__(self) -> int:
        return len(self.cancer)

    def take(self, idx: np.ndarray) -> Exams:
        return Exams(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})


def screening_exams(
    history: LungCohort, rounds: int, scanners: list[Scanner], streams: Streams
) -> tuple[Exams, Cases]:
    """Every annual screening exam of ``history`` (until death or clinical diagnosis), each on
    a training scanner drawn by key, and every candidate patch of those exams."""
    people, c = history.people, history.cancer
    e_rows: list[tuple] = []
    k_rows: list[tuple] = []
    for row in range(len(history)):
        entry = float(people["entry_day"][row])
        pid = int(people["person_id"][row])
        for r in range(rounds):
            day = entry + r * YEAR
            if day >= c["other_death_day"][row] or day >= c["clinical_day"][row]:
                break
            k = int(streams.uniform("train.scanner", pid, int(day)) * len(scanners))
            k = min(k, len(scanners) - 1)
            shows = visible_findings(history, row, day, scanners[k])
            tumour = next((f for f in shows if f.key == MALIGNANT_KEY), None)
            exam = len(e_rows)
            e_rows.append(
                (
                    row,
                    int(day),
                    k,
                    tumour is not None,
                    tumour.size_mm if tumour else 0.0,
                    tumour.nodule_type if tumour else -1,
                    day,
                )
            )
            for cand in candidates(pid, shows):
                k_rows.append(
                    (
                        pid,
                        int(day),
                        k,
                        cand.location,
                        cand.diameter_mm,
                        cand.nodule_type,
                        cand.spiculated,
                        candidate_kind(pid, cand.location, shows) == "cancer",
                        exam,
                    )
                )
    row_idx = np.array([e[0] for e in e_rows], dtype=np.int64)
    exams = Exams(
        person_id=people["person_id"][row_idx].astype(np.int64),
        exam_day=np.array([e[1] for e in e_rows], dtype=np.int64),
        day=np.array([e[6] for e in e_rows], dtype=float),
        scanner=np.array([e[2] for e in e_rows], dtype=np.int64),
        cancer=np.array([e[3] for e in e_rows], dtype=bool),
        cancer_mm=np.array([e[4] for e in e_rows], dtype=float),
        cancer_type=np.array([e[5] for e in e_rows], dtype=np.int64),
        sex=np.where(people["female"][row_idx] == 1, "F", "M"),
        race=np.array(RACES)[people["race"][row_idx]],
        age_band=age_band(people["age"][row_idx]),
        smoking=np.where(people["current_smoker"][row_idx] == 1, "current", "former"),
    )
    cols = list(zip(*k_rows, strict=True))
    cases = Cases(
        person_id=np.array(cols[0], dtype=np.int64),
        exam_day=np.array(cols[1], dtype=np.int64),
        scanner=np.array(cols[2], dtype=np.int64),
        location=np.array(cols[3], dtype=np.int64),
        diameter_mm=np.array(cols[4], dtype=float),
        nodule_type=np.array(cols[5], dtype=np.int64),
        spiculated=np.array(cols[6], dtype=bool),
        label=np.array(cols[7], dtype=bool),
        exam=np.array(cols[8], dtype=np.int64),
    )
    return exams, cases


def training_cases(
    cases: Cases, streams: Streams, negatives_per_positive: float, background_share: float
) -> Cases:
    """Every cancer candidate and ``negatives_per_positive`` other candidates per cancer one,
    ``background_share`` of them background regions, drawn by key."""
    u = streams.uniform(
        "train.select", cases.person_id, cases.exam_day * 4096 + cases.location % 4096
    )
    lab = cases.label
    background = cases.diameter_mm <= 0.0
    want = negatives_per_positive * int(lab.sum())
    nodule = ~lab & ~background
    keep = lab.copy()
    keep |= nodule & (u < min(1.0, want * (1 - background_share) / max(int(nodule.sum()), 1)))
    keep |= background & (u < min(1.0, want * background_share / max(int(background.sum()), 1)))
    return cases.take(np.flatnonzero(keep))


SKEW_DIMENSIONS = ("sex", "race", "age_band", "smoking", "nodule_type")
"""What a training recipe's ``skew`` may under-represent: a group of people (their exams are
dropped) or a nodule type of cancer (its cancer candidates are dropped)."""


def skew_groups(dimension: str) -> tuple[str, ...]:
    """The groups of a skew dimension."""
    from sandbox.programmes.lung_ldct.cohort import AGE_BANDS

    return {
        "sex": ("F", "M"),
        "race": tuple(RACES),
        "age_band": tuple(str(b) for b in age_band(np.array([lo for lo, _ in AGE_BANDS]))),
        "smoking": ("current", "former"),
        "nodule_type": TYPE_NAMES,
    }[dimension]


def skewed(
    exams: Exams,
    cases: Cases,
    keep: np.ndarray,
    skew: dict[str, dict[str, float]],
    streams: Streams,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The training cases of the exams ``keep`` selects, after a declared skew: each person of
    a group ``g`` of a people dimension keeps all of their exams with probability
    ``skew[dim][g]`` (else none), and each cancer of a nodule type ``t`` keeps its candidates
    with probability ``skew["nodule_type"][t]``, by keyed draws. Returns (indices into
    ``cases``, what was kept per skewed group)."""
    keep = keep.copy()
    report: dict[str, Any] = {}
    person_u = streams.uniform("train.skew", exams.person_id)
    for dim, shares in skew.items():
        if dim == "nodule_type":
            continue
        column = getattr(exams, dim)
        p = np.ones(len(exams))
        for group, share in shares.items():
            p[column == group] = share
        before = {g: int((keep & (column == g)).sum()) for g in shares}
        keep &= person_u < p
        report[dim] = {
            g: {"exams": before[g], "kept": int((keep & (column == g)).sum())} for g in shares
        }
    idx = np.flatnonzero(keep[cases.exam])
    types = skew.get("nodule_type") or {}
    if types:
        c = cases.take(idx)
        cancer_u = streams.uniform("train.skew_type", c.person_id)
        p = np.ones(len(c))
        for name, share in types.items():
            p[c.label & (c.nodule_type == TYPE_NAMES.index(name))] = share
        drop = c.label & (cancer_u >= p)
        report["nodule_type"] = {
            name: {
                "cancer_candidates": int(
                    (c.label & (c.nodule_type == TYPE_NAMES.index(name))).sum()
                ),
                "kept": int((c.label & ~drop & (c.nodule_type == TYPE_NAMES.index(name))).sum()),
            }
            for name in types
        }
        idx = idx[~drop]
    return idx, report


def held_out(person_id: np.ndarray, streams: Streams) -> np.ndarray:
    """The held-out split, by person: a quarter of the people."""
    return streams.uniform("train.split", person_id) < 0.25


def evaluation_exams(
    exams: Exams, streams: Streams, n: int = REFERENCE_EXAMS
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out exams scored for the card: (indices, whether each is in the uniform sample).

    Every held-out exam with a cancer, and a uniform sample of about ``n`` held-out exams (the
    screening population as it comes: the negatives of every AUC and the percentile reference).
    """
    test = held_out(exams.person_id, streams)
    frac = min(1.0, n / max(int(test.sum()), 1))
    uniform = test & (streams.uniform("train.reference", exams.person_id, exams.exam_day) < frac)
    idx = np.flatnonzero(uniform | (test & exams.cancer))
    return idx, uniform[idx]


def exam_scores(
    case_scores: np.ndarray, cases: Cases, exam_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each exam's max candidate score, and whether its cancer's own candidate drove it."""
    order = np.argsort(cases.exam, kind="stable")
    ex, sc, lab = cases.exam[order], case_scores[order], cases.label[order]
    starts = np.searchsorted(ex, exam_ids, side="left")
    ends = np.searchsorted(ex, exam_ids, side="right")
    score = np.empty(len(exam_ids))
    by_cancer = np.zeros(len(exam_ids), dtype=bool)
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        j = a + int(np.argmax(sc[a:b]))
        score[i], by_cancer[i] = sc[j], lab[j]
    return score, by_cancer


def render_cases(
    cases: Cases,
    scanners: list[Scanner],
    seed: int,
    size: int,
    batch: int = 256,
    device: str = "cpu",
) -> torch.Tensor:
    from sandbox.programmes.lung_ldct.imaging.render import PatchSpec, render_batch

    out = []
    for start in range(0, len(cases), batch):
        sl = slice(start, start + batch)
        specs = [
            PatchSpec((int(p), int(d)), float(dm), int(t), bool(s), scanners[int(k)], int(loc))
            for p, d, dm, t, s, k, loc in zip(
                cases.person_id[sl],
                cases.exam_day[sl],
                cases.diameter_mm[sl],
                cases.nodule_type[sl],
                cases.spiculated[sl],
                cases.scanner[sl],
                cases.location[sl],
                strict=True,
            )
        ]
        out.append(render_batch(specs, seed, size=size, device=device))
    if not out:
        return torch.empty((0, 1, size, size, size), device=device)
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
        if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d | torch.nn.Linear):
            torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                torch.nn.init.uniform_(m.bias, -bound, bound, generator=gen)


def preprocess(x: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    lo, hi = window
    return (x.clamp(lo, hi) - lo) / (hi - lo)


def training_images(
    train: Cases,
    scanners: list[Scanner],
    seed: int,
    size: int,
    window: tuple[float, float],
    device: str,
) -> Callable[[np.ndarray], torch.Tensor]:
    """``images(idx)``: the preprocessed patches of training cases ``idx`` on ``device``.

    Up to :data:`PRERENDER_BYTES` of patches are rendered once and kept; more (e.g. 64^3 patches
    of every case) are rendered batch by batch. Both give the same values: a patch renders the
    same whatever its batch.
    """
    if len(train) * 4 * size**3 <= PRERENDER_BYTES:
        kept = preprocess(render_cases(train, scanners, seed, size, device=device), window)
        return lambda idx: kept[torch.from_numpy(idx).to(kept.device)]
    return lambda idx: preprocess(
        render_cases(train.take(idx), scanners, seed, size, device=device), window
    )


def fit(
    net: torch.nn.Module,
    images: Callable[[np.ndarray], torch.Tensor],
    y: torch.Tensor,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    log: Callable[[str], None],
    device: str = "cpu",
) -> list[float]:
    """Adam on binary cross-entropy with random flips of each spatial axis and 90-degree
    in-plane rotations (the rendered blur is isotropic, so every orientation is a plausible
    patch); ``images`` are ``[B, C, D, H, W]`` volumes or ``[B, C, H, W]`` planes.

    ``images(idx)`` gives the preprocessed patches of training cases ``idx`` on ``device``:
    they are rendered batch by batch, so memory does not grow with the training set (a patch
    renders the same whatever its batch, so this equals rendering them all first).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    pos_weight = torch.tensor([(len(y) - float(y.sum())) / max(float(y.sum()), 1.0)])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))
    y = y.to(device)
    losses = []
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(y), batch):
            idx = perm[start : start + batch]
            xb = images(idx.numpy())
            flips = torch.rand(3, generator=gen).tolist()
            # flip the spatial axes only (a 2-D batch's third-last axis is its channels)
            spatial = (-3, -2, -1)[5 - xb.dim() :]
            dims = [d for d, u in zip(spatial, flips[3 - len(spatial) :], strict=True) if u < 0.5]
            if dims:
                xb = xb.flip(dims)
            k = int(torch.randint(0, 4, (1,), generator=gen))
            xb = torch.rot90(xb, k, dims=(-2, -1))
            loss = loss_fn(net(xb).squeeze(-1), y[idx.to(device)])
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
    return (
        torch.cat(
            [torch.sigmoid(net(x[i : i + batch]).squeeze(-1)) for i in range(0, len(x), batch)]
        )
        .cpu()
        .numpy()
    )


def score_cases(
    net: torch.nn.Module,
    cases: Cases,
    scanners: list[Scanner],
    seed: int,
    size: int,
    window: tuple[float, float],
    chunk: int = 2048,
    device: str = "cpu",
) -> np.ndarray:
    """Candidate scores, rendered and scored ``chunk`` at a time (at 32^3; fewer for larger
    patches, so memory stays bounded)."""
    out = [np.empty(0)]
    chunk = max(64, chunk * 32**3 // size**3)
    batch = max(16, min(512, 512 * 32**3 // size**3))
    for start in range(0, len(cases), chunk):
        part = cases.take(np.arange(start, min(start + chunk, len(cases))))
        x = preprocess(render_cases(part, scanners, seed, size, device=device), window)
        out.append(predict(net, x, batch))
    return np.concatenate(out)


def breakdown(
    score: np.ndarray,
    exams: Exams,
    uniform: np.ndarray,
    by_cancer: np.ndarray,
    scanners: list[Scanner],
) -> dict[str, Any]:
    """Exam-level AUCs: exams with a cancer (of a size, type, ...) against the exams without
    one of the uniform sample; per scanner, sex and race both sides are restricted.

    ``overall`` is the headline: cancers of at least :data:`HEADLINE_MM`.
    """
    neg = uniform & ~exams.cancer
    mm = exams.cancer_mm
    big = exams.cancer & (mm >= HEADLINE_MM)

    def one(pos: np.ndarray, negatives: np.ndarray = neg) -> dict[str, Any]:
        m = pos | negatives
        return {
            "auc": _json_auc(auc(score[m], pos[m])),
            "cancer_exams": int(pos.sum()),
            "exams": int(m.sum()),
        }

    out: dict[str, Any] = {
        "overall": one(big),
        "all_cancers": one(exams.cancer),
        "by_size_mm": {
            name: one(exams.cancer & (mm >= lo) & (mm < hi)) for lo, hi, name in SIZE_BANDS
        },
        "by_nodule_type": {
            name: one(big & (exams.cancer_type == t)) for t, name in enumerate(TYPE_NAMES)
        },
        "by_scanner": {
            s.model: one(big & (exams.scanner == i), neg & (exams.scanner == i))
            for i, s in enumerate(scanners)
        },
        "by_sex": {s: one(big & (exams.sex == s), neg & (exams.sex == s)) for s in ("F", "M")},
        "by_race": {
            r: one(big & (exams.race == r), neg & (exams.race == r))
            for r in RACES
            if ((exams.race == r) & (big | neg)).sum() >= 20
        },
        "cancer_candidate_drove": {
            "share": None if not big.any() else round(float(by_cancer[big].mean()), 4),
            "cancer_exams": int(big.sum()),
        },
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
    stem: int = 0,
    centre: bool = False,
    network: str = "NoduleCNN",
    layers: tuple[int, ...] = (1, 1, 1, 1),
    device: str = "cpu",
    skew: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Synthesise cases, train, evaluate on held-out people, write the device folder.

    ``skew`` under-represents groups in the training set (:func:`skewed`); the held-out
    people the card is measured on are not skewed.

    ``network`` is ``NoduleCNN`` (``channels`` per stage, ``stem``, ``centre``) or ``ResNet``
    (monai.networks.nets.ResNet with basic blocks: ``layers`` blocks per stage and ``channels``
    as each stage's width); see :func:`network_spec`.

    Runs on one torch thread: floating-point sums, and so the weights, depend on the thread
    count, and one thread makes them reproducible on any CPU.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        return _train_device(
            scenario,
            scanners,
            folder,
            seed,
            people,
            epochs,
            size,
            channels,
            lr,
            log,
            command,
            stem,
            centre,
            network,
            layers,
            device,
            {k: dict(v) for k, v in (skew or {}).items()},
        )
    finally:
        torch.set_num_threads(threads)


PRERENDER_BYTES = 4 * 2**30  # training patches up to this size are rendered once and kept
NETWORKS = ("NoduleCNN", "ResNet")  # what a recipe's `network` may name; the first is the default


def network_spec(
    network: str,
    channels: Sequence[int],
    stem: int = 0,
    centre: bool = False,
    layers: Sequence[int] = (1, 1, 1, 1),
) -> dict[str, Any]:
    """The ``configs/network.json`` of a device: a name in the loader's allow-list and its
    arguments. ``NoduleCNN`` is the small reference network; ``ResNet`` a 3-D residual network
    from monai.networks.nets (basic blocks, a 7^3 stride-2 first convolution and max pooling),
    the heavier kind a GPU runs."""
    if network == "NoduleCNN":
        args: dict[str, Any] = {
            "in_channels": 1,
            "channels": list(channels),
            "out_features": 1,
            "stem": stem,
            "centre": centre,
        }
    elif network == "ResNet":
        if len(layers) != len(channels):
            raise ValueError(
                f"ResNet: layers {list(layers)} and channels {list(channels)} must have one "
                "entry per stage each"
            )
        args = {
            "block": "basic",
            "layers": list(layers),
            "block_inplanes": list(channels),
            "spatial_dims": 3,
            "n_input_channels": 1,
            "num_classes": 1,
        }
    else:
        raise ValueError(f"network {network!r}: expected NoduleCNN or ResNet")
    return {"name": network, "args": args}


def build_network(spec: dict[str, Any]) -> torch.nn.Module:
    """The network of ``spec``, built through the device loader's allow-list (so what is
    trained is what a run loads)."""
    from sandbox.agents.bundle import allowed_networks

    return allowed_networks()[spec["name"]](**spec["args"])


def _train_device(
    scenario,
    scanners,
    folder,
    seed,
    people,
    epochs,
    size,
    channels,
    lr,
    log,
    command,
    stem,
    centre,
    network_name,
    layers,
    device,
    skew,
):
    t0 = time.perf_counter()
    network = network_spec(network_name, channels, stem, centre, layers)
    streams = Streams(seed)
    history = sample_history(scenario, streams, size=people)
    exams, cases = screening_exams(history, scenario.programme.rounds, scanners, streams)
    test_exam = held_out(exams.person_id, streams)
    kept, skew_report = skewed(exams, cases, ~test_exam, skew, streams)
    train = training_cases(
        cases.take(kept),
        streams,
        negatives_per_positive=3.0,
        background_share=0.25,
    )
    if skew:
        log(f"declared skew {skew}: kept {skew_report}")
    eval_idx, uniform = evaluation_exams(exams, streams)
    in_eval = np.zeros(len(exams), dtype=bool)
    in_eval[eval_idx] = True
    test = cases.take(np.flatnonzero(in_eval[cases.exam]))
    log(
        f"{len(exams):,} exams of {people:,} people, {len(cases):,} candidate regions "
        f"({int(cases.label.sum()):,} of them a cancer); {len(train):,} training candidates; "
        f"{len(eval_idx):,} held-out exams ({len(test):,} candidates) scored for the card"
    )
    window = (-1000.0, 400.0)
    log(f"cases drawn in {time.perf_counter() - t0:.0f} s")
    images = training_images(train, scanners, seed, size, window, device)
    log(f"training patches ready in {time.perf_counter() - t0:.0f} s")
    net = build_network(network)
    seeded_init(net, torch.Generator().manual_seed(seed))
    net.to(device)
    losses = fit(
        net,
        images,
        torch.tensor(train.label, dtype=torch.float32),
        epochs,
        64,
        lr,
        seed,
        log,
        device,
    )
    del images  # free the training patches before scoring the held-out ones
    case_scores = score_cases(net, test, scanners, seed, size, window, device=device)
    score, by_cancer = exam_scores(case_scores, test, eval_idx)
    held = exams.take(eval_idx)
    perf = breakdown(score, held, uniform, by_cancer, scanners)
    perf["candidates"] = {
        "auc": _json_auc(auc(case_scores, test.label)),
        "candidates": len(test),
        "cancer_candidates": int(test.label.sum()),
    }
    log(f"held-out exam AUC, cancers >= {HEADLINE_MM:g} mm: {perf['overall']['auc']}")
    metadata = {
        "name": folder.name,
        "version": "2.1.0",
        "network": {
            "name": network["name"],
            "parameters": sum(p.numel() for p in net.parameters()),
        },
        "intended_use": (
            "Research and regulatory simulation only: scores each candidate region of a "
            "low-dose chest CT lung screening exam for malignancy; the exam's score is the "
            "highest. Not a medical device."
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
            "meaning": "probability that the candidate region is a malignant nodule",
            "activation": "sigmoid",
            "aggregation": "max",
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
            "exams": int((~test_exam).sum()),
            "candidates": {
                "min_conspicuity": CANDIDATE_MIN_CONSPICUITY,
                "max_findings": MAX_FINDING_CANDIDATES,
                "background": BACKGROUND_CANDIDATES,
            },
            "rounds": scenario.programme.rounds,
            "skew": {"declared": skew, "kept": skew_report} if skew else None,
            "seed": seed,
            "torch_threads": TRAIN_THREADS,
            "device": device,
            "command": command,
        },
        "performance": {
            "held_out": perf,
            "training_loss_by_epoch": [round(v, 5) for v in losses],
        },
    }
    big = held.cancer & (held.cancer_mm >= HEADLINE_MM)
    labelled = big | (uniform & ~held.cancer)
    validation = {
        "scores": [round(float(v), 6) for v in score[labelled]],
        "labels": [int(v) for v in big[labelled]],
        "reference_scores": [round(float(v), 6) for v in score[uniform]],
    }
    weights = {k: v.cpu() for k, v in net.state_dict().items()}
    write_bundle(folder, network, metadata, weights, validation, model_card(metadata))
    return metadata


def _skew_lines(skew: dict[str, Any] | None) -> str:
    """The card's account of a declared training-set skew (empty without one)."""
    if not skew:
        return ""
    parts = []
    for dim, groups in skew["kept"].items():
        for group, n in groups.items():
            share = skew["declared"][dim][group]
            if dim == "nodule_type":
                what = f"{n['kept']:,} of {n['cancer_candidates']:,} {group} cancer candidates"
            else:
                what = f"{n['kept']:,} of {n['exams']:,} exams of {dim} {group}"
            parts.append(f"{dim}={group} kept with probability {share:g} ({what})")
    return (
        "\n\n**Declared training-set skew.** "
        + "; ".join(parts)
        + ". The held-out people below are not skewed: the card shows what the skew costs."
    )


def _network_line(meta: dict[str, Any]) -> str:
    net = meta.get("network", {"name": "NoduleCNN"})
    if net["name"] == "NoduleCNN":
        return "`NoduleCNN` (sandbox/programmes/lung_ldct/nets.py), a small 3D CNN."
    return (
        f"`{net['name']}` from monai.networks.nets ({net.get('parameters', 0):,} parameters), "
        f"arguments in configs/network.json."
    )


def model_card(meta: dict[str, Any]) -> str:
    td, perf = meta["training_data"], meta["performance"]["held_out"]
    cand = td.get("candidates", {})

    def auc_of(v: dict[str, Any]) -> str:
        return "-" if v["auc"] is None else format(v["auc"], ".3f")

    def rows(d: dict[str, Any]) -> str:
        return "\n".join(
            f"| {k} | {auc_of(v)} | {v['cancer_exams']:,} | {v['exams']:,} |" for k, v in d.items()
        )

    head = "| AUC | cancer exams | exams |\n|---|---|---|---|"
    overall, everything = perf["overall"], perf["all_cancers"]
    drove = perf["cancer_candidate_drove"]
    candidates_auc = perf.get("candidates", {})
    return f"""# {meta["name"]} {meta["version"]} — model card

**Intended use.** {meta["intended_use"]}

**Input.** One candidate region: a {meta["input"]["shape"]} patch centred on it, {meta["input"]["units"]},
{meta["input"]["spacing_mm"]} mm voxels, windowed to {meta["input"]["window_hu"]} HU. **Output.**
{meta["output"]["meaning"]} (sigmoid of one logit); the exam's score is the
{meta["output"].get("aggregation", "max")} over its candidates.

**Candidates.** An exam is read as a CAD system reads it: every nodule in the lungs that day
whose conspicuity on the scanner is at least {cand.get("min_conspicuity", "-")} (the Rose
criterion; at most {cand.get("max_findings", "-")}, the most conspicuous), and
{cand.get("background", "-")} background regions at fixed places in the person's lungs.
Nothing marks which candidate is the tumour (docs/agents.md, "Candidate-based reading").

**Network.** {_network_line(meta)}

## Training data

Synthetic screening exams of {td["people"]:,} people from {td["population"]}, annual rounds
{td["rounds"]}, each exam on one of the training scanners: {", ".join(td["scanners"])}.
{td["cases"]:,} training candidates ({td["malignant_cases"]:,} of them a cancer, the rest
other nodules and background regions), from the exams of three quarters of the people;
everything below comes from the other quarter. Deployment on other scanners (thicker slices,
more noise) or other populations is outside the training distribution: the sandbox measures
the shift rather than assuming it.{_skew_lines(td.get("skew"))}

Reproduce: `{td["command"]}` (seed {td["seed"]}).

## Performance on held-out synthetic exams

By exam, as the device is used: an exam's score is its highest candidate score. Positives are
exams of held-out people whose cancer is in the lungs that day; negatives are the exams without
a cancer in a uniform sample of held-out screening exams.

- **Cancers of at least 4 mm: AUC {auc_of(overall)}** ({overall["cancer_exams"]:,} cancer exams,
  {overall["exams"]:,} exams).
- All cancers, however small: AUC {auc_of(everything)} ({everything["cancer_exams"]:,} cancer exams).
- The cancer's own candidate drove the exam score in {"-" if drove["share"] is None else format(drove["share"], ".1%")}
  of the exams with a cancer of at least 4 mm; in the others the score came from a benign
  nodule or a background region (or the cancer was not conspicuous enough to be a candidate).
- By candidate: AUC {candidates_auc.get("auc", "-")} for the cancer's candidate against every other candidate
  ({candidates_auc.get("candidates", 0):,} candidates).

| cancer size on the exam day (mm) {head}
{rows(perf["by_size_mm"])}

| nodule type (cancers >= 4 mm) {head}
{rows(perf["by_nodule_type"])}

| scanner (cancers >= 4 mm) {head}
{rows(perf["by_scanner"])}

| sex (cancers >= 4 mm) {head}
{rows(perf["by_sex"])}

| race/ethnicity (cancers >= 4 mm) {head}
{rows(perf["by_race"])}
"""

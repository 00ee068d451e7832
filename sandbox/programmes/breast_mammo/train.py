"""Training the breast reference device (`sandbox train agent=breast_mammo_cnn`): a 2-D network
from monai.networks.nets reading the candidate regions of synthetic screening mammograms, as a
run shows them (no region is marked as the cancer); its card, its validation set and the 1-10
score scale a run reports.

Cases: each woman of a cohort of the recipe's scenario has one screen on her entry day, on one
of the recipe's mammography systems (keyed by woman). A candidate is labelled a cancer when it
is the region of an invasive cancer or DCIS; negatives are the regions of benign findings and
background regions. A quarter of the women are held out (``train.split``, shared with the lung
device's recipe): the card is measured on them, never on women trained on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sandbox.config import Scanner, Scenario
from sandbox.programmes.breast_mammo.config import DENSITIES
from sandbox.programmes.breast_mammo.imaging import MARGINS, PIXEL_MM, MammoImage
from sandbox.programmes.breast_mammo.reading import DCIS_KEY, INVASIVE_KEY
from sandbox.programmes.lung_ldct.train import (
    _json_auc,
    auc,
    build_network,
    fit,
    held_out,
    predict,
    preprocess,
    seeded_init,
    write_bundle,
)
from sandbox.rng import Streams, declare_streams

WINDOW = (-15.0, 30.0)  # relative attenuation (mm of gland) clipped to this and scaled to [0, 1]
# the detail channel the device also reads (sandbox.agents.bundle.Detail): the patch minus its
# blur of one pixel (0.5 mm), +-3 mm of gland. At the window's scale a 0.3 mm speck is about a
# hundredth of the range; in the difference image, where the tissue's slow variation is gone,
# it stands at a tenth (held-out exam AUC 0.897 against 0.875 without it, DCIS 0.852 against
# 0.666, in the same 16-epoch comparison: docs/breast.md)
DETAIL = {"sigma_mm": 0.5, "range": 3.0}
REFERENCE_EXAMS = 50000  # uniform held-out screening exams: the negatives and the score scale
# negatives per cancer region, and the share of them that are background regions (the rest:
# benign findings). Most of what a device must not flag on a screening exam is tissue (a
# screen's four background regions against one benign finding in about an eighth of screens),
# so background is most of the negatives; a fifth stays benign to learn margins and specks.
NEGATIVES_PER_POSITIVE = 1.5
BACKGROUND_SHARE = 0.8
VERSION = "1.4.1"
# how the device makes an exam's score of its regions' scores: two-view (a region averaged with
# its match in the breast's other view, within VIEW_MATCH_MM of its distance from the nipple),
# as two-view CAD does (van Engeland and Karssemeijer, Med Phys 2007); the radius is twice the SD
# of a finding's difference between views (imaging.VIEW_DEPTH_SD_MM x sqrt 2): 95% find their match
AGGREGATION = "two_view"
VIEW_MATCH_MM = 20.0
# the conspicuity a typical screen reader detects half the time: the c50 of the reader profile
# agents/readers/breast_radiologist.yaml (the card reports cancers above and below it)
READER_C50 = 13.0

declare_streams(
    {
        "train.breast.*": "the breast device's training set: which system each exam is on, which negatives are kept",
    }
)


@dataclass
class Cases:
    """Candidate regions of the training cohort's exams (one entry per candidate)."""

    pairs: list[tuple[MammoImage, Any]]
    exam: np.ndarray  # index of the candidate's exam
    label: np.ndarray  # a cancer's region
    kind: np.ndarray  # 0 cancer, 1 benign, 2 background

    def take(self, idx: np.ndarray) -> Cases:
        return Cases([self.pairs[i] for i in idx], self.exam[idx], self.label[idx], self.kind[idx])


def screening_exams(
    programme: Any,
    cohort: Any,
    scanners: Sequence[Scanner],
    streams: Streams,
    shares: Sequence[float] = (),
) -> tuple[dict[str, np.ndarray], Cases]:
    """Each woman's screen on her entry day, and for a woman with an invasive cancer a second
    screen on a day drawn uniformly over its growth from 5 mm to its clinical size (so the
    training set holds cancers of every size a screen meets, not only the small ones a single
    round finds most of), with their candidate regions; one row per exam. Each exam is on one
    of ``scanners``, drawn with ``shares`` (empty: an even mix)."""
    p, h = cohort.people, cohort.history
    ids = p["person_id"]
    rows = list(range(len(ids)))
    days = [float(d) for d in p["entry_day"]]
    grow = np.flatnonzero(h["has_cancer"] & np.isfinite(h["clinical_day"]))
    u = streams.uniform("train.breast.day", ids[grow])
    # day the tumour reaches 5 mm: three doublings of volume per doubling of diameter
    vdt, d_clin = h["doubling_days"][grow], h["clinical_diameter_mm"][grow]
    at5 = h["clinical_day"][grow] - 3.0 * vdt * np.log2(np.maximum(d_clin / 5.0, 1.0))
    second = at5 + u * (h["clinical_day"][grow] - at5)
    rows += grow.tolist()
    days += second.tolist()
    u = streams.uniform("train.breast.scanner", ids[rows], np.arange(len(rows)) >= len(ids))
    if len(shares):
        from sandbox.programmes.breast_mammo.programme import categorical

        k = categorical(u, shares).astype(np.int64)
    else:
        k = (u * len(scanners)).astype(int)
    n = len(rows)
    pairs, exam, label, kind = [], [], [], []
    cancer = np.zeros(n, dtype=bool)  # a cancer region among the exam's candidates
    present = np.zeros(n, dtype=bool)  # a cancer in the breast, shown or not
    invasive_mm = np.zeros(n)
    dcis = np.zeros(n, dtype=bool)
    visible = np.zeros(n)  # the most conspicuous cancer's conspicuity (0: none)
    margin = np.full(n, -1, dtype=np.int8)  # the invasive mass's margin (-1: none)
    irregular = np.zeros(n, dtype=bool)  # and whether its shape is irregular
    kinds = ("cancer", "benign", "background")
    for e, (r, day) in enumerate(zip(rows, days, strict=True)):
        sc = scanners[k[e]]
        shows = programme.exam_shows(cohort, r, day, sc)
        image = programme.image_of(int(ids[r]), day, sc, shows)
        for j, c in enumerate(image.candidates):
            what = programme.candidate_kind(image, j, shows)
            pairs.append((image, c))
            exam.append(e)
            label.append(what == "cancer")
            kind.append(kinds.index(what))
            cancer[e] |= what == "cancer"
        for f in shows:
            if f.key in (INVASIVE_KEY, DCIS_KEY):
                visible[e] = max(visible[e], f.conspicuity)
            if f.key == INVASIVE_KEY:
                present[e], invasive_mm[e] = True, f.size_mm
                if f.mass_mm > 0:
                    margin[e], irregular[e] = f.margin, f.irregular
            elif f.key == DCIS_KEY:
                present[e], dcis[e] = True, True
    rows_a = np.asarray(rows)
    exams = {
        "person_id": ids[rows_a],
        "density": p["density"][rows_a],
        "cancer": cancer,
        "present": present,
        "invasive_mm": invasive_mm,
        "dcis": dcis & (invasive_mm == 0),
        "conspicuity": visible,
        "margin": margin,
        "irregular": irregular,
        "scanner": k,
        "first": np.arange(n) < len(ids),
    }
    return exams, Cases(
        pairs,
        np.asarray(exam, dtype=np.int64),
        np.asarray(label, dtype=bool),
        np.asarray(kind, dtype=np.int8),
    )


def evaluation_exams(
    exams: dict[str, np.ndarray], test: np.ndarray, streams: Streams
) -> tuple[np.ndarray, np.ndarray]:
    """The card's exams: every held-out exam with a cancer present and a uniform sample of
    held-out first screens (:data:`REFERENCE_EXAMS`); (their indices, and which exams are in
    the uniform sample, over all exams)."""
    ids = exams["person_id"]
    frac = min(1.0, REFERENCE_EXAMS / max(int(test.sum()), 1))
    uniform = test & exams["first"] & (streams.uniform("train.reference", ids) < frac)
    return np.flatnonzero(uniform | (test & exams["present"])), uniform


def training_cases(cases: Cases, train_exam: np.ndarray, streams: Streams, ids) -> Cases:
    """Every cancer region of the training women, and negatives: benign regions and background
    regions, NEGATIVES_PER_POSITIVE of them per cancer region (keyed draws)."""
    mine = train_exam[cases.exam]
    pos = np.flatnonzero(mine & cases.label)
    n_neg = NEGATIVES_PER_POSITIVE * len(pos)
    keep = [pos]
    for kind, share in ((1, 1.0 - BACKGROUND_SHARE), (2, BACKGROUND_SHARE)):
        idx = np.flatnonzero(mine & (cases.kind == kind))
        u = streams.uniform("train.breast.select", ids[cases.exam[idx]], idx)
        keep.append(idx[u < min(1.0, share * n_neg / max(len(idx), 1))])
    return cases.take(np.sort(np.concatenate(keep)))


def device_input(raw: torch.Tensor) -> torch.Tensor:
    """What the network reads of rendered patches ``[B, 1, N, N]``: the window, and the detail
    channel, exactly as a run's loaded device preprocesses them (``LoadedModel.preprocess``)."""
    from sandbox.agents.bundle import detail_channel

    x = preprocess(raw, WINDOW)
    sigma_px = DETAIL["sigma_mm"] / PIXEL_MM
    return torch.cat([x, detail_channel(raw, sigma_px, DETAIL["range"])], dim=1)


def exam_scores(cand: np.ndarray, cases: Cases, exams: np.ndarray) -> np.ndarray:
    """The scores of ``exams`` (indices) from their candidates' scores ``cand`` (``cases``,
    in order), aggregated as a run aggregates them (:func:`sandbox.agents.inference.aggregate`,
    :data:`AGGREGATION`)."""
    from sandbox.agents.inference import aggregate

    cand = np.asarray(cand, dtype=np.float64)  # as a run holds them
    order = np.argsort(cases.exam, kind="stable")
    starts = np.searchsorted(cases.exam[order], exams)
    ends = np.searchsorted(cases.exam[order], exams, side="right")
    out = np.empty(len(exams))
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        idx = order[a:b]
        regions = [cases.pairs[i][1] for i in idx]
        out[k], _ = aggregate(cand[idx], AGGREGATION, regions, VIEW_MATCH_MM)
    return out


def render_input(cases: Cases, programme: Any, seed: int, size: int, device: str) -> torch.Tensor:
    """The network's input for ``cases``, rendered and preprocessed batch by batch."""
    out = []
    for i in range(0, len(cases.pairs), 1024):
        raw = programme.render(cases.pairs[i : i + 1024], seed, size, device)
        out.append(device_input(raw).cpu())
    return torch.cat(out) if out else torch.empty((0, 2, size, size))


# the calibration's quantile levels: every 1% up to the 90th percentile, every 0.1% above it
# (where score 10 and the top 1% are cut)
CALIBRATION_LEVELS = np.concatenate([np.linspace(0.0, 0.9, 91), np.linspace(0.9, 1.0, 101)[1:]])


def system_calibration(reference: np.ndarray, system: np.ndarray) -> dict[str, Any]:
    """``output.calibration`` (:class:`sandbox.agents.bundle.Calibration`) from screening
    exams' ``reference`` scores and each one's ``system`` (scanner model): each system's score
    quantiles mapped to the pooled ones, as a vendor calibrates its scale per mammography
    system, so that score 10 is a tenth of screens on each (values rounded as stored)."""

    def q(x: np.ndarray) -> list[float]:
        return [round(float(v), 6) for v in np.quantile(x, CALIBRATION_LEVELS)]

    return {
        "levels": [round(float(v), 6) for v in CALIBRATION_LEVELS],
        "pooled": q(reference),
        "systems": {str(m): q(reference[system == m]) for m in np.unique(system)},
    }


def calibrated(calibration: dict[str, Any], score: np.ndarray, system: np.ndarray) -> np.ndarray:
    """Exam ``score``s on each one's ``system``, calibrated as a run's device does."""
    from sandbox.agents.bundle import Calibration
    from sandbox.typed import build

    return build(Calibration, calibration, "output.calibration").apply_each(score, system)


def score_bands(reference: np.ndarray) -> list[float]:
    """The 1-10 scale's nine cut points: deciles of the screening exams' scores (score k for
    an exam between cut points k - 1 and k), as Transpara's scale is made."""
    return [float(np.quantile(reference, q / 10.0)) for q in range(1, 10)]


def band_of(score: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """Each score's band, 1-10."""
    return np.searchsorted(np.asarray(cuts), score, side="right") + 1


def train_breast_device(
    scenario: Scenario,
    scanners: list[Scanner],
    folder: Path,
    seed: int,
    people: int,
    epochs: int,
    size: int,
    network: dict[str, Any],
    lr: float,
    log: Callable[[str], None],
    command: str,
    device: str = "cpu",
    scanner_shares: Sequence[float] = (),
) -> dict[str, Any]:
    """Train the device, measure it on held-out women and write its folder; its metadata.
    ``scanner_shares``: the mix of ``scanners`` its screens are on (its training set, and the
    screening exams that set its 1-10 scale; empty: an even mix)."""
    from sandbox.programmes.breast_mammo.programme import BreastMammo

    t0 = time.perf_counter()
    scn = dataclasses.replace(scenario, cohort=dataclasses.replace(scenario.cohort, size=people))
    programme = BreastMammo(scn)
    streams = Streams(seed)
    cohort = programme.sample_cohort(streams)
    exams, cases = screening_exams(programme, cohort, scanners, streams, scanner_shares)
    ids = exams["person_id"]
    test = held_out(ids, streams)
    train = training_cases(cases, ~test, streams, ids)
    log(
        f"{len(ids):,} screens, {len(cases.pairs):,} candidate regions "
        f"({int(cases.label.sum()):,} of a cancer); {len(train.pairs):,} training regions; "
        f"cases drawn in {time.perf_counter() - t0:.0f} s"
    )
    x = render_input(train, programme, seed, size, device)
    log(f"training patches rendered in {time.perf_counter() - t0:.0f} s")
    net = build_network(network)
    seeded_init(net, torch.Generator().manual_seed(seed))
    net.to(device)
    losses = fit(
        net,
        lambda idx: x[torch.from_numpy(idx)].to(device),
        torch.tensor(train.label, dtype=torch.float32),
        epochs,
        64,
        lr,
        seed,
        log,
        device,
    )
    chosen, uniform = evaluation_exams(exams, test, streams)
    in_eval = np.zeros(len(ids), dtype=bool)
    in_eval[chosen] = True
    held = cases.take(np.flatnonzero(in_eval[cases.exam]))
    cand = predict(net, render_input(held, programme, seed, size, device))
    raw = exam_scores(cand, held, chosen)
    is_cancer, is_uniform = exams["cancer"][chosen], uniform[chosen]
    system = np.array([scanners[k].model for k in exams["scanner"][chosen]])
    calibration = system_calibration(raw[is_uniform], system[is_uniform])
    score = calibrated(calibration, raw, system)
    reference = score[is_uniform]
    cuts = score_bands(reference)
    bands = band_of(score, cuts)
    perf = breakdown(score, is_cancer, is_uniform, {k: v[chosen] for k, v in exams.items()}, bands)
    raw_top = np.quantile(raw[is_uniform], 0.9)
    perf["score_bands"] = {
        "exams_in_10": round(float((bands[is_uniform] == 10).mean()), 4),
        "cancers_in_10": round(float((bands[is_cancer] == 10).mean()), 4),
        "exams_in_1_2": round(float((bands[is_uniform] <= 2).mean()), 4),
        "cancers_in_1_2": round(float((bands[is_cancer] <= 2).mean()), 4),
        # each system's screens in score 10, as calibrated and as the network scores them
        "exams_in_10_by_system": {
            m: {
                "calibrated": round(float((bands[is_uniform & (system == m)] == 10).mean()), 4),
                "uncalibrated": round(float((raw[is_uniform & (system == m)] > raw_top).mean()), 4),
            }
            for m in calibration["systems"]
        },
    }
    log(f"held-out exam AUC, cancers an exam shows: {perf['overall']['auc']}")
    metadata = {
        "name": folder.name,
        "version": VERSION,
        "network": {
            "name": network["name"],
            "parameters": sum(p.numel() for p in net.parameters()),
        },
        "intended_use": (
            "Research and regulatory simulation only: scores each candidate region of a 2-D "
            "screening mammogram for cancer (invasive or DCIS); the exam's score is the "
            "highest of its regions' two-view scores (a region's score averaged with that of "
            "its match in the breast's other view), reported on a 1-10 scale by deciles of "
            "screening exams. Not a medical device."
        ),
        "input": {
            "shape": [1, size, size],
            "dtype": "float32",
            "units": "mammo_relative",
            "spacing_mm": PIXEL_MM,
            "window": list(WINDOW),
            "detail": dict(DETAIL),
        },
        "output": {
            "shape": [1],
            "meaning": "probability that the candidate region is a cancer (invasive or DCIS)",
            "activation": "sigmoid",
            "aggregation": AGGREGATION,
            "view_match_mm": VIEW_MATCH_MM,
            "calibration": calibration,
        },
        "score_scale": {"name": "1-10", "cut_points": [round(c, 6) for c in cuts]},
        "training_data": {
            "scanners": [s.model for s in scanners],
            "scanner_parameters": [dataclasses.asdict(s) for s in scanners],
            "scanner_shares": [float(v) for v in scanner_shares]
            or [1.0 / len(scanners)] * len(scanners),
            "population": f"scenario '{scenario.name}': {scenario.description}",
            "people": people,
            "cases": len(train.pairs),
            "malignant_cases": int(train.label.sum()),
            "seed": seed,
            "epochs": epochs,
            "device": device,
            "command": command,
            "training_loss_by_epoch": [round(v, 5) for v in losses],
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "performance": {"held_out": perf},
    }
    validation = {
        "scores": [round(float(v), 6) for v in score],
        "labels": [int(v) for v in is_cancer],
        "reference_scores": [round(float(v), 6) for v in reference],
    }
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    write_bundle(folder, network, metadata, state, validation, model_card(metadata))
    return metadata


def breakdown(
    score: np.ndarray,
    cancer: np.ndarray,
    uniform: np.ndarray,
    exams: dict[str, np.ndarray],
    bands: np.ndarray | None = None,
) -> dict[str, Any]:
    """Exam-level AUC: cancer exams against the uniform sample's exams without cancer, overall
    and by kind, size band, the invasive mass's margin and shape, conspicuity and density (both
    sides restricted to the density); with each exam's 1-10 ``bands``, also the share of each
    row's cancer exams in score 10 (the device's sensitivity at the tenth of screens it flags)."""
    neg = uniform & ~cancer

    def one(pos: np.ndarray, negatives: np.ndarray = neg) -> dict[str, Any]:
        keep = pos | negatives
        out = {
            "auc": _json_auc(auc(score[keep], pos[keep])),
            "cancer_exams": int(pos.sum()),
            "exams": int(keep.sum()),
        }
        if bands is not None:
            out["in_10"] = round(float((bands[pos] == 10).mean()), 4) if pos.any() else None
        return out

    mm = exams["invasive_mm"]
    neg = neg & ~exams["present"]
    out: dict[str, Any] = {"overall": one(cancer), "all_cancers": one(exams["present"])}
    out["by_kind"] = {"invasive": one(cancer & (mm > 0)), "dcis": one(cancer & exams["dcis"])}
    out["by_size"] = {
        "under_10_mm": one(cancer & (mm > 0) & (mm < 10)),
        "10_to_20_mm": one(cancer & (mm >= 10) & (mm < 20)),
        "20_mm_and_over": one(cancer & (mm >= 20)),
    }
    if "margin" in exams:
        invasive_mass = cancer & (mm > 0) & (exams["margin"] >= 0)
        out["by_margin"] = {
            m: one(invasive_mass & (exams["margin"] == i)) for i, m in enumerate(MARGINS)
        }
        out["by_shape"] = {
            "round_or_oval": one(invasive_mass & ~exams["irregular"]),
            "irregular": one(invasive_mass & exams["irregular"]),
        }
    vis = exams["conspicuity"]
    out["by_conspicuity"] = {
        "under_reader_c50": one(cancer & (vis < READER_C50)),
        "reader_c50_and_over": one(cancer & (vis >= READER_C50)),
    }
    out["by_density"] = {
        d: one(cancer & (exams["density"] == i), neg & (exams["density"] == i))
        for i, d in enumerate(DENSITIES)
    }
    return out


def model_card(meta: dict[str, Any]) -> str:
    """The device's docs/README.md."""
    perf, td = meta["performance"]["held_out"], meta["training_data"]

    def row(name: str, v: dict[str, Any]) -> str:
        a = "n/a" if v["auc"] is None else f"{v['auc']:.3f}"
        s10 = "n/a" if v.get("in_10") is None else f"{v['in_10']:.1%}"
        return f"| {name} | {a} | {s10} | {v['cancer_exams']:,} | {v['exams']:,} |"

    rows = [row("cancers the exam shows (a candidate region)", perf["overall"])]
    rows += [row("every cancer present, shown or not", perf["all_cancers"])]
    rows += [row(f"{k}", v) for k, v in perf["by_kind"].items()]
    rows += [row(f"invasive, {k.replace('_', ' ')}", v) for k, v in perf["by_size"].items()]
    rows += [row(f"invasive mass, {k} margin", v) for k, v in perf.get("by_margin", {}).items()]
    rows += [
        row(f"invasive mass, {k.replace('_', ' ')}", v) for k, v in perf.get("by_shape", {}).items()
    ]
    rows += [
        row(f"conspicuity {k.replace('_', ' ')} ({READER_C50:g})", v)
        for k, v in perf["by_conspicuity"].items()
    ]
    rows += [row(f"density {k}", v) for k, v in perf["by_density"].items()]
    sb = perf["score_bands"]
    by_system = sb.get("exams_in_10_by_system", {})
    calibration = (
        (
            "Scores are calibrated per mammography system (`output.calibration`: each system's "
            "screening-score quantiles mapped to the pooled ones), so score 10 is a tenth of the "
            "screens of each; a system it does not name gets the network's score as it is. Share of "
            "each system's held-out screens in score 10, calibrated (as a run reports) and as the "
            "network scores them: "
            + "; ".join(
                f"{m} {v['calibrated']:.1%} ({v['uncalibrated']:.1%})" for m, v in by_system.items()
            )
            + "."
        )
        if by_system
        else ""
    )
    return f"""# {meta["name"]} {meta["version"]}

{meta["intended_use"]}

Network: {meta["network"]["name"]} from monai.networks.nets (2-D), {meta["network"]["parameters"]:,}
parameters, reading {meta["input"]["shape"][1]} x {meta["input"]["shape"][2]} patches of
{meta["input"]["spacing_mm"]} mm in relative attenuation (window {meta["input"]["window"]}), and
their detail channel (the patch less its blur of {meta["input"]["detail"]["sigma_mm"]} mm, +-{meta["input"]["detail"]["range"]} mm).
Trained by `{td["command"]}` (seed {td["seed"]}, {td["epochs"]} epochs, {td["seconds"]:.0f} s on
{td["device"]}) on {td["cases"]:,} candidate regions ({td["malignant_cases"]:,} of a cancer) of
the screens of {td["people"]:,} synthetic women of {td["population"]}, on the systems
{", ".join(td["scanners"])}. Nothing in a region says what it is: the device has to find the
cancer among benign findings and tissue.

## Held-out performance

A quarter of the women are held out. Exam-level AUC (the exam's score is its
{_aggregation_words(meta["output"])}) of exams with a cancer the exam shows against a uniform sample of screens without one, and the
share of those cancer exams in score 10 (the tenth of screens the device flags most; a mass's
rows are by its BI-RADS margin and shape):

| exams | AUC | in score 10 | cancer exams | exams |
|---|---|---|---|---|
{chr(10).join(rows)}

## The 1-10 scale

Score k for an exam between the (k - 1)-th and k-th decile of screening exams' scores
(`score_scale.cut_points` in configs/metadata.json). On the held-out women: score 10 holds
{sb["exams_in_10"]:.1%} of screens and {sb["cancers_in_10"]:.1%} of the exams with a cancer;
scores 1-2 hold {sb["exams_in_1_2"]:.1%} of screens and {sb["cancers_in_1_2"]:.1%} of those
with a cancer. {calibration}
"""


def _aggregation_words(output: dict[str, Any]) -> str:
    """How the card says the exam's score is made of its regions'."""
    if output.get("aggregation") == "two_view":
        return (
            "highest region score, a region's score averaged with that of the most suspicious "
            "region of the breast's other view within "
            f"{output.get('view_match_mm', 20.0):g} mm of its distance from the nipple, or "
            "with 0 where there is none"
        )
    return "highest region's"


def default_network(channels: Sequence[int], layers: Sequence[int]) -> dict[str, Any]:
    """The reference architecture: a 2-D ResNet of basic blocks from monai.networks.nets, with
    a 3 x 3 first convolution at full resolution (MONAI's default 7 x 7 one of stride 2 averages
    away the specks and spicules that tell a cancer from a benign finding: held-out AUC 0.78
    against 0.87 in the same 16-epoch comparison, docs/breast.md)."""
    if len(layers) != len(channels):
        raise ValueError(f"ResNet: layers {list(layers)} and channels {list(channels)} differ")
    return {
        "name": "ResNet",
        "args": {
            "block": "basic",
            "layers": list(layers),
            "block_inplanes": list(channels),
            "spatial_dims": 2,
            "n_input_channels": 2,  # the window and the detail channel
            "num_classes": 1,
            "conv1_t_size": 3,
            "conv1_t_stride": 1,
        },
    }

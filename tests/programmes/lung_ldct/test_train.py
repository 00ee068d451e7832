"""Training the reference device (sandbox/programmes/lung_ldct/train.py): cases, AUC, a tiny training run,
reproducibility, and the shipped device's held-out AUC against its model card."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import testkit
import torch
from scipy import stats

from sandbox.agents.bundle import load_bundle
from sandbox.compose import load
from sandbox.config import Scanner
from sandbox.programmes.lung_ldct import train
from sandbox.programmes.lung_ldct.disease.history import sample_history
from sandbox.programmes.lung_ldct.train import (
    HEADLINE_MM,
    auc,
    breakdown,
    evaluation_exams,
    exam_scores,
    screening_exams,
    training_cases,
)
from sandbox.rng import Streams

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "agents" / "lung_nodule_cnn"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Render, score and train on one torch thread (see tests/agents/conftest.py)."""
    with testkit.one_torch_thread():
        yield


@pytest.fixture(scope="module")
def scenario():
    return load(["scenario=lung_ldct", "runtime=quiet"])[0].scenario


@pytest.fixture(scope="module")
def scanners() -> list[Scanner]:
    return testkit.recipe_scanners()


# ------------------------------------------------------------------ AUC
def test_auc_extremes_and_ties():
    labels = np.array([True, True, False, False])
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 1.0
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 0.0
    assert auc(np.full(4, 0.5), labels) == 0.5
    assert math.isnan(auc(np.array([0.1, 0.2]), np.array([True, True])))
    assert math.isnan(auc(np.array([0.1, 0.2]), np.array([False, False])))


def test_auc_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=300), 1)  # rounded: many ties
    labels = rng.uniform(size=300) < 0.3
    scores[labels] += 0.5
    u = stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert auc(scores, labels) == pytest.approx(u / (labels.sum() * (~labels).sum()), abs=1e-12)


# ------------------------------------------------------------------ exams and candidates
@pytest.fixture(scope="module")
def screened(scenario, scanners):
    streams = Streams(8)
    history = sample_history(scenario, streams, size=1500)
    return screening_exams(history, scenario.programme.rounds, scanners, streams)


def test_candidates_are_every_exams_regions_and_mark_only_the_truth(screened, scanners):
    exams, cases = screened
    assert len(exams) > 3000 and exams.cancer.sum() > 20
    # every exam has its background regions; the cancer is a candidate only where it is in the
    # lungs that day (and conspicuous enough)
    per_exam = np.bincount(cases.exam, minlength=len(exams))
    assert per_exam.min() >= 2
    has_cancer_candidate = np.bincount(cases.exam, weights=cases.label, minlength=len(exams)) > 0
    assert (has_cancer_candidate <= exams.cancer).all()
    assert has_cancer_candidate.sum() > 0.3 * exams.cancer.sum()
    assert (cases.diameter_mm[cases.label] > 0).all()
    assert set(np.unique(exams.scanner)) == set(range(len(scanners)))
    assert (cases.scanner == exams.scanner[cases.exam]).all()
    keys = set(
        zip(cases.person_id.tolist(), cases.exam_day.tolist(), cases.location.tolist(), strict=True)
    )
    assert len(keys) == len(cases)  # one case per candidate region
    assert set(np.unique(exams.sex)) <= {"F", "M"}


def test_training_cases_are_balanced(screened):
    _, cases = screened
    chosen = training_cases(cases, Streams(8), 3.0, 0.25)
    n_pos = int(chosen.label.sum())
    assert n_pos == int(cases.label.sum())  # every cancer candidate
    assert 2.0 < (len(chosen) - n_pos) / n_pos < 4.0
    background = ~chosen.label & (chosen.diameter_mm == 0)
    assert 0.1 < background.sum() / (len(chosen) - n_pos) < 0.4


def test_exams_and_candidates_follow_the_seed(scenario, scanners, screened):
    streams = Streams(8)
    again = screening_exams(
        sample_history(scenario, streams, size=1500), scenario.programme.rounds, scanners, streams
    )
    for old, new in zip(screened, again, strict=True):
        for name in old.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(new, name), getattr(old, name))


def test_exam_score_is_the_max_candidate_and_names_the_driver(screened):
    _, cases = screened
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, len(cases))
    ids = np.unique(cases.exam)[:200]
    score, by_cancer = exam_scores(scores, cases, ids)
    for i, e in enumerate(ids):
        mine = np.flatnonzero(cases.exam == e)
        assert score[i] == scores[mine].max()
        assert by_cancer[i] == cases.label[mine[np.argmax(scores[mine])]]


def test_breakdown_counts_add_up(screened, scanners):
    exams, _ = screened
    idx, uniform = evaluation_exams(exams, Streams(8), n=500)
    held = exams.take(idx)
    assert held.cancer[~uniform].all()  # beyond the uniform sample, only cancer exams
    jitter = np.random.default_rng(0).uniform(0, 0.1, len(held))
    score = held.cancer + jitter  # every cancer above every negative
    out = breakdown(score, held, uniform, held.cancer, scanners)
    big = held.cancer & (held.cancer_mm >= HEADLINE_MM)
    neg = uniform & ~held.cancer
    assert out["overall"] == {
        "auc": 1.0,
        "cancer_exams": int(big.sum()),
        "exams": int((big | neg).sum()),
    }
    assert out["all_cancers"]["cancer_exams"] == int(held.cancer.sum())
    assert sum(v["cancer_exams"] for v in out["by_size_mm"].values()) == int(held.cancer.sum())
    assert sum(v["cancer_exams"] for v in out["by_nodule_type"].values()) == int(big.sum())
    assert sum(v["exams"] for v in out["by_scanner"].values()) == int((big | neg).sum())
    assert sum(v["exams"] for v in out["by_sex"].values()) == int((big | neg).sum())
    assert out["cancer_candidate_drove"]["share"] == 1.0


# ------------------------------------------------------------------ a tiny training run
def test_tiny_device_folder_is_complete(tiny_device):
    for rel in (
        "configs/metadata.json",
        "configs/network.json",
        "configs/validation.json",
        "models/model.safetensors",
        "docs/README.md",
    ):
        assert (tiny_device / rel).is_file(), rel
    # written to a temporary sibling and renamed: nothing is left beside it
    assert [p.name for p in tiny_device.parent.iterdir()] == [tiny_device.name]


def test_tiny_device_loads_with_its_declared_shape(tiny_device):
    model = load_bundle(tiny_device)
    size = testkit.TINY["size"]
    assert model.name == "tiny_nodule_cnn"
    assert model.input_shape == (1, size, size, size)
    assert model.activation == "sigmoid"
    assert model.network_config["name"] == "NoduleCNN"
    assert model.network_config["args"]["channels"] == list(testkit.TINY["channels"])
    assert "tiny_nodule_cnn" in model.model_card


def test_tiny_device_metadata_describes_its_training(tiny_device, scanners):
    meta = json.loads((tiny_device / "configs" / "metadata.json").read_text())
    td = meta["training_data"]
    assert td["scanners"] == [s.model for s in scanners]
    assert [p["model"] for p in td["scanner_parameters"]] == td["scanners"]
    assert td["scanner_parameters"][0]["slice_mm"] == scanners[0].slice_mm
    assert td["people"] == testkit.TINY["people"]
    assert td["seed"] == testkit.TINY["seed"]
    assert td["rounds"] >= 1
    assert "lung_ldct" in td["population"]
    assert 0 < td["malignant_cases"] < td["cases"]
    assert td["command"] == "tests: tiny device"
    perf = meta["performance"]
    assert len(perf["training_loss_by_epoch"]) == testkit.TINY["epochs"]
    overall = perf["held_out"]["overall"]
    assert 0.0 <= overall["auc"] <= 1.0
    assert set(perf["held_out"]) >= {
        "all_cancers",
        "by_size_mm",
        "by_scanner",
        "by_nodule_type",
        "by_sex",
        "by_race",
        "cancer_candidate_drove",
        "candidates",
    }
    assert set(perf["held_out"]["by_scanner"]) == set(td["scanners"])
    assert meta["output"]["aggregation"] == "max"
    card = (tiny_device / "docs" / "README.md").read_text()
    on_card = re.search(r"Cancers of at least 4 mm: AUC ([0-9.]+)", card)
    assert on_card and float(on_card.group(1)) == pytest.approx(overall["auc"], abs=5e-4)
    assert td["command"] in card
    for scanner in td["scanners"]:
        assert scanner in card


def test_validation_set_is_the_held_out_set_of_the_card(tiny_device):
    meta = json.loads((tiny_device / "configs" / "metadata.json").read_text())
    val = json.loads((tiny_device / "configs" / "validation.json").read_text())
    scores, labels = np.array(val["scores"]), np.array(val["labels"], dtype=bool)
    overall = meta["performance"]["held_out"]["overall"]
    assert len(scores) == overall["exams"] and int(labels.sum()) == overall["cancer_exams"]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert auc(scores, labels) == pytest.approx(overall["auc"], abs=2e-3)  # scores rounded to 1e-6
    reference = np.array(val["reference_scores"])  # screening exams as they come, for percentiles
    assert len(reference) > 0 and ((reference >= 0) & (reference <= 1)).all()


def device_exam_scores(model, scenario, scanners, seed, people, n=train.REFERENCE_EXAMS):
    """Exam scores of held-out people of a fresh draw, through the run's own path: the
    programme's ``image_of`` (candidates from the exam's findings) and ``DeviceScorer``."""
    from sandbox.agents.inference import DeviceScorer, ScoreCache
    from sandbox.programmes.lung_ldct.programme import LungLDCT, render_patches
    from sandbox.programmes.lung_ldct.reading import visible_findings

    streams = Streams(seed)
    history = sample_history(scenario, streams, size=people)
    exams, _ = screening_exams(history, scenario.programme.rounds, scanners, streams)
    idx, uniform = evaluation_exams(exams, streams, n=n)
    row_of = {int(p): r for r, p in enumerate(history.people["person_id"])}
    prog = LungLDCT(scenario)
    images = []
    for i in idx:
        pid, day, sc = int(exams.person_id[i]), int(exams.exam_day[i]), scanners[exams.scanner[i]]
        shows = visible_findings(history, row_of[pid], float(exams.day[i]), sc)
        images.append(prog.image_of(pid, day, sc, shows))
    scorer = DeviceScorer(model, ScoreCache(model.digest, "t"), seed, 512, render=render_patches)
    return scorer.scores(images), exams.take(idx), uniform


def test_loaded_device_reproduces_its_validation_scores(tiny_device, scenario, scanners):
    """The run's path (candidates by ``image_of``, render, window, network, sigmoid, max over
    candidates) scores the held-out exams as training did."""
    opts = testkit.TINY
    model = load_bundle(tiny_device)
    score, held, uniform = device_exam_scores(
        model, scenario, scanners, opts["seed"], opts["people"]
    )
    big = held.cancer & (held.cancer_mm >= HEADLINE_MM)
    labelled = big | (uniform & ~held.cancer)
    val = json.loads((tiny_device / "configs" / "validation.json").read_text())
    np.testing.assert_array_equal(big[labelled].astype(int), val["labels"])
    np.testing.assert_allclose(score[labelled], val["scores"], atol=1e-5)
    np.testing.assert_allclose(score[uniform], val["reference_scores"], atol=1e-5)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same (tinier) recipe trained twice with one seed, and once with another."""
    root = tmp_path_factory.mktemp("twins")
    tinier = {"size": 8, "channels": (2,)}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        testkit.train_tiny(root / name / "tiny", seed=seed, **tinier)
    return root


def test_same_seed_gives_bit_identical_weights(twins):
    a, b, c = (twins / n / "tiny" for n in "abc")
    for rel in ("models/model.safetensors", "configs/validation.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "models/model.safetensors").read_bytes() != (
        c / "models/model.safetensors"
    ).read_bytes()
    ma, mb = load_bundle(a), load_bundle(b)
    assert ma.weights_digest == mb.weights_digest
    assert ma.network_digest == mb.network_digest


def test_same_seed_gives_the_same_device_digest_whatever_the_clock(tmp_path, monkeypatch):
    """Regression: the metadata held the training's wall-clock seconds, and the metadata is
    part of the model digest: retraining reproduced the weights but not the digest (so score
    caches and a regulator's digest check broke)."""
    digests = []
    for step in (1.0, 7.0):  # two deterministic fake clocks running at different speeds
        ticks = iter(range(1, 10_000))
        monkeypatch.setattr(train.time, "perf_counter", lambda s=step, t=ticks: next(t) * s)
        folder = tmp_path / str(step) / "tiny"
        testkit.train_tiny(folder, size=8, channels=(2,))
        monkeypatch.undo()
        digests.append(load_bundle(folder).digest)
    assert digests[0] == digests[1]


def test_a_small_training_run_writes_a_loadable_device(tmp_path):
    """Regression: a subgroup without a malignant held-out case has no AUC; it was written as
    NaN, which JSON does not have and load_bundle refuses, so the device could not be loaded."""
    folder = tmp_path / "small"
    meta = testkit.train_tiny(folder, people=120, size=8, channels=(2,))
    by_type = meta["performance"]["held_out"]["by_nodule_type"]
    assert min(v["cancer_exams"] for v in by_type.values()) == 0  # the case in point
    json.loads((folder / "configs" / "metadata.json").read_text(), parse_constant=_refuse)
    model = load_bundle(folder)
    assert not re.search(r"\bnan\b", model.model_card, re.IGNORECASE)


def _refuse(name: str) -> None:
    raise ValueError(f"{name} in JSON")


# ------------------------------------------------------------------ the shipped device
def shipped_ready() -> bool:
    """The shipped device is there and no training run is swapping it."""
    siblings = list(SHIPPED.parent.glob(f".{SHIPPED.name}.*"))
    return (SHIPPED / "configs" / "metadata.json").is_file() and not siblings


@pytest.mark.slow
@pytest.mark.skipif(not shipped_ready(), reason="agents/lung_nodule_cnn is absent or in training")
def test_shipped_device_auc_on_fresh_held_out_data_matches_its_card(scenario):
    """Fresh people (another seed: other people, other images), read through the run's own path:
    the exam-level AUC for cancers of at least 4 mm is that of published screening AI (>= 0.90)
    and that of the card within 0.03; the AUC for all cancers is that of the card within 0.05."""
    model = load_bundle(SHIPPED)
    meta = model.metadata
    card = meta["performance"]["held_out"]
    scanners = [Scanner(**p) for p in meta["training_data"]["scanner_parameters"]]
    seed = int(meta["training_data"]["seed"]) + 1000
    score, held, uniform = device_exam_scores(model, scenario, scanners, seed, 16000, n=3000)
    neg = uniform & ~held.cancer
    big = held.cancer & (held.cancer_mm >= HEADLINE_MM)
    assert big.sum() >= 300
    fresh = auc(score[big | neg], big[big | neg])
    assert fresh >= 0.90, fresh
    assert abs(fresh - card["overall"]["auc"]) <= 0.03, (fresh, card["overall"]["auc"])
    every = held.cancer | neg
    fresh_all = auc(score[every], held.cancer[every])
    assert abs(fresh_all - card["all_cancers"]["auc"]) <= 0.05, (fresh_all, card["all_cancers"])


def test_training_patches_kept_or_drawn_per_batch_are_the_same(screened, scanners, monkeypatch):
    """Small training sets are rendered once and kept, large ones (64^3 patches of every case)
    batch by batch: a batch of either is the same tensor."""
    _, cases = screened
    chosen = training_cases(cases, Streams(8), 3.0, 0.25).take(np.arange(40))
    idx = np.array([5, 0, 31, 17, 39])
    kept = train.training_images(chosen, scanners, 3, 16, (-1000.0, 400.0), "cpu")
    monkeypatch.setattr(train, "PRERENDER_BYTES", 0)
    drawn = train.training_images(chosen, scanners, 3, 16, (-1000.0, 400.0), "cpu")
    assert torch.equal(kept(idx), drawn(idx))
    assert kept(idx).shape == (5, 1, 16, 16, 16)


# ------------------------------------------------------------------ a declared training skew
def test_a_declared_skew_drops_the_groups_it_names_and_nothing_else(screened):
    exams, cases = screened
    everyone = np.ones(len(exams), dtype=bool)
    streams = Streams(2026)
    idx, report = train.skewed(exams, cases, everyone, {"sex": {"F": 0.2}}, streams)
    kept = cases.take(idx)
    women = exams.sex[kept.exam] == "F"
    all_women = exams.sex[cases.exam] == "F"
    # a person keeps all of their exams or none: whole people are dropped
    assert 0.1 < women.sum() / all_women.sum() < 0.3
    assert (~all_women).sum() == (~women).sum()  # men untouched
    assert report["sex"]["F"]["kept"] < report["sex"]["F"]["exams"]
    people_kept = set(kept.person_id[women])
    assert all(
        (kept.person_id == p).sum() == (cases.person_id == p).sum() for p in list(people_kept)[:50]
    )
    again, _ = train.skewed(exams, cases, everyone, {"sex": {"F": 0.2}}, Streams(2026))
    assert np.array_equal(idx, again)  # keyed: the same skew gives the same set


def test_a_nodule_type_skew_drops_only_that_types_cancer_candidates(screened):
    exams, cases = screened
    everyone = np.ones(len(exams), dtype=bool)
    idx, report = train.skewed(
        exams, cases, everyone, {"nodule_type": {"ground_glass": 0.0}}, Streams(1)
    )
    kept = cases.take(idx)
    ggn = train.TYPE_NAMES.index("ground_glass")
    assert report["nodule_type"]["ground_glass"]["kept"] == 0
    assert not (kept.label & (kept.nodule_type == ggn)).any()
    assert (cases.label & (cases.nodule_type == ggn)).any()  # there were some to drop
    dropped = len(cases) - len(kept)
    assert dropped == int((cases.label & (cases.nodule_type == ggn)).sum())


def test_sandbox_train_refuses_a_skew_it_cannot_apply(capsys):
    for skew, needle in (
        ("{height: {tall: 0.1}}", "skew.height"),
        ("{sex: {X: 0.1}}", "skew.sex.X"),
        ("{sex: {F: 1.5}}", "not a share"),
    ):
        code, _, err = testkit.run_cli(["train", "agent=lung_nodule_cnn", f"skew={skew}"], capsys)
        testkit.assert_one_line_error(code, err, needle)


def test_a_skewed_devices_card_declares_its_skew(tmp_path):
    folder = tmp_path / "skewed"
    from sandbox.programmes.lung_ldct.train import train_device

    cfg, _, _ = load(["scenario=lung_ldct", "runtime=quiet"])
    with testkit.one_torch_thread():
        meta = train_device(
            cfg.scenario,
            testkit.recipe_scanners(),
            folder,
            5,
            200,
            1,
            8,
            (2,),
            log=lambda _: None,
            skew={"sex": {"F": 0.0}},
        )
    kept = meta["training_data"]["skew"]["kept"]["sex"]["F"]
    assert kept["kept"] == 0 < kept["exams"]
    card = (folder / "docs" / "README.md").read_text()
    assert "Declared training-set skew" in card and "sex=F kept with probability 0" in card

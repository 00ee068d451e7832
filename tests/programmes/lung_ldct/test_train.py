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
from scipy import stats

from sandbox.agents.bundle import load_bundle
from sandbox.compose import load
from sandbox.config import Scanner
from sandbox.programmes.lung_ldct import train
from sandbox.programmes.lung_ldct.disease.history import sample_history
from sandbox.programmes.lung_ldct.train import auc, breakdown, exam_cases, render_cases
from sandbox.rng import Streams

ROOT = Path(__file__).resolve().parents[2]
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


# ------------------------------------------------------------------ cases
@pytest.fixture(scope="module")
def cases(scenario, scanners):
    streams = Streams(8)
    history = sample_history(scenario, streams, size=1500)
    return exam_cases(history, scenario.programme.rounds, scanners, streams, 3.0, 0.25)


def test_exam_cases_are_balanced_and_well_formed(cases, scanners):
    n_pos = int(cases.label.sum())
    assert n_pos > 20
    # every cancer exam, and about three negatives per cancer exam
    assert 2.0 < (len(cases) - n_pos) / n_pos < 4.0
    # a positive is an exam whose imaged finding is the cancer: it has a finding
    assert (cases.diameter_mm[cases.label] > 0).all()
    assert ((cases.diameter_mm == 0) <= ~cases.label).all()
    assert set(np.unique(cases.scanner)) == set(range(len(scanners)))
    keys = set(zip(cases.person_id.tolist(), cases.exam_day.tolist(), strict=True))
    assert len(keys) == len(cases)  # one case per exam
    assert set(np.unique(cases.sex)) <= {"F", "M"}
    sub = cases.take(np.flatnonzero(cases.label))
    assert len(sub) == n_pos and sub.label.all()


def test_exam_cases_follow_the_seed(scenario, scanners, cases):
    streams = Streams(8)
    again = exam_cases(
        sample_history(scenario, streams, size=1500),
        scenario.programme.rounds,
        scanners,
        streams,
        3.0,
        0.25,
    )
    for name in cases.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(again, name), getattr(cases, name))


def test_breakdown_counts_add_up(cases, scanners):
    jitter = np.random.default_rng(0).uniform(0, 0.1, len(cases))
    scores = cases.label + jitter  # every cancer above every negative
    out = breakdown(scores, cases, scanners)
    assert out["overall"]["cases"] == len(cases)
    assert out["overall"]["malignant"] == int(cases.label.sum())
    assert sum(v["cases"] for v in out["by_scanner"].values()) == len(cases)
    assert sum(v["cases"] for v in out["by_sex"].values()) == len(cases)
    assert sum(v["malignant"] for v in out["by_nodule_type"].values()) == int(cases.label.sum())
    assert out["overall"]["auc"] == 1.0


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
    assert set(perf["held_out"]) >= {"by_scanner", "by_nodule_type", "by_sex", "by_race"}
    assert set(perf["held_out"]["by_scanner"]) == set(td["scanners"])
    card = (tiny_device / "docs" / "README.md").read_text()
    on_card = re.search(r"Overall AUC ([0-9.]+)", card)
    assert on_card and float(on_card.group(1)) == pytest.approx(overall["auc"], abs=5e-4)
    assert td["command"] in card
    for scanner in td["scanners"]:
        assert scanner in card


def test_validation_set_is_the_held_out_set_of_the_card(tiny_device):
    meta = json.loads((tiny_device / "configs" / "metadata.json").read_text())
    val = json.loads((tiny_device / "configs" / "validation.json").read_text())
    scores, labels = np.array(val["scores"]), np.array(val["labels"], dtype=bool)
    overall = meta["performance"]["held_out"]["overall"]
    assert len(scores) == overall["cases"] and int(labels.sum()) == overall["malignant"]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert auc(scores, labels) == pytest.approx(overall["auc"], abs=2e-3)  # scores rounded to 1e-6
    reference = np.array(val["reference_scores"])  # screening exams as they come, for percentiles
    assert len(reference) > 0 and ((reference >= 0) & (reference <= 1)).all()


def test_loaded_device_reproduces_its_validation_scores(tiny_device, scenario, scanners):
    """The bundle path (render, window, network, sigmoid) scores the held-out exams as training
    did: preprocessing at training and at inference agree. The cases mirror train_device."""
    opts = testkit.TINY
    streams = Streams(opts["seed"])
    history = sample_history(scenario, streams, size=opts["people"])
    cases = exam_cases(history, scenario.programme.rounds, scanners, streams, 3.0, 0.25)
    test = cases.take(np.flatnonzero(train.held_out(cases.person_id, streams)))
    model = load_bundle(tiny_device)
    scores = model.score(render_cases(test, scanners, opts["seed"], opts["size"])).numpy()
    val = json.loads((tiny_device / "configs" / "validation.json").read_text())
    np.testing.assert_array_equal(test.label.astype(int), val["labels"])
    np.testing.assert_allclose(scores, val["scores"], atol=1e-5)


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
    assert min(v["malignant"] for v in by_type.values()) == 0  # the case in point
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
    """A fresh synthetic held-out set (another seed: other people, other images) scored through
    the bundle path gives the AUC on the card, within 0.05."""
    model = load_bundle(SHIPPED)
    meta = model.metadata
    card_auc = meta["performance"]["held_out"]["overall"]["auc"]
    scanners = [Scanner(**p) for p in meta["training_data"]["scanner_parameters"]]
    seed = int(meta["training_data"]["seed"]) + 1000
    streams = Streams(seed)
    history = sample_history(scenario, streams, size=5000)
    cases = exam_cases(history, scenario.programme.rounds, scanners, streams, 3.0, 0.25)
    assert cases.label.sum() >= 200
    size = model.input_shape[-1]
    scores = np.concatenate(
        [
            model.score(
                render_cases(
                    cases.take(np.arange(i, min(i + 512, len(cases)))), scanners, seed, size
                )
            ).numpy()
            for i in range(0, len(cases), 512)
        ]
    )
    fresh = auc(scores, cases.label)
    assert abs(fresh - card_auc) <= 0.05, (fresh, card_auc)

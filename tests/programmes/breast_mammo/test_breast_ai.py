"""AI roles on the breast programme: a 2-D device folder (a MONAI network, seeded weights: its
scores mean nothing, its plumbing is what is tested) loads, declares the images the breast
renderer makes, and reads breast screens under every AI role, the same whatever the batch."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from sandbox.agents.bundle import load_bundle
from sandbox.errors import SandboxInputError
from sandbox.programmes.breast_mammo.imaging import CANDIDATE_KINDS
from sandbox.programmes.lung_ldct.train import build_network, seeded_init, write_bundle

SPEC = {
    "name": "ResNet",
    "args": {
        "block": "basic",
        "layers": [1, 1, 1, 1],
        "block_inplanes": [4, 8, 16, 32],
        "spatial_dims": 2,
        "n_input_channels": 1,
        "num_classes": 1,
    },
}


def metadata(units="mammo_relative", shape=(1, 64, 64)) -> dict:
    return {
        "name": "breast_test_device",
        "version": "0.0.1",
        "intended_use": "tests only: a seeded, untrained 2-D network",
        "input": {
            "shape": list(shape),
            "dtype": "float32",
            "units": units,
            "spacing_mm": 0.3,
            "window": [-15.0, 30.0],
        },
        "output": {
            "shape": [1],
            "meaning": "probability that the candidate region is a cancer",
            "activation": "sigmoid",
            "aggregation": "max",
        },
        "training_data": {"scanners": ["ffdm_2019"], "population": "none (seeded)", "cases": 1},
        "performance": {},
    }


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    folder = tmp_path_factory.mktemp("breast_device") / "breast_test_device"
    net = build_network(SPEC)
    seeded_init(net, torch.Generator().manual_seed(5))
    reference = np.random.default_rng(1).uniform(0.3, 0.7, 500).tolist()
    validation = {
        "scores": reference,
        "labels": [0] * 460 + [1] * 40,
        "reference_scores": reference,
    }
    write_bundle(folder, SPEC, metadata(), net.state_dict(), validation, "# test device\n")
    return folder


@pytest.mark.parametrize(
    "policy", ["ai_triage", "ai_second_reader", "ai_rule_out", "ai_safety_net"]
)
def test_every_ai_role_reads_breast_screens(run_sim, device, policy):
    res = run_sim(
        "scenario=breast_masai",
        f"policy={policy}",
        f"agent={device}",
        "cohort.size=1200",
        "seed=3",
        "runtime=quiet",
    )
    ev = res.events.filter(pl.col("exam_kind") == "screen")
    assert ev["ai_score"].is_not_null().all() and ev["ai_score"].is_between(0, 1).all()
    assert set(ev["ai_driver"].unique()) <= set(CANDIDATE_KINDS)
    assert (ev["ai_candidates"] >= 4).all()  # a background region in each of the four images


def test_a_breast_run_with_a_device_is_the_same_whatever_the_ai_batch(run_sim, device):
    base = ("scenario=breast_masai", "policy=ai_triage", f"agent={device}", "cohort.size=800")
    a = run_sim(*base, "runtime=quiet", "runtime.ai_batch_size=7")
    b = run_sim(*base, "runtime=quiet", "runtime.ai_batch_size=64")
    assert a.events.equals(b.events)


def test_a_3d_device_folder_for_2d_images_is_one_line(tmp_path):
    folder = tmp_path / "d"
    net = build_network(SPEC)
    write_bundle(folder, SPEC, metadata(shape=(1, 8, 64, 64)), net.state_dict(), {}, "")
    with pytest.raises(SandboxInputError, match=r"input.shape.*\[channels, height, width\]") as e:
        load_bundle(folder)
    assert "\n" not in str(e.value)
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    assert meta["input"]["units"] == "mammo_relative"

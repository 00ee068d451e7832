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


def detail_device(folder, detail):
    spec = {**SPEC, "args": {**SPEC["args"], "n_input_channels": 2}}
    net = build_network(spec)
    seeded_init(net, torch.Generator().manual_seed(5))
    meta = metadata()
    meta["input"]["detail"] = detail
    write_bundle(folder, spec, meta, net.state_dict(), {}, "")
    return folder


def test_a_detail_channel_is_the_patch_less_its_blur():
    from sandbox.agents.bundle import detail_channel

    flat = torch.full((1, 1, 16, 16), 7.0)
    assert torch.allclose(detail_channel(flat, 1.0, 3.0), torch.full_like(flat, 0.5))
    ramp = torch.arange(16.0).repeat(16, 1)[None, None]  # slow variation: gone
    inner = detail_channel(ramp, 1.0, 3.0)[..., 4:-4, 4:-4]
    assert torch.allclose(inner, torch.full_like(inner, 0.5), atol=1e-5)
    speck = torch.zeros((1, 1, 16, 16))
    speck[..., 8, 8] = 1.0  # a speck stands out, and its value is clipped to +-range
    d = detail_channel(speck, 1.0, 0.5)
    assert d[0, 0, 8, 8] == 1.0 and d.min() >= 0.0 and d[0, 0, 0, 0] == 0.5


def test_a_device_reads_the_window_and_its_detail_channel(tmp_path):
    from sandbox.agents.bundle import detail_channel

    model = load_bundle(detail_device(tmp_path / "d", {"sigma_mm": 0.3, "range": 3.0}))
    assert model.detail == (1.0, 3.0)  # 0.3 mm over pixels of 0.3 mm
    raw = torch.randn((2, 1, 64, 64), generator=torch.Generator().manual_seed(0)) * 10
    x = model.preprocess(raw)
    assert x.shape == (2, 2, 64, 64)
    assert torch.equal(x[:, :1], (raw.clamp(-15, 30) + 15) / 45)
    assert torch.equal(x[:, 1:], detail_channel(raw, 1.0, 3.0))
    assert model.score(raw).shape == (2,)


@pytest.mark.parametrize(
    ("detail", "fragment"),
    [
        ({"sigma_mm": 0, "range": 3.0}, "input.detail.sigma_mm"),
        ({"sigma_mm": 0.5}, "input.detail.range"),
        ({"sigma_mm": 0.5, "range": 3.0, "mode": "x"}, "input.detail"),
    ],
)
def test_a_bad_detail_channel_is_one_line(tmp_path, detail, fragment):
    with pytest.raises(SandboxInputError, match=fragment.replace(".", r"\.")) as e:
        load_bundle(detail_device(tmp_path / "d", detail))
    assert "\n" not in str(e.value)


def test_a_detail_channel_is_for_2d_patches_only(tmp_path):
    meta = metadata(units="HU", shape=(1, 8, 8, 8))
    meta["input"]["window_hu"] = meta["input"].pop("window")
    meta["input"]["detail"] = {"sigma_mm": 1.0, "range": 100.0}
    write_bundle(tmp_path / "ct", SPEC, meta, build_network(SPEC).state_dict(), {}, "")
    with pytest.raises(SandboxInputError, match=r"input\.detail.*2-D") as e:
        load_bundle(tmp_path / "ct")
    assert "\n" not in str(e.value)

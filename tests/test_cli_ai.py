"""The AI device through the command line: runs, bad devices and operating points (one line,
exit code 2, no run folder), ``sandbox agent-card`` and ``sandbox train``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import safetensors.torch
import testkit
import torch
import yaml
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.agents.bundle import bundle_digest, canonical_json, file_digest, load_bundle

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "agents" / "lung_nodule_cnn"
SMALL = ["cohort.size=300", "seed=3", "runtime=quiet", "runtime.device=cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Render, score and train on one torch thread (see tests/agents/conftest.py)."""
    with testkit.one_torch_thread():
        yield


def copy_device(tiny_device: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "device"
    shutil.copytree(tiny_device, folder)
    return folder


def bad_run(argv: list[str], tmp_path: Path, capsys, *needles: str) -> None:
    out_dir = tmp_path / "runs"
    cache = tmp_path / "cache"
    code, _, err = run_cli(
        ["run", *SMALL, *argv, f"runtime.out_dir={out_dir}", f"runtime.score_cache={cache}"],
        capsys,
    )
    assert_one_line_error(code, err, *needles)
    assert_nothing_written(out_dir)
    assert_nothing_written(cache)


# ------------------------------------------------------------------ bad input
def test_missing_agent_folder(tmp_path, capsys):
    bad_run(
        ["policy=ai_triage", "agent=/nonexistent/device"],
        tmp_path,
        capsys,
        "/nonexistent/device",
        "does not exist",
    )


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["policy=ai_triage", "policy.threshold.value=1.5"], ["policy.threshold.value", "1.5"]),
        (["policy=ai_triage", "policy.threshold.mode=bogus"], ["policy.threshold.mode", "bogus"]),
        (
            ["policy=ai_rule_out", "policy.threshold.target_sensitivity=0.9999"],
            ["policy.threshold.target_sensitivity", "0.9999"],
        ),
        (
            ["policy=ai_rule_out", "policy.threshold.target_sensitivity=0"],
            ["policy.threshold.target_sensitivity"],
        ),
        (["policy=ai_rule_out", "policy.audit_fraction=1.2"], ["policy.audit_fraction"]),
        (["policy=ai_concurrent", "policy.automation_bias=1.0"], ["policy.automation_bias"]),
        (["policy=ai_triage", "runtime.device=tpu"], ["runtime.device", "tpu"]),
        (["policy=ai_triage", "runtime.ai_batch_size=0"], ["runtime.ai_batch_size"]),
    ],
)
def test_bad_operating_point_or_runtime(tiny_device, tmp_path, capsys, overrides, needles):
    bad_run([*overrides, f"agent={tiny_device}"], tmp_path, capsys, *needles)


def test_percentile_needs_the_validation_set(tiny_device, tmp_path, capsys):
    folder = copy_device(tiny_device, tmp_path)
    (folder / "configs" / "validation.json").unlink()
    bad_run(
        ["policy=ai_triage", f"agent={folder}"],
        tmp_path,
        capsys,
        str(folder),
        "validation.json",
    )


def test_weights_that_give_nan_are_refused_before_the_run(tiny_device, tmp_path, capsys):
    folder = copy_device(tiny_device, tmp_path)
    weights = folder / "models" / "model.safetensors"
    state = safetensors.torch.load_file(str(weights))
    state = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in state.items()
    }
    safetensors.torch.save_file(state, str(weights))
    bad_run(
        ["policy=ai_second_reader", f"agent={folder}"],
        tmp_path,
        capsys,
        str(folder),
        "model.safetensors",
        "NaN",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tiny_device, tmp_path, capsys):
    bad_run(
        ["policy=ai_triage", f"agent={tiny_device}", "runtime.device=cuda"],
        tmp_path,
        capsys,
        "CUDA",
    )


def test_corrupt_score_cache_is_not_a_traceback(tiny_device, tmp_path, capsys):
    out_dir, cache = tmp_path / "runs", tmp_path / "cache"
    argv = [
        "run",
        *SMALL,
        "policy=ai_second_reader",
        f"agent={tiny_device}",
        f"runtime.out_dir={out_dir}",
        f"runtime.score_cache={cache}",
    ]
    assert run_cli(argv, capsys)[0] == 0
    (cache_file,) = cache.glob("*.parquet")
    cache_file.write_bytes(b"not parquet")
    code, _, err = run_cli([*argv, "runtime.run_name=again"], capsys)
    assert "Traceback" not in err
    if code == 2:  # refused: one line naming the file
        assert_one_line_error(code, err, cache_file.name)
    else:  # or recomputed
        assert code == 0, err


# ------------------------------------------------------------------ a run
def test_ai_run_records_the_device_in_the_manifest(tiny_device, tmp_path, capsys):
    out_dir = tmp_path / "runs"
    code, out, err = run_cli(
        [
            "run",
            *SMALL,
            "policy=ai_second_reader",
            f"agent={tiny_device}",
            f"runtime.out_dir={out_dir}",
            f"runtime.score_cache={tmp_path / 'cache'}",
            "runtime.run_name=ai",
        ],
        capsys,
    )
    assert code == 0, err
    assert "run folder:" in out
    folder = out_dir / "ai"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["policy"] == "ai_second_reader"
    (record,) = manifest["agents"].values()
    model = load_bundle(tiny_device)
    assert record["digest"] == model.digest
    assert record["weights_sha256"] == file_digest(tiny_device / "models" / "model.safetensors")
    assert record["version"] == model.version
    assert record["device"] == "cpu"
    assert record["operating_point"]["mode"] == "target_sensitivity"
    assert 0 < record["threshold"] < 1
    events = pl.read_parquet(folder / "events.parquet")
    screens = events.filter(pl.col("exam_kind") == "screen")
    assert record["inferences"] + record["cache_hits"] >= screens.height
    assert screens["ai_score"].null_count() == 0
    assert (tmp_path / "cache").is_dir()  # the score cache is where the run was told


# ------------------------------------------------------------------ agent-card
def test_agent_card_prints_the_model_card_and_digest(tiny_device, capsys):
    code, out, err = run_cli(["agent-card", str(tiny_device)], capsys)
    assert code == 0, err
    card = (tiny_device / "docs" / "README.md").read_text()
    assert card.strip() in out
    assert out.strip().splitlines()[-1] == f"digest: {load_bundle(tiny_device).digest}"


def test_agent_card_of_a_missing_device(tmp_path, capsys):
    code, _, err = run_cli(["agent-card", str(tmp_path / "nothing")], capsys)
    assert_one_line_error(code, err, "nothing", "does not exist")


def shipped_ready() -> bool:
    """The shipped device is there and no training run is swapping it."""
    siblings = list(SHIPPED.parent.glob(f".{SHIPPED.name}.*"))
    return (SHIPPED / "configs" / "metadata.json").is_file() and not siblings


@pytest.mark.skipif(not shipped_ready(), reason="agents/lung_nodule_cnn is absent or in training")
def test_shipped_device_loads_with_a_stable_digest(capsys):
    model = load_bundle(SHIPPED)
    assert load_bundle(SHIPPED).digest == model.digest  # a second load: the same digest
    network, metadata = (
        hashlib.sha256(canonical_json(json.loads((SHIPPED / "configs" / f).read_text())))
        for f in ("network.json", "metadata.json")
    )
    weights = file_digest(SHIPPED / "models" / "model.safetensors")
    assert model.digest == bundle_digest(weights, network.hexdigest(), metadata.hexdigest())
    assert model.metadata["training_data"]["scanners"]
    code, out, err = run_cli(["agent-card", "lung_nodule_cnn"], capsys)
    assert code == 0, err
    assert "model card" in out and "Cancers of at least 4 mm: AUC" in out
    assert out.strip().splitlines()[-1] == f"digest: {model.digest}"


# ------------------------------------------------------------------ train
@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private project (SANDBOX_HOME) with the configs and reader profiles, no devices."""
    home = tmp_path / "home"
    home.mkdir()
    for d in ("conf", "scenarios"):
        shutil.copytree(ROOT / d, home / d, symlinks=True)
    shutil.copytree(ROOT / "agents" / "readers", home / "agents" / "readers")
    monkeypatch.setenv("SANDBOX_HOME", str(home))
    return home


def test_train_writes_a_device_the_sandbox_loads(home, capsys):
    opts = ["people=1200", "epochs=1", "size=8", "channels=[2]"]
    code, out, err = run_cli(["train", *opts], capsys)
    assert code == 0, err
    folder = home / "agents" / "lung_nodule_cnn"
    assert str(folder) in out and "held-out exam AUC" in out
    model = load_bundle(folder)
    recipe = yaml.safe_load((home / "conf" / "train" / "lung_nodule_cnn.yaml").read_text())
    td = model.metadata["training_data"]
    assert td["command"] == "sandbox train agent=lung_nodule_cnn " + " ".join(opts)
    assert td["seed"] == recipe["seed"] and td["people"] == 1200
    assert td["scanners"] == [s["model"] for s in recipe["scanners"]]
    assert model.input_shape == (1, 8, 8, 8)
    code, out, err = run_cli(["agent-card", "lung_nodule_cnn"], capsys)
    assert code == 0, err
    assert td["command"] in out


def test_a_heavier_resnet_device_trains_into_the_cache_and_runs(
    home, tmp_path, capsys, monkeypatch
):
    """The GPU-class recipe (a MONAI 3-D ResNet, store: cache), shrunk to seconds: it is built
    under SANDBOX_CACHE_DIR, not in the project, and a run finds it by name."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(cache))
    code, _, err = run_cli(["run", "policy=ai_triage", "agent=lung_nodule_resnet"], capsys)
    assert_one_line_error(code, err, "not built", "sandbox train agent=lung_nodule_resnet")
    opts = ["people=1200", "epochs=1", "size=16", "channels=[2,4,4,8]"]
    code, out, err = run_cli(["train", "agent=lung_nodule_resnet", *opts], capsys)
    assert code == 0, err
    folder = cache / "agents" / "lung_nodule_resnet"
    assert str(folder) in out and not (home / "agents" / "lung_nodule_resnet").exists()
    network = json.loads((folder / "configs" / "network.json").read_text())
    assert network["name"] == "ResNet" and network["args"]["block_inplanes"] == [2, 4, 4, 8]
    model = load_bundle(folder)
    assert model.input_shape == (1, 16, 16, 16)
    assert model.metadata["network"]["name"] == "ResNet"
    code, out, err = run_cli(["agent-card", "lung_nodule_resnet"], capsys)
    assert code == 0, err
    assert "monai.networks.nets" in out


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "bogus=1"], ["unknown key 'bogus'"]),
        (["train", "network=VGG"], ["network", "NoduleCNN or ResNet", "VGG"]),
        (["train", "store=elsewhere"], ["store", "elsewhere"]),
        (["train", "people=5"], ["people", "5"]),
        (["train", "agent=nobody"], ["no training recipe", "nobody"]),
        (["train", "people"], ["key=value", "people"]),
    ],
)
def test_train_bad_input(home, capsys, argv, needles):
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *needles)
    assert not (home / "agents" / "lung_nodule_cnn").exists()

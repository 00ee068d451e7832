"""Fixtures for AI-device tests: a tiny device trained once per session by the real recipe code.

The device is trained with :func:`sandbox.runners.train.train_device` on the training scanners of
``conf/train/lung_nodule_cnn.yaml``, but small (1,200 people, one epoch, 16^3 patches, two
stages of 2 and 4 channels): a few seconds on one CPU core. Its held-out set has about 35
malignant cases, enough for the shipped policies' operating points (a 0.95 target sensitivity
needs 20) and far too few for a 0.9999 target.

The folder lives at a fixed place under the session's base temporary folder, so test files
elsewhere in the tree (which cannot see this conftest) train it once between them: see
``tiny_device_folder`` in tests/workflow/test_ai_policies.py, tests/runners/test_train.py and
tests/test_cli_ai.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from sandbox.config import Scanner
from sandbox.configure import load
from sandbox.validate import build

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "conf" / "train" / "lung_nodule_cnn.yaml"
TINY = {"seed": 5, "people": 1200, "epochs": 1, "size": 16, "channels": (2, 4)}


def recipe_scanners() -> list[Scanner]:
    """The declared training scanners of the reference device's recipe."""
    data = yaml.safe_load(RECIPE.read_text())
    return [build(Scanner, s, f"scanners[{i}]") for i, s in enumerate(data["scanners"])]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a busy two-core machine, many small multi-threaded ops
    mostly wait for each other (ten times slower or worse)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_tiny(folder: Path, **overrides) -> dict:
    """Train a tiny device into ``folder`` with the reference recipe's scenario and scanners
    (on one thread: weights are bit-identical only for the same thread count)."""
    from sandbox.runners.train import train_device

    opts = {**TINY, **overrides}
    scenario = yaml.safe_load(RECIPE.read_text())["scenario"]
    cfg, _, _ = load([f"scenario={scenario}", "runtime=quiet"])
    with one_torch_thread():
        return train_device(
            cfg.scenario,
            recipe_scanners(),
            folder,
            opts["seed"],
            opts["people"],
            opts["epochs"],
            opts["size"],
            tuple(opts["channels"]),
            log=lambda _: None,
            command="tests: tiny device",
        )


@pytest.fixture(scope="session")
def tiny_device(tmp_path_factory) -> Path:
    """The tiny device's folder (trained on first use in the session, then shared)."""
    folder = tmp_path_factory.getbasetemp() / "tiny_device" / "tiny_nodule_cnn"
    if not folder.is_dir():
        train_tiny(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_device):
    """The tiny device, loaded and probed on the CPU."""
    from sandbox.agents.bundle import load_bundle

    return load_bundle(tiny_device, "cpu")

"""Helpers shared by test files: CLI checks and a tiny AI device trained by the real recipe code.

The tiny device is trained with :func:`sandbox.programmes.lung_ldct.train.train_device` on the training
scanners of ``conf/train/lung_nodule_cnn.yaml``, but small (1,200 people, one epoch, 16^3
patches, two stages of 2 and 4 channels): a few seconds on one CPU core. Its held-out set has
about 35 malignant cases, enough for the shipped policies' operating points (a 0.95 target
sensitivity needs 20) and far too few for a 0.9999 target. The ``tiny_device`` fixture
(tests/conftest.py) trains it once per session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import yaml

from sandbox.cli import main
from sandbox.compose import load
from sandbox.config import Scanner
from sandbox.typed import build

ROOT = Path(__file__).resolve().parents[1]

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
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_tiny(folder: Path, **overrides) -> dict:
    """Train a tiny device into ``folder`` with the reference recipe's scenario and scanners
    (on one thread: weights are bit-identical only for the same thread count)."""
    from sandbox.programmes.lung_ldct.train import train_device

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


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``sandbox argv``."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = int(e.code)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())


def write_runs(out: Path, seeds, policies, people: int) -> Path:
    """Run folders ``<policy>-<seed>`` under ``out`` (quiet runs of ``people`` people)."""
    for seed in seeds:
        for policy in policies:
            argv = ["run", "runtime=quiet", f"cohort.size={people}", f"runtime.out_dir={out}"]
            argv += [f"seed={seed}", f"policy={policy}", f"runtime.run_name={policy}-{seed}"]
            assert main(argv) == 0
    return out

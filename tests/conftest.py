"""Shared fixtures: configs composed through Hydra, and small runs computed once per session.

Runs are cached by their override list, so tests in different files that need the same small
run share one simulation. Every run is small (a few thousand people) so the default suite
stays fast on two CPU cores.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.agents.readers import ReaderProfile
from sandbox.compose import load
from sandbox.config import RunConfig
from sandbox.rng import declare_streams
from sandbox.runners.local import RunResult, simulate

# ad-hoc uniforms that tests draw for themselves live under test.*
declare_streams({"test.*": "draws made by the tests themselves"})

ROOT = Path(__file__).resolve().parents[1]

# The shared small run most property tests look at: two sites, double reading with arbitration.
SMALL = (
    "scenario=lung_ldct",
    "policy=soc_double_read",
    "cohort.size=3000",
    "seed=11",
    "runtime=quiet",
)

Loaded = tuple[RunConfig, dict[str, ReaderProfile], dict]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def load_config() -> Callable[..., Loaded]:
    """``load_config(*overrides)`` -> (RunConfig, reader profiles, raw mapping), via Hydra."""
    cache: dict[tuple[str, ...], Loaded] = {}

    def _load(*overrides: str) -> Loaded:
        key = tuple(overrides)
        if key not in cache:
            cache[key] = load(list(overrides))
        return cache[key]

    return _load


@pytest.fixture(scope="session")
def run_sim(load_config) -> Callable[..., RunResult]:
    """``run_sim(*overrides)`` -> RunResult of the serial runner, cached for the session."""
    cache: dict[tuple[str, ...], RunResult] = {}

    def _run(*overrides: str) -> RunResult:
        key = tuple(overrides)
        if key not in cache:
            cfg, profiles, _ = load_config(*overrides)
            cache[key] = simulate(cfg, profiles, progress=False)
        return cache[key]

    return _run


@pytest.fixture(scope="session")
def small_run(run_sim) -> RunResult:
    return run_sim(*SMALL)


@pytest.fixture(scope="session")
def small_cfg(load_config) -> RunConfig:
    return load_config(*SMALL)[0]


@pytest.fixture(scope="session")
def tiny_device(tmp_path_factory) -> Path:
    """The tiny AI device's folder (trained on first use in the session, then shared)."""
    import testkit

    folder = tmp_path_factory.getbasetemp() / "tiny_device" / "tiny_nodule_cnn"
    if not folder.is_dir():
        testkit.train_tiny(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_device):
    """The tiny device, loaded and probed on the CPU."""
    from sandbox.agents.bundle import load_bundle

    return load_bundle(tiny_device, "cpu")


@pytest.fixture(scope="module")
def ray_tmp():
    """Ray's session folder: short (its socket paths must fit 107 bytes), ours alone."""
    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

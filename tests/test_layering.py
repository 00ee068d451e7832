"""Layering and randomness rules, checked on the source (ast) and on what imports pull in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"
# one way down: a package may import only packages before it (and the shared foundations)
CHAIN = ("cohort", "disease", "imaging", "agents", "workflow", "outcomes")
FOUNDATIONS = {"config", "rng", "validate", "errors"}
FORBIDDEN = {"ray", "streamlit", "hydra", "omegaconf"}
# numpy.random names that build explicit generators; everything else there is global state
ALLOWED_NP_RANDOM = {
    "default_rng",
    "Generator",
    "SeedSequence",
    "BitGenerator",
    "PCG64",
    "PCG64DXSM",
    "Philox",
    "SFC64",
}


def modules(package: str | None = None) -> list[Path]:
    root = SANDBOX / package if package else SANDBOX
    return sorted(root.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Fully qualified names of every module imported by ``path`` (anywhere in the file)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("package", CHAIN)
def test_simulation_packages_import_no_ui_or_config_framework(package):
    for path in modules(package):
        bad = {m for m in imported(path) if m.split(".")[0] in FORBIDDEN}
        assert not bad, f"{path.relative_to(SANDBOX.parent)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", CHAIN)
def test_imports_go_one_way_down(package):
    allowed = set(CHAIN[: CHAIN.index(package) + 1]) | FOUNDATIONS
    for path in modules(package):
        for m in imported(path):
            parts = m.split(".")
            if parts[0] == "sandbox" and len(parts) > 1:
                assert parts[1] in allowed, f"{path.relative_to(SANDBOX.parent)} imports {m}"


def test_importing_the_simulation_pulls_in_no_hydra_ray_or_streamlit():
    code = (
        "import sys\n"
        "import sandbox.simulate, sandbox.runners.local, sandbox.outcomes, sandbox.workflow\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"


def _np_random_uses(tree: ast.AST) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        # np.random.X / numpy.random.X
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            inner = node.value
            if (
                inner.attr == "random"
                and isinstance(inner.value, ast.Name)
                and inner.value.id in ("np", "numpy")
            ):
                if node.attr not in ALLOWED_NP_RANDOM:
                    bad.append(f"np.random.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.ImportFrom) and node.module == "numpy.random":
            bad += [
                f"from numpy.random import {a.name}"
                for a in node.names
                if a.name not in ALLOWED_NP_RANDOM
            ]
        if isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if a.name == "random"]
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            bad.append("from random import ...")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("manual_seed", "seed")
            and isinstance(node.value, ast.Name)
            and node.value.id in ("torch", "np", "numpy")
        ):
            bad.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return bad


def test_no_global_randomness_anywhere_in_sandbox():
    problems = {}
    for path in modules():
        bad = _np_random_uses(ast.parse(path.read_text()))
        if bad:
            problems[str(path.relative_to(SANDBOX.parent))] = bad
    assert not problems, problems


def test_the_checker_catches_global_randomness():
    src = "import numpy as np\nimport random\nx = np.random.rand(3)\nnp.random.seed(1)\ng = np.random.default_rng(1)\n"
    found = _np_random_uses(ast.parse(src))
    assert (
        "np.random.rand (line 3)" in found
        and "np.random.seed (line 4)" in found
        and "import random" in found
    )
    assert not any("default_rng" in f for f in found)

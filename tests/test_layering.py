"""Layering and randomness rules, checked on the source (ast) and on what imports pull in."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"
# one way down: every module of the package has a rank, and imports only modules of its rank or
# below (longest matching prefix decides; the engine never imports a programme package)
RANKS = {
    "sandbox.errors": 0,
    "sandbox.typed": 0,
    "sandbox.rng": 0,
    "sandbox.config": 0,
    "sandbox.economics.config": 0,
    "sandbox.economics.distributions": 0,
    "sandbox.programmes.base": 1,
    "sandbox.agents": 2,
    "sandbox.workflow": 3,
    "sandbox.outcomes": 4,
    "sandbox.programmes": 5,  # the registry and the programme packages plug into the engine
    "sandbox.simulate": 6,
    "sandbox.compose": 6,
    "sandbox.runfolder": 6,
    "sandbox.runners": 7,
    "sandbox.comparison": 7,
    "sandbox.economics": 7,  # prices a run's tables; reads run folders
    "sandbox.validation": 8,
    "sandbox.sweep": 8,
    "sandbox.cli": 9,
    "sandbox": 9,  # sandbox/__init__.py
}
# upward imports allowed inside a function only (looking up the registry at call time)
LAZY_UPWARD = {
    ("sandbox.config", "sandbox.programmes"),
    ("sandbox.agents.nets", "sandbox.programmes"),
}
# the simulation core: no UI, cluster or config framework
CORE = (
    "sandbox.errors",
    "sandbox.typed",
    "sandbox.rng",
    "sandbox.config",
    "sandbox.programmes",
    "sandbox.agents",
    "sandbox.workflow",
    "sandbox.outcomes",
    "sandbox.simulate",
)
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


def modules() -> list[Path]:
    return sorted(SANDBOX.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SANDBOX.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in RANKS:
            return RANKS[".".join(parts[:i])]
    raise AssertionError(f"{module} has no rank in RANKS: give it one")


def imports(path: Path) -> list[tuple[str, bool]]:
    """(fully qualified module, imported at module level) for every import in ``path`` that
    runs (imports under ``if TYPE_CHECKING:`` are for type hints only and never run)."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    hints = {
        id(n)
        for t in tree.body
        if isinstance(t, ast.If) and "TYPE_CHECKING" in ast.unparse(t.test)
        for n in t.body
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        out += [(n, id(node) in top) for n in names]
    return out


def test_every_module_has_a_rank():
    for path in modules():
        rank(module_name(path))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SANDBOX.parent)))
def test_imports_go_one_way_down(path):
    me = module_name(path)
    for m, top_level in imports(path):
        if not m.startswith("sandbox.") or m == me:
            continue
        if rank(m) > rank(me):
            lazy_ok = not top_level and any(
                me.startswith(a) and m.startswith(b) for a, b in LAZY_UPWARD
            )
            assert lazy_ok, f"{me} (rank {rank(me)}) imports {m} (rank {rank(m)})"


def test_the_engine_knows_no_programme():
    for path in modules():
        me = module_name(path)
        if me.startswith(("sandbox.workflow", "sandbox.agents", "sandbox.outcomes")):
            for m, _ in imports(path):
                assert not m.startswith("sandbox.programmes.") or m == "sandbox.programmes.base", (
                    f"{me} imports {m}"
                )


def test_simulation_core_imports_no_ui_cluster_or_config_framework():
    for path in modules():
        if module_name(path).startswith(CORE):
            bad = {m for m, _ in imports(path) if m.split(".")[0] in FORBIDDEN}
            assert not bad, f"{path.relative_to(SANDBOX.parent)} imports {sorted(bad)}"


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


def test_nothing_lung_specific_outside_the_lung_programme():
    """Lung-RADS, nodules and PLCOm2012 belong to sandbox/programmes/lung_ldct/ alone."""
    pattern = re.compile(r"lung.?rads|nodule|plcom", re.IGNORECASE)
    lung = SANDBOX / "programmes" / "lung_ldct"
    found = [
        f"{path.relative_to(SANDBOX.parent)}:{i}"
        for path in modules()
        if lung not in path.parents
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found

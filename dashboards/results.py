"""The dashboard's view of its results root: run folders and sweeps, read safely.

The app reads only under the results root (``SANDBOX_RESULTS``, set by ``sandbox dashboard
--runs``; default ``runs``): a name typed or crafted (``..``, an absolute path, a symlink that
leads out) is refused, and nothing outside is listed or read. A broken or half-written folder is
listed as broken, with the reason, and everything else keeps working.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxInputError
from sandbox.runfolder import read_run


def root() -> Path:
    return Path(os.environ.get("SANDBOX_RESULTS", "runs")).resolve()


def inside(base: Path, name: str) -> Path:
    """``base/name`` if it stays inside ``base`` once resolved; one-line error otherwise."""
    if not name or os.path.isabs(name) or ".." in Path(name).parts or "\x00" in name:
        raise SandboxInputError(
            f"{name!r}: give a folder under the results root, not a path out of it"
        )
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise SandboxInputError(f"{name!r}: leads outside the results root (a symlink?)")
    return path


@dataclass
class Entry:
    name: str  # relative to the root
    path: Path
    kind: str  # "run" or "sweep"
    ok: bool
    why: str = ""
    manifest: dict | None = None


def _run_entry(base: Path, path: Path) -> Entry:
    name = str(path.relative_to(base))
    try:
        run = read_run(path)
    except SandboxInputError as e:
        return Entry(name, path, "run", False, str(e))
    return Entry(name, path, "run", True, manifest=run["manifest"])


def listing(base: Path | None = None) -> list[Entry]:
    """Run folders and sweeps under the root (hidden temporaries and links out skipped)."""
    base = base or root()
    if not base.is_dir():
        return []
    out: list[Entry] = []
    for p in sorted(base.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        if not _within(base, p):
            continue
        if p.name == "sweeps":
            for s in sorted(p.iterdir()):
                if s.is_dir() and not s.name.startswith(".") and _within(base, s):
                    out.append(_sweep_entry(base, s))
            continue
        out.append(_run_entry(base, p))
    return out


def _sweep_entry(base: Path, path: Path) -> Entry:
    name = str(path.relative_to(base))
    try:
        inside(base, name)
        man = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(man, dict):
            raise ValueError("manifest is not an object")
    except (OSError, ValueError, SandboxInputError) as e:
        return Entry(name, path, "sweep", False, f"no readable manifest.json ({type(e).__name__})")
    return Entry(name, path, "sweep", True, manifest=man)


def sweep_runs(base: Path, sweep: Entry) -> list[Entry]:
    runs = sweep.path / "runs"
    if not runs.is_dir():
        return []
    return [
        _run_entry(base, p)
        for p in sorted(runs.iterdir())
        if p.is_dir() and not p.name.startswith(".") and _within(base, p)
    ]


def complete_runs(base: Path) -> list[Entry]:
    """Every complete run folder under the root: single runs, then the runs of each sweep."""
    entries = listing(base)
    runs = [e for e in entries if e.kind == "run" and e.ok]
    for s in (e for e in entries if e.kind == "sweep" and e.ok):
        runs += [r for r in sweep_runs(base, s) if r.ok]
    return runs


def runs_or_stop(base: Path) -> list[Entry]:
    """The complete runs under the root; the page says so and stops if there are none."""
    import streamlit as st

    runs = complete_runs(base)
    if not runs:
        st.info("No complete run folders under the results root yet.")
        st.stop()
    return runs


def config_names(group: str) -> list[str]:
    """The choices of a config group (``scenario``, ``policy``): its files under conf/."""
    from sandbox.compose import project_root

    return sorted(p.stem for p in (project_root() / "conf" / group).glob("*.yaml"))


def default_choice(group: str) -> str | None:
    """The choice of a config group that conf/config.yaml's defaults make (``lung_ldct`` for
    ``scenario``), or None."""
    import yaml

    from sandbox.compose import project_root

    data = yaml.safe_load((project_root() / "conf" / "config.yaml").read_text()) or {}
    for entry in data.get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return str(entry[group])
    return None


@functools.cache
def scenario_agent(scenario: str) -> str:
    """The AI device a run of ``scenario`` uses unless told otherwise (its ``agent:``, else
    conf/config.yaml's); composed once per scenario, not at every rerun of a page."""
    from sandbox.compose import load

    return load([f"scenario={scenario}", "runtime=quiet"])[0].agent


def device_index(devices: list[str], scenario: str) -> int:
    """Where ``scenario``'s own device is among ``devices`` (0 when it is not there)."""
    agent = scenario_agent(scenario)
    return devices.index(agent) if agent in devices else 0


def device_names() -> list[str]:
    """The AI device folders under agents/ (the only devices the app loads)."""
    from sandbox.compose import project_root

    agents = project_root() / "agents"
    return sorted(p.name for p in agents.iterdir() if (p / "configs" / "metadata.json").is_file())


def definition(name: str) -> str:
    """A metric's definition (as in docs/metrics.md), for the hover help of every number."""
    from sandbox.outcomes.metrics import metric_catalogue
    from sandbox.programmes import PROGRAMMES
    from sandbox.whatif import DESCRIPTIONS

    for programme in PROGRAMMES.values():
        m = metric_catalogue(programme).get(name)
        if m is not None:
            return f"{m.description}."
    return f"{DESCRIPTIONS[name]}." if name in DESCRIPTIONS else ""


def _within(base: Path, path: Path) -> bool:
    try:
        inside(base, str(path.relative_to(base)))
    except SandboxInputError:
        return False
    return True

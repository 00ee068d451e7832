"""Sweeps: many runs from one spec, into one folder with one table.

A sweep is expanded into runs before anything starts (Hydra's sweep syntax on the command line,
``policy=a,b seed=range(1,11)``, crossed; or a sweep file with crossed ``axes``, ``zip``-ped axes
and fixed ``overrides``); every run is composed and validated then, so a bad axis or value fails
in one line with nothing written. The sweep folder holds:

- ``sweep.yaml``: the expanded spec (name, base overrides, axes, every run's name, overrides and
  axis values), written first; ``--resume`` reads it back;
- ``runs/<run>/``: one ordinary run folder per run (the format ``sandbox run`` writes, written
  whole or not at all);
- ``units/<run>/sites-<i>-<j>/``: the finished units of work of runs not yet written (Parquet
  and JSON), so that a resumed sweep loses only unfinished units; removed as each run is
  written;
- ``metrics.parquet``: every run's metrics with the run name and the axes as columns, and
  ``manifest.json`` (status, runs done and failed, the executor, timings), both rewritten
  whenever the sweep stops.

docs/sweeps.md documents the files; :mod:`sandbox.runners.distributed` runs the units.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sandbox.compose import load, read_yaml_text
from sandbox.config import NAME, resolved
from sandbox.errors import SandboxInputError
from sandbox.runfolder import claim_run_folder, slug, temporary_name
from sandbox.typed import build

SWEEP_FILE = "sweep.yaml"
RUNS = "runs"
UNITS = "units"  # finished units of work of runs not yet written
#: runtime keys that would change where or how runs are written, not what they compute
NOT_AN_AXIS = ("runtime.run_name", "runtime.out_dir", "runtime.ray")


# ---------------------------------------------------------------- the spec
@dataclass(frozen=True)
class SweepFile:
    """The keys of a sweep file (``sandbox sweep --spec FILE``)."""

    name: str = ""
    overrides: tuple[str, ...] = ()  # fixed for every run
    axes: dict[str, Any] = field(default_factory=dict)  # crossed: key -> list or sweep string
    zip: dict[str, Any] = field(default_factory=dict)  # paired by position, crossed with axes
    description: str = ""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    overrides: tuple[str, ...]
    axes: dict[str, str]


@dataclass(frozen=True)
class Plan:
    name: str
    base: tuple[str, ...]
    axes: tuple[str, ...]
    runs: tuple[PlannedRun, ...]
    description: str = ""

    def with_overrides(self, extra: Sequence[str], name: str | None = None) -> Plan:
        """The plan with ``extra`` fixed overrides after its own (and another name)."""
        from dataclasses import replace

        extra = tuple(extra)
        for o in extra:
            if o.split("=", 1)[0] == "runtime.run_name":
                raise SandboxInputError("runtime.run_name: a sweep names its runs (use --name)")
        runs = tuple(
            replace(r, overrides=(*self.base, *extra, *r.overrides[len(self.base) :]))
            for r in self.runs
        )
        return replace(self, name=name or self.name, base=(*self.base, *extra), runs=runs)


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _values(key: str, text: str, where: str) -> list[str]:
    """The values of one axis given as a Hydra sweep string (``a,b``, ``range(1,11)``, ...)."""
    from hydra.errors import HydraException

    try:
        (o,) = _parser().parse_overrides([f"{key}={text}"])
        if not o.is_sweep_override():
            return [o.get_value_element_as_str()]
        return list(o.sweep_string_iterator())
    except HydraException as e:
        if "ConfigLoader is not set" in str(e):
            raise SandboxInputError(
                f"{where}{key}: glob() sweeps are not supported; list the values"
            ) from e
        raise SandboxInputError(f"{where}{key}={text}: {' '.join(str(e).split())[:200]}") from e


def _axis(key: str, value: Any, where: str, unique: bool = True) -> list[str]:
    if isinstance(value, str):
        vals = _values(key, value, where)
    elif isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        vals = [v if isinstance(v, str) else json.dumps(v) for v in value]
    else:
        raise SandboxInputError(
            f"{where}{key}: an axis is a list of values or a sweep string like range(1,11)"
        )
    if not vals:
        raise SandboxInputError(f"{where}{key}: the axis has no values (an empty range?)")
    if unique and len(set(vals)) != len(vals):
        raise SandboxInputError(f"{where}{key}: a value is repeated ({', '.join(vals)})")
    return vals


def _check_key(key: str, where: str) -> None:
    if any(key == k or key.startswith(k + ".") for k in NOT_AN_AXIS):
        raise SandboxInputError(
            f"{where}{key}: not a sweep axis (the sweep names and places its runs)"
        )


def plan_from_overrides(overrides: Sequence[str], name: str = "") -> Plan:
    """A plan from command-line overrides: every sweep override is an axis, crossed."""
    from hydra.errors import HydraException

    try:
        parsed = _parser().parse_overrides(list(overrides))
    except HydraException as e:
        raise SandboxInputError(f"sweep overrides: {' '.join(str(e).split())[:200]}") from e
    base, axes = [], {}
    for text, o in zip(overrides, parsed, strict=True):
        key = o.get_key_element()
        if o.is_sweep_override():
            _check_key(key, "sweep axis ")
            axes[key] = _axis(key, text.split("=", 1)[1], "sweep axis ")
        else:
            if key == "runtime.run_name":
                raise SandboxInputError("runtime.run_name: a sweep names its runs (use --name)")
            base.append(text)
    return expand_plan(name, base, axes, {}, "")


def load_sweep_file(path: str | Path) -> Plan:
    """A plan from a sweep file (docs/sweeps.md); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise SandboxInputError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(read_yaml_text(path))
    except yaml.YAMLError as e:
        raise SandboxInputError(f"{path}: malformed YAML ({' '.join(str(e).split())[:200]})") from e
    if isinstance(data, dict) and isinstance(data.get("overrides"), str):
        data["overrides"] = [data["overrides"]]
    where = f"{path}: "
    try:
        spec = build(SweepFile, data, "")
    except SandboxInputError as e:
        raise SandboxInputError(f"{where}{e}") from e
    axes = {}
    for key, value in spec.axes.items():
        _check_key(key, f"{where}axes.")
        axes[key] = _axis(key, value, f"{where}axes.")
    zipped = {}
    for key, value in spec.zip.items():
        _check_key(key, f"{where}zip.")
        zipped[key] = _axis(key, value, f"{where}zip.", unique=False)
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise SandboxInputError(
            f"{where}zip: every zipped axis needs as many values ({sorted(lengths)})"
        )
    rows = list(zip(*zipped.values(), strict=True))
    if len(set(rows)) != len(rows):
        raise SandboxInputError(f"{where}zip: a combination of values is repeated")
    both = set(axes) & set(zipped)
    if both:
        raise SandboxInputError(f"{where}{sorted(both)[0]}: in both axes and zip")
    for o in spec.overrides:
        if "=" not in o:
            raise SandboxInputError(f"{where}overrides: {o!r} is not key=value")
    return expand_plan(spec.name or path.stem, list(spec.overrides), axes, zipped, spec.description)


def expand_plan(
    name: str,
    base: list[str],
    axes: dict[str, list[str]],
    zipped: dict[str, list[str]],
    description: str,
) -> Plan:
    if not axes and not zipped:
        raise SandboxInputError(
            "a sweep needs at least one axis (e.g. seed=range(1,11) or policy=a,b); "
            "one run is `sandbox run`"
        )
    crossed = [[(k, v) for v in vals] for k, vals in axes.items()]
    if zipped:
        n = len(next(iter(zipped.values())))
        crossed.append([tuple((k, vals[i]) for k, vals in zipped.items()) for i in range(n)])
    runs = []
    for i, combo in enumerate(itertools.product(*crossed)):
        values: dict[str, str] = {}
        for part in combo:
            for k, v in part if isinstance(part[0], tuple) else (part,):
                values[k] = v
        label = "_".join(f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in values.items())
        runs.append(
            PlannedRun(
                f"{i:03d}-{slug(label)}"[:120],
                (*base, *(f"{k}={v}" for k, v in values.items())),
                values,
            )
        )
    keys = (*axes, *zipped)
    if not name:
        name = f"sweep-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    if not NAME.fullmatch(name):
        raise SandboxInputError(f"sweep name {name!r}: letters, digits, . _ - only")
    return Plan(name, tuple(base), keys, tuple(runs), description)


def plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "description": plan.description,
        "overrides": list(plan.base),
        "axes": list(plan.axes),
        "runs": [
            {"name": r.name, "overrides": list(r.overrides), "axes": dict(r.axes)}
            for r in plan.runs
        ],
    }


def read_plan(folder: Path) -> Plan:
    """The plan stored in a sweep folder (for ``--resume``); one line if it is not one."""
    f = folder / SWEEP_FILE
    if not folder.is_dir() or not f.is_file():
        raise SandboxInputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})")
    try:
        data = yaml.safe_load(read_yaml_text(f))
        runs = tuple(
            PlannedRun(
                str(r["name"]),
                tuple(map(str, r["overrides"])),
                {str(k): str(v) for k, v in r["axes"].items()},
            )
            for r in data["runs"]
        )
        plan = Plan(
            str(data["name"]),
            tuple(map(str, data["overrides"])),
            tuple(map(str, data["axes"])),
            runs,
            str(data.get("description", "")),
        )
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise SandboxInputError(
            f"{f}: not a sweep file written by sandbox sweep ({type(e).__name__})"
        ) from e
    bad = next((r.name for r in plan.runs if not NAME.fullmatch(r.name)), None)
    if bad is not None or not plan.runs:
        raise SandboxInputError(f"{f}: run name {bad!r} is not a plain folder name")
    return plan


# ---------------------------------------------------------------- composing the runs
@dataclass
class Job:
    """One run of a sweep, composed and validated."""

    run: PlannedRun
    cfg: Any  # RunConfig with runtime.run_name set and out_dir = the sweep's runs/
    profiles: dict[str, Any]


def compose_jobs(plan: Plan, runs_dir: Path) -> list[Job]:
    """Compose and validate every run (one line naming the run on a bad one)."""
    jobs = []
    for r in plan.runs:
        overrides = [*r.overrides, f"runtime.out_dir={runs_dir}", f"runtime.run_name={r.name}"]
        try:
            cfg, profiles, _ = load(overrides)
        except SandboxInputError as e:
            axes = ", ".join(f"{k}={v}" for k, v in r.axes.items())
            raise SandboxInputError(f"sweep run {r.name} ({axes}): {e}") from e
        jobs.append(Job(r, cfg, profiles))
    return jobs


# ---------------------------------------------------------------- the folder
def done(runs_dir: Path, name: str) -> bool:
    """A run folder is finished iff it holds a manifest (folders are renamed in whole)."""
    return (runs_dir / name / "manifest.json").is_file()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = temporary_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def start_folder(out_dir: str, plan: Plan) -> Path:
    """Claim ``out_dir/sweeps/<name>`` and write its ``sweep.yaml`` (before any work)."""
    sweeps = Path(out_dir) / "sweeps"
    folder = claim_run_folder(sweeps, plan.name)
    (folder / RUNS).mkdir()
    write_atomic(folder / SWEEP_FILE, yaml.safe_dump(plan_dict(plan), sort_keys=False).encode())
    return folder


def check_resumable(folder: Path, jobs: list[Job]) -> None:
    """Refuse to resume if a finished run's config differs from what composing it gives now
    (the scenario or policy files changed since the sweep started)."""
    for j in jobs:
        f = folder / RUNS / j.run.name / "config.yaml"
        if not done(folder / RUNS, j.run.name) or not f.is_file():
            continue
        try:
            old = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise SandboxInputError(f"{f}: unreadable ({type(e).__name__})") from e
        now = resolved(j.cfg)
        if not isinstance(old, dict) or {k: v for k, v in old.items() if k != "runtime"} != {
            k: v for k, v in now.items() if k != "runtime"
        }:
            raise SandboxInputError(
                f"{f}: the run's config differs from what its overrides compose to now (a scenario, "
                "policy or reader file changed since the sweep started); start a new sweep"
            )


def _typed(values: list[str]) -> pl.Series:
    for cast in (int, float):
        try:
            return pl.Series([cast(v) for v in values])
        except ValueError:
            continue
    return pl.Series(values, dtype=pl.Utf8)


def combine(folder: Path, plan: Plan) -> pl.DataFrame:
    """Every finished run's metrics, with ``run`` and the axes as columns (written atomically
    to ``metrics.parquet``)."""
    frames = []
    finished = [r for r in plan.runs if done(folder / RUNS, r.name)]
    for r in finished:
        m = pl.read_parquet(folder / RUNS / r.name / "metrics.parquet")
        frames.append(m.with_columns(pl.lit(r.name).alias("run")))
    if not frames:
        return pl.DataFrame()
    table = pl.concat(frames)
    extra = {}
    for key in plan.axes:
        per_run = dict(
            zip(
                [r.name for r in finished],
                _typed([r.axes[key] for r in finished]).to_list(),
                strict=True,
            )
        )
        if key in table.columns:  # seed, policy: already a column; keep it if it says the same
            first = table.group_by("run").agg(pl.col(key).first().cast(pl.Utf8))
            same = all(str(per_run[r]) == v for r, v in first.iter_rows())
            if same:
                continue
            key = f"axis.{key}"
        extra[key] = per_run
    table = table.with_columns(
        pl.col("run").replace_strict(list(v), list(v.values())).alias(k) for k, v in extra.items()
    )
    first = ["run", *extra]
    table = table.select(*first, *(c for c in table.columns if c not in first))
    tmp = temporary_name(folder / "metrics.parquet")
    try:
        table.write_parquet(tmp)
        os.replace(tmp, folder / "metrics.parquet")
    finally:
        tmp.unlink(missing_ok=True)
    return table


def write_manifest(folder: Path, plan: Plan, status: str, info: dict[str, Any]) -> dict[str, Any]:
    finished = [r.name for r in plan.runs if done(folder / RUNS, r.name)]
    man = {
        "name": plan.name,
        "status": status,
        "runs": len(plan.runs),
        "finished": len(finished),
        "unfinished": [r.name for r in plan.runs if r.name not in finished],
        "axes": list(plan.axes),
        "updated_utc": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "command": sys.argv,
        "python": platform.python_version(),
        "host": platform.node(),
        "resume": f"sandbox sweep --resume {folder}",
        **info,
    }
    write_atomic(folder / "manifest.json", json.dumps(man, indent=2, default=str).encode())
    return man


def clear_empty_claims(runs_dir: Path) -> None:
    """Remove empty run-folder claims and half-written units left by a sweep that was killed
    outright (units of this host's dead processes only)."""
    from sandbox.runfolder import remove_stale_temporaries

    for p in runs_dir.iterdir():
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    units = runs_dir.parent / UNITS
    if units.is_dir():
        for p in units.iterdir():
            if p.is_dir():
                remove_stale_temporaries(p)


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)

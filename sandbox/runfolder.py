"""Run folders: written to a temporary sibling and renamed when complete; read back checked."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sandbox.errors import SandboxInputError

PACKAGES = (
    "numpy",
    "scipy",
    "simpy",
    "polars",
    "pyarrow",
    "hydra-core",
    "torch",
    "monai",
    "screening-sandbox",
)


def code_version() -> str:
    """Git commit of the project (with '+dirty' for local changes), else the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if rev.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
            )
            return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return _version("screening-sandbox")


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def manifest(
    seed: int,
    command: list[str],
    overrides: list[str],
    timings: dict[str, float],
    extra: dict[str, Any],
) -> dict[str, Any]:
    return {
        "seed": seed,
        "code_version": code_version(),
        "command": " ".join(command),
        "overrides": overrides,
        # the same overrides give the same results; a new folder name avoids overwriting
        "repeat": " ".join(
            ["sandbox run", *(o for o in overrides if not o.startswith("runtime.run_name="))]
        ),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": next((a["device"] for a in extra.get("agents", {}).values()), "cpu"),
        "packages": {p: _version(p) for p in PACKAGES},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        **extra,
    }


def reader_profiles(profiles: dict[str, Any]) -> dict[str, Any]:
    """The reader profiles a run used: contents and a digest of each (canonical JSON)."""
    from sandbox.typed import to_dict

    out = {}
    for name, profile in sorted(profiles.items()):
        body = to_dict(profile)
        blob = json.dumps(body, sort_keys=True).encode()
        out[name] = {"sha256": hashlib.sha256(blob).hexdigest(), "profile": body}
    return out


def write_run(
    folder: Path, config: dict[str, Any], man: dict[str, Any], tables: dict[str, pl.DataFrame]
) -> Path:
    """Write everything to ``folder.tmp-<pid>`` then rename to ``folder``; nothing half-written remains."""
    folder = Path(folder)
    if folder.exists():
        raise SandboxInputError(
            f"run folder {folder} already exists; choose another runtime.run_name"
        )
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=False)
    except OSError as e:
        raise SandboxInputError(
            f"config key 'runtime.out_dir': cannot create a run folder in {folder.parent} ({e.strerror})"
        ) from e
    try:
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name, frame in tables.items():
            frame.write_parquet(tmp / f"{name}.parquet")
        digests = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp.iterdir())
        }
        man = {**man, "file_sha256": digests}
        (tmp / "manifest.json").write_text(json.dumps(man, indent=2, default=str))
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_run(folder: str | Path) -> dict[str, Any]:
    """Manifest, config and metrics of a run folder; one-line error if it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SandboxInputError(f"{folder}: not a run folder (no such directory)")
    for name in ("manifest.json", "config.yaml", "metrics.parquet"):
        if not (folder / name).is_file():
            raise SandboxInputError(f"{folder}: not a complete run folder ({name} is missing)")
    try:
        man = json.loads((folder / "manifest.json").read_text())
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        metrics = pl.read_parquet(folder / "metrics.parquet")
    except (json.JSONDecodeError, yaml.YAMLError, OSError, pl.exceptions.PolarsError) as e:
        raise SandboxInputError(
            f"{folder}: unreadable run folder ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from e
    missing = {"metric", "value", "lo", "hi", "site", "subgroup", "round"} - set(metrics.columns)
    if missing:
        raise SandboxInputError(f"{folder}/metrics.parquet: missing columns {sorted(missing)}")
    return {"folder": folder, "manifest": man, "config": cfg, "metrics": metrics}

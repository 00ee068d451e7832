"""Run folders: written to a temporary sibling and renamed when complete; read back checked."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
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


_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_TMP = re.compile(r"^\..+\.tmp-(.+)-(\d+)$")


def slug(text: str) -> str:
    """``text`` as a plain folder name: letters, digits, ``.``, ``_`` and ``-`` only."""
    out = _SLUG.sub("_", text).strip("._-")
    return out[:120] or "run"


def claim_run_folder(out_dir: str | Path, name: str) -> Path:
    """Create ``out_dir/name`` exclusively (an empty claim the finished run replaces).

    Fails in one line, before any work, if the name is not a plain folder name, the folder
    exists (another run has it), or ``out_dir`` cannot be written. Temporary folders of dead
    processes in ``out_dir`` are removed first.
    """
    if name != slug(name) or name in (".", ".."):
        raise SandboxInputError(
            f"config key 'runtime.run_name': {name!r} must be a plain folder name (letters, digits, . _ -)"
        )
    root = writable_folder(Path(out_dir), "runtime.out_dir")
    remove_stale_temporaries(root)
    folder = root / name
    if folder.resolve().parent != root.resolve():
        raise SandboxInputError(f"config key 'runtime.run_name': {name!r} leaves {root}")
    try:
        folder.mkdir()
    except FileExistsError as e:
        raise SandboxInputError(
            f"run folder {folder} already exists; choose another runtime.run_name"
        ) from e
    except OSError as e:
        raise SandboxInputError(
            f"config key 'runtime.out_dir': cannot create a run folder in {root} ({e.strerror or e})"
        ) from e
    return folder


def release_run_folder(folder: Path) -> None:
    """Give up a claim that was never filled (the run failed or was interrupted)."""
    try:
        folder.rmdir()  # only if still the empty claim
    except OSError:
        pass


def remove_stale_temporaries(root: Path) -> None:
    """Remove ``.<name>.tmp-<host>-<pid>`` folders of this host whose process is gone (a run
    killed while writing); another host's are left alone (its process ids are not ours)."""
    for p in root.iterdir():
        m = _TMP.match(p.name)
        if m and m.group(1) == _host() and p.is_dir() and not _alive(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)


def _host() -> str:
    return slug(platform.node()) or "host"


def temporary_name(folder: Path) -> Path:
    """The hidden sibling a run folder is written into: ``.<name>.tmp-<host>-<pid>``."""
    return folder.with_name(f".{folder.name}.tmp-{_host()}-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_score_cache(cfg: Any) -> None:
    """One line, before any work, if an AI run's score cache cannot be used."""
    if cfg.policy.role == "none" or not cfg.runtime.score_cache:
        return
    writable_folder(Path(cfg.runtime.score_cache), "runtime.score_cache")


def writable_folder(folder: Path, key: str) -> Path:
    """``folder``, created if needed; one line naming config ``key`` if it cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise SandboxInputError(f"config key '{key}': {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SandboxInputError(
            f"config key '{key}': cannot create {folder} ({e.strerror or e})"
        ) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SandboxInputError(f"config key '{key}': {folder} is not a writable folder")
    return folder


def write_run(
    folder: Path, config: dict[str, Any], man: dict[str, Any], tables: dict[str, pl.DataFrame]
) -> Path:
    """Write everything to :func:`temporary_name` beside ``folder``, then rename it onto ``folder``
    (absent, or the empty claim of :func:`claim_run_folder`); nothing half-written remains."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SandboxInputError(
            f"run folder {folder} already exists; choose another runtime.run_name"
        )
    tmp = temporary_name(folder)
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
        man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        metrics = pl.read_parquet(folder / "metrics.parquet")
    except (
        json.JSONDecodeError,
        yaml.YAMLError,
        OSError,
        UnicodeDecodeError,
        RecursionError,
        pl.exceptions.PolarsError,
    ) as e:
        raise SandboxInputError(
            f"{folder}: unreadable run folder ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from e
    if not isinstance(man, dict):
        raise SandboxInputError(f"{folder}/manifest.json: not a JSON object")
    if not isinstance(cfg, dict):
        raise SandboxInputError(f"{folder}/config.yaml: not a mapping")
    want = {"metric": pl.Utf8, "value": pl.Float64, "lo": pl.Float64, "hi": pl.Float64}
    want |= {"site": pl.Utf8, "subgroup": pl.Utf8, "round": pl.Utf8}
    missing = set(want) - set(metrics.columns)
    if missing:
        raise SandboxInputError(f"{folder}/metrics.parquet: missing columns {sorted(missing)}")
    wrong = [c for c, t in want.items() if metrics.schema[c] != t]
    if wrong:
        raise SandboxInputError(
            f"{folder}/metrics.parquet: column {wrong[0]} is {metrics.schema[wrong[0]]}, not {want[wrong[0]]}"
        )
    return {"folder": folder, "manifest": man, "config": cfg, "metrics": metrics}

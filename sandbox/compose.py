"""The Hydra boundary: compose conf/ and scenarios/, then validate into frozen objects.

Only this module (and the CLI) touch Hydra/OmegaConf; everything below receives a
:class:`~sandbox.config.RunConfig`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from sandbox.agents.readers import ReaderProfile
from sandbox.config import RunConfig, run_config
from sandbox.errors import SandboxInputError
from sandbox.typed import build, to_dict


def project_root() -> Path:
    """The folder holding conf/, scenarios/ and agents/ (SANDBOX_HOME overrides)."""
    env = os.environ.get("SANDBOX_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def compose(overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Compose the run config with Hydra; returns (plain mapping, scenario name)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    conf = project_root() / "conf"
    check_config_files(project_root())
    try:
        with initialize_config_dir(str(conf), version_base=None):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
            choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
            with open_dict(cfg):
                del cfg["hydra"]
            data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise SandboxInputError(_hydra_message(e)) from e
    except yaml.YAMLError as e:  # pragma: no cover - hydra wraps most of these
        raise SandboxInputError(f"malformed YAML: {' '.join(str(e).split())}") from e
    return data, str(choices.get("scenario"))


def check_config_files(root: Path) -> None:
    """Refuse, in one line and before Hydra reads them, config files that are not UTF-8 text or
    that use YAML anchors and aliases (a few nested aliases expand to billions of nodes)."""
    for folder in (root / "conf", root / "scenarios", root / "agents" / "readers"):
        for path in sorted(folder.rglob("*.yaml")):
            read_yaml_text(path)


def read_yaml_text(path: Path) -> str:
    """The text of one YAML file, refused in one line if it is not UTF-8 or uses anchors and
    aliases (:func:`check_config_files`)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SandboxInputError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except OSError as e:
        raise SandboxInputError(f"{path}: cannot be read ({e.strerror})") from e
    if "&" not in text and "*" not in text:
        return text  # no anchors or aliases possible: skip tokenising
    try:
        aliased = any(isinstance(t, yaml.AliasToken | yaml.AnchorToken) for t in yaml.scan(text))
    except yaml.YAMLError as e:
        raise SandboxInputError(f"{path}: malformed YAML ({' '.join(str(e).split())})") from e
    if aliased:
        raise SandboxInputError(
            f"{path}: YAML anchors and aliases (& and *) are not allowed in config files"
        )
    return text


def _hydra_message(e: Exception) -> str:
    msg = " ".join(str(e).split())
    if "Could not find 'scenario/" in msg or "Could not load 'scenario/" in msg:
        return f"unknown scenario: {msg} (scenarios live in {project_root() / 'scenarios'})"
    if "Could not find 'policy/" in msg or "Could not load 'policy/" in msg:
        return f"unknown policy: {msg} (policies live in {project_root() / 'conf' / 'policy'})"
    return msg


def load_reader_profiles(names: set[str] | None = None) -> dict[str, ReaderProfile]:
    """Reader profiles from agents/readers/*.yaml, validated."""
    folder = project_root() / "agents" / "readers"
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        if names is not None and path.stem not in names:
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise SandboxInputError(f"{path}: malformed YAML ({' '.join(str(e).split())})") from e
        try:
            out[path.stem] = build(ReaderProfile, data, "")
        except SandboxInputError as e:
            raise SandboxInputError(f"{path}: {e}") from e
    return out


def load(
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[RunConfig, dict[str, ReaderProfile], dict[str, Any]]:
    """Compose, validate and resolve reader profiles: (config, profiles, raw mapping)."""
    data, scenario = compose(overrides)
    cfg = run_config(data, scenario)
    wanted = {name for s in cfg.scenario.sites for name in s.readers}
    wanted |= {name for c in cfg.drift.staffing_changes for name in c.readers}
    profiles = load_reader_profiles(wanted)
    teams = [(f"sites[{i}]", s.readers) for i, s in enumerate(cfg.scenario.sites)]
    teams += [
        (f"drift.staffing_changes[{i}]", c.readers)
        for i, c in enumerate(cfg.drift.staffing_changes)
    ]
    for where, readers in teams:
        for name in readers:
            if name not in profiles:
                raise SandboxInputError(
                    f"config key '{where}.readers.{name}': no reader profile {name}.yaml in {project_root() / 'agents' / 'readers'}"
                )
    return cfg, scenario_profiles(cfg, profiles), data


def scenario_profiles(
    cfg: RunConfig, profiles: dict[str, ReaderProfile]
) -> dict[str, ReaderProfile]:
    """``profiles`` with the keys the scenario sets (``reader_profiles: {profile: {key:
    value}}``, e.g. a calibrated detection c50) replaced and validated; the same profiles when
    it sets none. Setting the same values twice changes nothing."""
    out = dict(profiles)
    fields = {f.name for f in dataclasses.fields(ReaderProfile)} - {"name", "description"}
    for name, values in cfg.scenario.reader_profiles.items():
        where = f"reader_profiles.{name}"
        if name not in out:
            raise SandboxInputError(
                f"config key '{where}': no site reads with profile {name} "
                f"(the scenario's readers: {', '.join(sorted(out)) or 'none'})"
            )
        for key in values:
            if key not in fields:
                raise SandboxInputError(
                    f"config key '{where}.{key}': not a key of a reader profile "
                    f"({', '.join(sorted(fields))})"
                )
        out[name] = build(
            ReaderProfile, {**to_dict(out[name]), **dict(values)}, f"reader_profiles.{name}"
        )
    return out

"""Loading the AI device a policy needs, once per run, before any work starts."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.config import RunConfig
from sandbox.errors import SandboxInputError
from sandbox.programmes import programme_for
from sandbox.typed import to_dict


@dataclass
class DeviceSetup:
    scorer: Any  # sandbox.agents.inference.DeviceScorer
    threshold: float
    manifest: dict[str, Any]
    previous_threads: int = 0  # torch threads to restore after the run (0: unchanged)

    def close(self) -> None:
        """Restore the process's torch thread count."""
        if self.previous_threads:
            import torch

            torch.set_num_threads(self.previous_threads)


def user_agents_dir() -> Path:
    """Where devices too large to ship are built (``sandbox train`` with ``store: cache``):
    ``$SANDBOX_CACHE_DIR/agents``, else ``$XDG_CACHE_HOME/sandbox/agents``, else
    ``~/.cache/sandbox/agents``."""
    root = os.environ.get("SANDBOX_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "agents"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "sandbox" / "agents"


def agent_folder(name: str) -> Path:
    """A device folder: a name under the project's agents/ folder, then under
    :func:`user_agents_dir`, or a path."""
    from sandbox.compose import project_root

    if name and "/" not in name:
        for root in (project_root() / "agents", user_agents_dir()):
            if (root / name).is_dir():
                return root / name
        recipe = project_root() / "conf" / "train" / f"{name}.yaml"
        if recipe.is_file() and not Path(name).expanduser().exists():
            raise SandboxInputError(
                f"agent '{name}' is not built on this machine (not in agents/ nor in "
                f"{user_agents_dir()}): `sandbox train agent={name}` builds it from {recipe}"
            )
    return Path(name).expanduser()


def pick_device(setting: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cohort_key(cfg: RunConfig) -> str:
    """Identifies what the images of a cohort show: the seed, the image-relevant part of the
    scenario (the programme says which: not staffing, capacity or policy) and the renderer's
    version. Person ids name the same people, and images the same pixels, only within one."""
    programme = programme_for(cfg.scenario)
    what = {
        "seed": cfg.seed,
        "programme": programme.name,
        "scenario": to_dict(programme.image_relevant()),
        "renderer": programme.renderer_version(),
    }
    if cfg.drift.population_changes:  # who a population shift brings in
        what["arrivals"] = to_dict(cfg.drift.population_changes)
    blob = json.dumps(
        what,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


RENDER_BUDGET_BYTES = 4 * 2**30
"""Most memory one render batch may take (refused before any work beyond it)."""


def check_device_reads(model: Any, programme: Any, batch_size: int = 1) -> None:
    """One line, before any work, if the device does not read the images the programme renders
    or one batch of them would not fit in :data:`RENDER_BUDGET_BYTES`."""
    where = f"{model.folder}/configs/metadata.json"
    units = model.metadata.get("input", {}).get("units")
    dims = len(model.input_shape) - 1
    if units != programme.image_units or dims != programme.image_spatial_dims:
        raise SandboxInputError(
            f"{where}: input is {dims}-D in {units}, but programme "
            f"'{programme.name}' renders {programme.image_spatial_dims}-D images in {programme.image_units}"
        )
    problem = programme.check_input_shape(tuple(model.input_shape))
    if problem:
        raise SandboxInputError(f"{where}: input.shape {list(model.input_shape)}: {problem}")
    need = programme.render_bytes(tuple(model.input_shape)) * batch_size
    if need > RENDER_BUDGET_BYTES:
        raise SandboxInputError(
            f"{where}: input.shape {list(model.input_shape)} needs about {need / 2**30:.1f} GiB to "
            f"render a batch of runtime.ai_batch_size={batch_size} (budget "
            f"{RENDER_BUDGET_BYTES / 2**30:.0f} GiB); use a smaller input or batch"
        )


def update_devices(cfg: RunConfig) -> dict[str, Any]:
    """The devices with new weights that the drift's device changes bring (``agent``), by
    name, each loaded once as the run's device is, on the run's compute device; their scores
    are cached in memory only (each unit of a distributed run loads its own). A folder that
    does not load, or a device that does not read the programme's images, is one line naming
    ``drift.device_changes[i].agent``."""
    if cfg.policy.role == "none":
        return {}
    from sandbox.agents.bundle import load_bundle
    from sandbox.agents.inference import DeviceScorer, ScoreCache

    programme = programme_for(cfg.scenario)
    out: dict[str, Any] = {}
    for i, c in enumerate(cfg.drift.device_changes):
        if not c.agent or c.agent in out:
            continue
        where = f"drift.device_changes[{i}].agent"
        try:
            model = load_bundle(agent_folder(c.agent), pick_device(cfg.runtime.device))
            check_device_reads(model, programme, cfg.runtime.ai_batch_size)
        except SandboxInputError as e:
            raise SandboxInputError(f"config key '{where}' ({c.agent}): {e}") from None
        cache = ScoreCache(model.digest, cohort_key(cfg), None).load()
        out[c.agent] = DeviceScorer(
            model, cache, cfg.seed, cfg.runtime.ai_batch_size, render=programme.render
        )
    return out


def prepare_device(cfg: RunConfig) -> DeviceSetup | None:
    """Load, probe and set the operating point of the policy's device; None for standard of care.

    Raises SandboxInputError (one line) for a bad folder, network, weights, probe or operating
    point, before anything is simulated or written.
    """
    if cfg.policy.role == "none":
        return None
    from sandbox.agents.bundle import load_bundle
    from sandbox.agents.inference import DeviceScorer, ScoreCache
    from sandbox.agents.operating_point import resolve_threshold

    folder = agent_folder(cfg.agent)
    device = pick_device(cfg.runtime.device)
    if device == "cpu":
        import torch

        # rendering is many small tensor operations: intra-op threads only contend (measured
        # several-fold slower with 2 threads on 2 cores); parallelism comes from running units
        # of work side by side
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    else:
        previous_threads = 0
    programme = programme_for(cfg.scenario)
    if programme.image_units is None:
        raise SandboxInputError(
            f"policy '{cfg.policy.name}': programme '{programme.name}' renders no images for an AI device"
        )
    model = load_bundle(folder, device)
    check_device_reads(model, programme, cfg.runtime.ai_batch_size)
    threshold = resolve_threshold(cfg.policy.threshold, folder)
    cache_dir = Path(cfg.runtime.score_cache) if cfg.runtime.score_cache else None
    cache = ScoreCache(model.digest, cohort_key(cfg), cache_dir).load()
    scorer = DeviceScorer(
        model, cache, cfg.seed, cfg.runtime.ai_batch_size, render=programme.render
    )
    info = {
        "name": model.name,
        "version": model.version,
        "folder": str(folder),
        "digest": model.digest,
        "weights_sha256": model.weights_digest,
        "metadata_sha256": model.metadata_digest,
        "network_sha256": model.network_digest,
        "device": str(device),
        "threshold": threshold,
        "operating_point": to_dict(cfg.policy.threshold),
        "cached_scores_at_start": len(cache.scores),
    }
    return DeviceSetup(scorer, threshold, info, previous_threads)

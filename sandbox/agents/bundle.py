"""Load an AI device folder ("model bundle") without running any code from it.

A device folder follows the MONAI bundle layout, JSON only::

    <folder>/
      configs/metadata.json      name, version, intended_use, input, output, training_data,
                                 performance (see InputSpec, OutputSpec, TrainingData)
      configs/network.json       {"name": "<network>", "args": {plain JSON values}}
      models/model.safetensors   preferred; or models/model.pt (a state dict)
      docs/README.md             the model card (optional, free text)

Untrusted folders run no code on load (design invariant 7): the network is looked up by name
in an allow-list (classes of ``monai.networks.nets`` and the project's own
:func:`~sandbox.agents.nets.project_networks`), never imported from a path; its arguments are plain JSON
values and no string may use MONAI's expression or reference syntax (``$``, ``@``, ``%``);
weights are read with safetensors or ``torch.load(weights_only=True)``. Every problem found
raises :class:`~sandbox.errors.SandboxInputError` with one line naming the folder, the file and
what is wrong, before any run starts. A loaded model has already passed a probe: a seeded
random batch gives finite probabilities of the declared shape.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import io
import json
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import monai.networks.nets as monai_nets
import numpy as np
import torch
from safetensors.torch import load as safetensors_load
from torch import nn

from sandbox.agents.nets import project_networks
from sandbox.errors import SandboxInputError
from sandbox.typed import build

METADATA = "configs/metadata.json"
NETWORK = "configs/network.json"
SAFETENSORS = "models/model.safetensors"
TORCH_PT = "models/model.pt"
MODEL_CARD = "docs/README.md"

HU_RANGE = (-1024.0, 3071.0)
"""Range of the probe's random voxels (HU): the 12-bit CT range, wider than any window."""
SCORE_CHUNK = 16
"""Patches per forward pass: fixed, so a score does not depend on the batch (see ``score``)."""
PAD_HU = -850.0
"""What pads the last chunk: lung parenchyma."""
MAX_INPUT_VOXELS = 256**3
"""Largest declared input per exam: larger ones are refused before the probe allocates them."""
MAX_WEIGHTS_BYTES = 2**30
"""Largest weights file read (1 GiB): a larger one is refused before a byte is read."""
PROBE_BATCH = 2
PROBE_SEED = 20_240_607
EXPRESSION_PREFIXES = ("$", "@", "%")
"""MONAI bundle syntax for expressions, references and macros; never evaluated here."""
DIGEST_VERSION = "sandbox-bundle-digest/1"
AGGREGATIONS = ("max", "noisy_or", "two_view")
"""How a device's candidate scores make an exam score (``output.aggregation``)."""

# Networks in monai.networks.nets that fetch weights or resolve further names (in
# torchvision, on the Hugging Face hub) while being built: weights come only from the folder.
REFUSED_MONAI: Mapping[str, str] = {
    "Transchex": "downloads BERT weights when built",
    "TorchVisionFCModel": "resolves a torchvision model by name and may download its weights",
    "MILModel": "resolves a torchvision backbone by name and may download its weights",
}
# Constructor arguments that make a network fetch weights from outside the folder.
_FETCH_ARG = re.compile(r"pretrain|url", re.IGNORECASE)
_CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


INPUT_UNITS = ("HU", "mammo_relative")
"""What a device's input may be in: CT patches in Hounsfield units, or 2-D mammogram patches
in relative attenuation (millimetres of glandular tissue; sandbox/programmes/breast_mammo)."""


@dataclass(frozen=True)
class Detail:
    """A second input channel of a 2-D patch: the patch minus its Gaussian blur of
    ``sigma_mm`` (a difference image, the classic enhancement of microcalcification CAD that
    suppresses the tissue's slow variation and keeps specks: Chan et al., Med Phys 1987), clipped
    to +-``range`` (the input's units) and scaled to [0, 1]."""

    sigma_mm: float = field(metadata={"gt": 0, "le": 10})
    range: float = field(metadata={"gt": 0, "le": 1000})


@dataclass(frozen=True)
class InputSpec:
    """What the network reads: one patch per candidate, ``shape`` = [channels, depth, height,
    width] (a CT patch) or [channels, height, width] (a 2-D image), in ``units``; values are
    clipped to ``window`` (``window_hu`` for a CT patch) and scaled to [0, 1]. With ``detail``
    (2-D patches only) the network reads a second channel, the patch's :class:`Detail`."""

    shape: tuple[int, ...] = field(metadata={"ge": 1})
    dtype: str = field(metadata={"choices": ("float32",)})
    units: str = field(metadata={"choices": INPUT_UNITS})
    spacing_mm: float = field(metadata={"gt": 0})
    window_hu: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    detail: Detail | None = None

    @property
    def clip(self) -> tuple[float, float]:
        """The window, whichever key gave it."""
        return self.window_hu if self.window_hu is not None else self.window  # type: ignore[return-value]

    def check(self, path: str) -> None:
        """Cross-field checks: a 2-D or 3-D patch with channels, and an increasing window."""
        dims = {"HU": 4, "mammo_relative": 3}[self.units]
        if len(self.shape) != dims:
            layout = (
                "[channels, depth, height, width]" if dims == 4 else "[channels, height, width]"
            )
            _spec_fail(
                f"{path}.shape", f"{list(self.shape)} is not {layout} (input in {self.units})"
            )
        if math.prod(self.shape) > MAX_INPUT_VOXELS:
            _spec_fail(
                f"{path}.shape",
                f"{list(self.shape)} is {math.prod(self.shape):,} voxels per exam; at most "
                f"{MAX_INPUT_VOXELS:,} (256^3) are rendered",
            )
        if (self.window_hu is None) == (self.window is None):
            _spec_fail(f"{path}.window", "give the input's window once: window (or window_hu)")
        key = "window_hu" if self.window_hu is not None else "window"
        if not self.clip[0] < self.clip[1]:
            _spec_fail(f"{path}.{key}", f"{list(self.clip)} must be [low, high], low < high")
        if self.detail is not None and dims != 3:
            _spec_fail(f"{path}.detail", "a detail channel is for 2-D image patches only")


MAX_CALIBRATION_LEVELS = 10_000
"""Most quantile levels a calibration may declare."""


@dataclass(frozen=True)
class Calibration:
    """Per-system calibration of exam scores (``output.calibration``), as a vendor calibrates
    its scale for each mammography system: an exam's score on a system named in ``systems`` is
    mapped through that system's screening-score quantiles to the pooled ones at the same
    ``levels`` (piecewise linear), so a percentile of screening exams means the same on every
    system it names; a score on any other system is used as the network gives it.

    ``levels``: increasing probabilities from 0 to 1; ``pooled``: the quantiles of screening
    exams' scores over every system at those levels; ``systems``: each system's own (scanner
    ``model`` to its quantiles at the same levels). Quantiles are non-decreasing scores in
    [0, 1]."""

    levels: tuple[float, ...]
    pooled: tuple[float, ...]
    systems: dict[str, tuple[float, ...]]

    def check(self, path: str) -> None:
        """Equal lengths, levels rising from 0 to 1, quantiles non-decreasing in [0, 1]."""
        n = len(self.levels)
        if not 2 <= n <= MAX_CALIBRATION_LEVELS:
            _spec_fail(f"{path}.levels", f"{n} levels; give 2 to {MAX_CALIBRATION_LEVELS:,}")
        lv = np.asarray(self.levels, dtype=float)
        if not (
            np.all(np.isfinite(lv)) and lv[0] == 0.0 and lv[-1] == 1.0 and np.all(np.diff(lv) > 0)
        ):
            _spec_fail(f"{path}.levels", "must rise from 0 to 1")
        if not self.systems:
            _spec_fail(f"{path}.systems", "names no system")
        for key, q in (
            ("pooled", self.pooled),
            *((f"systems.{k}", v) for k, v in self.systems.items()),
        ):
            arr = np.asarray(q, dtype=float)
            if len(arr) != n:
                _spec_fail(f"{path}.{key}", f"{len(arr)} quantiles for {n} levels")
            if not (np.all(np.isfinite(arr)) and arr.min() >= 0 and arr.max() <= 1):
                _spec_fail(f"{path}.{key}", "quantiles must be scores in [0, 1]")
            if np.any(np.diff(arr) < 0):
                _spec_fail(f"{path}.{key}", "quantiles must not decrease")
            if arr[0] == arr[-1]:
                _spec_fail(f"{path}.{key}", "quantiles are all the same score")

    def apply(self, score: np.ndarray | float, system: str) -> np.ndarray:
        """``score`` (exam scores on the system named ``system``) on the pooled scale."""
        own = self.systems.get(system)
        x = np.asarray(score, dtype=np.float64)
        if own is None:
            return x
        # a system's quantiles may repeat (tied scores): a tied score is at its levels' mean
        q, at = np.unique(np.asarray(own, dtype=np.float64), return_inverse=True)
        lv = np.asarray(self.levels, dtype=np.float64)
        level = np.bincount(at, lv) / np.bincount(at)
        return np.interp(np.interp(x, q, level, left=0.0, right=1.0), lv, self.pooled)

    def apply_each(self, score: np.ndarray, systems: np.ndarray) -> np.ndarray:
        """Exam ``score``s, each on the system named in ``systems`` beside it, on the pooled
        scale."""
        out = np.array(score, dtype=np.float64)
        for system in np.unique(systems):
            on = systems == system
            out[on] = self.apply(out[on], str(system))
        return out


@dataclass(frozen=True)
class OutputSpec:
    """What the network returns per candidate patch: one score, as a logit or a probability;
    and how an exam's candidate scores make the exam's score (``aggregation``: ``max``, the
    most suspicious candidate; ``noisy_or``, ``1 - prod(1 - p)``; or, for mammograms,
    ``two_view``: each region's score averaged with that of the most suspicious region of the
    breast's other view within ``view_match_mm`` of its distance from the nipple (0 where there
    is none), the most suspicious of those; :func:`sandbox.agents.inference.aggregate`)."""

    shape: tuple[int, ...] = field(metadata={"ge": 1})
    meaning: str
    activation: str = field(metadata={"choices": ("sigmoid", "none")})
    aggregation: str = field(default="max", metadata={"choices": AGGREGATIONS})
    view_match_mm: float = field(default=20.0, metadata={"gt": 0, "le": 1000})
    calibration: Calibration | None = None

    def check(self, path: str) -> None:
        """The output must hold exactly one score per exam."""
        if math.prod(self.shape) != 1:
            _spec_fail(
                f"{path}.shape", f"{list(self.shape)} must hold one score per exam, e.g. [1]"
            )


@dataclass(frozen=True)
class TrainingData:
    """The required part of ``training_data``; further keys are kept but not checked."""

    scanners: tuple[str, ...]
    population: str
    cases: int = field(metadata={"ge": 1})


@dataclass(frozen=True)
class BundleMetadata:
    """The required part of ``configs/metadata.json``; further top-level keys are kept."""

    name: str
    version: str
    intended_use: str
    input: InputSpec
    output: OutputSpec
    training_data: dict[str, Any]
    performance: dict[str, Any]


@dataclass(frozen=True)
class NetworkConfig:
    """``configs/network.json``: a network by name and its constructor arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """An AI device loaded from its folder, probed, in eval mode on ``device``.

    Attributes:
        name: Device name from the metadata.
        version: Device version from the metadata.
        folder: The device folder.
        metadata: ``configs/metadata.json`` as parsed.
        network_config: ``configs/network.json`` as parsed.
        network: The network, weights loaded, in eval mode, no gradients.
        device: Where the network lives.
        input_shape: One input patch, ``(channels, depth, height, width)`` or ``(channels,
            height, width)``.
        window_hu: Values are clipped to this window (the input's units) and scaled to [0, 1].
        detail: ``(sigma in pixels, range)`` of the detail channel the network also reads
            (:class:`Detail`), or None.
        output_shape: The network's output per exam (one element).
        activation: ``"sigmoid"`` (the network returns logits) or ``"none"`` (probabilities).
        aggregation: how candidate scores make the exam score (:data:`AGGREGATIONS`).
        view_match_mm: ``two_view``: how far apart (distance from the nipple, mm) two regions
            of a breast's two views may lie and still be read as one.
        calibration: the per-system calibration of exam scores (:class:`Calibration`), or None.
        weights_file: The weights file read.
        weights_digest: sha256 of the weights file's bytes.
        network_digest: sha256 of the canonical JSON of ``configs/network.json``.
        metadata_digest: sha256 of the canonical JSON of ``configs/metadata.json``.
        digest: The model digest that keys cached scores: sha256 over the three above.
        model_card: ``docs/README.md`` text, or "" when the folder has none.
    """

    name: str
    version: str
    folder: Path
    metadata: Mapping[str, Any]
    network_config: Mapping[str, Any]
    network: nn.Module
    device: torch.device
    input_shape: tuple[int, ...]
    window_hu: tuple[float, float]
    detail: tuple[float, float] | None
    output_shape: tuple[int, ...]
    activation: str
    aggregation: str
    view_match_mm: float
    calibration: Calibration | None
    weights_file: Path
    weights_digest: str
    network_digest: str
    metadata_digest: str
    digest: str
    model_card: str

    def preprocess(self, batch_hu: torch.Tensor) -> torch.Tensor:
        """Clip HU to ``window_hu`` and scale to [0, 1], as float32 on the model's device; with
        a detail channel, append it (``[B, 2, H, W]`` from ``[B, 1, H, W]``)."""
        low, high = self.window_hu
        raw = batch_hu.to(self.device, torch.float32)
        x = (raw.clamp(low, high) - low) / (high - low)
        if self.detail is None:
            return x
        return torch.cat([x, detail_channel(raw, *self.detail)], dim=1)

    def score(self, batch_hu: torch.Tensor) -> torch.Tensor:
        """Malignancy probabilities for a batch of CT patches.

        Args:
            batch_hu: Patches in HU, shape ``[B, *input_shape]``, on any device.

        The network always runs on chunks of exactly :data:`SCORE_CHUNK` patches (the last one
        padded with empty parenchyma), so an exam's score is bit-identical whatever batch it is
        scored in: a float32 sum that changed in the last bit with the batch size could move a
        score across an operating point, or cache a different value, between runs.

        Returns:
            Probabilities in [0, 1], shape ``[B]``, float32, on the CPU.

        Raises:
            ValueError: If the batch does not have shape ``[B, *input_shape]``.
        """
        if tuple(batch_hu.shape[1:]) != self.input_shape:
            raise ValueError(
                f"model {self.name!r} reads batches of shape [B, {_dims(self.input_shape)}], "
                f"got {list(batch_hu.shape)}"
            )
        n = batch_hu.shape[0]
        out = []
        with torch.inference_mode():
            for start in range(0, n, SCORE_CHUNK):
                chunk = batch_hu[start : start + SCORE_CHUNK]
                k = chunk.shape[0]
                if k < SCORE_CHUNK:
                    pad = chunk.new_full((SCORE_CHUNK - k, *self.input_shape), PAD_HU)
                    chunk = torch.cat([chunk, pad])
                raw = self.network(self.preprocess(chunk))
                out.append(self.probabilities(raw, SCORE_CHUNK)[:k].cpu())
        return torch.cat(out) if out else torch.empty(0)

    def probabilities(self, raw: Any, batch: int) -> torch.Tensor:
        """The network's raw output ``[batch, *output_shape]`` as probabilities ``[batch]``.

        Raises:
            ValueError: If ``raw`` is not a tensor of that shape.
        """
        expected = (batch, *self.output_shape)
        if not isinstance(raw, torch.Tensor):
            raise ValueError(f"the network returned a {type(raw).__name__}, not a tensor")
        if tuple(raw.shape) != expected:
            raise ValueError(
                f"the network returned shape {list(raw.shape)}, expected {list(expected)} "
                "(batch, then output.shape)"
            )
        scores = raw.reshape(batch).float()
        return torch.sigmoid(scores) if self.activation == "sigmoid" else scores


def detail_channel(raw: torch.Tensor, sigma_px: float, value_range: float) -> torch.Tensor:
    """The difference image of 2-D patches ``raw`` ``[B, 1, H, W]`` (:class:`Detail`): each
    patch minus its Gaussian blur of ``sigma_px`` pixels (separable, reflected at the edges),
    clipped to +-``value_range`` and scaled to [0, 1]."""
    radius = max(1, math.ceil(3.0 * sigma_px))
    radius = min(radius, raw.shape[-1] - 1, raw.shape[-2] - 1)
    k = torch.arange(-radius, radius + 1, dtype=torch.float32, device=raw.device)
    k = torch.exp(-0.5 * (k / sigma_px) ** 2)
    k = k / k.sum()
    pad = torch.nn.functional.pad(raw, (radius, radius, radius, radius), mode="reflect")
    blur = torch.nn.functional.conv2d(pad, k.view(1, 1, 1, -1))
    blur = torch.nn.functional.conv2d(blur, k.view(1, 1, -1, 1))
    return (raw - blur).clamp(-value_range, value_range) / (2.0 * value_range) + 0.5


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load, check and probe the AI device in folder ``path``; run no code from it.

    Args:
        path: The device folder.
        device: Where to put the network (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Returns:
        The loaded model, in eval mode, having passed the probe.

    Raises:
        SandboxInputError: One line naming the folder, the file and what is wrong.
    """
    folder = _check_folder(path)
    target = _check_device(device)
    metadata = _read_json(folder, METADATA)
    network_json = _read_json(folder, NETWORK)
    spec = _parse_metadata(folder, metadata)
    net_cfg = _parse_network_config(folder, network_json)
    network = _build_network(folder, net_cfg)
    weights_file = _weights_file(folder)
    weights_bytes = _read_bytes(folder, weights_file)
    state = _read_state_dict(folder, weights_file, weights_bytes)
    _load_weights(folder, weights_file, network, net_cfg.name, state)
    network.to(target).train(False).requires_grad_(False)  # inference: no dropout, running stats
    weights_digest = hashlib.sha256(weights_bytes).hexdigest()
    network_digest = hashlib.sha256(canonical_json(network_json)).hexdigest()
    metadata_digest = hashlib.sha256(canonical_json(metadata)).hexdigest()
    model = LoadedModel(
        name=spec.name,
        version=spec.version,
        folder=folder,
        metadata=metadata,
        network_config=network_json,
        network=network,
        device=target,
        input_shape=spec.input.shape,
        window_hu=spec.input.clip,
        detail=(
            None
            if spec.input.detail is None
            else (spec.input.detail.sigma_mm / spec.input.spacing_mm, spec.input.detail.range)
        ),
        output_shape=spec.output.shape,
        activation=spec.output.activation,
        aggregation=spec.output.aggregation,
        view_match_mm=spec.output.view_match_mm,
        calibration=spec.output.calibration,
        weights_file=weights_file,
        weights_digest=weights_digest,
        network_digest=network_digest,
        metadata_digest=metadata_digest,
        digest=bundle_digest(weights_digest, network_digest, metadata_digest),
        model_card=_read_model_card(folder),
    )
    _probe(model, net_cfg.name)
    return model


def probe_bundle(path: str | Path) -> LoadedModel:
    """The pre-run check of a device folder: load it on the CPU and probe it.

    Raises:
        SandboxInputError: One line naming the folder, the file and what is wrong.
    """
    return load_bundle(path, device="cpu")


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(data: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no spaces: equal for equal content however formatted."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def bundle_digest(weights_digest: str, network_digest: str, metadata_digest: str) -> str:
    """The model digest: sha256 over a version tag and the three part digests, one a line."""
    text = f"{DIGEST_VERSION}\n{weights_digest}\n{network_digest}\n{metadata_digest}\n"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@functools.cache
def allowed_networks() -> Mapping[str, type[nn.Module]]:
    """Every network a device folder may name: ``monai.networks.nets`` and the project's own.

    MONAI networks are the ``torch.nn.Module`` classes defined in MONAI and exported by
    ``monai.networks.nets``, less :data:`REFUSED_MONAI`; the project's own come from
    :func:`~sandbox.agents.nets.project_networks` (shared ones and each programme's).
    """
    found = {
        name: obj
        for name, obj in vars(monai_nets).items()
        if isinstance(obj, type)
        and issubclass(obj, nn.Module)
        and obj.__module__.startswith("monai.")
        and not name.startswith("_")
        and name not in REFUSED_MONAI
    }
    return {**found, **project_networks()}


# --- errors ---------------------------------------------------------------------------------


def _fail(folder: Path, where: str, msg: str) -> NoReturn:
    raise SandboxInputError(f"agent folder {folder}: {where}: {msg}")


class _SpecError(ValueError):
    """A cross-field metadata problem, raised inside validate.build and re-labelled."""


def _spec_fail(key: str, msg: str) -> NoReturn:
    raise _SpecError(f"key '{key}': {msg}")


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """The first informative line of an exception's text, for a one-line message."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


# --- folder and JSON ------------------------------------------------------------------------


def _check_folder(path: str | Path) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise SandboxInputError(f"agent folder {folder}: does not exist")
    if not folder.is_dir():
        raise SandboxInputError(f"agent folder {folder}: is not a folder")
    return folder.resolve()


def _check_device(device: str | torch.device) -> torch.device:
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SandboxInputError(f"device {device!r}: {_one_line(exc)}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise SandboxInputError(f"device {device!r}: CUDA is not available on this machine")
    return target


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _read_json(folder: Path, rel: str) -> dict[str, Any]:
    path = folder / rel
    if not path.is_file():
        _fail(folder, rel, "is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except OSError as exc:
        _fail(folder, rel, f"cannot be read: {_one_line(exc)}")
    except json.JSONDecodeError as exc:
        _fail(folder, rel, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except UnicodeDecodeError:
        _fail(folder, rel, "is not UTF-8 text")
    except (ValueError, RecursionError) as exc:
        _fail(folder, rel, f"not valid JSON: {_one_line(exc)}")
    if not isinstance(data, dict):
        _fail(folder, rel, f"expected a JSON object at the top, got {type(data).__name__}")
    _reject_expressions(folder, rel, data, "")
    return data


def _reject_expressions(folder: Path, rel: str, value: Any, key: str) -> None:
    """Refuse MONAI expression, reference and macro strings anywhere (keys included)."""
    if isinstance(value, str):
        if value.startswith(EXPRESSION_PREFIXES):
            _fail(
                folder,
                rel,
                f"key '{key or '.'}': {value[:60]!r} looks like a MONAI expression or reference "
                f"(starts with {value[0]!r}); device folders hold plain values only",
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else k
            _reject_expressions(folder, rel, k, sub)
            _reject_expressions(folder, rel, v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_expressions(folder, rel, v, f"{key}[{i}]")


def _build_part(folder: Path, rel: str, cls: type, data: Any, key: str, lenient: bool) -> Any:
    """``validate.build`` with the folder and file in the message; ``lenient`` keeps extras."""
    if lenient and isinstance(data, dict):
        names = {f.name for f in cls.__dataclass_fields__.values()}
        data = {k: v for k, v in data.items() if k in names}
    try:
        return build(cls, data, key)
    except (SandboxInputError, _SpecError) as exc:
        _fail(folder, rel, str(exc).removeprefix("config "))


def _parse_metadata(folder: Path, metadata: dict[str, Any]) -> BundleMetadata:
    spec = _build_part(folder, METADATA, BundleMetadata, metadata, "", lenient=True)
    training = metadata["training_data"]
    _build_part(folder, METADATA, TrainingData, training, "training_data", lenient=True)
    return spec


def _parse_network_config(folder: Path, data: dict[str, Any]) -> NetworkConfig:
    cfg = _build_part(folder, NETWORK, NetworkConfig, data, "", lenient=False)
    # validate.build wraps mappings read-only; the constructor gets the plain parsed values
    return NetworkConfig(name=cfg.name, args=dict(data.get("args", {})))


# --- network --------------------------------------------------------------------------------


def _network_class(folder: Path, name: str) -> type[nn.Module]:
    own = ", ".join(sorted(project_networks()))
    allowed = f"allowed: monai.networks.nets.* and the project's own: {own}"
    if name in REFUSED_MONAI:
        _fail(folder, NETWORK, f"network {name!r} is refused: it {REFUSED_MONAI[name]} ({allowed})")
    networks = allowed_networks()
    if name in networks:
        return networks[name]
    if not _CLASS_NAME.fullmatch(name):
        why = (
            "a file path"
            if "/" in name or "\\" in name
            else "a dotted path"
            if "." in name
            else "not a plain class name"
        )
        _fail(folder, NETWORK, f"network {name!r} is not allowed: {why} ({allowed})")
    close = [n for n in networks if n.lower() == name.lower()] or _close_names(name, networks)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    _fail(folder, NETWORK, f"network {name!r} is not allowed ({allowed}){hint}")


def _close_names(name: str, networks: Mapping[str, Any]) -> list[str]:
    return difflib.get_close_matches(name, list(networks), n=1, cutoff=0.8)


def _constructor_args(cls: type[nn.Module], args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with every "pretrained"-like parameter that defaults to fetching turned off.

    Raises:
        ValueError: If ``args`` asks for pretrained or downloaded weights.
    """
    for key, value in args.items():
        if _FETCH_ARG.search(key) and value not in (None, False):
            raise ValueError(
                f"network arg '{key}' = {value!r} asks for weights from outside the folder; "
                "weights come only from models/ (remove it or set it to false)"
            )
    kwargs = dict(args)
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    for p in params:
        if p.name not in kwargs and _FETCH_ARG.search(p.name) and p.default is True:
            kwargs[p.name] = False
    return kwargs


def _build_network(folder: Path, cfg: NetworkConfig) -> nn.Module:
    cls = _network_class(folder, cfg.name)
    try:
        kwargs = _constructor_args(cls, cfg.args)
    except ValueError as exc:
        _fail(folder, NETWORK, str(exc))
    try:
        network = cls(**kwargs)
    except Exception as exc:  # any constructor failure on folder-given args is a user error
        _fail(folder, NETWORK, f"network {cfg.name!r} rejected its args: {_one_line(exc)}")
    if not isinstance(network, nn.Module):
        _fail(folder, NETWORK, f"network {cfg.name!r} did not build a torch module")
    return network


# --- weights --------------------------------------------------------------------------------


def _weights_file(folder: Path) -> Path:
    for rel in (SAFETENSORS, TORCH_PT):
        if (folder / rel).is_file():
            return folder / rel
    _fail(folder, "models/", f"no weights: expected {SAFETENSORS} or {TORCH_PT}")


def _read_bytes(folder: Path, path: Path) -> bytes:
    # read once: the digest is of exactly the bytes that are loaded
    try:
        size = path.stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            _fail(
                folder,
                path.relative_to(folder).as_posix(),
                f"is {size / 2**30:.1f} GiB; weights over {MAX_WEIGHTS_BYTES / 2**30:.0f} GiB are refused before reading",
            )
        return path.read_bytes()
    except OSError as exc:
        _fail(folder, path.relative_to(folder).as_posix(), f"cannot be read: {_one_line(exc)}")


def _read_state_dict(folder: Path, path: Path, data: bytes) -> dict[str, torch.Tensor]:
    rel = path.relative_to(folder).as_posix()
    if path.suffix == ".safetensors":
        try:
            return safetensors_load(data)
        except Exception as exc:  # the Rust reader raises its own error type
            _fail(folder, rel, f"cannot read safetensors weights: {_one_line(exc)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        _fail(folder, rel, f"refused to unpickle it (weights_only): {_unpickle_reason(exc)}")
    except Exception as exc:
        _fail(folder, rel, f"cannot read torch weights: {_one_line(exc)}")
    return _check_state_dict(folder, rel, state)


def _unpickle_reason(exc: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only refusal that says what was refused."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(boilerplate):
            return line[:240]
    return "not a plain state dict"


def _check_state_dict(folder: Path, rel: str, state: Any) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        _fail(
            folder,
            rel,
            f"expected a state dict (parameter names to tensors), got {type(state).__name__}",
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            _fail(
                folder,
                rel,
                f"entry {key!r} holds a {type(value).__name__!r}, not a tensor: save "
                "model.state_dict() itself",
            )
    return dict(state)


def _load_weights(
    folder: Path, path: Path, network: nn.Module, name: str, state: dict[str, torch.Tensor]
) -> None:
    rel = path.relative_to(folder).as_posix()
    expected = network.state_dict()
    prefix = f"weights do not fit network {name!r}"
    missing = [k for k in expected if k not in state]
    if missing:
        _fail(folder, rel, f"{prefix}: missing key '{missing[0]}' ({len(missing)} missing)")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        _fail(
            folder,
            rel,
            f"{prefix}: unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected)",
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            _fail(
                folder,
                rel,
                f"{prefix}: key '{key}' has shape {list(state[key].shape)}, "
                f"the network expects {list(tensor.shape)}",
            )
    try:
        network.load_state_dict(state, strict=True)
    except Exception as exc:  # e.g. a dtype that cannot be copied into the parameter
        _fail(folder, rel, f"{prefix}: {_one_line(exc)}")


def _read_model_card(folder: Path) -> str:
    path = folder / MODEL_CARD
    if not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


# --- probe ----------------------------------------------------------------------------------


def _probe(model: LoadedModel, network_name: str) -> None:
    """Score a seeded random batch in HU; the output must be finite probabilities of the shape."""
    folder = model.folder
    rel = model.weights_file.relative_to(folder).as_posix()
    generator = torch.Generator().manual_seed(PROBE_SEED)
    low, high = HU_RANGE
    batch_hu = low + (high - low) * torch.rand(
        (PROBE_BATCH, *model.input_shape), generator=generator
    )
    shape = f"[{PROBE_BATCH}, {_dims(model.input_shape)}]"
    try:
        with torch.inference_mode():
            raw = model.network(model.preprocess(batch_hu))
    except Exception as exc:  # a network that cannot read the declared input
        _fail(
            folder,
            NETWORK,
            f"probe: network {network_name!r} failed on a batch of input.shape {shape}: "
            f"{_one_line(exc)}",
        )
    try:
        scores = model.probabilities(raw, PROBE_BATCH)
    except ValueError as exc:
        _fail(folder, METADATA, f"probe on a batch of {shape}: {exc}")
    if not bool(torch.isfinite(scores).all()):
        _fail(folder, rel, f"probe: network {network_name!r} returned NaN or infinite scores")
    if bool(((scores < 0) | (scores > 1)).any()):
        _fail(
            folder,
            METADATA,
            f"probe: scores {[round(float(s), 4) for s in scores]} are not probabilities in "
            f"[0, 1] with output.activation {model.activation!r} (use 'sigmoid' for logits)",
        )

"""Operating points: from a policy's threshold setting to a score cut-off.

``absolute`` uses the value as given. ``percentile`` and ``target_sensitivity`` need the
device's reference scores: ``configs/validation.json`` in the device folder, holding
``{"scores": [...], "labels": [...]}`` (labels 1 = malignant) from held-out synthetic data, and
optionally ``"reference_scores"``: a uniform sample of screening exams, whose distribution the
``percentile`` mode uses (the labelled set is usually enriched with cancers).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sandbox.config import OperatingPoint
from sandbox.errors import SandboxInputError


def validation_set(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) from the device's configs/validation.json; one-line errors."""
    path = Path(folder) / "configs" / "validation.json"
    if not path.is_file():
        raise SandboxInputError(
            f"agent folder {folder}: configs/validation.json is missing (needed for percentile and target-sensitivity operating points)"
        )
    try:
        data = json.loads(path.read_text())
        scores = np.asarray(data["scores"], dtype=float)
        labels = np.asarray(data["labels"], dtype=int)
    except (ValueError, KeyError, TypeError) as e:
        raise SandboxInputError(
            f"agent folder {folder}: configs/validation.json: malformed ({type(e).__name__}: {e})"
        ) from e
    if scores.shape != labels.shape or scores.ndim != 1 or len(scores) == 0:
        raise SandboxInputError(
            f"agent folder {folder}: configs/validation.json: 'scores' and 'labels' must be equal-length lists"
        )
    if not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
        raise SandboxInputError(
            f"agent folder {folder}: configs/validation.json: scores must be finite and in [0, 1]"
        )
    if not set(np.unique(labels)) <= {0, 1}:
        raise SandboxInputError(
            f"agent folder {folder}: configs/validation.json: labels must be 0 or 1"
        )
    return scores, labels


def reference_scores(folder: Path) -> np.ndarray | None:
    """``reference_scores`` of configs/validation.json (a uniform sample of screening exams), if any."""
    data = json.loads((Path(folder) / "configs" / "validation.json").read_text())
    ref = data.get("reference_scores")
    if ref is None:
        return None
    arr = np.asarray(ref, dtype=float)
    if (
        arr.ndim != 1
        or len(arr) == 0
        or not np.all(np.isfinite(arr))
        or arr.min() < 0
        or arr.max() > 1
    ):
        raise SandboxInputError(
            f"agent folder {folder}: configs/validation.json: reference_scores must be finite scores in [0, 1]"
        )
    return arr


def resolve_threshold(op: OperatingPoint, folder: Path) -> float:
    """The score cut-off (score >= cut-off is positive) for ``op`` on the device in ``folder``."""
    if op.mode == "absolute":
        return op.value
    scores, labels = validation_set(folder)
    if op.mode == "percentile":
        # the screening population's own score distribution when the device provides it (the
        # labelled validation set is enriched with cancers)
        reference = reference_scores(folder)
        return float(np.quantile(scores if reference is None else reference, op.value))
    positives = np.sort(scores[labels == 1])[::-1]
    n = len(positives)
    # a sensitivity of t can only be demonstrated with at least 1 / (1 - t) positive cases
    eps = 1e-9  # 1 / (1 - 0.9) is 10.000000000000002 in floating point
    t = op.target_sensitivity
    needed = math.inf if t >= 1.0 else math.ceil(1.0 / (1.0 - t) - eps)
    if n == 0 or n < needed:
        raise SandboxInputError(
            f"config key 'policy.threshold.target_sensitivity': {op.target_sensitivity} cannot be reached on "
            f"the validation set of {folder} ({n} malignant cases; at least {needed} are needed)"
        )
    k = max(1, math.ceil(t * n - eps))  # the k highest-scoring positives must be called
    return float(positives[k - 1])


class Cutoffs:
    """Operating points resolved to score cut-offs on the device in one folder, each once (a
    role's second operating points: marks, relaxed reading, a recall flag)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen: dict[OperatingPoint, float] = {}

    def __call__(self, point: OperatingPoint) -> float:
        if point not in self._seen:
            self._seen[point] = resolve_threshold(point, self.folder)
        return self._seen[point]

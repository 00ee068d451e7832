"""Which finding an exam's image is centred on (torch-free, shared by imaging and workflow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

# key of a person's tumour among their findings (benign nodules are 0-11)
MALIGNANT_KEY = 15


class _Finding(Protocol):
    key: int
    size_mm: float


F = TypeVar("F", bound=_Finding)


def most_suspicious(findings: Sequence[F]) -> F | None:
    """The finding an exam image is centred on.

    Args:
        findings: what the exam shows (``sandbox.programmes.lung_ldct.reading.visible_findings``).

    Returns:
        The malignant finding (``key == MALIGNANT_KEY``) if present, else the largest (the
        first of equals), or None when there are none.
    """
    best = None
    for f in findings:
        if f.key == MALIGNANT_KEY:
            return f
        if best is None or f.size_mm > best.size_mm:
            best = f
    return best

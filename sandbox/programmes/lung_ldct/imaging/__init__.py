"""What an exam's image shows: conspicuity, and the rendered patch a model reads.

The renderer needs torch; it is imported on first use so that standard-of-care runs, which
only need conspicuity, never load it.
"""

from sandbox.programmes.lung_ldct.imaging.conspicuity import (
    CONTRAST_HU,
    blur_sd_mm,
    cnr,
    conspicuity,
    noise_sd_hu,
    peak_contrast_hu,
)
from sandbox.programmes.lung_ldct.imaging.findings import (
    CANDIDATE_KINDS,
    MALIGNANT_KEY,
    Candidate,
    candidate_kind,
    candidates,
)

__all__ = [
    "CANDIDATE_KINDS",
    "CONTRAST_HU",
    "MALIGNANT_KEY",
    "Candidate",
    "PatchSpec",
    "blur_sd_mm",
    "candidate_kind",
    "candidates",
    "cnr",
    "conspicuity",
    "noise_sd_hu",
    "peak_contrast_hu",
    "render_batch",
]


def __getattr__(name: str):
    if name in ("PatchSpec", "render_batch"):
        from sandbox.programmes.lung_ldct.imaging import render

        return getattr(render, name)
    raise AttributeError(f"module 'sandbox.programmes.lung_ldct.imaging' has no attribute {name!r}")

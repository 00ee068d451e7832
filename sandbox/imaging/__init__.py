"""What an exam's image shows: conspicuity, and the rendered patch a model reads."""

from sandbox.imaging.conspicuity import (
    CONTRAST_HU,
    blur_sd_mm,
    cnr,
    conspicuity,
    noise_sd_hu,
    peak_contrast_hu,
)
from sandbox.imaging.render import PatchSpec, most_suspicious, render_batch

__all__ = [
    "CONTRAST_HU",
    "PatchSpec",
    "blur_sd_mm",
    "cnr",
    "conspicuity",
    "most_suspicious",
    "noise_sd_hu",
    "peak_contrast_hu",
    "render_batch",
]

"""What an exam's image shows: conspicuity now, rendered patches later."""

from sandbox.imaging.conspicuity import (
    CONTRAST_HU,
    blur_sd_mm,
    cnr,
    conspicuity,
    noise_sd_hu,
    peak_contrast_hu,
)

__all__ = ["CONTRAST_HU", "blur_sd_mm", "cnr", "conspicuity", "noise_sd_hu", "peak_contrast_hu"]

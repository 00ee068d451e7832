"""How visible a nodule is on a given scanner: the single conspicuity function.

A nodule is a sphere of diameter ``d`` (mm) and contrast ``dHU`` against lung parenchyma (by
type). The scanner blurs it with an isotropic Gaussian of standard deviation ``s`` (from kernel
FWHM and slice thickness) and adds noise of standard deviation ``sigma`` HU (from dose).

* peak contrast after blur, exact for a sphere under Gaussian blur:
  ``dHU * (erf(x / sqrt 2) - sqrt(2 / pi) * x * exp(-x^2 / 2))`` with ``x = (d / 2) / s``;
* contrast-to-noise ratio ``CNR = peak / sigma``;
* conspicuity (Rose model) ``CNR * sqrt(pi (d / 2)^2 / 1 mm^2)``: the CNR integrated over the
  nodule's cross-section in 1 mm pixels.

Readers' detection probability is a function of conspicuity (sandbox.agents.readers); the
image renderer draws patches whose measured CNR agrees with :func:`cnr`.
"""

from __future__ import annotations

import math

from sandbox.config import Scanner

# HU of nodule minus HU of parenchyma (-850 HU): solid ~ soft tissue, part-solid mixed, GGN hazy.
CONTRAST_HU = (850.0, 500.0, 250.0)
FWHM_TO_SD = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def blur_sd_mm(scanner: Scanner) -> float:
    """Isotropic-equivalent blur SD (mm): two in-plane axes from the kernel, one from the slice."""
    s_xy = scanner.kernel_fwhm_mm * FWHM_TO_SD
    s_z = scanner.slice_mm * FWHM_TO_SD
    return math.sqrt((2.0 * s_xy * s_xy + s_z * s_z) / 3.0)


def noise_sd_hu(scanner: Scanner) -> float:
    """Image noise SD (HU) at the scanner's dose: quantum noise scales as dose^-1/2."""
    return scanner.noise_hu_at_1mgy / math.sqrt(scanner.dose_mgy)


def peak_contrast_hu(diameter_mm: float, nodule_type: int, blur_sd: float) -> float:
    """Contrast (HU) at the centre of a blurred sphere of ``diameter_mm``."""
    if diameter_mm <= 0.0:
        return 0.0
    x = 0.5 * diameter_mm / blur_sd
    frac = math.erf(x / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * x * math.exp(-0.5 * x * x)
    return CONTRAST_HU[nodule_type] * frac


def cnr(diameter_mm: float, nodule_type: int, scanner: Scanner) -> float:
    """Peak contrast-to-noise ratio of a nodule on ``scanner``."""
    return peak_contrast_hu(diameter_mm, nodule_type, blur_sd_mm(scanner)) / noise_sd_hu(scanner)


def conspicuity(diameter_mm: float, nodule_type: int, scanner: Scanner) -> float:
    """Rose-model conspicuity: CNR times the square root of the cross-section in 1 mm pixels."""
    return cnr(diameter_mm, nodule_type, scanner) * math.sqrt(math.pi) * 0.5 * diameter_mm

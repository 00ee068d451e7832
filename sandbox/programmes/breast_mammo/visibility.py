"""How visible a finding is on a 2-D mammogram: a detectability index from the physics that
the renderer draws (readers and devices see the same image).

The breast's background is fibroglandular tissue over fat. Its texture is power-law noise
(anatomical noise, noise power ``alpha / f^beta`` with ``beta`` about 3: Burgess, Jacobson and
Judy, Med Phys 2001), strongest where fat and gland are mixed (``alpha`` grows with ``g (1 - g)``
for a glandular fraction ``g``), on top of the detector's white quantum noise. For a blob of
width ``s`` and contrast ``C`` the ideal observer's detectability in power-law noise is

    d'^2 = C^2 s^(2 - beta) / alpha        (anatomical noise; s in mm)
    d'^2 = C^2 s^2 / sigma_q^2              (quantum noise, per mm of detector)

combined here as ``1 / d'^2 = 1 / d'_a^2 + 1 / d'_q^2``. A mass attenuates like glandular
tissue, so its contrast is its thickness (about its diameter) times the fat fraction around it
(``1 - g``): dense tissue masks it twice, by contrast and by texture, and with ``beta = 3`` a
larger mass gains only as the square root of its size. Calcifications are tiny and bright:
their detectability is set by the detector's quantum noise and blur, hardly by the tissue, and
a cluster is seen by its number of specks (about one per millimetre of extent).

Glandular fractions by BI-RADS density are the midpoints of the 4th edition's quartiles
(a < 25%, b 25-50%, c 51-75%, d > 75% dense).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GLANDULAR = np.array([0.125, 0.375, 0.625, 0.875])  # BI-RADS a-d (4th edition quartiles)


@dataclass(frozen=True)
class Detector:
    """A mammography system as its images show it: white quantum noise per mm
    (``quantum_noise``, relative to the tissue contrast of 1 mm of gland against fat),
    the blur of its detector and focal spot (``blur_mm``, a Gaussian sigma) and its pixel."""

    model: str
    quantum_noise: float = 0.05
    blur_mm: float = 0.07
    pixel_mm: float = 0.085


BETA = 3.0  # power-law exponent of anatomical noise (Burgess et al. 2001: 2.8-3.2)
ANATOMICAL = 0.02  # alpha at g (1 - g) = 1/4: the texture's strength at its most mixed
ANATOMICAL_FLOOR = 0.1  # of that strength, left in the most uniform breast
# one 0.3 mm speck's contrast against the local background, in millimetres of glandular tissue:
# calcium hydroxyapatite attenuates about ten times as much as gland at mammographic energies
# (Johns and Yaffe, Phys Med Biol 1987), so a 0.3 mm speck is about 3 mm of gland
CALC_CONTRAST = 3.5
SPECK_MM = 0.3  # a typical microcalcification's size


def anatomical_alpha(density: np.ndarray) -> np.ndarray:
    """The strength of the breast's texture by BI-RADS density (0-3 for a-d)."""
    g = GLANDULAR[density]
    return ANATOMICAL * (ANATOMICAL_FLOOR + (1 - ANATOMICAL_FLOOR) * 4.0 * g * (1.0 - g))


def mass_detectability(diameter_mm, density, detector: Detector, spiculated=False) -> np.ndarray:
    """d' of a mass of ``diameter_mm`` in a breast of ``density`` (0-3) on ``detector``; a
    spiculated margin adds the contrast of its spicules (a third more)."""
    d = np.asarray(diameter_mm, dtype=np.float64)
    g = GLANDULAR[np.asarray(density)]
    contrast = d * (1.0 - g) * np.where(spiculated, 4.0 / 3.0, 1.0)
    s = np.maximum(d / 2.0, 1e-3)
    anat = contrast**2 * s ** (2.0 - BETA) / anatomical_alpha(np.asarray(density))
    blur = np.sqrt(s**2 + detector.blur_mm**2)
    quantum = contrast**2 * (s / blur) ** 2 * s**2 / detector.quantum_noise**2
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 1.0 / np.sqrt(1.0 / anat + 1.0 / quantum), 0.0)


def calcification_detectability(extent_mm, density, detector: Detector) -> np.ndarray:
    """d' of a cluster of microcalcifications spread over ``extent_mm`` (about one speck per
    mm): each speck's quantum-limited d', blurred by the detector, the tissue's texture
    costing little at a speck's scale, summed in quadrature over the specks."""
    extent = np.asarray(extent_mm, dtype=np.float64)
    g = GLANDULAR[np.asarray(density)]
    s = SPECK_MM / 2.0
    blur = np.sqrt(s**2 + detector.blur_mm**2)
    contrast = CALC_CONTRAST * (1.0 - 0.3 * g)  # specks over dense tissue stand out less
    speck = contrast * (s / blur) ** 2 * s / detector.quantum_noise
    specks = np.maximum(extent, 0.0)
    return speck * np.sqrt(specks)

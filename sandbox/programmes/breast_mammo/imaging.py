"""What an AI device is shown of a screening mammogram: candidate regions, rendered as 2-D
patches from the physics that sets what readers see (:mod:`.visibility`).

An exam is four images (right and left breast, craniocaudal and mediolateral-oblique views).
A CAD system proposes candidate regions: one in each view of every finding it can see (a mass,
a calcification cluster, or both), wherever it is and whatever it is, and one background region
in each image. Nothing in a candidate says whether it is a cancer: the renderer draws the
tissue, a mass of a given size and margin, specks of a given size and arrangement, and the
detector's noise; the device has to tell them apart.

Each patch is ``size`` x ``size`` pixels of ``pixel_mm`` (64 x 0.5 mm: 32 mm of breast), in
relative attenuation units (1 = one millimetre of glandular tissue against fat):

* **tissue**: power-law noise (noise power ``alpha / f^beta``, beta = 3: Burgess et al. 2001,
  who measured it over about 0.1-1 cycle per mm; rolled off above 0.5 cycle per mm) whose
  strength is :func:`.visibility.anatomical_alpha` of the breast's density, over the breast's
  mean glandular level; drawn from the woman, view and place (the same tissue at every
  screen);
* **mass**: a sphere's projected thickness ``d sqrt(1 - (2r/d)^2)`` times the fat fraction around
  it, ``1 - g`` (the contrast of :func:`.visibility.mass_detectability`), its outline stretched
  to its shape: oval (axis ratio 0.65-1, any orientation), and if irregular its radius modulated by
  the 3rd-6th harmonics of the angle, each up to a quarter of it (lobulated, angular); an
  indistinct margin is blurred over a quarter of the radius, at most ``INDISTINCT_MM`` (the
  mass keeps its contrast); a spiculated one has radial spicules out to twice it;
* **calcifications**: about one speck per millimetre of extent, each a Gaussian of its size with
  the contrast of :data:`.visibility.CALC_CONTRAST`; benign specks are round, alike and scattered,
  pleomorphic ones vary in size and lie along a line (a duct);
* **detector**: Gaussian blur (``Detector.blur_mm``) and white quantum noise
  (``Detector.quantum_noise`` per millimetre), drawn for the exam.

Each candidate also carries where it lies: its distance from the nipple in its view
(``nipple_mm``), which a two-view device uses to pair a region of the craniocaudal view with one
of the oblique view of the same breast (van Engeland, Timp and Karssemeijer, Med Phys 2006:
corresponding regions lie at about the same distance from the nipple in both views). A finding
lies at one depth in the breast (uniform over :data:`NIPPLE_MM`), seen in each view at that
depth give or take :data:`VIEW_DEPTH_SD_MM` (compression and projection differ between the
views; assumed); a background region lies anywhere, independently in each view.

Deterministic by key: a patch is the same whatever batch it is rendered in and on any device
(noise is drawn on the CPU from a generator seeded by the patch's key).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from sandbox.programmes.breast_mammo.visibility import (
    ANATOMICAL,
    BETA,
    CALC_CONTRAST,
    GLANDULAR,
    SPECK_MM,
    Detector,
    anatomical_alpha,
)
from sandbox.rng import uniform_scalar

VIEWS = ("R-CC", "R-MLO", "L-CC", "L-MLO")
MARGINS = ("circumscribed", "indistinct", "spiculated")
CANDIDATE_KINDS = ("cancer", "benign", "background")
SIZE, PIXEL_MM = 64, 0.5
TEXTURE_STD = 6.0  # pixel SD of the tissue at its most mixed (mm of gland) over a patch
MEAN_LEVEL = 8.0  # the mean glandular level: g x this (mm of gland over the field)
TEXTURE_CUTOFF = 0.5  # cycles per mm: the tissue's power-law spectrum rolls off above this
INDISTINCT_MM = 0.75  # an indistinct margin: the outline blurred over this (a Gaussian SD, mm)
CANDIDATE_MIN_CONSPICUITY = 6.0  # a region CAD proposes: conspicuity on the exam of at least this
MAX_FINDING_CANDIDATES = 6  # findings proposed per exam (the most conspicuous)
NIPPLE_MM = (10.0, 110.0)  # a region's distance from the nipple: the compressed breast's depth
VIEW_DEPTH_SD_MM = 7.0  # a finding's distance from the nipple, view to view (assumed)
_LOCATION_KEY = 0x6D616D6D6F6C6F63  # "mammoloc": places in a woman's breasts
_LOCATION_BITS = 40
_NIPPLE_KEY = 0x6E6970706C65  # "nipple": where in the breast a region lies
_BACKGROUND_CODE = 48  # background region of view v: code 48 + v (finding keys are below)
BACKGROUND_CANDIDATES = len(VIEWS)  # one background region in each image


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate region: where, in which view, and what the renderer draws there.

    Attributes:
        location: opaque place in the woman's breast (keys the tissue around it).
        view: index into :data:`VIEWS`.
        mass_mm: a mass's diameter that day (0: no mass).
        margin: a mass's margin, index into :data:`MARGINS`.
        calc_mm: a calcification cluster's extent (0: none).
        pleomorphic: specks of varying size along a line (else round, alike, scattered).
        irregular: a mass's irregular shape (else round to oval).
        nipple_mm: its distance from the nipple in its view (where a two-view device looks
            for the same region in the breast's other view).
    """

    location: int
    view: int
    mass_mm: float = 0.0
    margin: int = 0
    calc_mm: float = 0.0
    pleomorphic: bool = False
    irregular: bool = False
    nipple_mm: float = 0.0


@dataclass(frozen=True, slots=True)
class MammoImage:
    """What the device is shown of one exam: its key, the system, the breast's density and its
    candidate regions (none marked as the cancer)."""

    person_id: int
    exam_day: int
    scanner: Any
    density: int
    candidates: tuple[Candidate, ...]


def location_of(person_id: int, code: int, view: int) -> int:
    """The opaque location of finding ``code`` (a finding key, or a background code) in ``view``."""
    u = uniform_scalar(_LOCATION_KEY, person_id, code * len(VIEWS) + view)
    return int(u * 2.0**_LOCATION_BITS)


def nipple_distance(person_id: int, code: int, view: int) -> float:
    """The distance from the nipple (mm) at which finding ``code`` (a finding key) is seen in
    ``view``, or background region ``code`` lies: a finding's depth in the breast, give or take
    :data:`VIEW_DEPTH_SD_MM` in each view; a background region's own place in its view."""
    low, high = NIPPLE_MM
    if code >= _BACKGROUND_CODE:
        u = uniform_scalar(_NIPPLE_KEY, person_id, code * len(VIEWS) + view)
        return low + (high - low) * u
    depth = low + (high - low) * uniform_scalar(_NIPPLE_KEY, person_id, code * len(VIEWS))
    u = uniform_scalar(_NIPPLE_KEY ^ 0x51DE, person_id, code * len(VIEWS) + view)
    return depth + VIEW_DEPTH_SD_MM * NormalDist().inv_cdf(min(max(u, 1e-12), 1.0 - 1e-12))


def side_of(person_id: int, key: int) -> int:
    """Which breast finding ``key`` is in (0 right, 1 left)."""
    return int(uniform_scalar(_LOCATION_KEY ^ 0x51DE, person_id, key) < 0.5)


def candidates(person_id: int, findings: Sequence[Any]) -> tuple[Candidate, ...]:
    """The candidate regions of an exam showing ``findings`` (:class:`.reading.Finding`, with
    their morphology), ordered by location: the most conspicuous findings CAD can see, in both
    views of their breast, and a background region in each of the four images."""
    shown = [f for f in findings if f.conspicuity >= CANDIDATE_MIN_CONSPICUITY]
    if len(shown) > MAX_FINDING_CANDIDATES:
        shown = sorted(shown, key=lambda f: -f.conspicuity)[:MAX_FINDING_CANDIDATES]
    out = []
    for f in shown:
        side = side_of(person_id, f.key)
        for v in (2 * side, 2 * side + 1):
            out.append(
                Candidate(
                    location_of(person_id, f.key, v),
                    v,
                    f.mass_mm,
                    f.margin,
                    f.calc_mm,
                    f.pleomorphic,
                    f.irregular,
                    nipple_distance(person_id, f.key, v),
                )
            )
    out += [
        Candidate(
            location_of(person_id, _BACKGROUND_CODE + v, v),
            v,
            nipple_mm=nipple_distance(person_id, _BACKGROUND_CODE + v, v),
        )
        for v in range(len(VIEWS))
    ]
    return tuple(sorted(out, key=lambda c: c.location))


def finding_at(person_id: int, location: int, findings: Sequence[Any]) -> int | None:
    """The key of the finding the candidate at ``location`` shows, or None for a background
    region (outcome-side: never given to a renderer or device)."""
    for f in findings:
        side = side_of(person_id, f.key)
        if location in (location_of(person_id, f.key, v) for v in (2 * side, 2 * side + 1)):
            return int(f.key)
    return None


def candidate_kind(person_id: int, location: int, findings: Sequence[Any], malignant) -> str:
    """What the candidate at ``location`` is (outcome-side: never given to a renderer or device)."""
    key = finding_at(person_id, location, findings)
    if key is None:
        return "background"
    return "cancer" if key in malignant else "benign"


# ---------------------------------------------------------------- rendering
def _seed(*parts: int) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(int(p).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def _filter(size: int, pixel_mm: float) -> Any:
    """Amplitude filter of the tissue for a size^2 FFT: power-law, f^(-beta/2), zero at f = 0,
    rolled off above :data:`TEXTURE_CUTOFF` (structure finer than about a millimetre is averaged
    out through the breast's thickness: the texture costs little at a speck's scale)."""
    import torch

    f = torch.fft.fftfreq(size, d=pixel_mm, dtype=torch.float64)
    rad = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    amp = torch.where(rad > 0, rad.clamp_min(1e-9) ** (-BETA / 2.0), torch.zeros_like(rad))
    return amp * torch.exp(-((rad / TEXTURE_CUTOFF) ** 2))


@dataclass(frozen=True, slots=True)
class PatchSpec:
    """One patch to render: the woman and exam, the view and place, the breast and what is there."""

    person_id: int
    exam_day: int
    view: int
    location: int
    density: int
    detector: Detector
    mass_mm: float = 0.0
    margin: int = 0
    calc_mm: float = 0.0
    pleomorphic: bool = False
    irregular: bool = False


def render_batch(
    specs: Sequence[PatchSpec],
    seed: int,
    size: int = SIZE,
    pixel_mm: float = PIXEL_MM,
    device: str = "cpu",
    out: Any = None,
) -> Any:
    """Patches ``[B, 1, size, size]`` (float32, relative attenuation) on ``device``; into
    ``out`` when given (every element overwritten)."""
    import torch

    n = len(specs)
    shape = (n, 1, size, size)
    dev = torch.device(device)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=dev)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or out.device.type != dev.type:
        raise ValueError(
            f"render_batch: out must be a float32 tensor of shape {list(shape)} on {dev}, "
            f"got {out.dtype} {list(out.shape)} on {out.device}"
        )
    if n == 0:
        return out
    # tissue: white noise from each patch's key, power-law filtered, scaled by density
    white = torch.empty((n, size, size), dtype=torch.float64)
    quantum = torch.empty((n, size, size), dtype=torch.float64)
    for i, s in enumerate(specs):
        g = torch.Generator().manual_seed(_seed(seed, s.person_id, s.view, s.location))
        white[i] = torch.randn((size, size), generator=g, dtype=torch.float64)
        g = torch.Generator().manual_seed(_seed(seed, s.person_id, s.view, s.location, s.exam_day))
        quantum[i] = torch.randn((size, size), generator=g, dtype=torch.float64)
    white, quantum = white.to(dev), quantum.to(dev)
    tissue = torch.fft.ifft2(torch.fft.fft2(white) * _filter(size, pixel_mm).to(dev)).real
    tissue = tissue / tissue.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    density = np.array([s.density for s in specs])
    strength = np.sqrt(anatomical_alpha(density) / ANATOMICAL) * TEXTURE_STD
    glandular = GLANDULAR[density]
    img = tissue * torch.as_tensor(strength, device=dev)[:, None, None]
    img = img + torch.as_tensor(glandular * MEAN_LEVEL, device=dev)[:, None, None]
    coord = (torch.arange(size, dtype=torch.float64, device=dev) - (size - 1) / 2.0) * pixel_mm
    y, x = coord[:, None], coord[None, :]
    r = torch.sqrt(y * y + x * x)
    for i, s in enumerate(specs):
        fat = 1.0 - float(glandular[i])
        if s.mass_mm > 0.0:
            img[i] += fat * _mass(s, seed, r, y, x, pixel_mm)
        if s.calc_mm > 0.0:
            img[i] += (1.0 - 0.3 * float(glandular[i])) * _calcifications(s, seed, y, x, pixel_mm)
    # the detector: blur, then quantum noise per pixel (per mm over the pixel's side)
    blur = np.array([s.detector.blur_mm for s in specs]) / pixel_mm
    f = torch.fft.fftfreq(size, dtype=torch.float64, device=dev)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    mtf = torch.exp(-2.0 * math.pi**2 * torch.as_tensor(blur**2, device=dev)[:, None, None] * f2)
    img = torch.fft.ifft2(torch.fft.fft2(img) * mtf).real
    sigma_q = np.array([s.detector.quantum_noise for s in specs]) / pixel_mm
    img = img + quantum * torch.as_tensor(sigma_q, device=dev)[:, None, None]
    out.copy_(img[:, None].to(torch.float32))
    return out


def _mass(s: PatchSpec, seed: int, r, y, x, pixel_mm: float):
    """A mass's projected thickness (mm) over the patch, with its margin."""
    import torch

    radius = 0.5 * s.mass_mm
    g = torch.Generator().manual_seed(_seed(seed, s.person_id, s.location, 13))
    u = torch.rand(10, generator=g, dtype=torch.float64).tolist()
    theta = torch.atan2(y, x)
    ratio, turn = 0.65 + 0.35 * u[0], math.pi * u[1]  # round to oval, of the same area
    c, sn = torch.cos(theta - turn), torch.sin(theta - turn)
    edge = 1.0 / torch.sqrt(ratio * c * c + sn * sn / ratio)
    if s.irregular:  # lobulated, angular: the 3rd-6th harmonics of the angle
        wobble = sum(
            0.25 * u[k - 1] * torch.cos(k * theta + 2.0 * math.pi * u[k + 3]) for k in range(3, 7)
        )
        edge = edge * (1.0 + wobble).clamp_min(0.3)
    t = s.mass_mm * torch.sqrt((1.0 - (r / (radius * edge)) ** 2).clamp_min(0.0))
    if MARGINS[s.margin] == "indistinct":
        sd = max(min(radius / 4.0, INDISTINCT_MM), pixel_mm) / pixel_mm
        n = t.shape[-1]
        f = torch.fft.fftfreq(n, dtype=torch.float64, device=t.device)
        mtf = torch.exp(-2.0 * math.pi**2 * sd**2 * (f[:, None] ** 2 + f[None, :] ** 2))
        t = torch.fft.ifft2(torch.fft.fft2(t) * mtf).real
    elif MARGINS[s.margin] == "spiculated":
        g = torch.Generator().manual_seed(_seed(seed, s.person_id, s.location, 7))
        k = 8 + int(torch.randint(0, 6, (1,), generator=g))
        angles = torch.rand(k, generator=g, dtype=torch.float64) * 2.0 * math.pi
        reach = radius * (1.6 + 0.8 * torch.rand(k, generator=g, dtype=torch.float64))
        for a, far in zip(angles.tolist(), reach.tolist(), strict=True):
            along = x * math.cos(a) + y * math.sin(a)
            across = -x * math.sin(a) + y * math.cos(a)
            on = (along > 0.5 * radius) & (along < far)
            width = 0.35  # a spicule's SD across (mm)
            t = t + 0.25 * s.mass_mm * on * torch.exp(-0.5 * (across / width) ** 2) * (
                1.0 - along / far
            ).clamp_min(0.0)
    return t


def _calcifications(s: PatchSpec, seed: int, y, x, pixel_mm: float):
    """A cluster's specks over the patch (mm of gland, averaged over each pixel): each speck a
    disc of its size and contrast, its signal spread as a Gaussian of its size and the pixel's."""
    import torch

    g = torch.Generator().manual_seed(_seed(seed, s.person_id, s.location, 11))
    n = max(3, round(s.calc_mm))
    u = torch.rand((n, 3), generator=g, dtype=torch.float64)
    half = 0.5 * s.calc_mm
    if s.pleomorphic:  # along a duct through the centre, sizes varying
        a = float(torch.rand(1, generator=g, dtype=torch.float64)) * math.pi
        along = (u[:, 0] * 2.0 - 1.0) * half
        across = (u[:, 1] - 0.5) * 0.15 * s.calc_mm
        cy = along * math.sin(a) + across * math.cos(a)
        cx = along * math.cos(a) - across * math.sin(a)
        size = SPECK_MM * (0.5 + 1.2 * u[:, 2])
    else:  # round, alike, scattered over a disc
        rr, th = half * torch.sqrt(u[:, 0]), u[:, 1] * 2.0 * math.pi
        cy, cx = rr * torch.sin(th), rr * torch.cos(th)
        size = torch.full((n,), SPECK_MM, dtype=torch.float64)
    dev = y.device
    var = ((size / 2.355) ** 2 + (pixel_mm / 2.355) ** 2)[:, None, None].to(dev)
    signal = (CALC_CONTRAST * math.pi * (size / 2.0) ** 2)[:, None, None].to(dev)
    d2 = (y[None] - cy[:, None, None].to(dev)) ** 2 + (x[None] - cx[:, None, None].to(dev)) ** 2
    return (signal / (2.0 * math.pi * var) * torch.exp(-0.5 * d2 / var)).sum(dim=0)

"""The image of one candidate region of an exam: a 3D patch of lung centred on it.

An exam is shown to a device as several patches, one per candidate region
(:mod:`sandbox.programmes.lung_ldct.imaging.findings`): a nodule, or a background region.

One patch is ``size``^3 voxels of ``spacing_mm`` (default 32^3 at 1 mm), in HU, axes (z, y, x).
It holds, from the bottom up:

* parenchyma at :data:`PARENCHYMA_HU` (-850 HU) plus a smooth anatomical texture: white noise
  on a lattice :data:`TEXTURE_SCALE_MM` apart, spread by Gaussian blobs of SD
  ``sqrt(TEXTURE_SCALE_MM^2 + blur_sd^2)``, with each voxel's weights normalised so that the
  texture SD is :data:`TEXTURE_SD_HU` at every voxel;
* :data:`VESSELS` vessels: straight tubes of 1-3 mm diameter (Gaussian cross-section whose FWHM
  is the diameter), +600-800 HU, random direction, axis 8-14 mm from the centre, so they never
  cross the central 8 mm (nor a nodule's centre). Their blurred tails are faded to exactly zero
  within 3 mm of the centre (invisible: < 1 HU is removed on scanners with slices up to 5 mm),
  so the central 3 mm hold the nodule, texture and noise alone. This is a choice: a vessel
  over the nodule would be a masking effect, which conspicuity does not model;
* the finding, if any: a uniform sphere of diameter ``diameter_mm`` and contrast
  ``CONTRAST_HU[nodule_type]`` centred on voxel ``(size // 2,) * 3`` (no sub-voxel offset, so
  that voxel holds the peak). A part-solid nodule is a uniform sphere of the part-solid
  contrast, as in conspicuity. A spiculated one has :data:`SPICULES` thin radial rods
  (1-1.8 mm thick, 60-90 % of the nodule's contrast) reaching 3-8 mm beyond its surface;
  they are faded to exactly zero inside half the radius, so the peak is untouched;
* the scanner: Gaussian blur, then white Gaussian noise of SD ``noise_sd_hu(scanner)`` per
  voxel (white, like conspicuity's sigma; whatever ``spacing_mm``), then ``scanner.hu_offset``
  added to every voxel. Values are not clipped to the -1024 HU floor, so the noise stays
  Gaussian.

Objects overlap by taking the denser (maximum of the contrasts), the way tissue fills a voxel.

**Agreement with conspicuity.** The blur is isotropic with SD ``blur_sd_mm(scanner)``, the
isotropic-equivalent SD that :mod:`sandbox.programmes.lung_ldct.imaging.conspicuity` uses, and every object is
rendered already blurred from its closed form, sampled at voxel centres: a uniform sphere
under Gaussian blur is ``P(|X - r| < R)`` for ``X ~ N(0, s^2 I_3)`` (exact); a Gaussian
cross-section of SD ``w`` becomes SD ``sqrt(w^2 + s^2)`` with peak times ``w^2 / (w^2 + s^2)``
(exact); a segment along a rod's axis becomes a normal CDF (exact). So the centre voxel of a
rendered nodule is ``peak_contrast_hu(d, type, blur_sd_mm(scanner))`` to float precision, and
the measured CNR is :func:`sandbox.programmes.lung_ldct.imaging.conspicuity.cnr`, without the aliasing that
convolving 1 mm voxels with a 0.4 mm kernel would cause. An anisotropic blur (thick slices
blurring only z) would lower the small-nodule peak below the isotropic-equivalent formula; it
is not used, so the reader (who acts on conspicuity) and the model (which acts on pixels) see
the same nodule.

**Randomness** (invariants 1 and 2). Each patch draws from two CPU generators
(``torch.Generator``) seeded with 63 bits from keyed streams: ``render.anatomy`` keyed by
(person, location) (texture, vessels, a nodule's spicules: the same lungs around the same
nodule at every exam and on every scanner) and ``render.noise`` keyed by (person, exam key,
location). The number of draws does not depend
on the finding or the scanner. All draws happen first, patch by patch; everything after is
element-wise tensor arithmetic over the batch (on ``device``), so a patch is bit-identical
whatever batch, batch order or batch size it is rendered in, and whatever the number of threads,
on a given device and build. CPU and GPU agree to float rounding, not bit for bit (a ``gpu``
test checks 0.05 HU).

**Cost.** About 800 plain patches/s on one CPU core at 32^3; a spiculated patch costs about
five plain ones. Memory is about eight float32 volumes per patch (1 MB at 32^3): render large
cohorts in batches of a few hundred.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sandbox.config import Scanner
from sandbox.programmes.lung_ldct.imaging.conspicuity import (
    CONTRAST_HU,
    FWHM_TO_SD,
    blur_sd_mm,
    noise_sd_hu,
)
from sandbox.rng import stream_key, uniform_scalar

PARENCHYMA_HU = -850.0
TEXTURE_SD_HU = 20.0
TEXTURE_SCALE_MM = 2.0  # lattice spacing and blob SD of the anatomical texture
VESSELS = 3
VESSEL_DIAMETER_MM = (1.0, 3.0)
VESSEL_CONTRAST_HU = (600.0, 800.0)
VESSEL_AXIS_MM = (8.0, 14.0)  # distance of a vessel's axis from the patch centre
VESSEL_FREE_RADIUS_MM = (3.0, 5.0)  # vessels fade from 1 at 5 mm to exactly 0 at 3 mm
SPICULES = 8
SPICULE_WIDTH_MM = (1.0, 1.8)  # FWHM of the cross-section
SPICULE_REACH_MM = (3.0, 8.0)  # how far beyond the nodule's surface a spicule ends
SPICULE_CONTRAST = (0.6, 0.9)  # fraction of the nodule's contrast

_TEXTURE_MARGIN_NODES = 4  # lattice nodes beyond each face, so blobs do not thin at the edges
_SQRT2 = math.sqrt(2.0)
_EXP_FLOOR = -80.0
_LOCATIONS = 1 << 31  # locations and exam keys are below this
TEXTURE_CHUNK = 16  # patches per texture contraction (fixed, for batch invariance)


@dataclass(frozen=True)
class PatchSpec:
    """What one exam image shows.

    Attributes:
        key: ``(person_id, exam_key)``; with ``location``, all the patch's randomness follows
            from it and the seed. ``exam_key`` is any int in [0, 2^31) the caller derives per
            exam (e.g. the exam day rounded, or ``round * 32 + exam_in_round``).
        diameter_mm: the finding's diameter on the exam day; 0.0 for no finding.
        nodule_type: 0 solid, 1 part-solid, 2 ground-glass (indexes ``CONTRAST_HU``).
        spiculated: whether the margin has radial spicules.
        scanner: the site's scanner (dose, noise, kernel, slice, HU offset).
        location: the candidate region's place in the person's lungs, an int in [0, 2^31)
            (:func:`sandbox.programmes.lung_ldct.imaging.findings.location_of`).
    """

    key: tuple[int, int]
    diameter_mm: float
    nodule_type: int
    spiculated: bool
    scanner: Scanner
    location: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.diameter_mm) and self.diameter_mm >= 0.0):
            raise ValueError(f"PatchSpec.diameter_mm must be >= 0, got {self.diameter_mm!r}")
        if self.nodule_type not in (0, 1, 2):
            raise ValueError(f"PatchSpec.nodule_type must be 0, 1 or 2, got {self.nodule_type!r}")
        if not 0 <= self.location < _LOCATIONS:
            raise ValueError(f"PatchSpec.location must be in [0, 2^31), got {self.location!r}")
        if not 0 <= self.key[1] < _LOCATIONS:
            raise ValueError(f"PatchSpec exam key must be in [0, 2^31), got {self.key[1]!r}")


def render_batch(
    specs: Sequence[PatchSpec],
    seed: int,
    size: int = 32,
    spacing_mm: float = 1.0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Render one patch per spec.

    Args:
        specs: what each patch shows.
        seed: the run's root seed.
        size: voxels along each axis.
        spacing_mm: voxel size (mm), isotropic.
        device: where the batched arithmetic runs; draws are always made on the CPU.

    Returns:
        ``[len(specs), 1, size, size, size]`` float32 tensor of HU on ``device``.
    """
    if size < 8:
        raise ValueError(f"render_batch: size must be >= 8 voxels, got {size!r}")
    if not (math.isfinite(spacing_mm) and spacing_mm > 0.0):
        raise ValueError(f"render_batch: spacing_mm must be > 0, got {spacing_mm!r}")
    dev = torch.device(device)
    n = len(specs)
    if n == 0:
        return torch.empty((0, 1, size, size, size), dtype=torch.float32, device=dev)

    # ---- draw: everything random, patch by patch, on the CPU
    anatomy_key = stream_key(seed, "render.anatomy")
    noise_key = stream_key(seed, "render.noise")
    lattice_mm = _lattice_mm(size, spacing_mm)
    m = len(lattice_mm)
    white = torch.empty((n, m, m, m), dtype=torch.float32)
    noise = torch.empty((n, size, size, size), dtype=torch.float32)
    vessel_draws = torch.empty((n, VESSELS, 9), dtype=torch.float64)
    spicule_draws = torch.empty((n, SPICULES, 6), dtype=torch.float64)
    for i, spec in enumerate(specs):
        person, exam = (int(k) for k in spec.key)
        loc = spec.location
        anatomy = _generator(anatomy_key, person, loc)
        torch.randn((m, m, m), generator=anatomy, dtype=torch.float32, out=white[i])
        torch.rand((VESSELS, 9), generator=anatomy, dtype=torch.float64, out=vessel_draws[i])
        torch.rand((SPICULES, 6), generator=anatomy, dtype=torch.float64, out=spicule_draws[i])
        torch.randn(
            (size,) * 3,
            generator=_generator(noise_key, person, exam * _LOCATIONS + loc),
            out=noise[i],
        )
    texture = _texture(white, [blur_sd_mm(p.scanner) for p in specs], lattice_mm, size, spacing_mm)

    # ---- apply: deterministic, element-wise over the batch
    f64 = {"dtype": torch.float64, "device": dev}
    f32 = {"dtype": torch.float32, "device": dev}
    diameter = torch.tensor([p.diameter_mm for p in specs], **f64)
    contrast = torch.tensor([CONTRAST_HU[p.nodule_type] for p in specs], **f64)
    blur = torch.tensor([blur_sd_mm(p.scanner) for p in specs], **f64)
    sigma = torch.tensor([noise_sd_hu(p.scanner) for p in specs], **f32)
    level = torch.tensor([PARENCHYMA_HU + p.scanner.hu_offset for p in specs], **f32)
    coord = (torch.arange(size, **f64) - size // 2) * spacing_mm

    objects = _vessels(vessel_draws.to(dev), blur, coord, size, spacing_mm)
    if bool((diameter > 0).any()):
        objects = torch.maximum(objects, _nodules(diameter, contrast, blur, size, spacing_mm))
    spiky = [i for i, p in enumerate(specs) if p.spiculated and p.diameter_mm > 0.0]
    if spiky:
        idx = torch.tensor(spiky, device=dev)
        draws = spicule_draws[spiky].to(dev)
        rods = _spicules(draws, diameter[idx], contrast[idx], blur[idx], coord)
        objects[idx] = torch.maximum(objects[idx], rods)

    image = texture.to(dev)
    image += objects
    noise = noise.to(dev)
    noise *= sigma[:, None, None, None]
    image += noise
    image += level[:, None, None, None]
    return image.unsqueeze(1)


def _generator(key: int, person: int, index: int) -> torch.Generator:
    """A CPU generator seeded with 63 bits of the keyed stream at (person, index)."""
    hi = int(uniform_scalar(key, person, 2 * index) * 2.0**32)
    lo = int(uniform_scalar(key, person, 2 * index + 1) * 2.0**31)
    g = torch.Generator()
    g.manual_seed((hi << 31) | lo)
    return g


def _texture(
    white: torch.Tensor, blurs: list[float], lattice_mm: torch.Tensor, size: int, spacing_mm: float
) -> torch.Tensor:
    """``[B, size, size, size]`` texture from each patch's lattice noise ``white`` ``[B, m, m, m]``.

    Patches of one blur share the weights; they are contracted :data:`TEXTURE_CHUNK` at a time,
    the last chunk padded with zeros, so every contraction has the same shape and a patch's
    texture is bit-identical whatever batch it is in.
    """
    n, m = white.shape[0], white.shape[1]
    out = torch.empty((n, size, size, size), dtype=torch.float32)
    groups: dict[float, list[int]] = {}
    for i, b in enumerate(blurs):
        groups.setdefault(b, []).append(i)
    chunk = torch.empty((TEXTURE_CHUNK, m, m, m), dtype=torch.float32)
    for blur_sd, members in groups.items():
        gt = _texture_weights(lattice_mm, size, spacing_mm, blur_sd).T.contiguous()  # [m, size]
        for start in range(0, len(members), TEXTURE_CHUNK):
            part = torch.tensor(members[start : start + TEXTURE_CHUNK])
            chunk.zero_()
            chunk[: len(part)] = white[part]
            t = chunk @ gt  # [K, a, b, x]
            t = t.transpose(2, 3) @ gt  # [K, a, x, y]
            t = t.permute(0, 2, 3, 1) @ gt  # [K, x, y, z]
            out[part] = t[: len(part)].permute(0, 3, 2, 1)
    return out


def _lattice_mm(size: int, spacing_mm: float) -> torch.Tensor:
    """Texture lattice node positions (mm, patch-centre origin), padded beyond each face."""
    lo = -(size // 2) * spacing_mm - _TEXTURE_MARGIN_NODES * TEXTURE_SCALE_MM
    hi = (size - 1 - size // 2) * spacing_mm + _TEXTURE_MARGIN_NODES * TEXTURE_SCALE_MM
    m = math.floor((hi - lo) / TEXTURE_SCALE_MM) + 2
    return lo + TEXTURE_SCALE_MM * torch.arange(m, dtype=torch.float64)


def _texture_weights(
    lattice_mm: torch.Tensor, size: int, spacing_mm: float, blur_sd: float
) -> torch.Tensor:
    """``[size, nodes]`` Gaussian weights of lattice nodes at each voxel along one axis.

    Blob SD is the texture scale widened by the scanner's blur. Each row has unit L2 norm,
    so unit white noise on the lattice gives texture of variance 1 at every voxel; the
    texture SD is folded in (the cube root of it per axis, as the weights multiply).
    """
    width = math.sqrt(TEXTURE_SCALE_MM**2 + blur_sd**2)
    voxel = (torch.arange(size, dtype=torch.float64) - size // 2) * spacing_mm
    g = torch.exp(-0.5 * ((voxel[:, None] - lattice_mm[None, :]) / width) ** 2)
    g = g / g.norm(dim=1, keepdim=True)
    return (g * TEXTURE_SD_HU ** (1.0 / 3.0)).to(torch.float32)


def _nodules(
    diameter: torch.Tensor, contrast: torch.Tensor, blur: torch.Tensor, size: int, spacing_mm: float
) -> torch.Tensor:
    """``[B, size, size, size]`` contrast (HU) of each blurred sphere, centred on voxel size//2.

    Radii from the centre take few values (``spacing * sqrt(i^2 + j^2 + k^2)``), so the
    profile is computed once per value in float64 and gathered.
    """
    dev = diameter.device
    i = torch.arange(size, device=dev) - size // 2
    sq = i * i
    index = (sq[:, None, None] + sq[None, :, None] + sq[None, None, :]).reshape(-1)
    r = spacing_mm * torch.arange(int(index.max()) + 1, dtype=torch.float64, device=dev).sqrt()
    profile = contrast[:, None] * _blurred_sphere(
        r[None, :], 0.5 * diameter[:, None], blur[:, None]
    )
    out = torch.index_select(profile.to(torch.float32), 1, index)
    return out.reshape(-1, size, size, size)


def _blurred_sphere(r: torch.Tensor, radius: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """Fraction of ``N(p, sd^2 I_3)``, ``|p| = r``, inside the ball of ``radius`` at the origin.

    With ``a = (R - r) / sd`` and ``b = (R + r) / sd``:
    ``(erf(a / sqrt 2) + erf(b / sqrt 2)) / 2 - sd / (r sqrt(2 pi)) (exp(-a^2/2) - exp(-b^2/2))``.
    The difference of exponentials is written with expm1, so r -> 0 tends smoothly to the peak
    formula of conspicuity.
    """
    a = (radius - r) / sd
    b = (radius + r) / sd
    edge = 0.5 * (torch.erf(a / _SQRT2) + torch.erf(b / _SQRT2))
    k = 2.0 * radius / (sd * sd)
    ratio = torch.where(r > 0, -torch.expm1(-k * r) / r.clamp_min(1e-300), k)
    frac = edge - sd / math.sqrt(2.0 * math.pi) * torch.exp(-0.5 * a * a) * ratio
    return torch.where(radius > 0, frac.clamp_min(0.0), torch.zeros_like(frac))


def _unit(v: torch.Tensor) -> torch.Tensor:
    # written out, not a reduction, so the arithmetic per patch cannot depend on the batch
    norm = (v[..., 0:1] ** 2 + v[..., 1:2] ** 2 + v[..., 2:3] ** 2).sqrt()
    return v / norm.clamp_min(1e-12)


def _direction(u: torch.Tensor) -> torch.Tensor:
    """Uniform unit vectors ``[..., 3]`` (z, y, x) from two uniforms ``[..., 2]``."""
    cos_t = 2.0 * u[..., 0] - 1.0
    sin_t = (1.0 - cos_t * cos_t).clamp_min(0.0).sqrt()
    phi = 2.0 * math.pi * u[..., 1]
    return torch.stack([cos_t, sin_t * torch.sin(phi), sin_t * torch.cos(phi)], dim=-1)


def _vessels(
    draws: torch.Tensor, blur: torch.Tensor, coord: torch.Tensor, size: int, spacing_mm: float
) -> torch.Tensor:
    """``[B, size, size, size]`` maximum contrast (HU) of the blurred vessels.

    A line through ``q`` (``q . e = 0``) along unit ``e``: squared distance
    ``rho^2 = P^T (I - e e^T) P - 2 q . P + |q|^2``, split into a (z, y) table, an x table and
    a (z, y) table times x, so the full-volume work is a few element-wise passes per vessel.
    """
    e = _direction(draws[..., 0:2])
    # the axis offset: a direction perpendicular to e, at a drawn distance
    helper = _direction(draws[..., 2:4])
    perp = _unit(torch.linalg.cross(e, helper, dim=-1))
    half_mm = 0.5 * size * spacing_mm
    lo = VESSEL_AXIS_MM[0]
    hi = max(lo, min(VESSEL_AXIS_MM[1], 0.9 * half_mm))
    q = perp * (lo + (hi - lo) * draws[..., 4:5])
    w = FWHM_TO_SD * (
        VESSEL_DIAMETER_MM[0] + draws[..., 5] * (VESSEL_DIAMETER_MM[1] - VESSEL_DIAMETER_MM[0])
    )
    peak = VESSEL_CONTRAST_HU[0] + draws[..., 6] * (VESSEL_CONTRAST_HU[1] - VESSEL_CONTRAST_HU[0])
    # draws[..., 7:9] are reserved (drawn so that adding a vessel property keeps old patches)
    width2 = w * w + blur[:, None] ** 2
    log_amp = torch.log(peak * w * w / width2)
    scale = -0.5 / width2  # [B, V]

    z = coord[None, :, None]
    y = coord[None, None, :]
    x = coord.to(torch.float32)[None, None, None, :]
    out = None
    for v in range(VESSELS):
        ev, qv, sv = e[:, v, :, None, None], q[:, v, :, None, None], scale[:, v, None, None]
        m_zz, m_yy = 1 - ev[:, 0] ** 2, 1 - ev[:, 1] ** 2
        m_zy, m_zx, m_yx = -ev[:, 0] * ev[:, 1], -ev[:, 0] * ev[:, 2], -ev[:, 1] * ev[:, 2]
        zy = (
            m_zz * z * z
            + m_yy * y * y
            + 2 * m_zy * z * y
            - 2 * qv[:, 0] * z
            - 2 * qv[:, 1] * y
            + (qv[:, 0] ** 2 + qv[:, 1] ** 2 + qv[:, 2] ** 2)
        )
        a_zy = (log_amp[:, v, None, None] + sv * zy).to(torch.float32)
        c_zy = (sv * 2 * (m_zx * z + m_yx * y)).to(torch.float32)
        xs = coord[None, :]
        b_x = (scale[:, v, None] * ((1 - e[:, v, 2:3] ** 2) * xs * xs - 2 * q[:, v, 2:3] * xs)).to(
            torch.float32
        )
        arg = c_zy[..., None] * x
        arg += a_zy[..., None]
        arg += b_x[:, None, None, :]
        # the densest vessel at each voxel: exp is increasing, so the maximum is taken over the
        # log-contrasts and exponentiated once
        out = arg if out is None else torch.maximum(out, arg, out=out)
    assert out is not None
    # exp(-80) ~ 2e-35 is zero for HU; far tails would otherwise hit float32's slow
    # subnormal path
    out.clamp_min_(_EXP_FLOOR).exp_()
    # fade the far blur tails to exactly zero near the centre (the axes are >= 8 mm away, so
    # this only matters for very blurry scanners): the peak voxel is the nodule's alone
    r = (z * z + y * y)[..., None] + coord[None, None, None, :] ** 2
    lo_mm, hi_mm = VESSEL_FREE_RADIUS_MM
    gate = ((r.sqrt() - lo_mm) / (hi_mm - lo_mm)).clamp(0.0, 1.0).to(torch.float32)
    out *= gate
    return out


def _spicules(
    draws: torch.Tensor,
    diameter: torch.Tensor,
    contrast: torch.Tensor,
    blur: torch.Tensor,
    coord: torch.Tensor,
) -> torch.Tensor:
    """``[B, size, size, size]`` maximum contrast (HU) of the blurred radial spicules.

    A rod from the centre along unit ``e`` to ``t1 = R + reach``, Gaussian cross-section;
    blurred, its axial profile is ``Phi((t1 - t) / s)``. A ramp from 0 at ``t = R/2`` to 1 at
    ``t = R`` replaces the inner end, so the rod is exactly zero inside half the radius.
    """
    radius = 0.5 * diameter[:, None]
    e = _direction(draws[..., 0:2]).to(torch.float32)
    t1 = radius + SPICULE_REACH_MM[0] + draws[..., 2] * (SPICULE_REACH_MM[1] - SPICULE_REACH_MM[0])
    w = FWHM_TO_SD * (
        SPICULE_WIDTH_MM[0] + draws[..., 3] * (SPICULE_WIDTH_MM[1] - SPICULE_WIDTH_MM[0])
    )
    frac = SPICULE_CONTRAST[0] + draws[..., 4] * (SPICULE_CONTRAST[1] - SPICULE_CONTRAST[0])
    s = blur[:, None]
    width2 = w * w + s * s
    amp = (contrast[:, None] * frac * w * w / width2).to(torch.float32)
    scale = (-0.5 / width2).to(torch.float32)
    # draws[..., 5] reserved

    c = coord.to(torch.float32)
    z, y, x = c[:, None, None], c[None, :, None], c[None, None, :]
    r2 = z * z + y * y + x * x
    n = len(diameter)
    inv_s = (1.0 / s).to(torch.float32)
    half = radius.to(torch.float32) * 0.5
    out = None
    for k in range(SPICULES):
        ek = e[:, k, :, None, None, None]
        t = ek[:, 0] * z + ek[:, 1] * y
        t = t + ek[:, 2] * x  # [B, S, S, S]
        cross = (r2 - t * t).clamp_min_(0.0)
        cross *= scale[:, k, None, None, None]
        cross.clamp_min_(_EXP_FLOOR).exp_()
        cross *= amp[:, k, None, None, None]
        axial = torch.special.ndtr(
            (t1[:, k].to(torch.float32)[:, None, None, None] - t) * inv_s.view(n, 1, 1, 1)
        )
        ramp = ((t - half.view(n, 1, 1, 1)) / half.view(n, 1, 1, 1)).clamp_(0.0, 1.0)
        cross *= axial
        cross *= ramp
        out = cross if out is None else torch.maximum(out, cross, out=out)
    assert out is not None
    return out

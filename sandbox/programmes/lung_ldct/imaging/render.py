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
  they are faded to exactly zero inside half the radius, so the peak is untouched. A plain
  nodule is drawn within ``R + 6 s`` of its centre (beyond, its blurred contrast is below 1e-8
  of its peak and is zero); each rod within six cross-section SDs of its axis;
* the scanner: Gaussian blur, then white Gaussian noise of SD ``noise_sd_hu(scanner)`` per
  voxel (white, like conspicuity's sigma; whatever ``spacing_mm``; from the noise bank below),
  then ``scanner.hu_offset`` added to every voxel. Values are not clipped to the -1024 HU floor, so the noise stays
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

**Banks: the lungs and the noise are drawn once and picked per patch.** Drawing a fresh texture,
fresh vessels and fresh noise for every patch cost about ten times the reference device's
forward pass. So, per run seed:

* an *anatomy bank* per scanner blur (and grid): :data:`ANATOMY_BANK` textures and as many
  vessel sets (fewer for large patches, so one bank stays within :data:`BANK_BYTES`: 64 MiB).
  Entry ``k`` is drawn from the ``render.bank`` stream at ``k`` and is the same lungs at every
  blur, blurred for that one. A patch's lungs are one texture (with either sign: the texture is
  a zero-mean Gaussian field) and one vessel set, picked from the ``render.pick`` stream keyed by
  (person, location): the same lungs around the same place at every exam and on every scanner,
  and 256 x 256 x 2 = 131,072 combinations per blur;
* a *noise bank* of :data:`NOISE_BANK` standard normals (at least 64 patches' worth): a patch's
  noise is the window of ``size^3`` values starting at a place drawn from ``render.noise`` keyed
  by (person, exam key, location), times the scanner's SD. Two windows of a run overlap with
  probability about ``2 size^3 / NOISE_BANK`` (1.6 % at 32^3), and then at a shifted place.

A texture and its noise are statistically those described above (stationary Gaussian fields);
what the banks give up is independence between distant patches of a run, which neither a
reader nor a device can use: the labels are independent of the picks. Training and evaluation
use the seeds they are given, so a device is tested on banks it never saw (a fresh seed).

**Randomness** (invariants 1 and 2). Picks and windows are keyed uniforms; a spiculated
nodule's rods come from a CPU generator (``torch.Generator``) seeded with 63 bits of
``render.anatomy`` at (person, location). Every voxel's arithmetic depends on its own patch
alone (a nodule is drawn in groups of patches by the cube that holds it, with values beyond its
own reach set to zero), so a patch is bit-identical whatever batch, batch order or batch size it
is rendered in, and whatever the number of threads, on a given device and build. CPU and GPU
agree to float rounding, not bit for bit (a ``gpu`` test checks 0.05 HU).

**Cost** (one core, 32^3, rendered into a reused batch buffer): about 35 us for a patch
without a finding (reading a texture, a vessel set and a noise window: bound by memory
bandwidth, not arithmetic, so more threads do not help), 85-105 us with a 3-19 mm nodule and
about 0.9 ms with a spiculated one (its eight rods); the default scenario's screening
candidates average about 60 us (``benchmarks/inference_throughput.py``). A new output tensor
per batch costs about as much again, in page faults on first touch, hence ``out``. A bank
takes about 0.3 s to draw, once per process, seed and scanner blur.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sandbox.config import Scanner
from sandbox.programmes.lung_ldct.imaging.conspicuity import (
    CONTRAST_HU,
    FWHM_TO_SD,
    blur_sd_mm,
    noise_sd_hu,
)
from sandbox.rng import stream_key, uniform, uniform_scalar

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
TEXTURE_CHUNK = 16  # bank entries per texture contraction and vessel pass
ANATOMY_BANK = 256  # textures and vessel sets per bank (per seed, grid and scanner blur)
BANK_BYTES = 64 * 2**20  # most memory one anatomy bank may take (fewer entries at large sizes)
NOISE_BANK = 1 << 22  # standard normals in the noise bank (at least 64 patches' worth)
_PICKS = np.arange(3)  # per (person, location): texture entry, vessel entry, texture sign


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
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render one patch per spec.

    Args:
        specs: what each patch shows.
        seed: the run's root seed.
        size: voxels along each axis.
        spacing_mm: voxel size (mm), isotropic.
        device: where the arithmetic runs; the banks are drawn on the CPU, then kept on it.
        out: a contiguous float32 tensor ``[len(specs), 1, size, size, size]`` on ``device`` to
            render into (every voxel is overwritten), or None for a new one. A caller that
            renders batch after batch reuses one: a new batch's memory is otherwise given back
            to the system after each batch and faulted in again, page by page, in the next
            (about as long as drawing a background patch).

    Returns:
        ``out``, or a new ``[len(specs), 1, size, size, size]`` float32 tensor of HU on
        ``device``.
    """
    if size < 8:
        raise ValueError(f"render_batch: size must be >= 8 voxels, got {size!r}")
    if not (math.isfinite(spacing_mm) and spacing_mm > 0.0):
        raise ValueError(f"render_batch: spacing_mm must be > 0, got {spacing_mm!r}")
    dev = torch.device(device)
    n = len(specs)
    shape = (n, 1, size, size, size)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=dev)
    elif (
        tuple(out.shape) != shape
        or out.dtype != torch.float32
        or out.device.type != dev.type
        or (dev.index is not None and out.device.index != dev.index)  # "cuda" is "cuda:0"
    ):
        raise ValueError(
            f"render_batch: out must be a float32 tensor of shape {list(shape)} on {dev}, "
            f"got {out.dtype} {list(out.shape)} on {out.device}"
        )
    elif not out.is_contiguous():
        raise ValueError("render_batch: out must be contiguous")
    if n == 0:
        return out

    # ---- picks: which bank entries and which noise window, keyed per patch
    person = np.array([int(p.key[0]) for p in specs], dtype=np.int64)
    exam = np.array([int(p.key[1]) for p in specs], dtype=np.int64)
    loc = np.array([p.location for p in specs], dtype=np.int64)
    entries = bank_entries(size)
    picks = uniform(stream_key(seed, "render.pick"), person[:, None], 3 * loc[:, None] + _PICKS)
    tex_idx = (picks[:, 0] * entries).astype(np.int64).tolist()
    ves_idx = (picks[:, 1] * entries).astype(np.int64).tolist()
    sign = np.where(picks[:, 2] < 0.5, -1.0, 1.0).tolist()
    voxels = size**3
    noise = _noise_bank(seed, voxels, dev)
    window = uniform(stream_key(seed, "render.noise"), person, exam * _LOCATIONS + loc)
    start = (window * (len(noise) - voxels + 1)).astype(np.int64).tolist()

    # ---- the lungs and the scanner: two passes per patch over bank entries
    looks: dict[Scanner, tuple[_Bank, float, float]] = {}
    by_object: dict[int, tuple[_Bank, float, float]] = {}  # exams share scanner objects
    look_of = []
    for p in specs:
        look = by_object.get(id(p.scanner))
        if look is None:
            if p.scanner not in looks:
                bank = _anatomy_bank(seed, size, spacing_mm, blur_sd_mm(p.scanner), dev)
                looks[p.scanner] = (bank, noise_sd_hu(p.scanner), p.scanner.hu_offset)
            look = by_object[id(p.scanner)] = looks[p.scanner]
        look_of.append(look)
    flat = out.view(n, voxels)
    if dev.type in _GATHER_ON:
        _lungs_gathered(flat, specs, looks, tex_idx, ves_idx, sign, noise, start)
    else:
        for i, row in enumerate(flat.unbind(0)):
            bank, sigma, offset = look_of[i]
            torch.add(
                bank.vessel_sets[ves_idx[i]], bank.textures[tex_idx[i]], alpha=sign[i], out=row
            )
            row.add_(noise[start[i] : start[i] + voxels], alpha=sigma)
            if offset:
                row.add_(offset)

    # ---- findings: each in the cube around the centre that holds it (to 1e-8 of its peak)
    nodules = [i for i, p in enumerate(specs) if p.diameter_mm > 0.0]
    if nodules:
        vessels = [(look_of[i][0].vessels, ves_idx[i]) for i in nodules]
        _add_findings(out, specs, nodules, vessels, seed, size, spacing_mm)
    return out


_GATHER_ON = {"cuda"}  # device types that draw the lungs by batched gathers, not patch by patch


def _lungs_gathered(
    flat: torch.Tensor,
    specs: Sequence[PatchSpec],
    looks: dict[Scanner, tuple[_Bank, float, float]],
    tex_idx: list[int],
    ves_idx: list[int],
    sign: list[float],
    noise: torch.Tensor,
    start: list[int],
) -> None:
    """The lungs and noise of every patch by a few batched gathers per scanner (an accelerator
    pays per kernel launch, not per element). The same arithmetic as the patch-by-patch path,
    up to the last bit of a fused multiply-add."""
    dev, voxels = flat.device, flat.shape[1]
    windows = noise.unfold(0, voxels, 1)  # a view: row k is the window starting at k
    rows_of: dict[Scanner, list[int]] = {}
    for i, p in enumerate(specs):
        rows_of.setdefault(p.scanner, []).append(i)
    for scanner, rows in rows_of.items():
        bank, sigma, offset = looks[scanner]

        def pick(values: list, dtype: torch.dtype = torch.long, rows=rows) -> torch.Tensor:
            return torch.tensor([values[i] for i in rows], dtype=dtype).to(dev)

        part = bank.vessels.index_select(0, pick(ves_idx))
        texture = bank.texture.index_select(0, pick(tex_idx))
        part.addcmul_(texture, pick(sign, torch.float32)[:, None])
        part.add_(windows.index_select(0, pick(start)), alpha=sigma)
        if offset:
            part.add_(offset)
        flat.index_copy_(0, torch.tensor(rows).to(dev), part)


def bank_entries(size: int) -> int:
    """Entries in each anatomy bank: :data:`ANATOMY_BANK`, fewer for large patches so that a
    bank stays within :data:`BANK_BYTES` (at least 32)."""
    return max(32, min(ANATOMY_BANK, BANK_BYTES // (2 * 4 * size**3)))


@dataclass(frozen=True)
class _Bank:
    texture: torch.Tensor  # [K, size^3] zero-mean texture, SD TEXTURE_SD_HU
    vessels: torch.Tensor  # [K, size^3] parenchyma (PARENCHYMA_HU) and its blurred, gated vessels
    textures: tuple[torch.Tensor, ...] = ()  # the rows of texture, as views made once
    vessel_sets: tuple[torch.Tensor, ...] = ()  # the rows of vessels, as views made once

    @staticmethod
    def of(texture: torch.Tensor, vessels: torch.Tensor) -> _Bank:
        return _Bank(texture, vessels, texture.unbind(0), vessels.unbind(0))


_BANKS: OrderedDict[tuple, _Bank] = OrderedDict()
_NOISE: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_BANK_LOCK = threading.Lock()
_KEEP_BANKS = 8  # anatomy banks kept per process (one per scanner blur and grid in use)


def _anatomy_bank(
    seed: int, size: int, spacing_mm: float, blur_sd: float, dev: torch.device
) -> _Bank:
    """The anatomy bank for one blur: entry ``k`` is the texture and the vessels drawn from the
    ``render.bank`` stream at ``k``, the same lungs at every blur, blurred for this one."""
    key = (seed, size, spacing_mm, blur_sd, str(dev))
    with _BANK_LOCK:
        if key in _BANKS:
            _BANKS.move_to_end(key)
            return _BANKS[key]
        k = bank_entries(size)
        bank_key = stream_key(seed, "render.bank")
        lattice_mm = _lattice_mm(size, spacing_mm)
        m = len(lattice_mm)
        white = torch.empty((k, m, m, m), dtype=torch.float32)
        draws = torch.empty((k, VESSELS, 9), dtype=torch.float64)
        for j in range(k):
            torch.randn((m, m, m), generator=_generator(bank_key, j, 0), out=white[j])
            torch.rand(
                (VESSELS, 9),
                generator=_generator(bank_key, j, 1),
                dtype=torch.float64,
                out=draws[j],
            )
        texture = _texture(white, blur_sd, lattice_mm, size, spacing_mm)
        coord = (torch.arange(size, dtype=torch.float64) - size // 2) * spacing_mm
        parts = [draws[s : s + TEXTURE_CHUNK] for s in range(0, k, TEXTURE_CHUNK)]
        blur = torch.full((TEXTURE_CHUNK,), blur_sd, dtype=torch.float64)
        vessels = torch.cat([_vessels(d, blur[: len(d)], coord, size, spacing_mm) for d in parts])
        vessels += PARENCHYMA_HU
        bank = _Bank.of(texture.reshape(k, -1).to(dev), vessels.reshape(k, -1).to(dev))
        _BANKS[key] = bank
        while len(_BANKS) > _KEEP_BANKS:
            _BANKS.popitem(last=False)
        return bank


def _noise_bank(seed: int, voxels: int, dev: torch.device) -> torch.Tensor:
    """The run's noise bank: ``max(NOISE_BANK, 64 * voxels)`` standard normals (float32)."""
    length = max(NOISE_BANK, 64 * voxels)
    key = (seed, length, str(dev))
    with _BANK_LOCK:
        if key not in _NOISE:
            g = _generator(stream_key(seed, "render.bank"), 0, 2)
            _NOISE[key] = torch.randn((length,), generator=g, dtype=torch.float32).to(dev)
            while len(_NOISE) > 2:
                _NOISE.popitem(last=False)
        _NOISE.move_to_end(key)
        return _NOISE[key]


def _add_findings(
    out: torch.Tensor,
    specs: Sequence[PatchSpec],
    rows: list[int],
    vessels: list[tuple[torch.Tensor, int]],
    seed: int,
    size: int,
    spacing_mm: float,
) -> None:
    """Draw the finding of each patch in ``rows`` into ``out``, over that patch's vessels
    (``vessels``: its anatomy bank's vessel tensor and entry, in the order of ``rows``).

    The denser object fills a voxel: where the nodule (or a spicule) exceeds the vessel, the
    excess is added. A plain nodule is drawn within ``R + 6 s`` of the centre, beyond which its
    blurred contrast is below 1e-8 of its peak and is set to exactly zero; a spiculated one over
    the whole patch. Patches are drawn in groups by bank and by the cube that holds them; a
    voxel's value depends on its own patch alone, not on the group.
    """
    dev = out.device
    f64 = {"dtype": torch.float64, "device": dev}
    chosen = [specs[i] for i in rows]
    blurs = [blur_sd_mm(p.scanner) for p in chosen]
    diameter = torch.tensor([p.diameter_mm for p in chosen], **f64)
    contrast = torch.tensor([CONTRAST_HU[p.nodule_type] for p in chosen], **f64)
    blur = torch.tensor(blurs, **f64)
    reach = diameter * 0.5 + 6.0 * blur
    c = size // 2
    r = spacing_mm * torch.arange(3 * c * c + 1, **f64).sqrt()
    spiky = torch.tensor([p.spiculated for p in chosen], device=dev)

    groups: dict[tuple[int, int], list[int]] = {}
    for j, p in enumerate(chosen):
        h = c if p.spiculated else min(c, 4 * math.ceil(float(reach[j]) / spacing_mm / 4.0))
        groups.setdefault((h, id(vessels[j][0])), []).append(j)
    coord = (torch.arange(size, **f64) - c) * spacing_mm
    anatomy_key = stream_key(seed, "render.anatomy")
    for (h, _), members in sorted(groups.items()):
        lo, radii = _cube(size, h, dev)
        d = round(len(radii) ** (1.0 / 3.0))
        part = torch.tensor(members, device=dev)
        rh = r[: 3 * h * h + 1][None, :]
        radius, sd = 0.5 * diameter[part][:, None], blur[part][:, None]
        profile = contrast[part][:, None] * _blurred_sphere(rh, radius, sd)
        inside = (rh <= reach[part][:, None]) | spiky[part][:, None]
        profile = torch.where(inside, profile, 0.0).to(torch.float32)
        obj = torch.index_select(profile, 1, radii)  # [G, d^3]
        for k, j in enumerate(members):
            p = chosen[j]
            if p.spiculated:
                g = _generator(anatomy_key, int(p.key[0]), p.location)
                draws = torch.rand((SPICULES, 6), generator=g, dtype=torch.float64).to(dev)
                _spicules(
                    obj[k].view(d, d, d),
                    draws,
                    float(diameter[j]),
                    CONTRAST_HU[p.nodule_type],
                    blurs[j],
                    coord[lo : lo + d],
                )
        # the bank's vessels hold the parenchyma level: excess = obj - (stored - level)
        box = (slice(None), *(slice(lo, lo + d),) * 3)
        bank = vessels[members[0]][0].view(-1, size, size, size)[box]
        entry = torch.tensor([vessels[j][1] for j in members], device=dev)
        obj = obj.view(-1, d, d, d)
        obj -= bank.index_select(0, entry)
        obj.add_(PARENCHYMA_HU).clamp_min_(0.0)
        region = out.view(-1, size, size, size)[box]
        for k, j in enumerate(members):
            region[rows[j]] += obj[k]


_CUBES: dict[tuple[int, int, str], tuple[int, torch.Tensor]] = {}


def _cube(size: int, h: int, dev: torch.device) -> tuple[int, torch.Tensor]:
    """The cube of half-width ``h`` voxels around the centre voxel, clipped to the patch: its
    first voxel along each axis and each voxel's squared radius in voxels (z, y, x order)."""
    key = (size, h, str(dev))
    if key not in _CUBES:
        c = size // 2
        lo, hi = max(0, c - h), min(size, c + h + 1)
        sq = (torch.arange(lo, hi, device=dev) - c) ** 2
        radii = sq[:, None, None] + sq[None, :, None] + sq[None, None, :]
        _CUBES[key] = (lo, radii.reshape(-1))
    return _CUBES[key]


def _generator(key: int, person: int, index: int) -> torch.Generator:
    """A CPU generator seeded with 63 bits of the keyed stream at (person, index)."""
    hi = int(uniform_scalar(key, person, 2 * index) * 2.0**32)
    lo = int(uniform_scalar(key, person, 2 * index + 1) * 2.0**31)
    g = torch.Generator()
    g.manual_seed((hi << 31) | lo)
    return g


def _texture(
    white: torch.Tensor, blur_sd: float, lattice_mm: torch.Tensor, size: int, spacing_mm: float
) -> torch.Tensor:
    """``[B, size, size, size]`` texture of one blur from lattice noise ``white`` ``[B, m, m, m]``,
    contracted :data:`TEXTURE_CHUNK` entries at a time (the last chunk padded with zeros, so
    every contraction has the same shape)."""
    n, m = white.shape[0], white.shape[1]
    out = torch.empty((n, size, size, size), dtype=torch.float32)
    gt = _texture_weights(lattice_mm, size, spacing_mm, blur_sd).T.contiguous()  # [m, size]
    chunk = torch.empty((TEXTURE_CHUNK, m, m, m), dtype=torch.float32)
    for start in range(0, n, TEXTURE_CHUNK):
        part = white[start : start + TEXTURE_CHUNK]
        chunk.zero_()
        chunk[: len(part)] = part
        t = chunk @ gt  # [K, a, b, x]
        t = t.transpose(2, 3) @ gt  # [K, a, x, y]
        t = t.permute(0, 2, 3, 1) @ gt  # [K, x, y, z]
        out[start : start + len(part)] = t[: len(part)].permute(0, 3, 2, 1)
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
    obj: torch.Tensor,
    draws: torch.Tensor,
    diameter: float,
    contrast: float,
    blur: float,
    coord: torch.Tensor,
) -> None:
    """Raise ``obj`` (``[d, d, d]`` HU over ``coord`` on each axis) to the patch's radial
    spicules wherever they are denser.

    A rod from the centre along unit ``e`` to ``t1 = R + reach``, Gaussian cross-section of
    SD ``w`` blurred to ``sqrt(w^2 + s^2)``; blurred, its axial profile is
    ``Phi((t1 - t) / s)``. A ramp from 0 at ``t = R/2`` to 1 at ``t = R`` replaces the inner
    end, so the rod is exactly zero inside half the radius. Each rod is computed in a box
    holding its axis from ``R/2`` to ``t1 + 6 s``, widened by 6 cross-section SDs (the box of
    the patch's longest extent on each axis, shifted inside the patch), and is zero outside
    it (there it is below 1e-8 of its contrast).
    """
    dev = obj.device
    radius = 0.5 * diameter
    e = _direction(draws[:, 0:2])  # [K, 3]
    t1 = radius + SPICULE_REACH_MM[0] + draws[:, 2] * (SPICULE_REACH_MM[1] - SPICULE_REACH_MM[0])
    w = FWHM_TO_SD * (
        SPICULE_WIDTH_MM[0] + draws[:, 3] * (SPICULE_WIDTH_MM[1] - SPICULE_WIDTH_MM[0])
    )
    frac = SPICULE_CONTRAST[0] + draws[:, 4] * (SPICULE_CONTRAST[1] - SPICULE_CONTRAST[0])
    width2 = w * w + blur * blur
    amp = contrast * frac * w * w / width2
    pad = 6.0 * width2.sqrt()[:, None]
    near, far = e * (0.5 * radius), e * (t1 + 6.0 * blur)[:, None]
    n = len(coord)
    spacing, first = float(coord[1] - coord[0]), float(coord[0])
    lo = ((torch.minimum(near, far) - pad - first) / spacing).floor().clamp(0, n - 1).long()
    hi = ((torch.maximum(near, far) + pad - first) / spacing).ceil().clamp(0, n - 1).long() + 1
    ext = (hi - lo).amax(dim=0).tolist()  # the common box
    lo = torch.minimum(lo, n - torch.tensor(ext, device=dev)[None, :])
    c32 = coord.to(torch.float32)
    axes = [c32[lo[:, a, None] + torch.arange(ext[a], device=dev)[None, :]] for a in range(3)]
    z, y, x = axes[0][:, :, None, None], axes[1][:, None, :, None], axes[2][:, None, None, :]
    e32 = e.to(torch.float32)
    t = (e32[:, 0, None, None, None] * z + e32[:, 1, None, None, None] * y) + e32[
        :, 2, None, None, None
    ] * x
    rod = torch.addcmul((z * z + y * y) + x * x, t, t, value=-1.0)
    per_rod = (-1, 1, 1, 1)
    rod.clamp_min_(0.0).mul_((-0.5 / width2).to(torch.float32).view(per_rod))
    rod.clamp_min_(_EXP_FLOOR).exp_().mul_(amp.to(torch.float32).view(per_rod))
    rod *= torch.special.ndtr((t1.to(torch.float32).view(per_rod) - t).mul_(1.0 / blur))
    rod *= t.sub_(0.5 * radius).mul_(2.0 / radius).clamp_(0.0, 1.0)
    for k, (a, b, c) in enumerate(lo.tolist()):
        view = obj[a : a + ext[0], b : b + ext[1], c : c + ext[2]]
        torch.maximum(view, rod[k].to(dev), out=view)

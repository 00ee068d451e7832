"""Rendered exam patches: measured CNR against conspicuity, keyed randomness, batch invariance.

The agreement tests measure the rendered images the way an observer would and compare with
:func:`sandbox.programmes.lung_ldct.imaging.cnr`, the function readers act on (invariant 5: the reader and the
model must see the same nodule).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sandbox.config import Scanner
from sandbox.programmes.lung_ldct.imaging import (
    CONTRAST_HU,
    PatchSpec,
    blur_sd_mm,
    cnr,
    noise_sd_hu,
    peak_contrast_hu,
    render_batch,
)
from sandbox.programmes.lung_ldct.imaging import findings as findings_module
from sandbox.programmes.lung_ldct.reading import MALIGNANT_KEY, Finding

SEED = 20260
SIZE = 32
C = SIZE // 2  # the nodule's centre voxel
THIN = Scanner(model="a", dose_mgy=1.0, noise_hu_at_1mgy=70.0, kernel_fwhm_mm=0.9, slice_mm=1.0)
# noisier, and blurry enough (isotropic-equivalent SD 1.3 mm) that small nodules lose contrast
THICK = Scanner(model="b", dose_mgy=0.8, noise_hu_at_1mgy=90.0, kernel_fwhm_mm=1.2, slice_mm=5.0)
SCANNERS = {"thin": THIN, "thick": THICK}
DIAMETERS_MM = (3.0, 4.0, 6.0, 10.0, 20.0)
PEOPLE = 16  # patches per agreement case
PAIRED = 4  # people per case in the exact (noise-free) comparison

# offsets and radii (mm) of the 27 voxels around the centre
_OFFSETS = np.stack(np.meshgrid(*(np.arange(-1, 2),) * 3, indexing="ij"), -1).reshape(-1, 3)
BLOCK_R_MM = np.sqrt((_OFFSETS**2).sum(1)).reshape(3, 3, 3)
_GRID = np.arange(SIZE) - C
RADIUS_MM = np.sqrt(
    _GRID[:, None, None] ** 2 + _GRID[None, :, None] ** 2 + _GRID[None, None, :] ** 2
)


def specs(people, exam, diameter_mm=0.0, nodule_type=0, scanner=THIN, spiculated=False):
    return [PatchSpec((p, exam), diameter_mm, nodule_type, spiculated, scanner) for p in people]


def blurred_sphere(r_mm, diameter_mm, blur_sd):
    """Independent reference: P(|X| < R) for X ~ N(r, s^2 I_3) is a noncentral chi-square CDF."""
    radius = 0.5 * diameter_mm
    return stats.ncx2.cdf(radius**2 / blur_sd**2, 3, np.asarray(r_mm) ** 2 / blur_sd**2)


def block(x):
    """The 3x3x3 voxels around the centre of ``[B, 1, S, S, S]`` patches, as numpy float64."""
    return x[:, 0, C - 1 : C + 2, C - 1 : C + 2, C - 1 : C + 2].double().numpy()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Render on one thread here: the results do not depend on it (a test below checks), and
    on a busy two-core machine many small multi-threaded ops mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield before
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rendered():
    """Per scanner, in one batch: nodule patches for every (diameter, type) case at exam 1,
    the same keys without a nodule (paired), and two further nodule-free exams of the same
    people."""
    out = {}
    people = range(PEOPLE)
    cases = [(d, t) for d in DIAMETERS_MM for t in (0, 1, 2)]
    for name, scanner in SCANNERS.items():
        batch = [s for d, t in cases for s in specs(people, 1, d, t, scanner)]
        batch += specs(range(PAIRED), 1, scanner=scanner)
        batch += specs(people, 2, scanner=scanner) + specs(people, 3, scanner=scanner)
        x = render_batch(batch, SEED)
        n = len(cases) * PEOPLE
        out[name] = {
            "cases": {c: x[i * PEOPLE : (i + 1) * PEOPLE] for i, c in enumerate(cases)},
            "paired_empty": x[n : n + PAIRED],
            "empty_2": x[n + PAIRED : n + PAIRED + PEOPLE],
            "empty_3": x[n + PAIRED + PEOPLE :],
        }
    return out


def noise_sd_estimate(data) -> float:
    """Noise SD from two exams of the same people: the anatomy (texture, vessels) is keyed by
    the person alone, so it cancels exactly in the difference, which is pure noise of
    variance 2 sigma^2. No background model, no masking of vessels."""
    diff = (data["empty_3"] - data["empty_2"]).double()
    return float(diff.std() / math.sqrt(2.0))


# ---------------------------------------------------------------- agreement with conspicuity
@pytest.mark.parametrize("name", SCANNERS)
def test_rendered_nodule_is_the_blurred_sphere_of_conspicuity(rendered, name):
    # Same key with and without the nodule: anatomy and noise are identical, so the
    # difference is the nodule's blurred profile, free of noise. It must equal the Gaussian-
    # blurred sphere (scipy's noncentral chi-square, independent of the renderer's formula)
    # at the 27 central voxels, and conspicuity's peak contrast at the centre.
    data, scanner = rendered[name], SCANNERS[name]
    s = blur_sd_mm(scanner)
    for (d, t), x in data["cases"].items():
        signal = block(x[:PAIRED]) - block(data["paired_empty"])
        expected = CONTRAST_HU[t] * blurred_sphere(BLOCK_R_MM, d, s)
        np.testing.assert_allclose(signal, np.broadcast_to(expected, signal.shape), atol=0.02)
        peak = peak_contrast_hu(d, t, s)
        np.testing.assert_allclose(signal[:, 1, 1, 1], peak, rtol=1e-5, atol=0.02)


@pytest.mark.parametrize("name", SCANNERS)
def test_noise_sd_is_the_scanner_noise(rendered, name):
    # 16 * 32^3 voxel pairs: the estimate's relative SE is about 0.1 %
    data = rendered[name]
    assert noise_sd_estimate(data) == pytest.approx(noise_sd_hu(SCANNERS[name]), rel=0.005)
    # white, as conspicuity's per-voxel sigma assumes: neighbours are uncorrelated (SE 0.002)
    diff = (data["empty_3"] - data["empty_2"]).double()
    lag = torch.corrcoef(torch.stack([diff[..., :-1].flatten(), diff[..., 1:].flatten()]))
    assert abs(float(lag[0, 1])) < 0.01


@pytest.mark.parametrize("name", SCANNERS)
def test_measured_cnr_agrees_with_conspicuity(rendered, name):
    """CNR measured in each image as an observer would, against ``cnr(d, type, scanner)``.

    Signal per patch: the mean of the 27 voxels around the centre minus the patch's own
    background (the median of voxels more than R + 5 mm from the centre: robust to the
    vessels), divided by the mean/peak ratio of the blurred-sphere profile over those 27
    voxels (from scipy), which turns the neighbourhood mean into a peak estimate with 27
    times less noise variance than the centre voxel alone. Noise: from two other exams of the
    same people (see :func:`noise_sd_estimate`), independent of the signal patches.

    Tolerance: 4 standard errors of the batch mean (the per-patch scatter comes from noise and
    from the anatomical texture, which conspicuity ignores), plus 1 % for the noise estimate.
    The fixed seed makes the test deterministic; the bound says the renderer is unbiased
    at the precision 16 patches can show (one SE is 0.06-0.13 CNR units here).
    """
    data, scanner = rendered[name], SCANNERS[name]
    s = blur_sd_mm(scanner)
    sigma = noise_sd_estimate(data)
    rows = []
    for (d, t), x in data["cases"].items():
        profile = blurred_sphere(BLOCK_R_MM, d, s)
        to_peak = profile[1, 1, 1] / profile.mean()
        far = RADIUS_MM > 0.5 * d + 5.0
        volumes = x[:, 0].double().numpy()
        background = np.array([np.median(v[far]) for v in volumes])
        peak = (block(x).mean(axis=(1, 2, 3)) - background) * to_peak
        measured = peak.mean() / sigma
        se = peak.std(ddof=1) / math.sqrt(len(peak)) / sigma
        predicted = cnr(d, t, scanner)
        rows.append((d, t, predicted, measured, se))
    bad = [r for r in rows if abs(r[3] - r[2]) > 4.0 * r[4] + 0.01 * r[2]]
    table = "\n".join(
        f"d={d:4.1f} type={t} cnr={p:6.2f} measured={m:6.2f} se={e:.3f}" for d, t, p, m, e in rows
    )
    assert not bad, f"{name}: measured CNR off conspicuity's\n{table}"


def test_nodule_free_patch_has_no_nodule(rendered):
    # diameter 0: the centre is background (centre neighbourhood minus the patch median ~ 0)
    for name in SCANNERS:
        x = rendered[name]["empty_2"]
        volumes = x[:, 0].double().numpy()
        excess = block(x).mean(axis=(1, 2, 3)) - np.median(volumes.reshape(len(x), -1), axis=1)
        se = excess.std(ddof=1) / math.sqrt(len(excess))
        assert abs(excess.mean()) < 4.0 * se + 1.0, name
        # and the centre voxel sits at parenchyma: its scatter is noise plus texture (20 HU)
        centre = x[:, 0, C, C, C].double()
        se = math.hypot(noise_sd_hu(SCANNERS[name]), 20.0) / math.sqrt(len(centre))
        assert abs(float(centre.mean()) + 850.0) < 4.0 * se, name


# ---------------------------------------------------------------- keyed randomness
MIXED = [
    PatchSpec((0, 1), 6.0, 0, False, THIN),
    PatchSpec((1, 4), 12.0, 1, True, THICK),
    PatchSpec((2, 1), 0.0, 0, False, THIN),
    PatchSpec((3, 9), 20.0, 2, True, THIN),
    PatchSpec((4, 2), 4.0, 2, False, THICK),
    PatchSpec((5, 2), 9.0, 0, True, THICK),
]


def test_output_shape_dtype_and_device():
    x = render_batch(MIXED[:2], SEED)
    assert x.shape == (2, 1, SIZE, SIZE, SIZE) and x.dtype == torch.float32
    assert x.device.type == "cpu"
    small = render_batch(MIXED[:3], SEED, size=17, spacing_mm=1.5, device=torch.device("cpu"))
    assert small.shape == (3, 1, 17, 17, 17)
    assert render_batch([], SEED).shape == (0, 1, SIZE, SIZE, SIZE)


def test_same_inputs_give_the_same_tensor():
    assert torch.equal(render_batch(MIXED, SEED), render_batch(MIXED, SEED))


def test_a_patch_does_not_depend_on_its_batch():
    full = render_batch(MIXED, SEED)
    for i, spec in enumerate(MIXED):
        assert torch.equal(render_batch([spec], SEED)[0], full[i]), i
    order = [3, 5, 0, 4, 1, 2]
    assert torch.equal(render_batch([MIXED[i] for i in order], SEED), full[order])
    # inside a larger batch of other people, with duplicates
    other = [PatchSpec((100 + i, 1), 5.0, i % 3, i % 2 == 0, THIN) for i in range(7)]
    mixed = render_batch(other[:3] + MIXED[2:4] + other[3:] + MIXED[2:3], SEED)
    assert torch.equal(mixed[3:5], full[2:4]) and torch.equal(mixed[-1], full[2])


def test_rendering_into_a_used_buffer_gives_the_same_patches():
    fresh = render_batch(MIXED, SEED)
    buffer = torch.full((len(MIXED), 1, SIZE, SIZE, SIZE), float("nan"))
    got = render_batch(MIXED, SEED, out=buffer)
    assert got.data_ptr() == buffer.data_ptr() and torch.equal(got, fresh)
    render_batch(MIXED[::-1], SEED, out=buffer)  # reused for another batch
    assert torch.equal(buffer, fresh.flip(0))


@pytest.mark.parametrize(
    "out, word",
    [
        (torch.empty((5, 1, SIZE, SIZE, SIZE)), "shape"),
        (torch.empty((6, 1, SIZE, SIZE, SIZE), dtype=torch.float64), "float32"),
        (torch.empty((6, 1, SIZE, SIZE, 2 * SIZE))[..., ::2], "contiguous"),
    ],
)
def test_a_wrong_buffer_is_refused(out, word):
    with pytest.raises(ValueError, match=word):
        render_batch(MIXED, SEED, out=out)


def test_a_patch_does_not_depend_on_the_thread_count(one_thread):
    single = render_batch(MIXED, SEED)
    try:
        torch.set_num_threads(max(2, one_thread))
        several = render_batch(MIXED, SEED)
    finally:
        torch.set_num_threads(1)
    assert torch.equal(single, several)


def test_different_keys_and_seeds_differ():
    base = PatchSpec((7, 3), 6.0, 0, False, THIN)
    other_exam = PatchSpec((7, 4), 6.0, 0, False, THIN)
    other_person = PatchSpec((8, 3), 6.0, 0, False, THIN)
    x = render_batch([base, other_exam, other_person], SEED)
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[0], x[2])
    assert not torch.equal(x[0], render_batch([base], SEED + 1)[0])
    # another exam of the same person: the same lungs, new noise, so the difference is
    # zero-mean noise of SD sigma * sqrt(2) (a different person differs by anatomy as well)
    diff = (x[1] - x[0]).double()
    assert float(diff.mean()) == pytest.approx(0.0, abs=3.0)
    assert float(diff.std()) == pytest.approx(math.sqrt(2.0) * noise_sd_hu(THIN), rel=0.03)


def test_hu_offset_shifts_every_voxel():
    shifted = Scanner(
        model="a",
        dose_mgy=1.0,
        noise_hu_at_1mgy=70.0,
        kernel_fwhm_mm=0.9,
        slice_mm=1.0,
        hu_offset=40.0,
    )
    a = render_batch([PatchSpec((3, 1), 8.0, 0, True, THIN)], SEED)
    b = render_batch([PatchSpec((3, 1), 8.0, 0, True, shifted)], SEED)
    torch.testing.assert_close(b - a, torch.full_like(a, 40.0), rtol=0, atol=1e-3)
    assert float(b.mean() - a.mean()) == pytest.approx(40.0, abs=1e-3)


def test_spicules_leave_the_centre_and_add_outside():
    plain, spiky = render_batch(
        [PatchSpec((5, 2), 10.0, 0, False, THIN), PatchSpec((5, 2), 10.0, 0, True, THIN)], SEED
    )
    inner = torch.from_numpy(RADIUS_MM <= 2.5)  # within half the radius: untouched, bit for bit
    assert torch.equal(spiky[0][inner], plain[0][inner])
    outside = torch.from_numpy(RADIUS_MM > 5.0)
    assert float((spiky[0] - plain[0])[outside].max()) > 100.0


def test_a_batch_of_64_renders():
    batch = [
        PatchSpec((i, i % 5), float(i % 21), i % 3, i % 8 == 0, THIN if i % 2 else THICK)
        for i in range(64)
    ]
    x = render_batch(batch, SEED)
    assert x.shape == (64, 1, SIZE, SIZE, SIZE) and bool(torch.isfinite(x).all())


def test_the_gathered_path_an_accelerator_takes_draws_the_same_patches(monkeypatch):
    """On CUDA the lungs and noise are drawn by batched gathers, not patch by patch: forced on
    the CPU, that path gives the same patches to float rounding, whatever the batch."""
    from sandbox.programmes.lung_ldct.imaging import render as r

    loop = render_batch(MIXED, SEED)
    monkeypatch.setattr(r, "_GATHER_ON", {"cpu"})
    gathered = render_batch(MIXED, SEED)
    torch.testing.assert_close(gathered, loop, rtol=0, atol=1e-3)
    assert torch.equal(render_batch(MIXED[2:3], SEED)[0], gathered[2])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu_and_is_batch_invariant():
    cpu = render_batch(MIXED, SEED)
    gpu = render_batch(MIXED, SEED, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0.05)
    assert torch.equal(render_batch(MIXED[1:2], SEED, device="cuda")[0], gpu[1])


# ---------------------------------------------------------------- specs and findings
def test_candidates_hold_every_conspicuous_finding_and_background_unmarked():
    f = findings_module
    benign = [Finding(0, 5.0, 0, False, 30.0), Finding(1, 2.0, 2, False, 1.0)]
    cancer = Finding(MALIGNANT_KEY, 4.0, 1, True, 12.0)
    cands = f.candidates(42, [*benign, cancer])
    # the faint ground-glass nodule (conspicuity 1 < the Rose criterion) is not proposed
    assert len(cands) == 2 + f.BACKGROUND_CANDIDATES
    assert [c.location for c in cands] == sorted(c.location for c in cands)
    assert all(0 <= c.location < 2**31 for c in cands)
    assert sorted(c.diameter_mm for c in cands) == [0.0] * f.BACKGROUND_CANDIDATES + [4.0, 5.0]
    # nothing in a candidate says what it is; the outcome side resolves it from the findings
    kinds = [f.candidate_kind(42, c.location, [*benign, cancer]) for c in cands]
    assert sorted(kinds) == ["background"] * f.BACKGROUND_CANDIDATES + ["benign", "cancer"]
    assert set(vars(f.Candidate)["__slots__"]) == {
        "location",
        "diameter_mm",
        "nodule_type",
        "spiculated",
    }
    # the same findings at another exam are at the same places; another person's elsewhere
    assert f.candidates(42, [*benign, cancer]) == cands
    assert {c.location for c in f.candidates(43, [*benign, cancer])}.isdisjoint(
        c.location for c in cands
    )
    # no findings: background regions only
    assert [c.diameter_mm for c in f.candidates(42, [])] == [0.0] * f.BACKGROUND_CANDIDATES


def test_candidates_keep_the_most_conspicuous_findings():
    f = findings_module
    many = [Finding(k, 3.0 + k, 0, False, 10.0 + k) for k in range(f.MAX_FINDING_CANDIDATES + 3)]
    sizes = sorted(c.diameter_mm for c in f.candidates(1, many) if c.diameter_mm > 0)
    assert sizes == [3.0 + k for k in range(3, f.MAX_FINDING_CANDIDATES + 3)]


def test_anatomy_follows_the_location_noise_the_exam():
    """The same place at two exams: the same lungs (texture and vessels), new noise; another
    place of the same person at the same exam: other lungs."""
    a = PatchSpec((7, 3), 0.0, 0, False, THIN, location=11)
    later = PatchSpec((7, 400), 0.0, 0, False, THIN, location=11)
    elsewhere = PatchSpec((7, 3), 0.0, 0, False, THIN, location=12)
    x = render_batch([a, later, elsewhere], SEED).double()
    same_place = float((x[1] - x[0]).std())
    other_place = float((x[2] - x[0]).std())
    assert same_place == pytest.approx(math.sqrt(2.0) * noise_sd_hu(THIN), rel=0.03)
    assert other_place > 1.1 * same_place


def test_banks_stay_within_their_memory_bound():
    from sandbox.programmes.lung_ldct.imaging import render as r

    assert r.bank_entries(32) == r.ANATOMY_BANK
    big = r.bank_entries(64)
    assert 32 <= big < r.ANATOMY_BANK and 2 * 4 * 64**3 * big <= r.BANK_BYTES
    render_batch(MIXED[:1], SEED + 5, size=40)
    bank = r._anatomy_bank(SEED + 5, 40, 1.0, blur_sd_mm(THIN), torch.device("cpu"))
    assert bank.texture.shape == bank.vessels.shape == (r.bank_entries(40), 40**3)
    assert bank.texture.element_size() * bank.texture.numel() * 2 <= r.BANK_BYTES


def test_lungs_are_picked_from_the_bank_and_the_texture_sign_varies():
    """Without noise or a finding, a patch is its bank entries: the vessel set plus or minus
    the texture. Many places of one person use many entries, both signs among them."""
    from sandbox.programmes.lung_ldct.imaging import render as r
    from sandbox.rng import stream_key, uniform

    places = np.arange(200)
    picks = uniform(
        stream_key(SEED, "render.pick"), np.full((200, 1), 9), 3 * places[:, None] + r._PICKS
    )
    assert len(set((picks[:, 0] * r.ANATOMY_BANK).astype(int))) > 100
    assert 0.3 < float((picks[:, 2] < 0.5).mean()) < 0.7
    x = render_batch(
        [PatchSpec((9, 1), 0.0, 0, False, THIN, location=int(k)) for k in places[:4]], SEED
    )
    bank = r._anatomy_bank(SEED, SIZE, 1.0, blur_sd_mm(THIN), torch.device("cpu"))
    for k in range(4):
        t, v = (int(picks[k, j] * r.ANATOMY_BANK) for j in (0, 1))
        sign = -1.0 if picks[k, 2] < 0.5 else 1.0
        lungs = (bank.vessels[v] + sign * bank.texture[t]).view(SIZE, SIZE, SIZE)
        residual = (x[k, 0] - lungs).double()  # the noise alone
        assert float(residual.mean()) == pytest.approx(0.0, abs=2.0)
        assert float(residual.std()) == pytest.approx(noise_sd_hu(THIN), rel=0.03)


@pytest.mark.parametrize(
    ("diameter_mm", "nodule_type", "word"), [(-1.0, 0, "diameter_mm"), (5.0, 3, "nodule_type")]
)
def test_bad_specs_name_the_field(diameter_mm, nodule_type, word):
    with pytest.raises(ValueError, match=word):
        PatchSpec((0, 0), diameter_mm, nodule_type, False, THIN)


def test_bad_locations_are_refused():
    with pytest.raises(ValueError, match="location"):
        PatchSpec((0, 0), 5.0, 0, False, THIN, location=2**31)


def test_nothing_a_device_is_shown_tells_the_tumour_from_a_benign_nodule():
    """The same nodules with the tumour relabelled as a benign nodule give the renderer the same
    things to draw: only the opaque locations differ, and no field names the tumour."""
    from dataclasses import fields

    from sandbox.programmes.lung_ldct.programme import ExamImage

    f = findings_module
    shown = [Finding(0, 5.0, 0, False, 30.0), Finding(MALIGNANT_KEY, 7.0, 1, True, 40.0)]
    relabelled = [shown[0], Finding(11, 7.0, 1, True, 40.0)]
    a, b = f.candidates(9, shown), f.candidates(9, relabelled)

    def drawn(cands):
        return sorted((c.diameter_mm, c.nodule_type, c.spiculated) for c in cands)

    assert drawn(a) == drawn(b)
    assert {fl.name for fl in fields(ExamImage)} == {
        "person_id",
        "exam_day",
        "scanner",
        "candidates",
    }

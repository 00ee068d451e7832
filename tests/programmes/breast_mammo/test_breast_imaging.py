"""The rendered mammogram patch and the candidate regions an AI device is shown: deterministic by
key whatever the batch, the same tissue at every screen, masking by density, and candidates that
never say which one is the cancer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sandbox.programmes.breast_mammo.imaging import (
    BACKGROUND_CANDIDATES,
    NIPPLE_MM,
    PIXEL_MM,
    VIEW_DEPTH_SD_MM,
    Candidate,
    PatchSpec,
    candidate_kind,
    candidates,
    render_batch,
)
from sandbox.programmes.breast_mammo.reading import DCIS_KEY, INVASIVE_KEY, Finding
from sandbox.programmes.breast_mammo.visibility import GLANDULAR, Detector

DET = Detector("ffdm", 0.05, 0.068, 0.085)


def spec(**kw) -> PatchSpec:
    base = dict(person_id=3, exam_day=100, view=0, location=17, density=1, detector=DET)
    return PatchSpec(**{**base, **kw})


def test_a_patch_is_the_same_whatever_its_batch():
    specs = [
        spec(),
        spec(location=18, mass_mm=12.0, margin=2),
        spec(location=19, calc_mm=8.0, pleomorphic=True),
        spec(person_id=4, density=3, mass_mm=6.0, margin=1),
    ]
    together = render_batch(specs, 7)
    alone = torch.cat([render_batch([s], 7) for s in specs])
    assert torch.equal(together, alone)
    assert torch.equal(render_batch(specs[::-1], 7), together.flip(0))
    out = torch.full((4, 1, 64, 64), float("nan"))
    assert render_batch(specs, 7, out=out) is out and torch.equal(out, together)
    assert not torch.equal(render_batch(specs, 8), together)  # another run seed, other noise


def test_the_same_tissue_at_every_screen_other_tissue_in_another_view():
    day1, day2, other = render_batch([spec(), spec(exam_day=830), spec(view=1)], 7)[:, 0]
    diff = (day2 - day1).numpy()
    sigma_q = DET.quantum_noise / PIXEL_MM
    # only the exam's quantum noise differs: white, with twice its variance
    assert abs(diff.std() - np.sqrt(2) * sigma_q) < 0.1 * sigma_q
    # another view is other tissue: it differs by about the tissue's own spread
    assert (other - day1).std() > 0.5 * day1.std() > 5 * diff.std()


def test_dense_tissue_masks_a_mass_by_contrast_and_texture():
    def mass_and_tissue(density):
        bare, mass = render_batch([spec(density=density), spec(density=density, mass_mm=12.0)], 7)[
            :, 0
        ]
        return float((mass - bare).max()), float(bare.std())

    (sig_a, tex_a), (sig_d, tex_d), (_, tex_c) = (mass_and_tissue(d) for d in (0, 3, 2))
    # the mass's contrast is its thickness times the fat around it
    assert sig_a == pytest.approx(12.0 * (1 - GLANDULAR[0]), rel=0.05)
    assert sig_d / sig_a == pytest.approx((1 - GLANDULAR[3]) / (1 - GLANDULAR[0]), rel=0.05)
    assert tex_c > tex_a  # the texture is strongest where fat and gland are mixed
    assert sig_a / tex_a > 4 * sig_d / tex_d


def test_calcification_specks_stand_out_at_their_own_scale():
    bare, calcs = render_batch([spec(), spec(calc_mm=10.0)], 7)[:, 0]
    signal = (calcs - bare).numpy()
    assert (signal > 0.3).sum() >= 8  # about a speck per millimetre of extent
    lap = bare.numpy() - 0.25 * (
        np.roll(bare.numpy(), 1, 0)
        + np.roll(bare.numpy(), -1, 0)
        + np.roll(bare.numpy(), 1, 1)
        + np.roll(bare.numpy(), -1, 1)
    )
    assert signal.max() > 2 * lap.std()  # a speck stands out of pixel-scale tissue and noise


def _outline(mass: torch.Tensor, level: float) -> np.ndarray:
    """A mass's radius (pixels) along 72 rays from the patch's centre, where its added signal
    first falls below ``level``."""
    m = mass.numpy()
    c = (m.shape[-1] - 1) / 2.0
    steps = np.arange(0.0, c, 0.25)
    radii = []
    for a in np.linspace(0.0, 2.0 * np.pi, 72, endpoint=False):
        yy = np.clip(np.round(c + steps * np.sin(a)).astype(int), 0, m.shape[-1] - 1)
        xx = np.clip(np.round(c + steps * np.cos(a)).astype(int), 0, m.shape[-1] - 1)
        below = np.flatnonzero(m[yy, xx] < level)
        radii.append(steps[below[0]] if len(below) else c)
    return np.asarray(radii)


def _lumpiness(radii: np.ndarray) -> float:
    """The outline's 3rd-8th harmonics against its mean radius (0 for a circle or an ellipse)."""
    spec = np.abs(np.fft.rfft(radii)) / len(radii)
    return float(np.sqrt((spec[3:9] ** 2).sum()) / radii.mean())


def test_an_irregular_mass_is_lobulated_and_an_indistinct_one_still_a_mass():
    bare, oval, irregular, indistinct = render_batch(
        [
            spec(density=0),
            spec(density=0, mass_mm=16.0),
            spec(density=0, mass_mm=16.0, margin=1, irregular=True),
            spec(density=0, mass_mm=16.0, margin=1),
        ],
        7,
    )[:, 0]
    level = 0.5 * 16.0 * (1 - GLANDULAR[0])  # half the mass's contrast
    r_oval, r_irr = _outline(oval - bare, level), _outline(irregular - bare, level)
    assert _lumpiness(r_oval) < 0.03 < 0.06 < _lumpiness(r_irr)
    # about the same size either way (the outline is modulated, not grown)
    assert r_irr.mean() == pytest.approx(r_oval.mean(), rel=0.15)
    # an indistinct margin softens the edge over about a millimetre: the mass keeps its
    # contrast, and its steepest edge is gentler than the sharp one's
    inner = (oval - bare)[24:40, 24:40]
    assert float((indistinct - bare)[24:40, 24:40].mean()) > 0.8 * float(inner.mean())

    def steepest(img):
        a = img.numpy()
        return max(np.abs(np.diff(a, axis=0)).max(), np.abs(np.diff(a, axis=1)).max())

    assert steepest(indistinct - bare) < 0.6 * steepest(oval - bare)


def finding(key, conspicuity, **kw) -> Finding:
    return Finding(key, 0, 10.0, conspicuity, **kw)


def test_candidates_are_every_visible_finding_in_both_views_and_never_name_the_cancer():
    shows = [
        finding(INVASIVE_KEY, 9.0, mass_mm=10.0, margin=2),
        finding(DCIS_KEY, 7.0, calc_mm=12.0, pleomorphic=True),
        finding(2, 12.0, mass_mm=14.0, margin=0),
        finding(3, 2.0, mass_mm=4.0),  # too faint for CAD to propose
    ]
    cands = candidates(5, shows)
    assert len(cands) == 3 * 2 + BACKGROUND_CANDIDATES
    assert [c.location for c in cands] == sorted(c.location for c in cands)
    fields = {f.name for f in dataclasses.fields(Candidate)}
    assert fields == {
        "location",
        "view",
        "mass_mm",
        "margin",
        "calc_mm",
        "pleomorphic",
        "irregular",
        "nipple_mm",
    }
    kinds = [candidate_kind(5, c.location, shows, (INVASIVE_KEY, DCIS_KEY)) for c in cands]
    assert kinds.count("cancer") == 4 and kinds.count("benign") == 2
    assert kinds.count("background") == BACKGROUND_CANDIDATES
    # a finding's two views are of one breast
    for key in (INVASIVE_KEY, DCIS_KEY, 2):
        views = {
            c.view
            for c in cands
            if candidate_kind(5, c.location, [f for f in shows if f.key == key], (key,)) == "cancer"
        }
        assert views in ({0, 1}, {2, 3})


def test_a_finding_lies_at_about_one_distance_from_the_nipple_in_both_views():
    """The two views of a finding are at one depth give or take the view's spread; the
    background regions of a breast's two views are placed independently; keyed, not random."""
    low, high = NIPPLE_MM
    same, apart = [], []
    for person in range(400):
        shows = [finding(INVASIVE_KEY, 20.0, mass_mm=10.0), finding(2, 20.0, mass_mm=12.0)]
        cands = candidates(person, shows)
        assert cands == candidates(person, shows)
        for key in (INVASIVE_KEY, 2):
            mine = [
                c
                for c in cands
                if candidate_kind(person, c.location, [f for f in shows if f.key == key], (key,))
                == "cancer"
            ]
            assert len(mine) == 2
            same.append(mine[0].nipple_mm - mine[1].nipple_mm)
        bg = [c for c in cands if c.mass_mm == 0.0 and c.calc_mm == 0.0]
        assert all(low <= c.nipple_mm <= high for c in bg)
        by_view = {c.view: c.nipple_mm for c in bg}
        apart += [by_view[0] - by_view[1], by_view[2] - by_view[3]]
    sd = float(np.std(same))
    assert 0.8 * VIEW_DEPTH_SD_MM * 2**0.5 < sd < 1.2 * VIEW_DEPTH_SD_MM * 2**0.5
    # two independent uniforms over the depth differ by (high - low) / sqrt(6) in SD
    assert float(np.std(apart)) > 0.8 * (high - low) / 6**0.5


def test_a_run_renders_its_exams_candidates(load_config):
    from sandbox.programmes import programme_for
    from sandbox.rng import Streams

    cfg = load_config("scenario=breast_masai", "cohort.size=3000")[0]
    prog = programme_for(cfg.scenario)
    cohort = prog.sample_cohort(Streams(2))
    scanner = cfg.scenario.sites[0].scanner
    rows = np.flatnonzero(cohort.history["has_cancer"])[:20]
    images = []
    for r in rows:
        day = float(cohort.people["entry_day"][r])
        shows = prog.exam_shows(cohort, int(r), day, scanner)
        images.append(prog.image_of(int(cohort.people["person_id"][r]), day, scanner, shows))
    pairs = [(im, c) for im in images for c in im.candidates]
    x = prog.render(pairs, 2, 64, "cpu")
    assert x.shape == (len(pairs), 1, 64, 64) and torch.isfinite(x).all()
    assert prog.check_input_shape((1, 64, 64)) == ""
    assert "[1, N, N]" in prog.check_input_shape((1, 32, 32, 32))
    assert prog.renderer_version().startswith("breast_mammo_patch:")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_breast_patches_on_gpu_match_the_cpu():
    specs = [spec(), spec(location=18, mass_mm=12.0, margin=1), spec(calc_mm=8.0)]
    cpu = render_batch(specs, 7)
    gpu = render_batch(specs, 7, device="cuda").cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)

"""Conspicuity of a nodule on a scanner, against closed-form and physical expectations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sandbox.config import Scanner
from sandbox.programmes.lung_ldct.imaging import (
    CONTRAST_HU,
    blur_sd_mm,
    cnr,
    conspicuity,
    noise_sd_hu,
    peak_contrast_hu,
)

SCANNER = Scanner(
    model="test", dose_mgy=1.0, noise_hu_at_1mgy=80.0, kernel_fwhm_mm=1.0, slice_mm=1.5
)


@given(d=st.floats(0.1, 60), s=st.floats(0.1, 5), t=st.sampled_from([0, 1, 2]))
def test_peak_contrast_is_the_3d_gaussian_mass_inside_the_sphere(d, s, t):
    # centre of a blurred uniform sphere = P(|X| < R) for X ~ N(0, s^2 I_3): a chi(3) CDF
    expected = CONTRAST_HU[t] * stats.chi(3).cdf(0.5 * d / s)
    assert peak_contrast_hu(d, t, s) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_peak_contrast_limits():
    assert peak_contrast_hu(0.0, 0, 1.0) == 0.0
    assert peak_contrast_hu(100.0, 0, 0.5) == pytest.approx(CONTRAST_HU[0])


def test_blur_of_isotropic_scanner_is_fwhm_over_2_355():
    iso = Scanner(
        model="iso", dose_mgy=1.0, noise_hu_at_1mgy=50.0, kernel_fwhm_mm=2.0, slice_mm=2.0
    )
    assert blur_sd_mm(iso) == pytest.approx(2.0 / (2 * math.sqrt(2 * math.log(2))))


def test_noise_scales_with_inverse_square_root_of_dose():
    quad = Scanner(model="q", dose_mgy=4.0, noise_hu_at_1mgy=80.0, kernel_fwhm_mm=1.0, slice_mm=1.5)
    assert noise_sd_hu(quad) == pytest.approx(noise_sd_hu(SCANNER) / 2)
    assert cnr(6.0, 0, quad) == pytest.approx(2 * cnr(6.0, 0, SCANNER))


@given(d1=st.floats(0.5, 40), d2=st.floats(0.5, 40))
def test_conspicuity_grows_with_size(d1, d2):
    lo, hi = sorted((d1, d2))
    for t in (0, 1, 2):
        assert conspicuity(lo, t, SCANNER) <= conspicuity(hi, t, SCANNER) + 1e-12


def test_solid_more_conspicuous_than_ground_glass():
    assert (
        conspicuity(6.0, 0, SCANNER) > conspicuity(6.0, 1, SCANNER) > conspicuity(6.0, 2, SCANNER)
    )


def test_thin_slices_make_small_nodules_more_conspicuous():
    thick = Scanner(
        model="t", dose_mgy=1.0, noise_hu_at_1mgy=80.0, kernel_fwhm_mm=1.0, slice_mm=5.0
    )
    assert conspicuity(3.0, 0, SCANNER) > conspicuity(3.0, 0, thick)

"""Radiologist agents drawn from profiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.agents import Reader, ReaderProfile, draw_reader
from sandbox.compose import load_reader_profiles
from sandbox.rng import Streams, declare_streams

declare_streams({"m": "reader tests: measurement draws"})


@pytest.fixture(scope="module")
def profiles() -> dict[str, ReaderProfile]:
    return load_reader_profiles()


def test_profiles_in_agents_folder_load(profiles):
    assert {"thoracic_radiologist", "general_radiologist"} <= set(profiles)
    for name, p in profiles.items():
        assert p.name == name


def test_reader_draw_is_keyed_and_repeatable(profiles):
    p = profiles["thoracic_radiologist"]
    a = draw_reader(p, Streams(1).generator("reader", 0, 0), 0, 0)
    b = draw_reader(p, Streams(1).generator("reader", 0, 0), 0, 0)
    c = draw_reader(p, Streams(1).generator("reader", 0, 1), 1, 0)
    assert a == b
    assert a.c50 != c.c50


def test_reader_without_spread_is_the_profile(profiles):
    p = dataclasses.replace(
        profiles["general_radiologist"],
        between_reader_c50_sigma=0.0,
        between_reader_fp_sigma=0.0,
        between_reader_size_bias_sd_mm=0.0,
        between_reader_speed_sigma=0.0,
    )
    r = draw_reader(p, Streams(2).generator("reader", 0, 0), 3, 1)
    assert (r.c50, r.fp_per_exam, r.size_bias_mm, r.read_minutes_median) == (
        p.detection_c50,
        p.false_positive_per_exam,
        0.0,
        p.read_minutes_median,
    )
    assert (r.reader_id, r.site, r.profile) == (3, 1, p.name)


def test_reader_spread_matches_profile(profiles):
    p = profiles["general_radiologist"]
    readers = [draw_reader(p, Streams(3).generator("reader", 0, k), k, 0) for k in range(4000)]
    log_c50 = np.log([r.c50 for r in readers])
    assert np.median([r.c50 for r in readers]) == pytest.approx(p.detection_c50, rel=0.03)
    assert log_c50.std() == pytest.approx(p.between_reader_c50_sigma, rel=0.05)


def _reader(**kw) -> Reader:
    base = dict(
        reader_id=0,
        site=0,
        profile="x",
        c50=10.0,
        slope=2.0,
        fp_per_exam=0.02,
        fp_size_median_mm=5.0,
        size_error_sd_mm=0.5,
        size_bias_mm=0.0,
        read_minutes_median=3.0,
        read_minutes_sigma=0.4,
    )
    return Reader(**{**base, **kw})


@given(c1=st.one_of(st.just(0.0), st.floats(1e-6, 1000)), c2=st.floats(1e-6, 1000))
def test_detection_probability_is_monotone_and_bounded(c1, c2):
    r = _reader()
    lo, hi = sorted((c1, c2))
    assert 0.0 <= r.detect_probability(lo) <= r.detect_probability(hi) <= 1.0


def test_detection_probability_of_a_faint_finding_is_zero_not_an_error():
    assert _reader(slope=20.0).detect_probability(1e-20) == pytest.approx(0.0)


def test_detection_probability_is_half_at_c50():
    assert _reader(c50=14.0).detect_probability(14.0) == pytest.approx(0.5)
    assert _reader().detect_probability(0.0) == 0.0


@given(true_mm=st.floats(0, 50), u=st.floats(1e-12, 1 - 1e-12, exclude_min=True, exclude_max=True))
def test_measured_size_never_below_1mm(true_mm, u):
    assert _reader(size_bias_mm=-2.0).measure_mm(true_mm, u) >= 1.0


def test_read_minutes_are_lognormal_around_the_median():
    r = _reader()
    u = Streams(4).uniform("m", np.arange(50_000))
    minutes = np.array([r.read_minutes(x) for x in u])
    assert np.median(minutes) == pytest.approx(3.0, rel=0.02)
    assert minutes.mean() == pytest.approx(3.0 * np.exp(0.4**2 / 2), rel=0.02)


def test_adding_a_radiologist_redraws_nobody_else(load_config):
    """Skill is keyed by (site, profile, index in profile): staffing changes keep the others."""
    import dataclasses

    from sandbox.simulate import site_readers

    cfg, profiles, _ = load_config("scenario=lung_ldct", "seed=4", "runtime=quiet")
    site = cfg.scenario.sites[0]
    more = dict(site.readers)
    more["general_radiologist"] = more.get("general_radiologist", 0) + 1
    a = site_readers(profiles, site, 0, Streams(4))
    b = site_readers(profiles, dataclasses.replace(site, readers=more), 0, Streams(4))
    skill = lambda rs, p: [(r.c50, r.fp_per_exam, r.size_bias_mm) for r in rs if r.profile == p]  # noqa: E731
    assert skill(a, "thoracic_radiologist") == skill(b, "thoracic_radiologist")
    assert len(skill(b, "general_radiologist")) == len(skill(a, "general_radiologist")) + 1

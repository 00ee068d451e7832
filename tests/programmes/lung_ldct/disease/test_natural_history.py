"""Sampled natural history against its analytic expectations.

The samples come from the project's keyed streams, so each check is deterministic; the
tolerances are a few standard errors of the estimate at the sample size used.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from sandbox.errors import SandboxInputError
from sandbox.programmes.lung_ldct.config import STAGES
from sandbox.programmes.lung_ldct.disease import (
    YEAR,
    clinical_time_after_onset,
    diameter_at,
    lung_cancer_death_day,
    onset_hazard_per_year,
    other_cause_death_day,
    sample_cancers,
    stage_at,
    survival_5y_at,
    time_to_diameter,
)
from sandbox.programmes.lung_ldct.disease.natural_history import cure_fraction, onset_years
from sandbox.rng import Streams

N = 40_000


def _u(name: str, n: int = N) -> np.ndarray:
    return Streams(2024).uniform(f"test.{name}", np.arange(n))


def high_risk_men() -> dict[str, np.ndarray]:
    """N current-smoking men aged 60 at a six-year risk of 30%: many tumours of every kind."""
    return {
        "person_id": np.arange(N, dtype=np.int64),
        "plcom2012_6y": np.full(N, 0.3),
        "current_smoker": np.ones(N, dtype=np.int8),
        "female": np.zeros(N, dtype=np.int8),
        "age": np.full(N, 60.0),
    }


def _cum_hazard_numeric(t_days: float, vdt: float, d0: float, c: float, k: float) -> float:
    """H(t) by quadrature of the size-driven hazard, independent of the closed form."""

    def h(s):
        d = d0 * 2.0 ** (s / (3.0 * vdt))
        return c / YEAR * (d / 20.0) ** k

    return integrate.quad(h, 0.0, t_days, limit=200)[0]


@pytest.mark.parametrize("vdt, c, k", [(150.0, 0.6, 3.0), (400.0, 1.5, 2.0), (80.0, 0.3, 4.0)])
def test_clinical_time_matches_analytic_survival(vdt, c, k):
    d0 = 1.0
    t = clinical_time_after_onset(_u("clinical"), np.full(N, vdt), d0, c, k)
    cdf = np.vectorize(lambda x: 1.0 - math.exp(-_cum_hazard_numeric(x, vdt, d0, c, k)))
    # KS on a subsample: the numerical CDF is evaluated per point
    assert stats.kstest(t[:3000], cdf).pvalue > 1e-3
    # mean = integral of the survival function
    surv = lambda x: math.exp(-_cum_hazard_numeric(x, vdt, d0, c, k))  # noqa: E731
    upper = float(np.quantile(t, 0.999999)) * 3
    mean = integrate.quad(surv, 0, upper, limit=400)[0]
    assert t.mean() == pytest.approx(mean, abs=5 * t.std() / math.sqrt(N))


def test_clinical_time_without_size_dependence_is_exponential():
    c = 0.5
    t = clinical_time_after_onset(_u("clinical0"), np.full(N, 100.0), 1.0, c, 0.0)
    rate = c / YEAR * (1.0 / 20.0) ** 0  # hazard does not depend on size
    assert t.mean() == pytest.approx(1 / rate, rel=5 / math.sqrt(N))
    assert stats.kstest(t * rate, "expon").pvalue > 1e-3


def test_clinical_time_inverts_cumulative_hazard_exactly():
    u = np.array([0.9, 0.5, 0.1, 1e-6])
    vdt, d0, c, k = 200.0, 1.0, 0.6, 3.0
    t = clinical_time_after_onset(u, np.full(4, vdt), d0, c, k)
    for ui, ti in zip(u, t, strict=True):
        assert _cum_hazard_numeric(ti, vdt, d0, c, k) == pytest.approx(-math.log(ui), rel=1e-6)


@pytest.mark.parametrize("age, hr", [(55.0, 1.0), (70.0, 2.0)])
def test_gompertz_other_cause_death(age, hr):
    a, b = 3.0e-5, 0.085
    days = other_cause_death_day(_u(f"death{age}"), np.full(N, age), np.full(N, hr), a, b)
    years = days / YEAR
    cum = lambda t: a * hr * math.exp(b * age) * (math.exp(b * t) - 1.0) / b  # noqa: E731
    mean = integrate.quad(lambda t: math.exp(-cum(t)), 0, 200)[0]
    assert years.mean() == pytest.approx(mean, abs=5 * years.std() / math.sqrt(N))
    for horizon in (5.0, 10.0):
        expected = math.exp(-cum(horizon))
        observed = (years > horizon).mean()
        assert observed == pytest.approx(expected, abs=5 * math.sqrt(expected * (1 - expected) / N))
    assert stats.kstest(years[:5000], lambda t: 1 - np.exp(-np.vectorize(cum)(t))).pvalue > 1e-3


def test_a_fading_healthy_volunteer_effect_lowers_the_hazard_only_in_its_years():
    a, b, age, v, fade = 3.0e-5, 0.085, 62.0, 0.5, 10.0
    u = _u("volunteer")
    ages, ones = np.full(N, age), np.ones(N)
    early = other_cause_death_day(u, ages, ones, a, b, v, fade) / YEAR
    # within the early years it is the lower hazard throughout; for life it is exactly that
    for_life = other_cause_death_day(u, ages, ones, a, b, v) / YEAR
    assert np.array_equal(for_life, other_cause_death_day(u, ages, v * ones, a, b) / YEAR)
    inside = for_life < fade
    np.testing.assert_allclose(early[inside], for_life[inside], rtol=1e-12)
    # afterwards the hazard ratio is 1: survival follows the piecewise cumulative hazard
    k = a * math.exp(b * age) / b

    def cum(t: float) -> float:
        early = v * k * math.expm1(b * min(t, fade))
        return early + k * max(math.exp(b * t) - math.exp(b * fade), 0.0)

    for horizon in (5.0, 15.0, 25.0):
        expected = math.exp(-cum(horizon))
        observed = (early > horizon).mean()
        assert observed == pytest.approx(expected, abs=5 * math.sqrt(expected * (1 - expected) / N))
    assert np.all(early <= for_life + 1e-9)  # dying sooner once the effect has faded


def test_onset_hazard_reproduces_six_year_risk():
    r6 = np.array([0.005, 0.0151, 0.05, 0.2])
    h = onset_hazard_per_year(r6, 1.0)
    np.testing.assert_allclose(1 - np.exp(-6 * h), r6, rtol=1e-12)
    np.testing.assert_allclose(onset_hazard_per_year(r6, 2.5), 2.5 * h)


@pytest.mark.parametrize("r6", [0.01, 0.04])
def test_fraction_with_onset_in_window(small_cfg, r6):
    # a constant onset hazard here; the rise with age has its own tests below
    disease = dataclasses.replace(
        small_cfg.scenario.disease, onset_slope_current=0.0, onset_slope_former=0.0
    )
    people = {
        "person_id": np.arange(N, dtype=np.int64),
        "plcom2012_6y": np.full(N, r6),
        "current_smoker": np.ones(N, dtype=np.int8),
        "female": np.zeros(N, dtype=np.int8),
        "age": np.full(N, 60.0),
    }
    horizon = 6 * YEAR
    c = sample_cancers(disease, Streams(31), people, horizon)
    h = onset_hazard_per_year(np.array(r6), disease.incidence_multiplier)
    # indolent sub-solid tumours may start subsolid_window_years before entry, the rest
    # preclinical_window_years: whether a tumour is one is drawn independently of its onset
    hist = list(disease.histology.values())
    shares = np.array([hh.share for hh in hist]) / sum(hh.share for hh in hist)
    if disease.subsolid_window_years > 0:
        p_long = 0.0
        for sh, hh in zip(shares, hist, strict=True):
            mix = np.array(disease.indolent_type_mix or hh.type_mix)
            p_long += sh * hh.indolent_fraction * (1.0 - mix[0] / mix.sum())
        w_long = disease.subsolid_window_years
    else:
        p_long, w_long = 0.0, disease.preclinical_window_years
    w = disease.preclinical_window_years
    p_short, p_lng = (1 - math.exp(-h * (span + horizon / YEAR)) for span in (w, w_long))
    p = (1 - p_long) * p_short + p_long * p_lng
    assert c["has_cancer"].mean() == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / N))
    has = c["has_cancer"]
    long = has & c["indolent"] & (c["nodule_type"] > 0) & (w_long > w)
    onset = c["onset_day"][has & ~long]
    assert onset.min() >= -w * YEAR and onset.max() < horizon
    if long.any():
        assert c["onset_day"][long].min() >= -w_long * YEAR
        assert c["onset_day"][long].min() < -w * YEAR  # some began before the usual window
    # onset is exponential(h) from the window start, truncated to the window: check the shape
    x = (onset + w * YEAR) / YEAR
    trunc_cdf = lambda t: (1 - np.exp(-h * t)) / p_short  # noqa: E731
    assert stats.kstest(x, trunc_cdf).pvalue > 1e-3


def test_symptoms_and_spread_follow_the_solid_component(small_cfg):
    """A ground-glass tumour, mostly not solid, surfaces later and stays at a lower stage
    than a solid one of the same growth: hazard and stage follow the solid diameter."""
    base = small_cfg.scenario.disease
    people = high_risk_men()
    runs = {}
    for frac in (1.0, 0.3):
        disease = dataclasses.replace(base, solid_fraction=(1.0, frac, frac))
        runs[frac] = sample_cancers(disease, Streams(33), people, 6 * YEAR)
    solid, faint = runs[1.0], runs[0.3]
    sub = solid["has_cancer"] & (solid["nodule_type"] > 0)
    assert sub.sum() > 200
    np.testing.assert_array_equal(faint["onset_day"], solid["onset_day"])  # same tumours
    assert np.all(faint["clinical_day"][sub] >= solid["clinical_day"][sub])
    assert np.mean(faint["clinical_day"][sub] > solid["clinical_day"][sub]) > 0.9
    # solid tumours are untouched
    same = solid["has_cancer"] & (solid["nodule_type"] == 0)
    np.testing.assert_array_equal(faint["clinical_day"][same], solid["clinical_day"][same])
    # at diagnosis by symptoms, the faint ones are no more advanced than the same tumour
    # would be at the same size if solid
    both = sub & np.isfinite(faint["clinical_day"])
    d = diameter_at(
        faint["clinical_day"][both],
        faint["onset_day"][both],
        faint["vdt_days"][both],
        base.onset_diameter_mm,
    )
    as_solid = np.array(
        [
            STAGES.index(stage_at(x, n, base.n2_over_n1, m))
            for x, n, m in zip(d, faint["nodal_mm"][both], faint["distant_mm"][both], strict=True)
        ]
    )
    assert np.all(faint["clinical_stage"][both] <= as_solid)
    assert np.all(faint["solid_fraction"][sub] == 0.3)


def test_indolent_tumours_take_the_indolent_type_mix(small_cfg):
    disease = dataclasses.replace(
        small_cfg.scenario.disease, indolent_type_mix=(0.0, 0.0, 1.0), subsolid_window_years=0.0
    )
    people = high_risk_men()
    c = sample_cancers(disease, Streams(34), people, 6 * YEAR)
    ind = c["indolent"]
    assert ind.sum() > 200
    assert np.all(c["nodule_type"][ind] == 2)
    assert np.mean(c["nodule_type"][c["has_cancer"] & ~ind] == 0) > 0.5


def test_sampled_cancers_are_consistent(small_cfg):
    disease = small_cfg.scenario.disease
    people = {
        "person_id": np.arange(N, dtype=np.int64),
        "plcom2012_6y": np.full(N, 0.05),
        "current_smoker": (np.arange(N) % 2).astype(np.int8),
        "female": (np.arange(N) % 3 == 0).astype(np.int8),
        "age": np.full(N, 65.0),
    }
    c = sample_cancers(disease, Streams(32), people, 8 * YEAR)
    has = c["has_cancer"]
    assert np.all(np.isinf(c["onset_day"][~has])) and np.all(np.isinf(c["clinical_day"][~has]))
    assert np.all(c["clinical_day"][has] > c["onset_day"][has])
    assert np.all(c["clinical_stage"][~has] == -1)
    assert np.all((c["clinical_stage"][has] >= 0) & (c["clinical_stage"][has] < len(STAGES)))
    assert np.all(c["distant_mm"] >= c["nodal_mm"])
    assert np.all((c["vdt_days"] >= 20) & (c["vdt_days"] <= 20000))
    assert not np.any(c["indolent"] & ~has)
    # smokers die sooner from other causes (hazard ratio > 1)
    smoker = people["current_smoker"] == 1
    assert np.median(c["other_death_day"][smoker]) < np.median(c["other_death_day"][~smoker])
    # women die of other causes later (life tables by sex), when the scenario says so
    if disease.other_cause_female_hr < 1:
        woman = people["female"] == 1
        men, women = c["other_death_day"][smoker & ~woman], c["other_death_day"][smoker & woman]
        assert np.median(women) > np.median(men)
    # central tumours follow the histology's share; a histology's cure scale divides U_cure
    names = list(disease.histology)
    for k, name in enumerate(names):
        h = disease.histology[name]
        mine = has & (c["histology"] == k)
        if mine.sum() > 200:
            share = c["central"][mine].mean()
            assert share == pytest.approx(h.central_share, abs=5 * math.sqrt(0.25 / mine.sum()))
            assert np.all(c["cure_u"][mine] <= 1.0 / h.cure_scale + 1e-12)
            assert c["cure_u"][mine].max() > 0.9 / h.cure_scale
    assert not np.any(c["central"] & ~has)
    # histology shares
    shares = np.array([h.share for h in disease.histology.values()])
    observed = np.bincount(c["histology"], minlength=len(shares)) / N
    np.testing.assert_allclose(observed, shares / shares.sum(), atol=0.01)


@given(vdt=st.floats(20, 5000), d0=st.floats(0.5, 5), t=st.floats(0, 5000))
def test_volume_doubles_every_vdt(vdt, d0, t):
    d_t = diameter_at(np.array(t), 0.0, vdt, d0)
    d_next = diameter_at(np.array(t + 3 * vdt), 0.0, vdt, d0)
    assert float(d_next) == pytest.approx(2 * float(d_t), rel=1e-9)  # diameter: x2 per 3 VDT
    v_ratio = (diameter_at(np.array(t + vdt), 0.0, vdt, d0) / d_t) ** 3
    assert float(v_ratio) == pytest.approx(2.0, rel=1e-9)  # volume: x2 per VDT
    assert float(time_to_diameter(np.array(float(d_t)), vdt, d0)) == pytest.approx(
        t, abs=1e-6 * max(1, t)
    )


def test_no_tumour_before_onset():
    d = diameter_at(np.array([-5.0, 0.0, 10.0]), 0.0, 100.0, 1.0)
    assert d[0] == 0.0 and d[1] == 1.0 and d[2] > 1.0


@given(
    nodal=st.floats(5, 80),
    n2=st.floats(1, 3),
    extra=st.floats(0, 100),
    d1=st.floats(0.5, 200),
    d2=st.floats(0.5, 200),
)
def test_stage_never_regresses_as_a_tumour_grows(nodal, n2, extra, d1, d2):
    distant = nodal + extra
    lo, hi = sorted((d1, d2))
    s_lo = STAGES.index(stage_at(lo, nodal, n2, distant))
    s_hi = STAGES.index(stage_at(hi, nodal, n2, distant))
    assert s_lo <= s_hi
    if hi >= distant:
        assert s_hi == 3


def test_lung_cancer_death_cure_fraction_and_median(small_cfg):
    disease = dataclasses.replace(small_cfg.scenario.disease, second_primary_death_per_year=0.0)
    u1, u2 = _u("cure", 20_000), _u("surv", 20_000)
    for stage in STAGES:
        days = np.array(
            [
                lung_cancer_death_day(stage, 0.0, math.inf, a, b, disease)
                for a, b in zip(u1, u2, strict=True)
            ]
        )
        cured = np.isinf(days)
        s5 = survival_5y_at(stage, math.inf, False, disease)
        # five-year survival (cured, or uncured and alive at five years) is the stage's
        alive5 = (days > 5 * YEAR).mean()
        assert alive5 == pytest.approx(s5, abs=5 * math.sqrt(s5 * (1 - s5) / 20_000) + 1e-9)
        # the cured are the share cure_fraction gives, fewer than survive five years
        pi = cure_fraction(s5, disease.median_survival_years_uncured[stage])
        assert pi <= s5
        assert cured.mean() == pytest.approx(pi, abs=5 * math.sqrt(pi * (1 - pi) / 20_000) + 1e-9)
        if (~cured).sum() > 1000:
            median = np.median(days[~cured]) / YEAR
            assert median == pytest.approx(disease.median_survival_years_uncured[stage], rel=0.08)


def test_the_cured_die_of_a_second_primary_only_after_five_years(small_cfg):
    """A cured survivor's second primary kills at the configured rate from five years after the
    first cancer would have surfaced, so every stage's five-year survival is unchanged."""
    base = dataclasses.replace(small_cfg.scenario.disease, second_primary_death_per_year=0.0)
    rate = 0.02
    disease = dataclasses.replace(base, second_primary_death_per_year=rate)
    u1, u2 = _u("cure", 20_000), _u("surv", 20_000)
    start = 100.0  # symptoms would have surfaced on day 100; screening found it on day 0
    for stage in ("I", "IV"):
        without = np.array(
            [
                lung_cancer_death_day(stage, 0.0, start, a, b, base)
                for a, b in zip(u1, u2, strict=True)
            ]
        )
        with_ = np.array(
            [
                lung_cancer_death_day(stage, 0.0, start, a, b, disease)
                for a, b in zip(u1, u2, strict=True)
            ]
        )
        cured = np.isinf(without)
        assert np.isfinite(with_).all()
        assert np.array_equal(with_[~cured], without[~cured])  # the uncured die as before
        if cured.sum() > 1000:
            later = (with_[cured] - start) / YEAR - 5.0
            assert later.min() >= 0.0
            assert later.mean() == pytest.approx(1.0 / rate, rel=0.05)
        assert (with_ > start + 5 * YEAR).mean() == (without > start + 5 * YEAR).mean()


def test_stage_I_survival_follows_the_solid_component(small_cfg):
    # cure as the survival table gives it (no second primary later)
    disease = dataclasses.replace(small_cfg.scenario.disease, second_primary_death_per_year=0.0)
    bounds, surv = disease.stage_I_solid_mm, disease.stage_I_survival_5y
    assert bounds and len(surv) == len(bounds) + 1
    # the T descriptor: up to each bound (inclusive), and above the last
    assert survival_5y_at("I", bounds[0], False, disease) == surv[0]
    assert survival_5y_at("I", bounds[0] + 0.1, False, disease) == surv[1]
    assert survival_5y_at("I", 39.0, False, disease) == surv[-1]
    # other stages ignore the diameter
    assert survival_5y_at("III", 8.0, False, disease) == disease.survival_5y["III"]
    # a sub-solid tumour with a solid part of at most minimally_invasive_mm is cured, at any
    # draw; a solid tumour of the same size is not
    mia = disease.minimally_invasive_mm
    assert mia > 0
    assert survival_5y_at("I", mia, True, disease) == 1.0
    assert survival_5y_at("I", mia, False, disease) == surv[0]
    assert math.isinf(lung_cancer_death_day("I", 0.0, 9e3, 0.999, 0.5, disease, mia, True))
    assert math.isfinite(lung_cancer_death_day("I", 0.0, 9e3, 0.999, 0.5, disease, mia, False))
    # a smaller stage I tumour is cured at least as often: the same draw never turns from
    # cured to uncured as the diameter shrinks
    u = _u("cure-size", 5_000)
    cured = [
        np.isinf([lung_cancer_death_day("I", 0.0, 9e3, a, 0.5, disease, d) for a in u]).mean()
        for d in (6.0, 15.0, 25.0, 35.0)
    ]
    assert cured == sorted(cured, reverse=True) and cured[0] > cured[-1] + 0.1


def test_stage_I_survival_table_is_checked(small_cfg):
    disease = small_cfg.scenario.disease
    bad = dataclasses.replace(disease, stage_I_survival_5y=(0.9, 0.8))
    with pytest.raises(SandboxInputError, match="stage_I_survival_5y"):
        bad.check("scenario.disease")
    bad = dataclasses.replace(disease, stage_I_solid_mm=(20.0, 10.0, 30.0))
    with pytest.raises(SandboxInputError, match="stage_I_solid_mm"):
        bad.check("scenario.disease")


def test_no_lead_time_survival_gain():
    # diagnosed early by screening but not cured: death is counted from when symptoms would have come
    from types import SimpleNamespace

    disease = SimpleNamespace(
        survival_5y={"I": 0.2},
        median_survival_years_uncured={"I": 2.0},
        minimally_invasive_mm=0.0,
        stage_I_solid_mm=(),
        stage_I_survival_5y=(),
    )
    early = lung_cancer_death_day("I", 100.0, 500.0, 0.5, 0.5, disease)
    late = lung_cancer_death_day("I", 500.0, 500.0, 0.5, 0.5, disease)
    assert early == late == pytest.approx(500.0 + 2.0 * YEAR)


@pytest.mark.parametrize(
    ("slope", "age", "window"), [(0.11, 60.0, 0.0), (0.047, 77.0, 0.0), (0.11, 70.0, 14.0)]
)
def test_onset_hazard_rising_with_age_keeps_the_six_year_risk(slope, age, window):
    """Onsets drawn with a hazard rising by ``slope`` a year up to 80: over the six years after
    entry the hazard still averages the risk model's, and the onset times follow the
    integrated hazard (checked against quadrature), before entry included."""
    h6 = 0.05
    e = -np.log(_u("onset_slope"))
    t = onset_years(e, np.full(N, h6), np.full(N, age), np.full(N, window), slope, 80.0)
    g = lambda x: math.exp(slope * min(x, 80.0 - age))  # noqa: E731
    scale = h6 / (integrate.quad(g, 0.0, 6.0)[0] / 6.0)
    if window == 0.0:
        p6 = 1.0 - math.exp(-6.0 * h6)  # the mean hazard over the six years is h6
        assert (t < 6.0).mean() == pytest.approx(p6, abs=5 * math.sqrt(p6 * (1 - p6) / N))
    for x in (-window / 2, 3.0, 10.0):
        if x < -window:
            continue
        p = 1.0 - math.exp(-scale * integrate.quad(g, -window, x, points=[80.0 - age])[0])
        assert (t < x).mean() == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / N) + 1e-9)
    assert t.min() >= -window - 1e-9


def test_onset_with_no_slope_is_the_constant_hazard():
    e = -np.log(_u("onset_flat", 1000))
    h = np.full(1000, 0.02)
    np.testing.assert_allclose(
        onset_years(e, h, np.full(1000, 60.0), np.full(1000, 14.0)), -14.0 + e / h
    )


def test_subsolid_tumours_grow_at_the_subsolid_doubling_times(small_cfg):
    disease = dataclasses.replace(
        small_cfg.scenario.disease, subsolid_vdt_median_days=(457.0, 813.0), subsolid_vdt_sigma=0.5
    )
    c = sample_cancers(disease, Streams(35), high_risk_men(), 6 * YEAR)
    for t, med in ((1, 457.0), (2, 813.0)):
        sel = c["has_cancer"] & ~c["indolent"] & (c["nodule_type"] == t)
        assert sel.sum() > 300
        v = np.log(c["vdt_days"][sel])
        assert np.median(v) == pytest.approx(
            math.log(med), abs=4 * 0.5 * 1.25 / math.sqrt(sel.sum())
        )
        assert np.std(v) == pytest.approx(0.5, rel=0.1)
    solid = c["has_cancer"] & ~c["indolent"] & (c["nodule_type"] == 0)
    assert np.median(c["vdt_days"][solid]) < 300.0  # solid tumours keep their histology's


def test_incidental_imaging_finds_tumours_earlier_and_at_the_configured_rate(small_cfg):
    """The incidental route only brings diagnosis forward, never before the solid component is
    incidental_min_mm wide, and alone its wait from that size is exponential at the rate."""
    base = dataclasses.replace(small_cfg.scenario.disease, incidental_hazard_per_year=0.0)
    people = high_risk_men()
    rate, min_mm = 0.3, 12.0
    with_route = dataclasses.replace(
        base, incidental_hazard_per_year=rate, incidental_min_mm=min_mm
    )
    off = sample_cancers(base, Streams(36), people, 6 * YEAR)
    on = sample_cancers(with_route, Streams(36), people, 6 * YEAR)
    has = off["has_cancer"]
    np.testing.assert_array_equal(on["onset_day"], off["onset_day"])  # the same tumours
    assert set(np.unique(off["clinical_route"][has])) == {1, 2}
    assert np.all(off["clinical_route"][~has] == 0)
    assert np.all(on["clinical_day"][has] <= off["clinical_day"][has])
    inc = has & (on["clinical_route"] == 3)
    assert inc.sum() > 300
    # moved exactly where the route won; the others keep their day and route
    rest = has & ~inc
    np.testing.assert_array_equal(on["clinical_day"][rest], off["clinical_day"][rest])
    np.testing.assert_array_equal(on["clinical_route"][rest], off["clinical_route"][rest])
    assert np.all(on["clinical_day"][inc] < off["clinical_day"][inc])
    # never before the solid component reaches incidental_min_mm
    d0 = base.onset_diameter_mm
    d = diameter_at(on["clinical_day"][inc], on["onset_day"][inc], on["vdt_days"][inc], d0)
    assert np.all(d * on["solid_fraction"][inc] >= min_mm * (1 - 1e-9))
    # found earlier, never at a later stage; often at an earlier one
    assert np.all(on["clinical_stage"][has] <= off["clinical_stage"][has])
    assert np.mean(on["clinical_stage"][inc] < off["clinical_stage"][inc]) > 0.3
    # alone (symptoms almost never, whatever the size; none from spread), the wait is Exp(rate)
    alone = dataclasses.replace(
        with_route,
        clinical_hazard_per_year_at_20mm=1e-9,
        clinical_hazard_size_exponent=0.0,
        metastatic_symptom_hazard_per_year=0.0,
    )
    c = sample_cancers(alone, Streams(37), people, 6 * YEAR)
    h = c["has_cancer"]
    assert np.all(c["clinical_route"][h] == 3)
    reach = c["onset_day"] + time_to_diameter(min_mm / c["solid_fraction"], c["vdt_days"], d0)
    wait = (c["clinical_day"][h] - reach[h]) / YEAR
    assert stats.kstest(wait, stats.expon(scale=1.0 / rate).cdf).pvalue > 1e-3

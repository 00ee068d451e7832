"""Lung cancer natural history, independent of any screening policy.

Model (times in days from the person's entry, shifted to programme days by
:func:`sandbox.programmes.lung_ldct.disease.history.sample_history`; sizes in mm of longest diameter):

* **Onset** of a preclinical tumour at diameter ``d0`` arrives as a Poisson process whose
  hazard averages ``-ln(1 - r6) / 6 * incidence_multiplier`` over the six years after entry
  (``r6`` = PLCOm2012 six-year risk) and rises with age at ``onset_slope_current`` per year (log
  scale; ``onset_slope_former`` for former smokers) up to ``onset_peak_age``, over a window starting ``preclinical_window_years`` before
  entry so that prevalent cancers exist at the first round. Only the first onset counts.
* **Growth** is exponential in volume: ``d(t) = d0 * 2 ** ((t - onset) / (3 * vdt))``, the volume
  doubling time log-normal by histology, with an indolent fraction on a long doubling time.
* **Clinical detection** (symptoms) has hazard ``c * (s / 20 mm) ** k`` per year, ``s`` the
  diameter of the solid component (``solid_fraction`` of ``d`` by nodule type), solved in
  closed form, plus a constant hazard once distant spread has occurred, plus (imaging done for
  another reason) a constant hazard once the solid component is ``incidental_min_mm`` wide.
  Indolent tumours are mostly sub-solid (``indolent_type_mix``); sub-solid tumours that are not indolent grow at
  ``subsolid_vdt_median_days``, and every sub-solid tumour may start ``subsolid_window_years``
  before entry.
* **Spread**: each tumour draws the diameter at which nodal (N1; N2 at ``n2_over_n1`` times that)
  and distant spread occur, log-normal, scaled by histology; stage at any time follows from
  the solid component's size and spread (:func:`stage_at`).
* **Other-cause death**: Gompertz hazard ``a * exp(b * age)`` per year, times a hazard ratio for
  current smokers (its square root for former smokers), conditional on being alive at the start.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from scipy.special import ndtri

from sandbox.programmes.lung_ldct.config import HISTOLOGIES, STAGES, Disease
from sandbox.rng import Streams

YEAR = 365.25
STAGE_INDEX = {s: i for i, s in enumerate(STAGES)}


def onset_hazard_per_year(risk_6y: np.ndarray, multiplier: float) -> np.ndarray:
    """Annual hazard of preclinical onset from a six-year risk."""
    return -np.log1p(-np.clip(risk_6y, 0.0, 0.999)) / 6.0 * multiplier


def onset_years(
    e: np.ndarray,
    hazard_6y: np.ndarray,
    age: np.ndarray,
    window_years: np.ndarray,
    slope: np.ndarray | float = 0.0,
    peak_age: float = 200.0,
) -> np.ndarray:
    """Years from entry to onset for unit-exponential draws ``e`` (may exceed any horizon).

    The hazard starts ``window_years`` before entry and rises with age at ``slope`` per year
    (log scale; per person or one for all) up to ``peak_age``, flat after; it is scaled so
    that its mean over the six years after entry is ``hazard_6y`` (the six-year risk
    model's). ``slope`` 0: constant.
    """
    h6 = np.maximum(hazard_6y, 1e-12)
    w = np.asarray(window_years, dtype=float)
    flat = -w + e / h6
    b = np.broadcast_to(np.asarray(slope, dtype=float), np.shape(e))
    if not b.any():
        return flat
    b = np.where(b > 0, b, 1.0)  # placeholder where flat; replaced below
    tc = np.maximum(peak_age - age, 0.0)  # years from entry to the peak age
    # mean of g(t) = exp(b min(t, tc)) over the six years after entry
    six = np.minimum(tc, 6.0)
    mean6 = (np.expm1(b * six) / b + np.exp(b * six) * (6.0 - six)) / 6.0
    target = e * mean6 / h6  # cumulative g from -w to the onset
    g_tc = (np.exp(b * tc) - np.exp(-b * w)) / b  # cumulative g from -w to the peak
    before = np.log(np.exp(-b * w) + b * np.minimum(target, g_tc)) / b
    after = tc + np.maximum(target - g_tc, 0.0) / np.exp(b * tc)
    rising = np.where(target <= g_tc, before, after)
    return np.where(np.asarray(slope) > 0, rising, flat)


def clinical_time_after_onset(
    u: np.ndarray, vdt_days: np.ndarray, d0: float, c_per_year: float, k: float
) -> np.ndarray:
    """Days from onset to symptomatic detection driven by size, inverting the cumulative hazard.

    With ``d(t) = d0 exp(g t)``, ``g = ln 2 / (3 vdt)`` and hazard ``h(t) = c/365.25 (d(t)/20)^k``,
    ``H(t) = c/365.25 (d0/20)^k (exp(k g t) - 1) / (k g)``; the time is ``H^-1(-ln u)``.
    """
    g = math.log(2.0) / (3.0 * vdt_days)
    h0 = c_per_year / YEAR * (d0 / 20.0) ** k
    e = -np.log(u)
    if k == 0:
        return e / h0
    return np.log1p(e * k * g / h0) / (k * g)


def diameter_at(t: np.ndarray, onset: np.ndarray, vdt_days: np.ndarray, d0: float) -> np.ndarray:
    """Longest diameter (mm) at day ``t``; 0 before onset."""
    dt = np.asarray(t, dtype=float) - onset
    d = d0 * np.exp2(np.maximum(dt, 0.0) / (3.0 * vdt_days))
    return np.where(dt >= 0, d, 0.0)


def time_to_diameter(d: np.ndarray, vdt_days: np.ndarray, d0: float) -> np.ndarray:
    """Days from onset until the tumour reaches diameter ``d`` (mm)."""
    return 3.0 * vdt_days * np.log2(np.maximum(d, d0) / d0)


def stage_at(diameter_mm: float, nodal_mm: float, n2_over_n1: float, distant_mm: float) -> str:
    """Stage group (I-IV) from size and spread thresholds, simplified from IASLC 8th edition.

    M1 -> IV; N2 -> III; N1 -> II if T <= 50 mm else III; N0 -> I if T <= 40 mm, II if
    T <= 70 mm, else III (T4).
    """
    if diameter_mm >= distant_mm:
        return "IV"
    if diameter_mm >= nodal_mm * n2_over_n1:
        return "III"
    if diameter_mm >= nodal_mm:
        return "II" if diameter_mm <= 50.0 else "III"
    if diameter_mm <= 40.0:
        return "I"
    return "II" if diameter_mm <= 70.0 else "III"


def other_cause_death_day(
    u: np.ndarray,
    age: np.ndarray,
    hr: np.ndarray,
    a: float,
    b: float,
    early_hr: float = 1.0,
    early_years: float = 0.0,
) -> np.ndarray:
    """Days to death from other causes, Gompertz conditional on being alive at ``age``.

    The hazard is ``a * hr * exp(b * age_now)``, times ``early_hr`` for the first
    ``early_years`` after entry (0: for life): the healthy-volunteer effect fades.
    """
    e = -np.log(u)
    k = a * hr * np.exp(b * age) / b  # cumulative hazard k (e^(b t) - 1) at hazard ratio 1
    years = np.log1p(e / (early_hr * k)) / b
    if early_years > 0 and early_hr != 1.0:
        early = early_hr * k * np.expm1(b * early_years)  # cumulative hazard of the early years
        rest = np.log(np.exp(b * early_years) + np.maximum(e - early, 0.0) / k) / b
        years = np.where(e < early, years, rest)
    return years * YEAR


def sample_cancers(
    disease: Disease, streams: Streams, people: dict[str, np.ndarray], horizon_day: float
) -> dict[str, np.ndarray]:
    """Each person's lung cancer course (or none) and other-cause death day.

    Returns arrays aligned with ``people``: ``has_cancer``, ``onset_day``, ``vdt_days``,
    ``histology`` (index into HISTOLOGIES), ``nodule_type`` (0 solid, 1 part-solid, 2 GGN),
    ``spiculated``, ``central``, ``indolent``, ``solid_fraction``, ``nodal_mm``, ``distant_mm``, ``clinical_day`` (inf if never),
    ``clinical_stage`` (index into STAGES; -1 if none), ``clinical_route`` (1 symptoms, 2
    symptoms of distant spread, 3 incidental imaging; 0 without cancer), ``cure_u``, ``survival_u``,
    ``other_death_day``.
    """
    ids = people["person_id"]
    n = len(ids)
    u = lambda name: streams.uniform(f"disease.{name}", ids)  # noqa: E731
    hist_names = [name for name in HISTOLOGIES if name in disease.histology]
    hists = [disease.histology[name] for name in hist_names]
    shares = np.array([hh.share for hh in hists])
    cdf = np.cumsum(shares / shares.sum())
    local = np.minimum(np.searchsorted(cdf, u("histology"), side="right"), len(hists) - 1)
    histology = np.array([HISTOLOGIES.index(nm) for nm in hist_names], dtype=np.int8)[local]

    med = np.array([hh.vdt_median_days for hh in hists])[local]
    sig = np.array([hh.vdt_sigma for hh in hists])[local]
    indolent_p = np.array([hh.indolent_fraction for hh in hists])[local]
    indolent = u("indolent") < indolent_p
    z = ndtri(u("vdt"))
    vdt = np.where(
        indolent, disease.indolent_vdt_median_days * np.exp(0.4 * z), med * np.exp(sig * z)
    )
    vdt = np.clip(vdt, 20.0, 20000.0)

    type_mix = np.array([hh.type_mix for hh in hists], dtype=float)[local]
    type_cdf = np.cumsum(type_mix / type_mix.sum(axis=1, keepdims=True), axis=1)
    if disease.indolent_type_mix:
        mix = np.asarray(disease.indolent_type_mix, dtype=float)
        type_cdf = np.where(indolent[:, None], np.cumsum(mix / mix.sum()), type_cdf)
    nodule_type = (u("nodule_type")[:, None] > type_cdf[:, :-1]).sum(axis=1).astype(np.int8)
    if disease.subsolid_vdt_median_days:
        # a tumour that looks sub-solid grows slowly, whatever its histology
        sub_med = np.array([0.0, *disease.subsolid_vdt_median_days])[nodule_type]
        sub_vdt = np.clip(sub_med * np.exp(disease.subsolid_vdt_sigma * z), 20.0, 20000.0)
        vdt = np.where(~indolent & (nodule_type > 0), sub_vdt, vdt)
    # symptoms, spread and the T descriptor follow the solid component
    solid = np.asarray(disease.solid_fraction, dtype=float)[nodule_type]
    # indolent sub-solid lesions (the atypical adenomatous hyperplasia to adenocarcinoma in
    # situ sequence) may have started long before entry
    long_window = indolent & (nodule_type > 0) & (disease.subsolid_window_years > 0)
    window = (
        np.where(long_window, disease.subsolid_window_years, disease.preclinical_window_years)
        * YEAR
    )
    h = onset_hazard_per_year(people["plcom2012_6y"], disease.incidence_multiplier)
    onset = (
        onset_years(
            -np.log(u("onset")),
            h,
            people["age"],
            window / YEAR,
            np.where(
                people["current_smoker"] == 1,
                disease.onset_slope_current,
                disease.onset_slope_former,
            ),
            disease.onset_peak_age,
        )
        * YEAR
    )
    has = onset < horizon_day
    spiculated = u("spiculated") < np.array([hh.spiculated for hh in hists])[local]
    central = has & (u("central") < np.array([hh.central_share for hh in hists])[local])

    scale = np.array([hh.spread_scale for hh in hists])[local]
    nodal = disease.nodal_median_mm * scale * np.exp(disease.nodal_sigma * ndtri(u("nodal")))
    distant = (
        disease.distant_median_mm * scale * np.exp(disease.distant_sigma * ndtri(u("distant")))
    )
    distant = np.maximum(distant, nodal)

    d0 = disease.onset_diameter_mm
    t_size = clinical_time_after_onset(
        u("clinical"),
        vdt,
        d0 * solid,
        disease.clinical_hazard_per_year_at_20mm,
        disease.clinical_hazard_size_exponent,
    )
    t_meta = time_to_diameter(distant / solid, vdt, d0)
    if disease.metastatic_symptom_hazard_per_year > 0:
        t_meta_sym = (
            t_meta
            + (-np.log(u("metastatic_symptoms")))
            / disease.metastatic_symptom_hazard_per_year
            * YEAR
        )
    else:
        t_meta_sym = np.full(n, np.inf)
    if disease.incidental_hazard_per_year > 0:
        t_incidental = (
            time_to_diameter(disease.incidental_min_mm / solid, vdt, d0)
            + (-np.log(u("incidental"))) / disease.incidental_hazard_per_year * YEAR
        )
    else:
        t_incidental = np.full(n, np.inf)
    routes = np.stack([t_size, t_meta_sym, t_incidental])
    first = routes.argmin(axis=0)
    clinical = np.where(has, onset + routes.min(axis=0), np.inf)
    # how the cancer would surface without screening: 1 symptoms of the primary, 2 symptoms of
    # distant spread, 3 imaging done for another reason (0: no cancer)
    route = np.where(has & np.isfinite(clinical), first + 1, 0).astype(np.int8)
    d_clin = diameter_at(clinical, onset, vdt, d0)
    clinical_stage = np.full(n, -1, dtype=np.int8)
    for i in np.flatnonzero(has & np.isfinite(clinical)):
        clinical_stage[i] = STAGE_INDEX[
            stage_at(d_clin[i] * solid[i], nodal[i], disease.n2_over_n1, distant[i])
        ]

    hr = np.where(
        people["current_smoker"] == 1,
        disease.other_cause_smoker_hr,
        np.sqrt(disease.other_cause_smoker_hr),
    ) * np.where(people["female"] == 1, disease.other_cause_female_hr, 1.0)
    other_death = other_cause_death_day(
        u("other_death"),
        people["age"],
        hr,
        disease.other_cause_gompertz_a,
        disease.other_cause_gompertz_b,
        disease.other_cause_volunteer_hr,
        disease.other_cause_volunteer_years,
    )
    return {
        "has_cancer": has,
        "onset_day": np.where(has, onset, np.inf),
        "vdt_days": vdt,
        "histology": histology,
        "nodule_type": nodule_type,
        "spiculated": spiculated,
        "central": central,
        "indolent": indolent & has,
        "solid_fraction": solid,
        "nodal_mm": nodal,
        "distant_mm": distant,
        "clinical_day": clinical,
        "clinical_stage": clinical_stage,
        "clinical_route": route,
        # cured when U_cure < survival_5y[stage] * cure_scale[histology]
        "cure_u": u("cure") / np.array([hh.cure_scale for hh in hists])[local],
        "survival_u": u("survival"),
        "other_death_day": other_death,
    }


def cure_fraction(survival_5y: float, median_uncured_years: float) -> float:
    """The cured share that, with the uncured surviving an exponential time of the given median,
    gives five-year survival ``survival_5y``: ``(s5 - S)/(1 - S)``, ``S = 2^(-5/median)``."""
    s = 2.0 ** (-5.0 / median_uncured_years)
    return max(0.0, (survival_5y - s) / (1.0 - s))


def survival_5y_at(stage: str, solid_mm: float, subsolid: bool, disease: Disease) -> float:
    """Five-year lung-cancer survival of a tumour diagnosed at ``stage`` whose solid component is
    ``solid_mm`` wide: a sub-solid tumour with a solid component of at most
    ``minimally_invasive_mm`` is cured (Tis, T1mi); stage I follows the T descriptor
    (``stage_I_solid_mm``, ``stage_I_survival_5y``); other stages ``survival_5y``."""
    if subsolid and solid_mm <= disease.minimally_invasive_mm:
        return 1.0
    bounds = disease.stage_I_solid_mm
    if stage == "I" and disease.stage_I_survival_5y:
        return disease.stage_I_survival_5y[bisect.bisect_left(bounds, solid_mm)]
    return disease.survival_5y[stage]


def lung_cancer_death_day(
    stage: str,
    diagnosis_day: float,
    clinical_day: float,
    cure_u: float,
    survival_u: float,
    disease: Disease,
    solid_mm: float = math.inf,
    subsolid: bool = False,
) -> float:
    """Day of death from lung cancer after diagnosis at ``stage`` (inf if cured, unless a second
    primary kills: at ``disease.second_primary_death_per_year`` from five years on).

    The uncured survive an exponential time with the stage's median, counted from the later of
    diagnosis and the day symptoms would have led to diagnosis, so that earlier diagnosis earns
    no lead-time survival; the cure probability is what makes five-year survival the one
    :func:`survival_5y_at` gives for the stage and the solid component's diameter at diagnosis
    (:func:`cure_fraction`).
    """
    median = disease.median_survival_years_uncured[stage]
    s5 = survival_5y_at(stage, solid_mm, subsolid, disease)
    start = diagnosis_day if not math.isfinite(clinical_day) else max(diagnosis_day, clinical_day)
    if cure_u < cure_fraction(s5, median):
        rate = disease.second_primary_death_per_year
        if rate <= 0.0:
            return math.inf
        # cured of this one; a second primary may kill after the five years that the stage's
        # survival already covers (the same draw serves: the uncured's survival time and the
        # cured's second primary are exclusive)
        return start + (5.0 - math.log(survival_u) / rate) * YEAR
    years = -math.log(survival_u) * median / math.log(2.0)
    return start + years * YEAR

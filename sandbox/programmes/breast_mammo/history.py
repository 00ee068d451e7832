"""Women and their breast cancer histories, drawn by key.

Every draw is keyed by the woman's id (streams ``breast.*``), so a woman's history is the same
whatever the cohort's size or its shards, and the same under every policy. Days count from
her first invitation (day 0).

The invasive history is built backwards from the day a cancer would surface from symptoms
without screening, drawn from the age-specific clinical incidence times her relative risk: the
tumour grows exponentially in volume (a log-normal doubling time) from the onset diameter to
a log-normal clinical diameter, so its history before that day follows, and a screen can find
it in between. Women whose cancer surfaced before their first invitation are not in the
programme (a breast cancer history ends screening).
"""

from __future__ import annotations

import math

import numpy as np

from sandbox.programmes.breast_mammo.config import AGE_GROUPS, BreastDisease, Women
from sandbox.rng import Streams, declare_streams

YEAR = 365.25
declare_streams(
    {
        "breast.women.*": "a woman's age, breast density and risk factors",
        "breast.invasive.*": "a woman's invasive breast cancer: when it surfaces, growth, spread, calcifications",
        "breast.dcis.*": "a woman's ductal carcinoma in situ: onset, how long it stays visible, extent",
        "breast.death.*": "whether a breast cancer is lethal, when, and death from other causes",
    }
)


def age_group(age: np.ndarray) -> np.ndarray:
    """Index into :data:`AGE_GROUPS` (40-49, 50-59, 60-69, 70+; under 40 counts as 40-49)."""
    return np.clip(np.searchsorted(AGE_GROUPS, age, side="right") - 1, 0, len(AGE_GROUPS) - 1)


def _categorical(u: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Row-wise categorical draws: ``shares`` is (n, k), rows need not sum to one."""
    cdf = np.cumsum(shares, axis=1)
    cdf /= cdf[:, -1:]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), shares.shape[1] - 1)


def sample_women(women: Women, streams: Streams, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Age at first invitation (years, uniform over ``women.age``), BI-RADS density (0-3 for
    a-d, by age group), family history, a prior benign biopsy and current hormone therapy
    (women 50 and over)."""
    u = lambda name: streams.uniform(f"breast.women.{name}", ids)  # noqa: E731
    age = women.age.min + u("age") * (women.age.max + 1.0 - women.age.min)
    shares = np.asarray(women.density_by_age, dtype=np.float64)[age_group(age)]
    return {
        "person_id": ids.astype(np.int64),
        "age": age,
        "density": _categorical(u("density"), shares).astype(np.int8),
        "family_history": (u("family") < women.family_history).astype(np.int8),
        "prior_biopsy": (u("biopsy") < women.prior_biopsy).astype(np.int8),
        "hormone_therapy": ((age >= 50) & (u("hrt") < women.hormone_therapy)).astype(np.int8),
    }


def relative_risk(w: dict[str, np.ndarray], women: Women, disease: BreastDisease) -> np.ndarray:
    """Each woman's relative risk, scaled so that the women of each age group average 1 in
    expectation: the age-specific rates are the population's, the factors only share them out."""
    r = disease.risks
    dens = np.asarray(r.density)
    rr = (
        dens[w["density"]]
        * np.where(w["family_history"] == 1, r.family_history, 1.0)
        * np.where(w["prior_biopsy"] == 1, r.prior_biopsy, 1.0)
        * np.where(w["hormone_therapy"] == 1, r.hormone_therapy, 1.0)
    )
    g = age_group(w["age"])
    shares = np.asarray(women.density_by_age, dtype=np.float64)
    shares = shares / shares.sum(axis=1, keepdims=True)
    mean = (
        (shares @ dens)
        * (1 + women.family_history * (r.family_history - 1))
        * (1 + women.prior_biopsy * (r.prior_biopsy - 1))
    )
    ht = np.where(np.asarray(AGE_GROUPS) >= 50, women.hormone_therapy, 0.0)
    mean = mean * (1 + ht * (r.hormone_therapy - 1))
    return rr / mean[g]


def _rate(table: tuple[float, ...], age: np.ndarray) -> np.ndarray:
    """Rate per woman-year at ``age`` from a table per 100,000 by five-year age from 40 (the
    first band below 40, the last above its end)."""
    t = np.asarray(table, dtype=np.float64) / 1e5
    return t[np.clip(((age - 40.0) // 5).astype(int), 0, len(t) - 1)]


def _first_event(
    rate, start_age: np.ndarray, years: float, e: np.ndarray, step: float = 0.25
) -> np.ndarray:
    """Years from ``start_age`` to the first event of a hazard that is constant over steps of
    ``step`` years (``rate(ages)`` per year; ``e`` unit exponentials); inf beyond ``years``.
    Women are taken in blocks, so memory stays bounded whatever the cohort."""
    grid = np.arange(0.0, years + step, step)
    out = np.full(len(e), np.inf)
    for lo in range(0, len(e), 20_000):
        sl = slice(lo, lo + 20_000)
        h = np.stack([rate(start_age[sl] + t, sl) * step for t in grid[:-1]], axis=1)
        cum = np.concatenate([np.zeros((h.shape[0], 1)), np.cumsum(h, axis=1)], axis=1)
        k = (cum < e[sl, None]).sum(axis=1)  # the first grid point the hazard passes e at
        hit = np.flatnonzero(k < len(grid))
        kk = k[hit]
        before = cum[hit, kk - 1]
        out[lo + hit] = grid[kk - 1] + (e[sl][hit] - before) / np.maximum(
            h[hit, kk - 1] / step, 1e-300
        )
    return out


def sample_histories(
    women: Women, disease: BreastDisease, streams: Streams, w: dict[str, np.ndarray], years: float
) -> dict[str, np.ndarray]:
    """The breast cancer histories of women ``w`` (from :func:`sample_women`) over ``years``
    of follow-up from their first invitation: day columns from that invitation (inf: none)."""
    ids, age = w["person_id"], w["age"]
    inv, dc, sv = disease.invasive, disease.dcis, disease.survival
    u = lambda family, name: streams.uniform(f"breast.{family}.{name}", ids)  # noqa: E731
    n = lambda family, name: streams.normal(f"breast.{family}.{name}", ids)  # noqa: E731
    rr = relative_risk(w, women, disease)

    # invasive: when it would surface without screening, then its growth backwards
    t_clin = _first_event(
        lambda a, sl: (
            _rate(inv.clinical_incidence_per_100k, a) * (disease.incidence_multiplier * rr[sl])
        ),
        age,
        years,
        streams.exponential("breast.invasive.clinical", ids),
    )
    has = np.isfinite(t_clin)
    d_clin = inv.clinical_diameter_mm_median * np.exp(
        inv.clinical_diameter_mm_sigma * n("invasive", "diameter")
    )
    d_clin = np.maximum(d_clin, 2.0 * inv.onset_diameter_mm)
    vdt = inv.doubling_days_median * np.exp(inv.doubling_days_sigma * n("invasive", "doubling"))
    # growth years from onset to the clinical diameter, then the age at onset sets the pace
    grow = 3.0 * vdt * np.log2(d_clin / inv.onset_diameter_mm)
    onset_age = age + t_clin - grow / YEAR
    vdt = vdt * inv.doubling_per_decade ** ((np.where(has, onset_age, 60.0) - 60.0) / 10.0)
    grow = 3.0 * vdt * np.log2(d_clin / inv.onset_diameter_mm)
    clinical_day = np.where(has, t_clin * YEAR, np.inf)
    onset_day = np.where(has, clinical_day - grow, np.inf)
    node_d = inv.node_diameter_mm_median * np.exp(
        inv.node_diameter_mm_sigma * n("invasive", "nodes")
    )
    distant_d = inv.distant_diameter_mm_median * np.exp(
        inv.distant_diameter_mm_sigma * n("invasive", "distant")
    )

    # DCIS that does not progress: onset in the 30 years before the invitation or after it,
    # kept where it is still visible on or after day 0
    back = 30.0
    t_dcis = (
        _first_event(
            lambda a, sl: _rate(dc.incidence_per_100k, a) * np.where(a < 40.0, 0.3, 1.0) * rr[sl],
            age - back,
            back + years,
            streams.exponential("breast.dcis.onset", ids),
        )
        - back
    )
    visible = dc.visible_years_median * np.exp(dc.visible_years_sigma * n("dcis", "visible"))
    has_dcis = np.isfinite(t_dcis) & (t_dcis + visible > 0.0)
    dcis_onset = np.where(has_dcis, t_dcis * YEAR, np.inf)
    dcis_end = np.where(has_dcis, (t_dcis + visible) * YEAR, np.inf)

    # other-cause death: Gompertz hazard a exp(b age), inverted at a unit exponential
    a, b = sv.other_death_gompertz
    e = streams.exponential("breast.death.other", ids)
    other = np.log1p(b * e / (a * np.exp(b * age))) / b * YEAR
    return {
        "has_cancer": has,
        "clinical_day": clinical_day,
        "onset_day": onset_day,
        "doubling_days": vdt,
        "clinical_diameter_mm": d_clin,
        "node_diameter_mm": node_d,
        "distant_diameter_mm": distant_d,
        "calcifications": u("invasive", "calcs") < inv.calcification_share,
        "lethal_u": u("death", "lethal"),
        "death_e": streams.exponential("breast.death.time", ids),
        "has_dcis": has_dcis,
        "dcis_onset_day": dcis_onset,
        "dcis_end_day": dcis_end,
        "dcis_extent_mm": dc.extent_mm_median * np.exp(dc.extent_mm_sigma * n("dcis", "extent")),
        "other_death_day": other,
    }


def diameter_mm(h: dict[str, np.ndarray], rows, day) -> np.ndarray:
    """The invasive tumour's diameter on ``day`` (0 before onset; its clinical diameter from
    the clinical day on)."""
    onset, vdt = h["onset_day"][rows], h["doubling_days"][rows]
    d_clin = h["clinical_diameter_mm"][rows]
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.asarray(day, dtype=np.float64) - onset
        d0 = d_clin / 2.0 ** ((h["clinical_day"][rows] - onset) / (3.0 * vdt))
        d = np.minimum(d0 * 2.0 ** (t / (3.0 * vdt)), d_clin)
    return np.where(np.isfinite(onset) & (t >= 0), d, 0.0)


def stage(
    diameter: np.ndarray, node_d: np.ndarray, distant_d: np.ndarray, extensive: float = 2.5
) -> np.ndarray:
    """AJCC anatomic stage (1-4 for I-IV) of invasive tumours found at ``diameter``: nodes
    involved once it has reached its node diameter, four or more (N2) at ``extensive`` times
    that, distant spread at its distant diameter; I: up to 20 mm, no nodes; II: larger, or
    with a few nodes; III: four or more nodes, or over 50 mm with nodes; IV: distant spread."""
    nodes = diameter >= node_d
    out = np.where((diameter <= 20.0) & ~nodes, 1, 2)
    out = np.where(((diameter > 50.0) & nodes) | (diameter >= extensive * node_d), 3, out)
    out = np.where(diameter >= distant_d, 4, out)
    return out.astype(np.int8)


def cancer_death_day(
    h: dict[str, np.ndarray], rows, stage_: np.ndarray, dx_day, disease: BreastDisease
) -> np.ndarray:
    """The day a cancer diagnosed on ``dx_day`` at ``stage_`` (0 for DCIS, 1-4) kills (inf:
    it does not). One uniform per woman decides lethality at every stage (a cancer lethal at
    stage I is lethal at II), one exponential when."""
    sv = disease.survival
    share = np.concatenate([[0.0], np.asarray(sv.lethal_share)])[stage_]
    median = np.concatenate([[1.0], np.asarray(sv.median_years_to_death)])[stage_]
    lethal = h["lethal_u"][rows] < share
    t = median / math.log(2.0) * h["death_e"][rows] * YEAR
    return np.where(lethal, np.asarray(dx_day, dtype=np.float64) + t, np.inf)

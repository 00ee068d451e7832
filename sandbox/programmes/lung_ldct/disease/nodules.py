"""Benign (non-calcified) pulmonary nodules: count, size, type, stability, resolution.

Each person has a Poisson number of nodules present at entry and a Poisson number of new
ones appearing during follow-up. Most are stable; a fraction resolves (inflammatory) and a
fraction grows slowly. Nodules are stored flat, one row per nodule, sorted by person.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import poisson

from sandbox.programmes.lung_ldct.config import BenignNodules
from sandbox.programmes.lung_ldct.disease.natural_history import YEAR
from sandbox.rng import Streams

MAX_NODULES = 12


def sample_benign_nodules(
    benign: BenignNodules, streams: Streams, person_id: np.ndarray, horizon_day: float
) -> dict[str, np.ndarray]:
    """Flat table of benign nodules for ``person_id``.

    Returns arrays ``row`` (index into ``person_id``), ``appear_day`` (days from entry; -inf if
    present at entry), ``size_mm`` (diameter when it appears), ``nodule_type`` (0 solid,
    1 part-solid, 2 ground-glass), ``resolve_day`` (inf if it persists), ``vdt_days``
    (inf if stable).
    """
    years = max(horizon_day, 0.0) / YEAR
    n_start = poisson.ppf(
        streams.uniform("benign.count_start", person_id), benign.mean_count_at_start
    ).astype(np.int64)
    n_new = poisson.ppf(
        streams.uniform("benign.count_new", person_id), benign.new_per_year * years
    ).astype(np.int64)
    # at most MAX_NODULES per person, so nodule keys (0..11) never reach the tumour's key (15)
    n_start = np.minimum(n_start, MAX_NODULES)
    n_new = np.minimum(n_new, MAX_NODULES - n_start)
    total = n_start + n_new
    row = np.repeat(np.arange(len(person_id)), total)
    # index j of a nodule within its person: 0..total-1; new ones come after the prevalent ones
    first = np.repeat(np.cumsum(total) - total, total)
    j = np.arange(len(row)) - first
    pid = person_id[row]
    is_new = j >= n_start[row]
    u = lambda name: streams.uniform(f"benign.{name}", pid, j)  # noqa: E731
    appear = np.where(is_new, u("appear") * horizon_day, -np.inf)
    size = np.clip(benign.size_median_mm * np.exp(benign.size_sigma * ndtri(u("size"))), 1.0, 30.0)
    cdf = np.cumsum(np.asarray(benign.type_mix) / sum(benign.type_mix))
    ntype = np.minimum(np.searchsorted(cdf, u("type"), side="right"), 2).astype(np.int8)
    resolving = u("resolving") < benign.resolving_fraction
    start = np.where(np.isfinite(appear), appear, 0.0)
    resolve = np.where(
        resolving,
        start + (-np.log(u("resolve_time"))) * benign.resolve_median_days / np.log(2.0),
        np.inf,
    )
    growing = u("growing") < benign.growing_fraction
    vdt = np.where(growing, benign.growing_vdt_median_days * np.exp(0.4 * ndtri(u("vdt"))), np.inf)
    return {
        "row": row,
        "appear_day": appear,
        "size_mm": size,
        "nodule_type": ntype,
        "resolve_day": resolve,
        "vdt_days": vdt,
    }


def population_summary(nodules: dict[str, np.ndarray], entry_day: np.ndarray, years: float) -> dict:
    """The benign nodule population as screening series describe it, for comparing with them
    (docs/natural-history.md#the-nodule-population-against-published-series).

    ``nodules``: a cohort's flat nodule table (programme days); ``entry_day``: each person's
    entry day; ``years``: their follow-up. Sizes are the diameters at appearance (prevalent
    nodules: at entry).
    """
    people = len(entry_day)
    row = nodules["row"]
    appear = nodules["appear_day"] - entry_day[row]  # days since the person's entry
    prevalent = ~np.isfinite(appear)
    size = nodules["size_mm"]

    def share_with(mask: np.ndarray) -> float:
        return float(len(np.unique(row[mask])) / people) if people else float("nan")

    new = ~prevalent & (appear < years * YEAR)
    first_year = new & (appear < YEAR)
    at_entry = size[prevalent]
    return {
        "share_with_nodule_at_entry_3mm": share_with(prevalent & (size >= 3.0)),
        "share_with_nodule_at_entry_4mm": share_with(prevalent & (size >= 4.0)),
        "nodules_at_entry_per_person": float(prevalent.sum() / people),
        "size_at_entry_median_mm": float(np.median(at_entry)) if at_entry.size else float("nan"),
        "size_at_entry_share_below_5mm": float((at_entry < 5.0).mean()) if at_entry.size else 0.0,
        "size_at_entry_share_8mm_or_more": float((at_entry >= 8.0).mean())
        if at_entry.size
        else 0.0,
        "share_with_new_nodule_in_a_year_3mm": share_with(first_year & (size >= 3.0)),
        "new_nodules_per_person_year": float(new.sum() / (people * years)),
        "share_growing": float(np.isfinite(nodules["vdt_days"]).mean()) if size.size else 0.0,
        "share_resolving": float(np.isfinite(nodules["resolve_day"]).mean()) if size.size else 0.0,
    }

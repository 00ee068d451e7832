"""Benign breast findings: cysts, fibroadenomas and benign calcification clusters.

Each woman has a Poisson number of each kind present at her first invitation and a Poisson
number of new ones over follow-up, with means by age group, density and (cysts) hormone
therapy (:class:`~sandbox.programmes.breast_mammo.config.Benign`). Cysts come and go;
fibroadenomas and calcifications stay. Stored flat, one row per finding, sorted by woman.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import poisson

from sandbox.programmes.breast_mammo.config import BENIGN_KINDS, Benign
from sandbox.programmes.breast_mammo.history import YEAR, age_group
from sandbox.rng import Streams, declare_streams

MAX_FINDINGS = 12  # per woman, all kinds together (finding keys 0-11)
declare_streams(
    {"breast.benign.*": "a woman's benign findings: count, kind, size, appearance, resolution"}
)


def sample_benign(
    benign: Benign, streams: Streams, w: dict[str, np.ndarray], years: float
) -> dict[str, np.ndarray]:
    """Flat table of benign findings of women ``w``: ``row`` (index into ``w``), ``kind``
    (index into :data:`BENIGN_KINDS`), ``appear_day`` (-inf: present at the first invitation),
    ``resolve_day`` (inf: it stays) and ``size_mm``."""
    ids, g = w["person_id"], age_group(w["age"])
    dens = np.asarray(benign.density_multiplier)[w["density"]]
    counts = []
    for k in range(len(BENIGN_KINDS)):
        scale = dens * (
            np.where(w["hormone_therapy"] == 1, benign.hormone_therapy_cysts, 1.0)
            if k == 0
            else 1.0
        )
        at = np.asarray(benign.at_entry[k])[g] * scale
        new = np.asarray(benign.new_per_year[k])[g] * scale * years
        n0 = poisson.ppf(streams.uniform("breast.benign.count_start", ids, k), at)
        n1 = poisson.ppf(streams.uniform("breast.benign.count_new", ids, k), new)
        counts.append((n0.astype(np.int64), n1.astype(np.int64)))
    per = np.stack([a + b for a, b in counts], axis=1)  # (women, kinds)
    # at most MAX_FINDINGS per woman: the kinds in order, prevalent before new
    total = np.minimum(per.sum(axis=1), MAX_FINDINGS)
    row = np.repeat(np.arange(len(ids)), total)
    first = np.repeat(np.cumsum(total) - total, total)
    j = np.arange(len(row)) - first
    edges = np.cumsum(per, axis=1)
    kind = (j[:, None] >= edges[row]).sum(axis=1).astype(np.int8)
    before = np.where(kind > 0, edges[row, np.maximum(kind - 1, 0)], 0)
    within = j - before
    n_start = np.stack([a for a, _ in counts], axis=1)[row, kind]
    is_new = within >= n_start
    pid = ids[row]
    u = lambda name: streams.uniform(f"breast.benign.{name}", pid, j)  # noqa: E731
    n = lambda name: streams.normal(f"breast.benign.{name}", pid, j)  # noqa: E731
    appear = np.where(is_new, u("appear") * years * YEAR, -np.inf)
    median = np.asarray(benign.size_mm_median)[kind]
    sigma = np.asarray(benign.size_mm_sigma)[kind]
    size = np.clip(median * np.exp(sigma * n("size")), 2.0, 60.0)
    start = np.where(np.isfinite(appear), appear, 0.0)
    lasting = -np.log(u("resolve")) * benign.cyst_years_median / np.log(2.0) * YEAR
    resolve = np.where(kind == 0, start + lasting, np.inf)
    return {"row": row, "kind": kind, "appear_day": appear, "resolve_day": resolve, "size_mm": size}

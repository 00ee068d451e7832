"""Golden file: the headline metrics of a tiny end-to-end run, compared with a stored table.

Regenerate after an intended change of results (and review the diff):

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl

GOLDEN = Path(__file__).with_name("golden") / "tiny_metrics.csv"
OVERRIDES = (
    "scenario=lung_ldct",
    "policy=soc_double_read",
    "cohort.size=1500",
    "seed=3",
    "runtime=quiet",
)
COLUMNS = ["metric", "round", "value", "lo", "hi", "n"]
REL = 1e-9


def tiny_metrics(run_sim) -> pl.DataFrame:
    m = run_sim(*OVERRIDES).metrics
    return (
        m.filter((pl.col("site") == "all") & (pl.col("subgroup") == "all"))
        .select(COLUMNS)
        .sort("metric", "round")
    )


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


def test_tiny_run_matches_golden_metrics(run_sim):
    got = tiny_metrics(run_sim)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        got.write_csv(GOLDEN)  # shortest round-trip representation of each float
    assert GOLDEN.exists(), (
        f"no golden file; create it with UPDATE_GOLDEN=1 pytest {Path(__file__).name}"
    )
    want = pl.read_csv(GOLDEN, schema_overrides={"round": pl.Utf8, "n": pl.Int64})
    assert got.select("metric", "round").rows() == want.select("metric", "round").rows(), (
        "the set of metrics changed; regenerate the golden file if that is intended"
    )
    diffs = []
    for g, w in zip(got.iter_rows(named=True), want.iter_rows(named=True), strict=True):
        for col in ("value", "lo", "hi"):
            if not _close(g[col], w[col]):
                diffs.append(f"{g['metric']} {g['round']} {col}: got {g[col]!r}, golden {w[col]!r}")
        if g["n"] != w["n"]:
            diffs.append(f"{g['metric']} {g['round']} n: got {g['n']}, golden {w['n']}")
    assert not diffs, "differs from tests/golden/tiny_metrics.csv:\n" + "\n".join(diffs[:40])

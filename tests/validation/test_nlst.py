"""The NLST scenario against the published trial table, at reduced size."""

from __future__ import annotations

import math
import re

import polars as pl
import pytest

from sandbox.cli import main
from sandbox.compose import load
from sandbox.runners.local import simulate
from sandbox.validation import compare, load_targets
from sandbox.validation.targets import loss

SIZE = 6000


@pytest.fixture(scope="module")
def targets():
    return load_targets("nlst")


def test_targets_load(targets):
    head, rows = targets
    assert head["scenario"] == "nlst" and head["policy"] == "soc_single_read"
    judged = [t for t in rows if t.tolerance is not None]
    assert judged and all(t.tolerance > 0 for t in judged)
    assert {t.round for t in rows} <= {"T0", "T1", "T2", "all"}


def test_compare_table_structure(targets, run_sim):
    head, rows = targets
    res = run_sim(
        "scenario=nlst", "policy=soc_single_read", "cohort.size=1500", "seed=2011", "runtime=quiet"
    )
    table = compare(res.metrics, rows, 2.0)
    assert table["target"].to_list() == [t.name for t in rows]
    assert table.filter(pl.col("tolerance").is_not_null())["pass"].is_not_null().all()
    assert table.filter(pl.col("tolerance").is_null())["pass"].is_null().all()
    assert table["simulated"].is_not_nan().all()
    judged = table.filter(pl.col("tolerance").is_not_null())
    assert math.isfinite(loss(table)) and loss(table) >= 0
    expect = ((judged["difference"] / judged["tolerance"]) ** 2).sum()
    assert loss(table) == pytest.approx(expect)


def test_nlst_validation_passes_at_reduced_size(capsys):
    # `sandbox validate nlst --size 6000`: tolerances widened by sqrt(26722 / 6000) (the CLI's
    # default scaling). This asserts the calibrated scenario reproduces every judged NLST row;
    # it fails while scenarios/nlst.yaml is not (yet) calibrated.
    code = main(["validate", "nlst", "--size", str(SIZE)])
    out = capsys.readouterr().out
    assert f"{SIZE:,} people" in out
    assert f"tolerance x{math.sqrt(26722 / SIZE):.2f}" in out
    m = re.search(r"^(\d+)/(\d+) within tolerance$", out, re.M)
    assert m, out
    assert code == 0 and m.group(1) == m.group(2), out


@pytest.mark.slow
def test_nlst_validation_passes_at_full_size(capsys):
    code = main(["validate", "nlst"])
    assert code == 0, capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nlst_validation_is_not_one_lucky_seed(seed):
    head, rows = load_targets("nlst")
    cfg, profiles, _ = load(
        [
            f"scenario={head['scenario']}",
            f"policy={head['policy']}",
            f"seed={seed}",
            f"cohort.size={SIZE}",
            "runtime=quiet",
        ]
    )
    table = compare(simulate(cfg, profiles, progress=False).metrics, rows, math.sqrt(26722 / SIZE))
    assert table.filter(pl.col("pass").is_not_null())["pass"].all(), table

"""Equity from the command line: every run folder holds its disparities (equity.parquet),
`sandbox equity` reads them or recomputes them against other reference groups, and `sandbox
compare --equity` says how one policy changes another's disparities on the same people."""

from __future__ import annotations

import polars as pl
import pytest
from testkit import assert_one_line_error, run_cli

from sandbox.outcomes.equity import EQUITY_SCHEMA, SPREAD


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("equity") / "runs"
    folders = {}
    for policy in ("soc_single_read", "soc_double_read"):
        code = run_cli_quiet(
            [
                "run",
                f"policy={policy}",
                "cohort.size=2500",
                "seed=4",
                "runtime=quiet",
                f"runtime.out_dir={out}",
                f"runtime.run_name={policy}",
            ]
        )
        assert code == 0
        folders[policy] = out / policy
    return folders


def run_cli_quiet(argv):
    from sandbox.cli import main

    return main(argv)


def test_a_run_folder_holds_its_disparities(two_runs):
    t = pl.read_parquet(two_runs["soc_single_read"] / "equity.parquet")
    assert t.schema == pl.Schema(EQUITY_SCHEMA)
    assert set(t["dimension"]) == {"sex", "race", "age_band", "smoking", "site"}
    assert set(t.filter(pl.col("group") == SPREAD)["metric"]) >= {
        "demographic_parity",
        "equalized_odds",
    }
    # a group's value is the run's own metric for that subgroup
    metrics = pl.read_parquet(two_runs["soc_single_read"] / "metrics.parquet")
    m = metrics.filter(
        (pl.col("site") == "all")
        & (pl.col("round") == "all")
        & (pl.col("subgroup") == "smoking=current")
        & (pl.col("metric") == "false_positive_rate")
    )["value"][0]
    row = t.filter(
        (pl.col("dimension") == "smoking")
        & (pl.col("group") == "current")
        & (pl.col("metric") == "false_positive_rate")
    )
    assert row["value"][0] == pytest.approx(m, rel=1e-12)


def test_sandbox_equity_prints_and_recomputes_against_another_reference(two_runs, tmp_path, capsys):
    run = str(two_runs["soc_single_read"])
    code, out, err = run_cli(["equity", run], capsys)
    assert code == 0, err
    assert "demographic parity" in out and "equalized odds" in out and "smoking" in out
    csv = tmp_path / "gaps.csv"
    code, out, err = run_cli(
        ["equity", run, "--reference", "sex=F", "--dimension", "sex", "--all", "--csv", str(csv)],
        capsys,
    )
    assert code == 0, err
    t = pl.read_csv(csv)
    assert set(t["dimension"]) == {"sex"}
    assert set(t.filter(pl.col("group") != SPREAD)["reference"]) == {"F"}
    assert "sex=M" in out and "gaps to each dimension's reference group" in out
    code, _, err = run_cli(["equity", run, "--reference", "race=martian"], capsys)
    assert_one_line_error(code, err, "race=martian", "no such group")
    code, _, err = run_cli(["equity", run, "--reference", "race"], capsys)
    assert_one_line_error(code, err, "--reference", "dimension=group")
    code, _, err = run_cli(["equity", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "not a complete run folder")


def test_sandbox_compare_equity(two_runs, capsys):
    a, b = str(two_runs["soc_double_read"]), str(two_runs["soc_single_read"])
    code, out, err = run_cli(["compare", a, b, "--equity", "--replicates", "300"], capsys)
    assert code == 0, err
    assert "disparities, B - A" in out
    for dim in ("sex", "race", "age_band", "smoking", "site"):
        assert f"{dim}: equalized_odds" in out and f"{dim}: demographic_parity" in out
    code, _, err = run_cli(["compare", a, "--equity"], capsys)
    assert_one_line_error(code, err, "--equity", "two arms")


def test_sandbox_compare_equity_within_one_site(two_runs, capsys):
    a, b = str(two_runs["soc_double_read"]), str(two_runs["soc_single_read"])
    argv = ["compare", a, b, "--equity", "--replicates", "200", "--site", "mobile_unit"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    table = out[out.index("disparities, B - A") :]
    assert "sex: equalized_odds" in table and "site:" not in table  # one site: no site gaps
    code, _, err = run_cli([*argv[:-2], "--subgroup", "sex=F"], capsys)
    assert_one_line_error(code, err, "--equity", "--site")

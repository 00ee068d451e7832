"""`sandbox run economics=...` and `sandbox economics` as a health economist uses them."""

from __future__ import annotations

import polars as pl
import pytest
import testkit
import yaml
from testkit import assert_one_line_error, run_cli


def test_a_priced_run_writes_costs_and_qalys_per_person(runs):
    folder = runs / "soc_single_read"
    econ = pl.read_parquet(folder / "economics.parquet")
    people = pl.read_parquet(folder / "people.parquet")
    assert econ["person_id"].to_list() == people["person_id"].to_list()
    assert (econ["cost_screening"] > 0).mean() > 0.9  # nearly everyone attends a screen
    assert (econ["qalys_disc"] <= econ["life_years_disc"] + 1e-9).all()
    metrics = pl.read_parquet(folder / "metrics.parquet")
    cost = metrics.filter(pl.col("metric") == "cost_per_person").row(0, named=True)
    assert cost["value"] == pytest.approx(econ["cost_total"].mean())
    assert cost["lo"] < cost["value"] < cost["hi"]
    # no screening costs no screens
    none = pl.read_parquet(runs / "no_screening" / "economics.parquet")
    assert none["cost_screening"].sum() == 0 and none["cost_reading"].sum() == 0


def test_the_table_has_dampacks_columns_and_dominance(runs, policies, capsys, tmp_path):
    folders = [str(runs / p) for p in policies]
    out = tmp_path / "cea.csv"
    code, text, err = run_cli(
        ["economics", *folders, "--wtp", "100000", "--replicates", "200", "--out", str(out)], capsys
    )
    assert code == 0, err
    assert "paired (the same people under every strategy)" in text
    for col in (
        "Strategy",
        "Cost (USD)",
        "Effect (QALYs)",
        "Inc_Cost",
        "Inc_Effect",
        "ICER",
        "Status",
    ):
        assert col in text
    icers = pl.read_csv(tmp_path / "cea_icers.csv")
    assert set(icers["Strategy"]) == set(policies)
    assert icers["Cost"].to_list() == sorted(icers["Cost"].to_list())
    # double reading costs more than single reading on the same people
    cost = dict(zip(icers["Strategy"], icers["Cost"], strict=True))
    assert cost["no_screening"] < cost["soc_single_read"] < cost["soc_double_read"]
    assert set(icers["Status"]) <= {"ND", "D", "ED"} and "ND" in set(icers["Status"])
    nmb = pl.read_csv(tmp_path / "cea_nmb.csv")
    assert nmb["P_cost_effective"].sum() == pytest.approx(1.0)
    # re-pricing under another preset needs no new run
    code, text, err = run_cli(
        ["economics", *folders, "--economics", "nice", "--replicates", "200"], capsys
    )
    assert code == 0, err
    assert "GBP 2022" in text and "3.5% costs" in text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--wtp", "abc"], "--wtp abc"),
        (["--wtp", "-5"], "--wtp -5"),
        (["--economics", "bogus"], "economics"),
        (["--replicates", "5"], "--replicates 5"),
        (["--by", "shoe_size"], "--by shoe_size"),
    ],
)
def test_bad_arguments_are_one_line(runs, policies, capsys, tmp_path, args, needle):
    out = tmp_path / "t.parquet"
    code, _, err = run_cli(
        ["economics", str(runs / "soc_single_read"), *args, "--out", str(out)], capsys
    )
    assert_one_line_error(code, err, needle)
    assert not list(tmp_path.iterdir())


def test_tables_by_site_and_subgroup(runs, policies, capsys, tmp_path):
    """``--by``: each site's (or subgroup's) own comparison of the strategies, on its people;
    its per-person means weighted by head count give the whole table's."""
    folders = [str(runs / p) for p in policies]
    out = tmp_path / "cea.parquet"
    argv = ["economics", *folders, "--replicates", "200", "--by", "site", "--out", str(out)]
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    by = pl.read_parquet(tmp_path / "cea_icers_by_site.parquet")
    whole = pl.read_parquet(tmp_path / "cea_icers.parquet")
    people = pl.read_parquet(runs / "soc_single_read" / "people.parquet")
    config = yaml.safe_load((runs / "soc_single_read" / "config.yaml").read_text())
    names = [s["name"] for s in config["sites"]]
    counts = people.group_by("site").len()
    share = {f"site={names[s]}": n / people.height for s, n in counts.iter_rows()}
    assert set(by["Subgroup"]) == set(share)
    for strategy in policies:
        rows = by.filter(pl.col("Strategy") == strategy)
        mean = sum(share[g] * c for g, c in zip(rows["Subgroup"], rows["Cost"], strict=True))
        want = whole.filter(pl.col("Strategy") == strategy)["Cost"][0]
        assert mean == pytest.approx(want, rel=1e-9)
    for g in share:
        assert g in text
    assert set(by["Status"]) <= {"ND", "D", "ED"}
    nmb = pl.read_parquet(tmp_path / "cea_nmb_by_site.parquet")
    sums = nmb.group_by("Subgroup", "WTP").agg(pl.col("P_cost_effective").sum())
    assert sums["P_cost_effective"].to_list() == pytest.approx([1.0] * sums.height)


@pytest.mark.parametrize(
    "edit, needle",
    [
        ("  followup_ct: 225.0", "  followup_ct: -3"),
        ("  later_years: 0.80", "  later_years: 1.4"),
        ("  screen: {ct: 225.0, cxr: 30.0}", "  screen: {ct: -1, cxr: 30.0}"),
    ],
)
def test_a_bad_price_list_names_the_key(
    runs, policies, capsys, tmp_path, project_root, edit, needle
):
    text = (project_root / "conf" / "economics" / "us_payer.yaml").read_text()
    assert edit in text
    bad = tmp_path / "mine.yaml"
    bad.write_text(text.replace(edit, needle))
    code, _, err = run_cli(
        ["economics", str(runs / "soc_single_read"), "--economics", str(bad)], capsys
    )
    key = needle.strip().split(":")[0]
    assert_one_line_error(code, err, key)


def test_a_run_without_a_price_list_asks_for_one(capsys, tmp_path):
    testkit.write_runs(tmp_path, (3,), ("soc_single_read",), 600)
    code, _, err = run_cli(["economics", str(tmp_path / "soc_single_read-3")], capsys)
    assert_one_line_error(code, err, "--economics us_payer")

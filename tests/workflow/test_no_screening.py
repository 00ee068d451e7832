"""The no-screening comparator (`policy=no_screening`): nobody is screened, every cancer is found
by symptoms, and against it a screening arm shows deaths avoided, life-years and overdiagnosis
on the same people."""

from __future__ import annotations

import polars as pl
import pytest
import testkit
from testkit import assert_one_line_error, run_cli

from sandbox.comparison import compare_arms, group_arms, read_run


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("comparators")
    testkit.write_runs(out, (3,), ("no_screening", "soc_single_read"), 2500)
    return out


def test_nobody_is_screened_and_every_cancer_surfaces_by_symptoms(arms):
    events = pl.read_parquet(arms / "no_screening-3" / "events.parquet")
    people = pl.read_parquet(arms / "no_screening-3" / "people.parquet")
    assert events.height == 0
    modes = set(people["diagnosis_mode"].cast(pl.String))
    assert modes <= {"none", "not_screened"} and "not_screened" in modes
    dx = people.filter(pl.col("diagnosis_mode") != "none")
    assert (dx["diagnosis_day"] == dx["clinical_day"]).all()
    assert not people["overdiagnosed"].any()


def test_screening_moves_diagnoses_earlier_on_the_same_people(arms):
    none = pl.read_parquet(arms / "no_screening-3" / "people.parquet")
    soc = pl.read_parquet(arms / "soc_single_read-3" / "people.parquet")
    both = none.join(soc, on="person_id", suffix="_soc")
    assert both.height == none.height  # the same people
    assert (both["clinical_day"] == both["clinical_day_soc"]).all()  # the same disease
    found = both.filter(pl.col("diagnosis_mode_soc") == "screen")
    assert found.height > 0
    # a screen-detected cancer is found no later than symptoms would have found it
    assert (found["diagnosis_day_soc"] <= found["clinical_day"]).all()
    # an overdiagnosed cancer would never have been diagnosed without screening
    over = both.filter(pl.col("overdiagnosed_soc"))
    assert (over["diagnosis_mode"] == "none").all()


def test_against_no_screening_deaths_life_years_and_overdiagnosis_have_intervals(arms):
    a, b = group_arms([read_run(arms / "no_screening-3"), read_run(arms / "soc_single_read-3")])
    wanted = ["lung_cancer_deaths", "life_years", "overdiagnosed_cancers", "lifetime_life_years"]
    cmp = compare_arms(a, b, wanted, 300)
    rows = {r["metric"]: r for r in cmp.table.iter_rows(named=True)}
    life = rows["lifetime_life_years"]  # life-years gained over a lifetime, paired
    assert life["diff_lo"] <= life["diff"] <= life["diff_hi"] and life["diff"] >= 0
    deaths = rows["lung_cancer_deaths"]
    assert deaths["diff"] <= 0 and deaths["diff_lo"] <= deaths["diff"] <= deaths["diff_hi"]
    assert rows["life_years"]["diff"] >= 0
    assert rows["overdiagnosed_cancers"]["a"] == 0


def test_a_policy_that_screens_nobody_has_no_ai_role(capsys, tmp_path):
    argv = ["run", "policy=no_screening", "policy.role=triage", f"runtime.out_dir={tmp_path}"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "policy.role")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("policy", ["no_screening", "soc_single_read"])
def test_a_lifetime_follows_the_same_draws_past_the_end_of_follow_up(arms, policy):
    p = pl.read_parquet(arms / f"{policy}-3" / "people.parquet")
    assert set(p["lifetime_death_cause"].cast(pl.String)) <= {"lung_cancer", "other"}
    assert (p["lifetime_years"] >= p["person_years"] - 1e-9).all()
    died = p.filter(pl.col("death_day").is_not_null())
    assert (died["lifetime_death_day"] == died["death_day"]).all()
    assert (died["lifetime_death_cause"] == died["death_cause"]).all()
    lc = p.filter(pl.col("death_cause") == "lung_cancer").height
    lc_life = p.filter(pl.col("lifetime_death_cause") == "lung_cancer").height
    assert lc_life > lc  # cancers that surface, and kill, after the follow-up
    # a lung-cancer death over a lifetime needs a cancer, diagnosed in follow-up or later
    assert p.filter(pl.col("lifetime_death_cause") == "lung_cancer")["has_cancer"].all()

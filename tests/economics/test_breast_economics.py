"""Breast screening priced: stage 0 and breast-cancer deaths by hand, the refusals of a price
list written for another programme, and the economist's journey on breast run folders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import testkit
from test_accounting import events as accounting_events
from test_accounting import people as accounting_people
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.economics.accounting import YEAR, price_run, screen_modality, states
from sandbox.economics.config import Costs, Economics, Utilities
from sandbox.programmes.breast_mammo.programme import BreastMammo

COSTS = Costs(
    screen={"mammo": 700.0},
    reader_per_minute=15.0,
    ai_per_exam=20.0,
    workup=4000.0,
    benign_biopsy=3000.0,
    resection=20000.0,
    initial_by_stage={"0": 60000.0, "I": 100000.0, "II": 120000.0, "III": 160000.0, "IV": 1.8e5},
    continuing_per_year=25000.0,
    continuing_years=5.0,
    terminal_cancer=180000.0,
    terminal_other=45000.0,
)
UTIL = Utilities(
    baseline_by_age={"40": 0.85},
    women_minus=0.0,
    first_year_by_stage={"0": 0.5, "I": 0.7, "II": 0.7, "III": 0.6, "IV": 0.69},
    later_years=0.78,
    last_year=0.69,
    false_positive_loss=0.01,
    biopsy_loss=0.004,
)
BREAST = Economics(
    name="t",
    programme="breast_mammo",
    discount_costs=0.0,
    discount_effects=0.0,
    costs=COSTS,
    utilities=UTIL,
)
POLICIES = ("soc_double_read_consensus", "soc_single_read")


def people(rows: list[dict]) -> pl.DataFrame:
    """test_accounting's people frame, with a woman of 55 by default."""
    return accounting_people([{"sex": "F", "age": 55.0, **r} for r in rows])


def events(rows: list[dict]) -> pl.DataFrame:
    """test_accounting's event frame, with a mammogram's two minutes of reading by default."""
    return accounting_events(
        [{"reader_minutes": 2.0, "benign_resection": False, **r} for r in rows]
    )


def test_stage_0_and_breast_cancer_deaths_are_priced_by_hand():
    p = people(
        [
            # DCIS found at her screen (day of entry), dies of another cause 20 years later
            {
                "person_id": 1,
                "lifetime_years": 20.0,
                "diagnosis_mode": "screen",
                "diagnosis_round": 0,
                "lifetime_diagnosis_day": 100.0,
                "lifetime_stage": "0",
            },
            # stage III surfacing at entry, dies of breast cancer three years later
            {
                "person_id": 2,
                "lifetime_years": 3.0,
                "lifetime_death_cause": "breast_cancer",
                "lifetime_diagnosis_day": 100.0,
                "lifetime_stage": "III",
            },
            # no cancer; recalled, a benign surgical biopsy
            {"person_id": 3, "lifetime_years": 10.0},
        ]
    )
    e = events(
        [
            {"person_id": 1, "positive": True, "workup_day": 100.0, "workup_stage": "0"},
            {
                "person_id": 3,
                "positive": True,
                "workup_day": 110.0,
                "benign_biopsy": True,
                "benign_resection": True,
            },
        ]
    )
    out = price_run(p, e, BREAST, "mammo")
    a, b, c = (out.row(i, named=True) for i in range(3))
    # stage 0's first year, five later years, the last year of a woman treated (other cause)
    assert a["cost_treatment"] == pytest.approx(60000 + 5 * 25000 + 45000)
    # stage III's first year, one later year until the last, the last year of a breast-cancer death
    assert b["cost_treatment"] == pytest.approx(160000 + 25000 + 180000)
    assert c["cost_treatment"] == 0
    assert a["cost_screening"] == 700 and a["cost_reading"] == 30 and a["cost_workup"] == 4000
    assert c["cost_workup"] == 4000 + 20000  # a surgical biopsy is priced as one
    assert a["cost_followup"] == a["cost_incidental"] == 0  # no follow-up exams, no CT
    # QALYs: stage 0's first-year utility, then later years; the last year before a
    # breast-cancer death; the one-off losses of a biopsy and of a false positive
    assert a["qalys"] == pytest.approx(0.5 + 19 * 0.78 - 0.004)
    assert b["qalys"] == pytest.approx(0.6 + 0.78 + 0.69)
    assert c["qalys"] == pytest.approx(10 * 0.85 - 0.01 - 0.004)  # the norm, less both


def test_the_qaly_states_are_the_programmes_stages():
    names = states(BreastMammo.stages)
    assert "first_0" in names and "last_first_0" in names
    assert len(names) == 2 * len(BreastMammo.stages) + 3
    # a cheaper stage 0 lowers the DCIS woman's cost and nobody else's
    p = people(
        [
            {
                "person_id": k,
                "lifetime_years": 10.0,
                "lifetime_diagnosis_day": 100.0 + YEAR,
                "lifetime_stage": s,
            }
            for k, s in enumerate(("0", "I"))
        ]
    )
    e = events([{"person_id": 0}, {"person_id": 1}])
    base = price_run(p, e, BREAST, "mammo")["cost_treatment"].to_list()
    costs = replace(COSTS, initial_by_stage={**COSTS.initial_by_stage, "0": 0.0})
    cheap = price_run(p, e, replace(BREAST, costs=costs), "mammo")
    assert cheap["cost_treatment"].to_list() == [base[0] - 60000, base[1]]


def test_a_runs_screen_is_priced_by_what_its_sites_screen_with():
    assert screen_modality("ct", ["mammo", "mammo"]) == "mammo"  # breast: the site's system
    assert screen_modality("ct", ["ct"]) == "ct"
    assert screen_modality("cxr", ["ct", "ct"]) == "cxr"  # a test of the policy's own


def test_a_lung_price_list_is_refused_at_compose_before_anything_runs(capsys, tmp_path):
    out = tmp_path / "runs"
    argv = ["run", "scenario=breast_masai", "economics=nice", f"runtime.out_dir={out}"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "'nice'", "'lung_ldct'", "'breast_mammo'")
    assert_nothing_written(out)


def test_a_price_list_without_the_programmes_stages_is_refused(capsys, tmp_path):
    out = tmp_path / "runs"
    argv = ["run", "scenario=breast_masai", "economics=nice", "economics.programme=breast_mammo"]
    code, _, err = run_cli([*argv, f"runtime.out_dir={out}"], capsys)
    assert_one_line_error(code, err, "economics.costs.initial_by_stage", "0, I, II, III, IV")
    assert_nothing_written(out)


@pytest.fixture(scope="module")
def breast_runs(tmp_path_factory) -> Path:
    """Two breast policies on the same 1,500 women, priced under sweden_breast."""
    out = tmp_path_factory.mktemp("breast")
    for policy in POLICIES:
        argv = ["run", "scenario=breast_masai", "runtime=quiet", "cohort.size=1500", "seed=4"]
        argv += [f"runtime.out_dir={out}", f"policy={policy}", f"runtime.run_name={policy}"]
        assert testkit.main([*argv, "economics=sweden_breast"]) == 0
    return out


def test_a_priced_breast_run_writes_costs_and_qalys(breast_runs):
    folder = breast_runs / POLICIES[0]
    econ = pl.read_parquet(folder / "economics.parquet")
    people = pl.read_parquet(folder / "people.parquet")
    assert econ["person_id"].to_list() == people["person_id"].to_list()
    assert (econ["cost_screening"] > 0).mean() > 0.9  # nearly every woman attends
    assert econ["cost_followup"].sum() == econ["cost_incidental"].sum() == 0
    assert (econ["qalys_disc"] <= econ["life_years_disc"] + 1e-9).all()
    metrics = pl.read_parquet(folder / "metrics.parquet")
    for metric, col in (("cost_per_person", "cost_total"), ("qalys_per_person", "qalys_disc")):
        row = metrics.filter(pl.col("metric") == metric).row(0, named=True)
        assert row["value"] == pytest.approx(econ[col].mean())
    # the women diagnosed at stage 0 are treated as DCIS is priced
    dcis = people.filter(pl.col("lifetime_stage") == "0")["person_id"]
    assert (econ.filter(pl.col("person_id").is_in(dcis.implode()))["cost_treatment"] > 0).all()


def test_two_breast_policies_give_an_incremental_table(breast_runs, capsys, tmp_path):
    folders = [str(breast_runs / p) for p in POLICIES]
    argv = ["economics", *folders, "--wtp", "500000", "--replicates", "200"]
    code, text, err = run_cli([*argv, "--out", str(tmp_path / "cea.csv")], capsys)
    assert code == 0, err
    assert "sweden_breast" in text and "SEK 2023" in text and "paired" in text
    icers = pl.read_csv(tmp_path / "cea_icers.csv")
    assert set(icers["Strategy"]) == set(POLICIES)
    assert icers["Cost"].to_list() == sorted(icers["Cost"].to_list())
    if icers["Status"].to_list() == ["ND", "ND"]:
        second = icers.row(1, named=True)
        assert second["Inc_Cost"] == pytest.approx(icers["Cost"][1] - icers["Cost"][0])
    # the breast programme's subgroups split the table
    code, text, err = run_cli([*argv, "--by", "density"], capsys)
    assert code == 0, err
    assert "density=" in text


def test_a_lung_price_list_is_refused_on_breast_folders(breast_runs, capsys, tmp_path):
    folders = [str(breast_runs / p) for p in POLICIES]
    for command, out in (("economics", "cea.parquet"), ("psa", "psa")):
        argv = [command, *folders, "--economics", "us_payer", "--out", str(tmp_path / out)]
        code, _, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, "'us_payer'", "'breast_mammo'", "sweden_breast")
    assert not list(tmp_path.iterdir())


def test_the_psa_runs_on_breast_folders(breast_runs, capsys, tmp_path):
    folders = [str(breast_runs / p) for p in POLICIES]
    out = tmp_path / "psa"
    argv = ["psa", *folders, "--draws", "30", "--wtp", "500000", "--out", str(out)]
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    draws = pl.read_parquet(out / "psa_draws.parquet")
    assert set(draws["strategy"]) == set(POLICIES) and draws.height == 60
    assert "costs.initial_by_stage.0" in draws.columns  # stage 0 is an uncertain price
    assert (out / "tornado.png").is_file() and (out / "ceac.svg").is_file()


def test_each_programme_is_offered_the_price_lists_that_price_it():
    from sandbox.economics.report import presets_for

    assert presets_for("breast_mammo") == ["sweden_breast"]
    assert set(presets_for("lung_ldct")) == {"nice", "nlst_cea", "us_payer"}


def test_the_dashboard_offers_breast_runs_only_breast_price_lists(breast_runs, monkeypatch):
    app_test = pytest.importorskip("streamlit.testing.v1").AppTest
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "dashboards"))
    monkeypatch.setenv("SANDBOX_RESULTS", str(breast_runs))
    at = app_test.from_file(str(root / "dashboards" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/economics.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="preset").options == ["sweden_breast"]
    assert set(at.dataframe[0].value["Strategy"]) == set(POLICIES)

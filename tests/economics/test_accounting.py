"""Per-person pricing against hand-computed amounts, discounting against its integral, and the
dominance rules of the cost-effectiveness table against worked examples."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
import pytest
from scipy import integrate

from sandbox.economics.accounting import (
    ECONOMICS_SCHEMA,
    YEAR,
    discount_at,
    discount_flow,
    price_run,
)
from sandbox.economics.config import Costs, Economics, Utilities
from sandbox.economics.tables import Arm, cea_table, frontier

COSTS = Costs(
    screen={"ct": 200.0, "cxr": 30.0},
    followup_ct=150.0,
    reader_per_minute=10.0,
    ai_per_exam=7.0,
    workup=1000.0,
    benign_biopsy=3000.0,
    incidental_per_screen_ct=20.0,
    initial_by_stage={"I": 40000.0, "II": 50000.0, "III": 60000.0, "IV": 55000.0},
    continuing_per_year=4000.0,
    continuing_years=5.0,
    terminal_cancer=60000.0,
    terminal_other=15000.0,
    patient_time_per_visit=100.0,
)
UTIL = Utilities(
    baseline_by_age={"50": 0.8, "70": 0.7},
    women_minus=0.0,
    first_year_by_stage={"I": 0.8, "II": 0.75, "III": 0.7, "IV": 0.6},
    later_years=0.78,
    last_year=0.5,
    false_positive_loss=0.01,
    biopsy_loss=0.02,
)
UNDISCOUNTED = Economics(
    name="t", discount_costs=0.0, discount_effects=0.0, costs=COSTS, utilities=UTIL
)


def people(rows: list[dict]) -> pl.DataFrame:
    base = {
        "sex": "M",
        "age": 60.0,
        "entry_day": 100.0,
        "diagnosis_mode": "none",
        "diagnosis_round": -1,
        "lifetime_death_cause": "other",
        "lifetime_diagnosis_day": None,
        "lifetime_stage": None,
    }
    return pl.DataFrame([{**base, **r} for r in rows])


def events(rows: list[dict]) -> pl.DataFrame:
    base = {
        "round": 0,
        "exam_seq": 0,
        "exam_day": 100.0,
        "reader_minutes": 3.0,
        "positive": False,
        "workup_day": None,
        "workup_stage": None,
        "benign_biopsy": False,
        "ai_score": None,
    }
    schema = {"workup_day": pl.Float64, "workup_stage": pl.Utf8, "ai_score": pl.Float64}
    return pl.DataFrame([{**base, **r} for r in rows], schema_overrides=schema)


@pytest.mark.parametrize("rate", [0.0, 0.03, 0.035])
def test_discounting_is_the_integral_of_the_discount_factor(rate):
    for t0, t1 in [(0.0, 1.0), (2.5, 7.25), (0.0, 40.0)]:
        exact = integrate.quad(lambda t: (1 + rate) ** -t, t0, t1)[0]
        assert float(discount_flow(np.array(t0), np.array(t1), rate)) == pytest.approx(exact)
    assert float(discount_flow(np.array(3.0), np.array(2.0), rate)) == 0.0
    assert float(discount_at(10.0, rate)) == pytest.approx((1 + rate) ** -10)


def test_exams_work_ups_and_treatment_are_priced_by_hand():
    p = people(
        [
            # healthy; a negative screen, then a positive one with a benign biopsy
            {"person_id": 1, "lifetime_years": 10.0},
            # screen-detected at stage I in round 0, dies of lung cancer 4 years after entry
            {
                "person_id": 2,
                "lifetime_years": 4.0,
                "diagnosis_mode": "screen",
                "diagnosis_round": 0,
                "lifetime_death_cause": "lung_cancer",
                "lifetime_diagnosis_day": 100.0 + 0.5 * YEAR,
                "lifetime_stage": "I",
            },
        ]
    )
    e = events(
        [
            {"person_id": 1},
            {"person_id": 1, "round": 1, "exam_day": 100 + YEAR, "positive": True, "ai_score": 0.9},
            {
                "person_id": 1,
                "round": 1,
                "exam_seq": 1,
                "exam_day": 100 + 1.5 * YEAR,
                "reader_minutes": 2.0,
                "workup_day": 100 + 1.6 * YEAR,
                "benign_biopsy": True,
            },
            {
                "person_id": 2,
                "positive": True,
                "workup_day": 100 + 0.4 * YEAR,
                "workup_stage": "I",
            },
        ]
    )
    out = price_run(p, e, UNDISCOUNTED, "ct")
    assert out.schema == pl.Schema(ECONOMICS_SCHEMA)
    a, b = out.row(0, named=True), out.row(1, named=True)
    assert a["cost_screening"] == 2 * 200 and b["cost_screening"] == 200
    assert a["cost_followup"] == 150
    assert a["cost_reading"] == (3 + 3 + 2) * 10
    assert a["cost_ai"] == 7
    assert a["cost_incidental"] == 2 * 20
    assert a["cost_workup"] == 1000 + 3000 and b["cost_workup"] == 1000
    assert a["cost_patient_time"] == 0  # payer perspective
    assert a["cost_treatment"] == 0
    # person 2: initial (diagnosed at 0.5 y), continuing from 1.5 y to death - 1 y = 3 y
    # (1.5 years), terminal lung-cancer year
    assert b["cost_treatment"] == pytest.approx(40000 + 1.5 * 4000 + 60000)
    parts = [c for c in ECONOMICS_SCHEMA if c.startswith("cost_") and c != "cost_total"]
    assert a["cost_total"] == pytest.approx(sum(a[c] for c in parts))
    # effects: 10 years at 0.8 less one false positive (round 1) and one biopsy
    assert a["life_years"] == 10.0 and a["life_years_disc"] == 10.0
    assert a["qalys"] == pytest.approx(10 * 0.8 - 0.01 - 0.02)
    # person 2: 0.5 y healthy at 0.8, first year after diagnosis at 0.8 (stage I; the last
    # year before death starts at 3 y), 1.5 y later at 0.78, last year at 0.5; one biopsy;
    # a true positive screen costs no QALYs
    assert b["qalys"] == pytest.approx(0.5 * 0.8 + 1.0 * 0.8 + 1.5 * 0.78 + 1.0 * 0.5 - 0.02)


def test_a_benign_resection_is_priced_as_the_surgery():
    """A benign invasive procedure that was surgery costs ``resection``, not ``benign_biopsy``;
    events written before the kind was recorded read as no resection."""
    costs = dataclasses.replace(COSTS, resection=22000.0)
    econ = dataclasses.replace(UNDISCOUNTED, costs=costs)
    p = people([{"person_id": 1, "lifetime_years": 5.0}, {"person_id": 2, "lifetime_years": 5.0}])
    e = events(
        [
            {"person_id": k, "positive": True, "workup_day": 120.0, "benign_biopsy": True}
            for k in (1, 2)
        ]
    ).with_columns(benign_resection=pl.Series([True, False]))
    work = price_run(p, e, econ, "ct")["cost_workup"].to_list()
    assert work == [1000 + 22000, 1000 + 3000]
    older = price_run(p, e.drop("benign_resection"), econ, "ct")["cost_workup"].to_list()
    assert older == [1000 + 3000, 1000 + 3000]


def test_discounting_horizon_and_perspective():
    p = people([{"person_id": 1, "lifetime_years": 30.0, "age": 50.0}])
    e = events([{"person_id": 1, "exam_day": 100 + 2 * YEAR}])
    disc = dataclasses.replace(UNDISCOUNTED, discount_costs=0.03, discount_effects=0.05)
    row = price_run(p, e, disc, "ct").row(0, named=True)
    assert row["cost_screening"] == pytest.approx(200 / 1.03**2)
    assert row["life_years_disc"] == pytest.approx(
        float(discount_flow(np.array(0.0), np.array(30.0), 0.05))
    )
    # baseline utility 0.8 to age 70, then 0.7, discounted at 5%
    want = 0.8 * float(discount_flow(np.array(0.0), np.array(20.0), 0.05)) + 0.7 * float(
        discount_flow(np.array(20.0), np.array(30.0), 0.05)
    )
    assert row["qalys_disc"] == pytest.approx(want, rel=2e-3)
    cut = dataclasses.replace(UNDISCOUNTED, horizon_years=1.0)
    row = price_run(p, e, cut, "ct").row(0, named=True)
    assert row["life_years"] == 1.0 and row["cost_screening"] == 0.0  # the screen is after it
    soc = dataclasses.replace(UNDISCOUNTED, perspective="societal")
    assert price_run(p, e, soc, "ct")["cost_patient_time"][0] == 100.0


def test_a_radiograph_screen_takes_the_radiograph_price():
    p = people([{"person_id": 1, "lifetime_years": 5.0}])
    e = events([{"person_id": 1}])
    row = price_run(p, e, UNDISCOUNTED, "cxr").row(0, named=True)
    assert row["cost_screening"] == 30 and row["cost_incidental"] == 0


def test_frontier_statuses_follow_dampack():
    # A cheapest; B dominated (costs more than C, gains less); C and E on the frontier;
    # D extendedly dominated (ICER C->D 50,000 > D->E 10,000)
    cost = np.array([0.0, 3000.0, 1000.0, 2000.0, 2500.0])
    effect = np.array([0.0, 0.01, 0.05, 0.07, 0.12])
    status, ref = frontier(cost, effect)
    assert status == ["ND", "D", "ND", "ED", "ND"]
    assert ref == [None, None, 0, None, 2]
    # an identical copy of a strategy is dominated by it
    status, _ = frontier(np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert sorted(status) == ["D", "ND"]


def test_cea_table_increments_intervals_and_ceac():
    rng = np.random.default_rng(0)
    n = 4000
    ids = np.arange(n)
    base_c, base_e = rng.gamma(2.0, 500.0, n), rng.normal(10.0, 2.0, n)
    arms = [
        Arm("none", base_c, base_e, ids),
        Arm("screen", base_c + 1500.0 + rng.normal(0, 100, n), base_e + 0.03, ids),
    ]
    icers, nmb, paired = cea_table(arms, [10_000.0, 100_000.0], replicates=400, seed=1)
    assert paired
    row = icers.filter(pl.col("Strategy") == "screen").row(0, named=True)
    assert row["Status"] == "ND" and row["Compared_with"] == "none"
    assert row["ICER"] == pytest.approx(row["Inc_Cost"] / row["Inc_Effect"])
    assert row["ICER"] == pytest.approx(50_000, rel=0.05)
    assert row["Inc_Cost_lo"] < row["Inc_Cost"] < row["Inc_Cost_hi"]
    # paired: the increment is far tighter than either arm's own interval
    assert row["Inc_Cost_hi"] - row["Inc_Cost_lo"] < 0.5 * (row["Cost_hi"] - row["Cost_lo"])
    p = {(r["Strategy"], r["WTP"]): r["P_cost_effective"] for r in nmb.iter_rows(named=True)}
    assert p[("none", 10_000.0)] > 0.95 and p[("screen", 100_000.0)] > 0.95
    assert math.isclose(p[("none", 10_000.0)] + p[("screen", 10_000.0)], 1.0)


def test_re_pricing_exposures_equals_pricing_the_run_again(run_sim):
    """A sensitivity draw re-prices a run's exposures; it must give what pricing the run
    from its tables under the drawn prices and utilities gives."""
    from sandbox.economics.accounting import exposures, price

    res = run_sim(
        "scenario=nlst", "policy=soc_single_read", "cohort.size=1500", "seed=8", "runtime=quiet"
    )
    econ = dataclasses.replace(UNDISCOUNTED, discount_costs=0.03, discount_effects=0.03)
    exp = exposures(res.people, res.events, econ, "ct")
    costs = dataclasses.replace(
        COSTS, workup=2500.0, initial_by_stage={"I": 1.0, "II": 2.0, "III": 3.0, "IV": 4.0}
    )
    util = dataclasses.replace(UTIL, later_years=0.6, baseline_by_age={"50": 0.9, "70": 0.65})
    again = price_run(
        res.people, res.events, dataclasses.replace(econ, costs=costs, utilities=util), "ct"
    )
    fast = price(exp, costs, util)
    for col in ECONOMICS_SCHEMA:
        np.testing.assert_allclose(
            fast[col].to_numpy(), again[col].to_numpy(), rtol=1e-9, atol=1e-9
        )
    assert (again["cost_treatment"] > 0).any() and (again["qalys_disc"] > 0).all()


def test_resection_is_priced_for_the_stage_share_resected():
    p = people(
        [
            {
                "person_id": 2,
                "lifetime_years": 10.0,
                "lifetime_diagnosis_day": 100.0,
                "lifetime_stage": "II",
            }
        ]
    )
    e = events([{"person_id": 2}])
    base = price_run(p, e, UNDISCOUNTED, "ct")["cost_treatment"][0]
    costs = dataclasses.replace(COSTS, resection=22000.0, resection_share_by_stage={"II": 0.5})
    with_resection = price_run(p, e, dataclasses.replace(UNDISCOUNTED, costs=costs), "ct")
    assert with_resection["cost_treatment"][0] == pytest.approx(base + 11000.0)


def test_a_cost_horizon_cuts_costs_but_not_effects():
    p = people(
        [
            {
                "person_id": 1,
                "lifetime_years": 20.0,
                "lifetime_diagnosis_day": 100 + 8 * YEAR,
                "lifetime_stage": "I",
            }
        ]
    )
    e = events([{"person_id": 1}, {"person_id": 1, "round": 1, "exam_day": 100 + 7.5 * YEAR}])
    whole = price_run(p, e, UNDISCOUNTED, "ct").row(0, named=True)
    cut = price_run(p, e, dataclasses.replace(UNDISCOUNTED, cost_horizon_years=7.0), "ct").row(
        0, named=True
    )
    assert whole["cost_screening"] == 400 and cut["cost_screening"] == 200
    assert whole["cost_treatment"] > 0 and cut["cost_treatment"] == 0
    assert cut["qalys"] == whole["qalys"] and cut["life_years"] == 20.0


def test_trial_survivors_get_no_lung_cancer_after_the_trial():
    from sandbox.economics.accounting import trial_survivors

    end = 100 + 6.5 * YEAR
    base = {"end_day": end, "other_cause_death_day": 100 + 25 * YEAR}
    p = people(
        [
            # alive and undiagnosed at the end; the model diagnoses at 9 years, dies at 11
            {
                **base,
                "person_id": 1,
                "lifetime_years": 11.0,
                "lifetime_death_cause": "lung_cancer",
                "lifetime_diagnosis_day": 100 + 9 * YEAR,
                "lifetime_stage": "III",
            },
            # diagnosed within the trial: the model's course stands
            {
                **base,
                "person_id": 2,
                "lifetime_years": 8.0,
                "lifetime_death_cause": "lung_cancer",
                "lifetime_diagnosis_day": 100 + 3 * YEAR,
                "lifetime_stage": "II",
            },
            # died within the trial of another cause
            {
                **base,
                "person_id": 3,
                "lifetime_years": 4.0,
                "other_cause_death_day": 100 + 4 * YEAR,
            },
            # alive and undiagnosed, dies of another cause later: unchanged
            {**base, "person_id": 4, "lifetime_years": 25.0},
        ]
    )
    out = trial_survivors(p)
    assert out["lifetime_years"].to_list() == pytest.approx([25.0, 8.0, 4.0, 25.0])
    assert out["lifetime_death_cause"].to_list() == ["other", "lung_cancer", "other", "other"]
    assert out["lifetime_diagnosis_day"].to_list()[0] is None
    assert out["lifetime_stage"].to_list() == [None, "II", None, None]
    # priced: the survivor lives longer and costs no treatment under the trial's extrapolation
    e = events([{"person_id": i} for i in (1, 2, 3, 4)])
    model = price_run(p, e, UNDISCOUNTED, "ct")
    trial = price_run(
        p, e, dataclasses.replace(UNDISCOUNTED, extrapolation="trial_survivors"), "ct"
    )
    assert trial["life_years"][0] == pytest.approx(25.0) and model["life_years"][0] == 11.0
    assert trial["cost_treatment"][0] == 0 < model["cost_treatment"][0]
    assert trial.slice(1, 3).equals(model.slice(1, 3))


def test_trial_survivors_needs_the_other_cause_day():
    from sandbox.economics.accounting import trial_survivors
    from sandbox.errors import SandboxInputError

    p = people([{"person_id": 1, "lifetime_years": 5.0, "end_day": 2000.0}])
    with pytest.raises(SandboxInputError, match="other_cause_death_day"):
        trial_survivors(p)

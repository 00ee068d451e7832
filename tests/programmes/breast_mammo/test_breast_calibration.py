"""The breast world's calibration: its free parameters (incidence, growth and the screen readers'
profile keys), an ABC stage around a fit made before, and the accepted sets it records."""

from __future__ import annotations

import polars as pl
from testkit import assert_one_line_error, run_cli

from sandbox.compose import load, project_root
from sandbox.validation.calibrate import get_params, with_params


def test_the_breast_world_has_its_own_free_parameters_and_none_of_lungs():
    cfg = load(["scenario=breast_masai"])[0]
    params = get_params(cfg)
    assert set(params) == {
        "incidence_multiplier",
        "doubling_days_median",
        "detection_c50",
        "false_positive_per_exam",
    }
    # the values the scenario records as fitted are the ones it runs with
    fitted = cfg.scenario.calibration["fitted"]
    assert params == {k: float(v) for k, v in fitted.items()}
    moved = with_params(cfg, {"detection_c50": 20.0, "doubling_days_median": 99.0})
    assert moved.scenario.reader_profiles["breast_radiologist"]["detection_c50"] == 20.0
    assert moved.scenario.disease.invasive.doubling_days_median == 99.0
    # the others as they were, and the original untouched
    assert moved.scenario.reader_profiles["breast_radiologist"]["false_positive_per_exam"] == 0.009
    assert cfg.scenario.reader_profiles["breast_radiologist"]["detection_c50"] == 13.0


def test_abc_around_the_scenarios_own_fit_changes_nothing_on_a_dry_run(capsys):
    scenario = project_root() / "scenarios" / "breast_masai.yaml"
    before = scenario.read_bytes()
    argv = ["calibrate", "masai_control", "--size", "400", "--seed", "3", "--max-evals", "0"]
    code, text, err = run_cli([*argv, "--abc", "2", "--abc-width", "0.2", "--dry-run"], capsys)
    assert code == 0, err
    # the scenario's values are the fit (one evaluation), then two draws around them
    assert "after 3 evaluations" in text
    assert err.count("eval   1 ") == 2 and "eval   2 " in err
    assert scenario.read_bytes() == before
    code, _, err = run_cli([*argv, "--abc-width", "0"], capsys)
    assert_one_line_error(code, err, "--abc-width above 0")
    assert scenario.read_bytes() == before


def test_the_recorded_sets_pass_the_fitted_rows_and_span_each_parameter():
    cfg = load(["scenario=breast_masai"])[0]
    cal = cfg.scenario.calibration
    sets = pl.read_parquet(project_root() / cal["accepted_sets"].split(" (")[0])
    accepted = sets.filter(pl.col("accepted"))
    assert accepted.height >= 30 and (accepted["max_abs_z"] <= 1.96).all()
    for name, value in cal["fitted"].items():
        column = accepted[name]
        assert column.min() < value < column.max(), name

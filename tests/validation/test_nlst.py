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
from sandbox.validation.targets import Target

SIZE = 6000


@pytest.fixture(scope="module")
def targets():
    return load_targets("nlst")


def test_targets_load(targets):
    head, rows = targets
    assert head["scenario"] == "nlst" and head["policy"] == "soc_single_read" and head["n"] == 26722
    fitted = [t for t in rows if t.fitted]
    assert fitted and all(t.tolerance is None or t.tolerance > 0 for t in fitted)
    assert [t for t in rows if not t.fitted], "out-of-sample rows are reported beside the fit"
    assert {t.round for t in rows} <= {"T0", "T1", "T2", "all"}
    assert {t.kind for t in rows} <= {"proportion", "count", "per_1000", "per_100k_py"}


def metrics_frame(rows: list[tuple[str, str, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "site": ["all"] * len(rows),
            "subgroup": ["all"] * len(rows),
            "round": [r[1] for r in rows],
            "metric": [r[0] for r in rows],
            "value": [r[2] for r in rows],
            "lo": [r[2] * 0.9 for r in rows],
            "hi": [r[2] * 1.1 for r in rows],
            "n": [r[3] for r in rows],
        }
    )


def test_z_is_the_two_sample_difference_at_the_trials_size():
    t_prop = Target("p", "positive_rate", "T0", 0.27, 0.03, kind="proportion", fitted=True)
    t_count = Target("c", "screen_detected_cancers", "T0", 270, None, kind="count")
    t_rate = Target("r", "deaths", "all", 247, None, kind="per_100k_py", events=356)
    frame = metrics_frame(
        [
            ("positive_rate", "T0", 0.25, 6000),
            ("screen_detected_cancers", "T0", 50, 50),
            ("deaths", "all", 300, 40000),
        ]
    )
    # the run has 10,000 people; the trial 20,000: its denominators and counts are twice the run's
    table = compare(frame, [t_prop, t_count, t_rate], 1.0, 20000, 10000)
    z = dict(zip(table["target"], table["z"], strict=True))
    se = math.sqrt(0.27 * 0.73 / 12000 + 0.25 * 0.75 / 6000)
    assert z["p"] == pytest.approx((0.25 - 0.27) / se)
    assert z["c"] == pytest.approx((100 - 270) / math.sqrt(270 + 50 * 4))
    events = 300 * 40000 / 1e5
    assert z["r"] == pytest.approx((300 - 247) / math.sqrt(247**2 / 356 + 300**2 / events))
    sims = dict(zip(table["target"], table["simulated"], strict=True))
    assert sims["c"] == 100  # counts at the trial's size
    passes = dict(zip(table["target"], table["pass"], strict=True))
    assert passes == {k: abs(v) <= 1.96 for k, v in z.items()}
    # a metric the run lacks fails, with no z
    missing = compare(frame, [Target("m", "nothing", "all", 1.0, None)], 1.0, 20000, 10000)
    assert not missing["pass"][0] and math.isnan(missing["z"][0])


def test_compare_table_structure(targets, run_sim):
    head, rows = targets
    res = run_sim(
        "scenario=nlst", "policy=soc_single_read", "cohort.size=1500", "seed=2011", "runtime=quiet"
    )
    table = compare(res.metrics, rows, 2.0, 26722, 1500)
    assert table["target"].to_list() == [t.name for t in rows]
    assert table["pass"].is_not_null().all() and table["z"].is_not_nan().all()
    fitted = table.filter(pl.col("fitted") & pl.col("tolerance").is_not_null())
    assert fitted.height and fitted["within_tolerance"].is_not_null().all()
    assert table["simulated"].is_not_nan().all()
    assert (table["difference"] == table["simulated"] - table["published"]).all()


def test_validate_prints_z_for_every_row_and_exits_by_the_rule(capsys):
    # `sandbox validate nlst --size 6000`: every row with its z; the exit status is 0 only when
    # every row is statistically indistinguishable from the trial. The fitted rows stay within
    # their coarse tolerances (widened by sqrt(26722 / 6000)).
    code = main(["validate", "nlst", "--size", str(SIZE)])
    out = capsys.readouterr().out
    assert f"{SIZE:,} people" in out and "pass = |z| <= 1.96" in out
    assert f"tolerance (coarse check) x{math.sqrt(26722 / SIZE):.2f}" in out
    arms = re.findall(r"^(\d+)/(\d+) rows statistically indistinguishable", out, re.M)
    assert len(arms) == 2, out  # the LDCT arm, then its chest-radiograph comparator
    assert "nlst_cxr (cxr_single_read)" in out and "between arms: nlst against nlst_cxr" in out
    between = re.search(r"^lung_cancer_mortality_relative_reduction .* (PASS|FAIL)$", out, re.M)
    assert between, out
    everything = all(a == b for a, b in arms) and between.group(1) == "PASS"
    assert (code == 0) == everything, out
    assert "out of sample" in out and "fitted" in out
    f = re.search(r"(\d+)/(\d+) fitted rows with a tolerance within it", out)
    assert f and f.group(1) == f.group(2), out


@pytest.mark.slow
def test_nlst_fitted_rows_hold_at_full_size(capsys):
    main(["validate", "nlst"])
    out = capsys.readouterr().out
    f = re.search(r"(\d+)/(\d+) fitted rows with a tolerance within it", out)
    assert f and f.group(1) == f.group(2), out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nlst_fit_is_not_one_lucky_seed(seed):
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
    metrics = simulate(cfg, profiles, progress=False).metrics
    table = compare(metrics, rows, math.sqrt(26722 / SIZE), 26722, SIZE)
    fitted = table.filter(pl.col("fitted") & pl.col("tolerance").is_not_null())
    assert fitted["within_tolerance"].all(), fitted


def test_the_relative_reduction_has_a_poisson_interval_and_a_z():
    from sandbox.validation.targets import relative_reduction

    def frame(rate: float, person_years: int) -> pl.DataFrame:
        return metrics_frame([("deaths_per_100k_person_years", "all", rate, person_years)])

    # 240 vs 300 per 100k person-years over 100,000 person-years each: 240 and 300 deaths
    r = relative_reduction(
        frame(240.0, 100_000),
        frame(300.0, 100_000),
        "deaths_per_100k_person_years",
        0.2,
        (0.068, 0.267),
    )
    assert r["simulated"] == pytest.approx(0.2)
    se = math.sqrt(1 / 240 + 1 / 300)
    assert r["lo"] == pytest.approx(1 - 0.8 * math.exp(1.96 * se))
    assert r["hi"] == pytest.approx(1 - 0.8 * math.exp(-1.96 * se))
    assert r["z"] == pytest.approx(0.0, abs=1e-12) and r["pass"]
    worse = relative_reduction(
        frame(300.0, 100_000),
        frame(300.0, 100_000),
        "deaths_per_100k_person_years",
        0.2,
        (0.068, 0.267),
    )
    se_pub = (math.log(1 - 0.068) - math.log(1 - 0.267)) / 3.92
    assert worse["z"] == pytest.approx(-math.log(0.8) / math.sqrt(2 / 300 + se_pub**2))


def test_calibration_replaces_parameters_at_their_config_paths(load_config):
    from sandbox.validation.calibrate import FREE, get_params, with_params

    cfg, _, _ = load_config("scenario=nlst", "cohort.size=200")
    start = get_params(cfg)
    # every free parameter but the breast programme's own (its growth and readers' keys)
    breast = {"doubling_days_median", "detection_c50", "false_positive_per_exam"}
    assert set(start) == set(FREE) - breast
    new = {k: v * 1.5 if k != "mimic_share" else 0.3 for k, v in start.items()}
    moved = with_params(cfg, new)
    assert get_params(moved) == pytest.approx(new)
    assert moved.scenario.programme.radiograph.mimic_share == 0.3
    assert moved.scenario.disease.benign.new_per_year == pytest.approx(1.5 * start["new_per_year"])
    # everything else is untouched, the original config too
    assert moved.scenario.programme.radiograph.obscured_share == (
        cfg.scenario.programme.radiograph.obscured_share
    )
    assert get_params(cfg) == start


def test_the_calibration_loss_is_the_sum_of_z_squared_over_fitted_rows():
    from sandbox.validation.calibrate import Evaluation, evaluations_frame, max_fitted_z, z_loss

    def table(rows):
        return pl.DataFrame(
            {"fitted": [r[0] for r in rows], "z": [r[1] for r in rows]},
            schema={"fitted": pl.Boolean, "z": pl.Float64},
        )

    a = table([(True, 1.0), (True, -2.0), (False, 9.0)])
    b = table([(True, float("nan"))])  # a missing metric counts as 10 SE
    assert z_loss([a]) == pytest.approx(5.0)
    assert z_loss([a, b]) == pytest.approx(105.0)
    assert max_fitted_z([a]) == pytest.approx(2.0)
    sets = evaluations_frame(
        [Evaluation({"x": 1.0}, 5.0, 1.5, "fit"), Evaluation({"x": 2.0}, 9.0, 2.5, "abc")], 1.96
    )
    assert sets["accepted"].to_list() == [True, False]
    assert sets.columns == ["x", "loss", "max_abs_z", "accepted", "stage"]


def test_calibrate_refuses_an_unknown_parameter_in_one_line(capsys):
    from testkit import assert_one_line_error, run_cli

    code, _, err = run_cli(["calibrate", "nlst", "--size", "300", "--params", "nope"], capsys)
    assert_one_line_error(code, err, "unknown parameter for scenario nlst: 'nope'")
    # a free parameter of another programme (the breast readers' c50) is not one of this world's
    code, _, err = run_cli(
        ["calibrate", "nlst", "--size", "300", "--params", "detection_c50"], capsys
    )
    assert_one_line_error(code, err, "not a key of scenario nlst: 'detection_c50'")


def test_trial_style_ppv_counts_every_cancer_in_a_positive_screens_window(run_sim):
    res = run_sim(
        "scenario=nlst", "policy=soc_single_read", "cohort.size=3000", "seed=4", "runtime=quiet"
    )
    top = res.metrics.filter((pl.col("site") == "all") & (pl.col("subgroup") == "all"))

    def value(metric: str, rnd: str = "all") -> float:
        return top.filter((pl.col("metric") == metric) & (pl.col("round") == rnd))["value"][0]

    for rnd in ("T0", "T1", "T2", "all"):
        ppv = value("screen_ppv", rnd)
        assert ppv == pytest.approx(
            value("cancers_after_positive_screen", rnd) / value("positives", rnd)
        )
        assert value("screen_false_positive_share", rnd) == pytest.approx(1 - ppv)
        # a positive screen whose cancer surfaced before its work-up still counts for the trial
        assert ppv >= value("ppv", rnd)
    # the sites are sized for the trial: follow-up CTs are not pushed back by the screens
    assert value("scanner_wait_days_p95") < 7.0
    assert value("all_cause_deaths") >= value("lung_cancer_deaths")


def test_a_rate_ratio_between_arms_is_the_reduction_restated():
    from sandbox.validation.targets import relative_reduction

    def frame(rate: float) -> pl.DataFrame:
        return metrics_frame([("incidence_per_100k_person_years", "all", rate, 150_000)])

    a, b = frame(650.0), frame(575.0)
    metric = "incidence_per_100k_person_years"
    ratio = relative_reduction(a, b, metric, 1.13, (1.03, 1.23), "ratio")
    reduction = relative_reduction(a, b, metric, 1 - 1.13, (1 - 1.23, 1 - 1.03))
    assert ratio["simulated"] == pytest.approx(650.0 / 575.0)
    assert ratio["lo"] < ratio["simulated"] < ratio["hi"]
    assert ratio["lo"] == pytest.approx(1 - reduction["hi"])
    assert ratio["z"] == pytest.approx(reduction["z"]) and ratio["pass"] == reduction["pass"]


def test_calibrate_fits_both_arms_and_keeps_every_evaluation(capsys):
    from testkit import run_cli

    argv = ["calibrate", "nlst", "--size", "400", "--max-evals", "2", "--abc", "2", "--dry-run"]
    argv += ["--params", "incidence_multiplier,mimic_share"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0, out
    assert re.search(
        r"after 4 evaluations \(sum of z\^2 over the fitted rows of nlst, nlst_cxr\)", out
    )
    assert "\nnlst\n" in out and "\nnlst_cxr\n" in out  # a table per arm, with z
    fitted = re.findall(
        r"^(incidence_multiplier|mimic_share|reference_mm)\s+(\S+)\s+(\S+)$", out, re.M
    )
    assert {name for name, _, _ in fitted} == {
        "incidence_multiplier",
        "mimic_share",
        "reference_mm",
    }
    unchanged = {name: (a, b) for name, a, b in fitted}["reference_mm"]
    assert unchanged[0] == unchanged[1]  # not in --params: stays at its start value


def test_several_seeds_are_pooled_into_one_table_per_arm():
    from types import SimpleNamespace

    from sandbox.validation.calibrate import pooled, z_loss

    def table(sim, z):
        return pl.DataFrame(
            {"target": ["a", "b"], "fitted": [True, True], "simulated": sim, "z": z},
            schema={
                "target": pl.Utf8,
                "fitted": pl.Boolean,
                "simulated": pl.Float64,
                "z": pl.Float64,
            },
        )

    arms = [SimpleNamespace(trial=t) for t in ("x", "x", "y")]
    tables = [
        table([1.0, 3.0], [2.0, -1.0]),
        table([3.0, 5.0], [0.0, 3.0]),
        table([7.0, 7.0], [1, 1]),
    ]
    out = pooled(arms, tables)
    assert len(out) == 2
    # the seeds' mean, not each seed's z: +2 and 0 make 1, not 4 + 0
    assert out[0]["simulated"].to_list() == [2.0, 4.0]
    assert out[0]["z"].to_list() == [1.0, 1.0]
    assert out[1].equals(tables[2])
    assert z_loss(out) == pytest.approx(4.0)


def test_calibrate_takes_several_seeds_and_refuses_a_bad_list(capsys):
    from testkit import assert_one_line_error, run_cli

    argv = ["calibrate", "nlst", "--size", "300", "--max-evals", "1", "--dry-run"]
    argv += ["--params", "incidence_multiplier", "--seed", "5,6"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0, out
    assert "nlst (mean of seeds 5,6)" in out and "nlst_cxr (mean of seeds 5,6)" in out
    code, _, err = run_cli(["calibrate", "nlst", "--size", "300", "--seed", "5,x"], capsys)
    assert_one_line_error(code, err, "--seed: '5,x'")


def test_validate_over_several_seeds_summarises_every_row(capsys):
    from testkit import assert_one_line_error, run_cli

    code, out, _ = run_cli(["validate", "nlst", "--size", "300", "--seed", "3,4"], capsys)
    assert code in (0, 1), out
    assert out.count("nlst (soc_single_read): 300 people, seed 3") == 1
    assert out.count("nlst (soc_single_read): 300 people, seed 4") == 1
    summary = out[out.index("over 2 seeds (3, 4)") :]
    # each seed's z for a row, as its own table printed it, and their mean in the summary
    per_seed = re.findall(
        r"^positive_rate_t0\s+fitted\s+\S+\s+\S+ \(.*?\)\s+([+-]\d+\.\d+)", out, re.M
    )
    assert len(per_seed) >= 2
    ldct = [float(z) for z in per_seed[::2]][:2]  # LDCT arm first, radiograph arm second, per seed
    row = re.search(r"^nlst\s+positive_rate_t0\s+fitted\s+([+-]\d+\.\d+)\s+(\d)/2", summary, re.M)
    assert row, summary
    assert float(row.group(1)) == pytest.approx(sum(ldct) / 2, abs=0.011)
    assert int(row.group(2)) == sum(abs(z) <= 1.96 for z in ldct)
    assert re.search(r"^nlst: rows passing per seed 3: \d+/25, 4: \d+/25$", summary, re.M)
    assert re.search(r"^between: rows passing per seed 3: \d/3, 4: \d/3$", summary, re.M)
    assert re.search(
        r"^seeds where every arm is within the allowance .*: (none|3|4|3, 4)$", summary, re.M
    )
    code, _, err = run_cli(["validate", "nlst", "--size", "300", "--seed", "3,3"], capsys)
    assert_one_line_error(code, err, "--seed: '3,3' names a seed twice")
    code, _, err = run_cli(["validate", "nlst-cea", "--size", "300", "--seed", "3,3"], capsys)
    assert_one_line_error(code, err, "--seed: '3,3' names a seed twice")


def test_calibrate_gives_the_same_fit_with_worker_processes(capsys):
    from testkit import run_cli

    argv = ["calibrate", "nlst", "--size", "300", "--max-evals", "2", "--dry-run"]
    argv += ["--params", "incidence_multiplier", "--seed", "5,6"]
    code, serial, _ = run_cli([*argv, "--workers", "1"], capsys)
    assert code == 0, serial
    code, parallel, _ = run_cli([*argv, "--workers", "2"], capsys)
    assert code == 0, parallel
    # every simulation is keyed by its own seed: the processes change nothing but the time
    assert parallel == serial and "best loss" in serial


def test_abc_draws_move_only_the_free_parameters(monkeypatch):
    """The accepted sets are drawn around the fit in the fitted parameters alone: a parameter
    held out of the fit (look_back_boost 0, off) stays where the scenario has it."""
    import sandbox.validation.calibrate as cal

    monkeypatch.setattr(cal, "evaluate", lambda arms, p, pool: (1.0, []))
    monkeypatch.setattr(cal, "max_fitted_z", lambda tables: 0.5)
    centre = {"incidence_multiplier": 1.3, "mimic_share": 0.12, "look_back_boost": 0.0}
    draws = cal.abc_draws([], centre, 5, 0.1, 1, names=["incidence_multiplier", "mimic_share"])
    assert len(draws) == 5 and all(d.stage == "abc" for d in draws)
    assert all(d.params["look_back_boost"] == 0.0 for d in draws)
    assert len({d.params["incidence_multiplier"] for d in draws}) == 5
    assert len({d.params["mimic_share"] for d in draws}) == 5


def test_the_allowance_is_one_row_in_twenty_between_2_and_3_se_and_none_beyond():
    from sandbox.cli import within_allowance

    assert within_allowance([0.5] * 20)
    assert within_allowance([0.5] * 19 + [2.5])  # one of 20 between 2 and 3 SE
    assert not within_allowance([0.5] * 18 + [2.5, -2.1])  # two of 20
    assert not within_allowance([0.5] * 19 + [3.2])  # beyond 3 SE
    assert not within_allowance([0.5] * 19 + [float("nan")])  # a missing row
    assert within_allowance([0.5] * 38 + [2.5, -2.5])  # two of 40
    assert not within_allowance([0.5, 0.1, 2.2])  # three rows allow none

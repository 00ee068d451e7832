"""`sandbox compare` as a regulator uses it: two arms paired on the same people, pooled over
seeds, judged on a primary metric, from flags or a comparison YAML, with a forest plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import testkit
from testkit import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("arms")
    testkit.write_runs(out, (5, 6), ("soc_double_read", "soc_single_read"), 1500)
    common = ["run", "runtime=quiet", "cohort.size=1500", f"runtime.out_dir={out}"]
    argv = [*common, "seed=5", "policy=soc_single_read", "cohort.size=1600"]
    assert testkit.main([*argv, "runtime.run_name=bigger"]) == 0
    return out


def test_two_runs_print_paired_differences_and_a_verdict(runs, capsys):
    argv = ["compare", str(runs / "soc_double_read-5"), str(runs / "soc_single_read-5")]
    code, out, err = run_cli([*argv, "--primary", "screen_detected_cancers"], capsys)
    assert code == 0, err
    assert "A: soc_double_read, seed 5" in out and "B: soc_single_read, seed 5" in out
    assert "paired bootstrap over 1,500 people" in out
    assert "screen_detected_cancers (primary)" in out
    assert "lung_cancer_deaths" in out  # the programme's own metrics are paired too
    assert "primary: screen_detected_cancers (higher is better)" in out
    verdict = next(line for line in out.splitlines() if line.startswith("verdict: "))
    assert "soc_single_read is " in verdict and "soc_double_read" in verdict
    assert "1 seed: the interval holds what resampling people sees" in out
    assert "other metrics are secondary" in out


def test_runs_at_several_seeds_are_grouped_into_arms_and_pooled(runs, capsys):
    folders = [
        str(runs / f"{p}-{s}") for s in (5, 6) for p in ("soc_double_read", "soc_single_read")
    ]
    code, out, err = run_cli(["compare", *folders, "--primary", "recall_rate"], capsys)
    assert code == 0, err
    assert "A: soc_double_read, seed 5, 6" in out and "B: soc_single_read, seed 5, 6" in out
    assert "2 seeds pooled" in out and "metric (mean per seed)" in out
    assert "primary: recall_rate (lower is better)" in out
    assert "of the variance is between seeds" in out


def test_a_comparison_yaml_gives_the_same_verdict_as_the_flags(runs, capsys, tmp_path):
    spec = tmp_path / "masai.yaml"
    spec.write_text(
        f"baseline: {runs}/soc_double_read-*\n"
        f"candidate: [{runs}/soc_single_read-5, {runs}/soc_single_read-6]\n"
        "primary: {metric: screen_detected_cancers, margin: 0.2}\n"
        "secondary: [interval_cancers, human_reads]\n"
        "replicates: 500\n"
        "plot: forest.svg\n"
    )
    code, out, err = run_cli(["compare", "--spec", str(spec)], capsys)
    assert code == 0, err
    flags = [
        "compare",
        *(str(runs / f"{p}-{s}") for p in ("soc_double_read", "soc_single_read") for s in (5, 6)),
        "--primary",
        "screen_detected_cancers",
        "--margin",
        "0.2",
        "--metric",
        "interval_cancers",
        "--metric",
        "human_reads",
        "--replicates",
        "500",
    ]
    code2, out2, err2 = run_cli(flags, capsys)
    assert code2 == 0, err2

    def verdict(text):
        return next(line for line in text.splitlines() if line.startswith("verdict: "))

    assert verdict(out) == verdict(out2)
    assert "interval_cancers" in out and "positive_rate" not in out.split("paired")[1]
    plot = tmp_path / "forest.svg"  # relative to the spec file
    assert f"forest plot: {plot}" in out
    svg = ET.parse(plot).getroot()
    text = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert "screen_detected_cancers (primary)" in text and "human_reads" in text
    assert "margin 0.8" in text


def test_the_forest_plot_is_a_png_when_asked(runs, capsys, tmp_path):
    argv = ["compare", str(runs / "soc_double_read-5"), str(runs / "soc_single_read-5")]
    png = tmp_path / "forest.png"
    code, _, err = run_cli([*argv, "--plot", str(png), "--metric", "human_reads"], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["forest.png"]  # no temporary left


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("candidate: [x]\n", "'baseline': is required"),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/nothing-*]\n",
            "spec.yaml: candidate: ",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/soc_single_read-5]\ncolour: red\n",
            "'colour': unknown key",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/soc_single_read-5]\n"
            "primary: {{metric: screens, margin: 1.5}}\n",
            "must be below 1",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/soc_single_read-5]\n"
            "primary: {{metric: screens, margin_kind: percent}}\n",
            "'primary.margin_kind'",
        ),
        (
            "baseline: [{r}/soc_double_read-5, {r}/soc_single_read-6]\n"
            "candidate: [{r}/soc_single_read-5]\n",
            "2 different configurations",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/soc_single_read-6]\n",
            "share no seed",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/bigger]\n",
            "different scenarios",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/soc_single_read-5]\n"
            "secondary: [worklist_wait_days_p95]\n",
            "no paired interval for metric 'worklist_wait_days_p95'",
        ),
        (
            "baseline: [{r}/soc_double_read-5]\ncandidate: [{r}/soc_single_read-5]\n"
            "plot: forest.pdf\n",
            "must end in .svg or .png",
        ),
        ("base: &a [x]\nbaseline: *a\n", "anchors and aliases"),
    ],
)
def test_a_bad_comparison_file_is_one_line_and_writes_nothing(runs, capsys, tmp_path, spec, needle):
    f = tmp_path / "spec.yaml"
    f.write_text(spec.format(r=runs))
    code, _, err = run_cli(["compare", "--spec", str(f)], capsys)
    assert_one_line_error(code, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--primary", "worst_backlog"], "no paired interval"),
        (["--primary", "screens", "--margin", "0"], "--margin"),
        (["--primary", "screens", "--margin", "1", "--margin-kind", "relative"], "--margin"),
        (["--primary", "screens", "--replicates", "5"], "--replicates"),
        (["--primary", "stage_II_share"], "no better direction"),
        (["--margin", "0.1"], "needs a primary metric"),
        (["--primary", "screens", "--round", "T0"], "all rounds of a person"),
        (["--primary", "screens", "--subgroup", "sex"], "column=value"),
        (["--primary", "screens", "--site", "moon_base"], "not a site"),
        (["--plot", "/no/such/folder/f.svg"], "does not exist"),
    ],
)
def test_bad_comparison_options_are_one_line(runs, capsys, extra, needle):
    argv = ["compare", str(runs / "soc_double_read-5"), str(runs / "soc_single_read-5"), *extra]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, needle)


def test_a_verdict_needs_two_arms_of_one_scenario(runs, capsys):
    argv = [
        "compare",
        str(runs / "soc_double_read-5"),
        str(runs / "bigger"),
        "--primary",
        "screens",
    ]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "different scenarios")
    three = [str(runs / n) for n in ("soc_double_read-5", "soc_single_read-5", "bigger")]
    code, _, err = run_cli(["compare", *three, "--primary", "screens"], capsys)
    assert_one_line_error(code, err, "exactly two arms")


def test_the_same_policy_twice_is_paired_to_exactly_nothing(runs, capsys, tmp_path):
    """Common random numbers: the same configuration and seed, run twice, gives the same
    people the same results, so every paired difference is exactly zero."""
    argv = ["run", "runtime=quiet", "cohort.size=1500", "seed=5", "policy=soc_double_read"]
    assert testkit.main([*argv, f"runtime.out_dir={tmp_path}", "runtime.run_name=again"]) == 0
    spec = tmp_path / "same.yaml"
    spec.write_text(f"baseline: {runs}/soc_double_read-5\ncandidate: again\n")
    code, out, err = run_cli(["compare", "--spec", str(spec), "--metric", "recall_rate"], capsys)
    assert code == 0, err
    assert "0 (0 to 0)" in out.replace("0.000", "0"), out


def test_a_manifest_without_an_integer_seed_is_one_line(runs, capsys, tmp_path):
    import json
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(runs / "soc_single_read-5", bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["seed"] = "five"
    (bad / "manifest.json").write_text(json.dumps(man))
    code, _, err = run_cli(["compare", str(runs / "soc_double_read-5"), str(bad)], capsys)
    assert_one_line_error(code, err, "manifest.json: seed 'five' is not an integer")


@pytest.mark.parametrize(
    ("site", "subgroup"),
    [("mobile_unit", "all"), ("all", "sex=F"), ("city_hospital", "age_band=60-64")],
)
def test_a_paired_comparison_of_one_site_or_subgroup_sums_to_its_metrics(runs, site, subgroup):
    """Restricted to the people of a site or subgroup, each arm's sums are the run's own metrics
    there."""
    import polars as pl

    from sandbox.comparison import compare_arms, group_arms, read_run

    arms = group_arms([read_run(runs / "soc_double_read-5"), read_run(runs / "soc_single_read-5")])
    metrics = ["screens", "screen_detected_cancers", "recall_rate", "human_reads"]
    cmp = compare_arms(arms[0], arms[1], metrics, 200, site, subgroup)
    for arm, col in ((arms[0], "a"), (arms[1], "b")):
        own = arm.runs[0]["metrics"].filter(
            (pl.col("site") == site) & (pl.col("subgroup") == subgroup) & (pl.col("round") == "all")
        )
        for m in metrics:
            want = own.filter(pl.col("metric") == m)["value"][0]
            got = cmp.table.filter(pl.col("metric") == m)[col][0]
            assert got == pytest.approx(want), (m, col)


def test_the_cli_pairs_over_a_subgroup(runs, capsys):
    argv = ["compare", str(runs / "soc_double_read-5"), str(runs / "soc_single_read-5")]
    code, out, err = run_cli([*argv, "--primary", "recall_rate", "--subgroup", "sex=F"], capsys)
    assert code == 0, err
    assert "paired over the people of site=all subgroup=sex=F" in out
    assert "verdict:" in out

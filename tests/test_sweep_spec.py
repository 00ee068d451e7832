"""Sweep specs without Ray: expansion (command line and sweep files, crossed and zipped), the
shipped sweep files, and bad sweeps refused in one line with nothing written (all before Ray
starts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.sweep import load_sweep_file, plan_from_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_command_line_axes_are_crossed_in_order():
    plan = plan_from_overrides(["policy=a,b", "cohort.size=10", "seed=range(1,4)"], "x")
    assert plan.axes == ("policy", "seed") and plan.base == ("cohort.size=10",)
    assert [r.axes for r in plan.runs][:4] == [
        {"policy": "a", "seed": "1"},
        {"policy": "a", "seed": "2"},
        {"policy": "a", "seed": "3"},
        {"policy": "b", "seed": "1"},
    ]
    assert plan.runs[0].overrides == ("cohort.size=10", "policy=a", "seed=1")
    assert len({r.name for r in plan.runs}) == 6


@pytest.mark.parametrize("name", ["operating_points", "policies"])
def test_the_shipped_sweep_files_expand_and_validate(name, capsys, tmp_path):
    f = ROOT / "conf" / "sweeps" / f"{name}.yaml"
    plan = load_sweep_file(f)
    assert plan.name == name and plan.description
    argv = ["sweep", "--spec", str(f), "--dry-run", f"runtime.out_dir={tmp_path / 'o'}"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert f"sweep {name}: {len(plan.runs)} runs" in out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["polcy=a,b"], "polcy"),
        (["seed=range(1,1)"], "no values"),
        (["seed=1,1"], "repeated"),
        (["seed=3"], "at least one axis"),
        (["seed=1,2", "runtime.run_name=x"], "names its runs"),
        (["seed=1,2", "runtime.out_dir=a,b"], "not a sweep axis"),
        (["policy=glob(*)"], "glob() sweeps are not supported"),
        (["seed=1,2", "policy=ai_triage", "agent=/no/such/device"], "/no/such/device"),
        (["--resume", "/no/such/sweep"], "not a sweep folder"),
    ],
)
def test_bad_sweeps_are_one_line_and_write_nothing(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    if argv[0] == "--resume":
        code, _, err = run_cli(["sweep", *argv], capsys)
    else:
        code, _, err = run_cli(["sweep", "runtime=quiet", f"runtime.out_dir={out}", *argv], capsys)
    assert_one_line_error(code, err, needle)
    assert_nothing_written(out)


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.2:9")
    out = tmp_path / "out"
    argv = ["sweep", "runtime=quiet", "seed=1,2", "cohort.size=500", f"runtime.out_dir={out}"]
    t0 = time.perf_counter()
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "127.0.0.2:9", "nothing answers")
    assert time.perf_counter() - t0 < 60
    assert_nothing_written(out)


def test_a_sweep_file_crosses_and_zips_axes(tmp_path, capsys):
    spec = tmp_path / "ops.yaml"
    spec.write_text(
        "name: ops\n"
        "overrides: [cohort.size=500]\n"
        "axes:\n"
        "  seed: range(1,3)\n"
        "zip:\n"
        "  policy: [ai_rule_out, ai_rule_out]\n"
        "  policy.threshold.target_sensitivity: [0.9, 0.97]\n"
    )
    argv = ["sweep", "--spec", str(spec), "--dry-run", f"runtime.out_dir={tmp_path / 'o'}"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "sweep ops: 4 runs over seed x policy x policy.threshold.target_sensitivity" in out
    assert "seed=1 policy=ai_rule_out policy.threshold.target_sensitivity=0.97" in out
    assert "dry run: nothing was written" in out
    assert not (tmp_path / "o").exists()

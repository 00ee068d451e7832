"""Bad input through the command line: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["cohort.size=200", "runtime=quiet"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private copy of the project's configs (SANDBOX_HOME), free to break."""
    home = tmp_path / "home"
    home.mkdir()
    for d in ("conf", "scenarios", "agents"):
        shutil.copytree(ROOT / d, home / d, symlinks=True)
    assert (home / "conf" / "scenario").is_symlink()
    monkeypatch.setenv("SANDBOX_HOME", str(home))
    return home


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["scenario=atlantis"], ["unknown scenario", "atlantis"]),
        (["policy=triple_read"], ["unknown policy", "triple_read"]),
        (["cohort.colour=red"], ["cohort.colour"]),
        (["+cohort.colour=red"], ["cohort.colour", "unknown key"]),
        (["cohort.size=-5"], ["cohort.size", "-5"]),
        (["programme.attendance=1.5"], ["programme.attendance", "1.5"]),
        (["cohort.size=50000001"], ["cohort.size"]),
        (["seed=null"], ["seed"]),
        (["+sites.0.readers.nobody=3"], ["sites[0].readers.nobody", "nobody.yaml"]),
        (["sites.1.readers.general_radiologist=1"], ["sites[1].readers"]),
        (["cohort.eligibility.plcom2012_threshold=1.0", "cohort.size=20"], ["cohort.eligibility"]),
    ],
)
def test_bad_run_input(overrides, needles, tmp_path, capsys):
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(["run", *TINY, *overrides, f"runtime.out_dir={out_dir}"], capsys)
    assert_one_line_error(code, err, *needles)
    assert_nothing_written(out_dir)


def test_missing_reader_profile_file(home, tmp_path, capsys):
    (home / "agents" / "readers" / "general_radiologist.yaml").unlink()
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(["run", *TINY, f"runtime.out_dir={out_dir}"], capsys)
    assert_one_line_error(code, err, "general_radiologist")
    assert_nothing_written(out_dir)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: x\n", "description"),
        ("detection_c50: [1,\n", "malformed YAML"),
        ("name: thoracic_radiologist\ndetection_c50: -1\n", ""),
    ],
)
def test_broken_reader_profile(home, tmp_path, capsys, text, needle):
    (home / "agents" / "readers" / "thoracic_radiologist.yaml").write_text(text)
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(["run", *TINY, f"runtime.out_dir={out_dir}"], capsys)
    assert_one_line_error(code, err, "thoracic_radiologist.yaml", needle)
    assert_nothing_written(out_dir)


def test_scenario_yaml_of_the_wrong_shape(home, tmp_path, capsys):
    (home / "scenarios" / "listy.yaml").write_text("- a\n- b\n")
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(["run", "scenario=listy", *TINY, f"runtime.out_dir={out_dir}"], capsys)
    assert code == 2 and "Traceback" not in err and err.startswith("error:")
    assert_nothing_written(out_dir)


def test_scenario_with_a_bad_value_names_file_key(home, tmp_path, capsys):
    text = (home / "scenarios" / "lung_ldct.yaml").read_text().replace("rounds: 3", "rounds: three")
    (home / "scenarios" / "x.yaml").write_text(text)
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(["run", "scenario=x", *TINY, f"runtime.out_dir={out_dir}"], capsys)
    assert_one_line_error(code, err, "programme.rounds", "three")
    assert_nothing_written(out_dir)


def test_malformed_scenario_yaml(home, tmp_path, capsys):
    (home / "scenarios" / "x.yaml").write_text("cohort:\n  size: [1, 2\n  bad: : :\n")
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(["run", "scenario=x", *TINY, f"runtime.out_dir={out_dir}"], capsys)
    assert code == 2 and "Traceback" not in err
    assert_nothing_written(out_dir)
    assert_one_line_error(code, err, "malformed YAML", "x.yaml")


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["run", *TINY, f"runtime.out_dir={blocker / 'runs'}"], capsys)
    assert_one_line_error(code, err, "runtime.out_dir")


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out_dir = tmp_path / "runs"
    args = ["run", *TINY, f"runtime.out_dir={out_dir}", "runtime.run_name=r1"]
    assert run_cli(args, capsys)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out_dir / "r1").iterdir()}
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "already exists")
    assert {p.name: p.stat().st_mtime_ns for p in (out_dir / "r1").iterdir()} == before
    assert [p.name for p in out_dir.iterdir()] == ["r1"]


# ---------------------------------------------------------------- compare
@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("good")
    assert main(["run", *TINY, f"runtime.out_dir={out_dir}", "runtime.run_name=good"]) == 0
    return out_dir / "good"


def test_compare_missing_folder(tmp_path, capsys):
    code, _, err = run_cli(["compare", str(tmp_path / "nope")], capsys)
    assert_one_line_error(code, err, "nope", "no such directory")


def test_compare_folder_without_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["compare", str(tmp_path / "empty")], capsys)
    assert_one_line_error(code, err, "manifest.json")


@pytest.mark.parametrize("damage", ["garbage", "truncate", "manifest", "columns"])
def test_compare_corrupt_run_folder(good_run, tmp_path, capsys, damage):
    bad = tmp_path / "bad"
    shutil.copytree(good_run, bad)
    parquet = bad / "metrics.parquet"
    if damage == "garbage":
        parquet.write_bytes(b"this is not parquet")
    elif damage == "truncate":
        parquet.write_bytes(parquet.read_bytes()[:1000])
    elif damage == "manifest":
        (bad / "manifest.json").write_text("{")
    else:
        import polars as pl

        pl.DataFrame({"metric": ["screens"], "value": [1.0]}).write_parquet(parquet)
    code, _, err = run_cli(["compare", str(good_run), str(bad)], capsys)
    assert_one_line_error(code, err, str(bad))


def test_compare_unknown_metric(good_run, capsys):
    code, _, err = run_cli(["compare", str(good_run), "--metric", "happiness"], capsys)
    assert_one_line_error(code, err, "happiness")


def test_validate_unknown_trial(capsys):
    code, _, err = run_cli(["validate", "atlantis_trial", "--size", "100"], capsys)
    assert_one_line_error(code, err, "atlantis_trial")


def test_validate_accepts_overrides_after_options(capsys):
    code, out, err = run_cli(
        ["validate", "nlst", "--size", "300", "--tolerance-scale", "1000", "runtime=quiet"], capsys
    )
    # the override is taken (no usage error); the exit status is the pass rule's (0 or 1)
    assert code in (0, 1) and not err.strip(), err
    assert "300 people" in out and "tolerance (coarse check) x1000.00" in out

"""A corpus of bad inputs, as a hostile or tired user would give them.

Every case ends the same way: exit code 2, one line that starts with ``error:``, no traceback,
and nothing written (no run folder, no temporary folder, the score cache untouched). The
config cases are generated from the typed config itself: every bounded number just outside its
bounds, and every number given as text, so a new key is covered the day it is added.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from pathlib import Path

import polars as pl
import pytest
import testkit
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.config import Policy, Runtime, Site
from sandbox.programmes.lung_ldct.config import Cohort, Disease, Histology, LungProgrammeConfig

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["runtime=quiet", "cohort.size=200"]


# ------------------------------------------------------------------ generated config cases
def numeric_fields(cls: type, prefix: str):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, key)
        elif tp in (int, float):
            yield key, tp, dict(f.metadata)


ROOTS = (
    (Cohort, "cohort"),
    (Disease, "disease"),
    (Histology, "disease.histology.adenocarcinoma"),
    (Site, "sites.0"),
    (LungProgrammeConfig, "programme"),
    (Policy, "policy"),
    (Runtime, "runtime"),
)


def config_cases() -> list[tuple[str, str]]:
    cases = []
    for cls, prefix in ROOTS:
        for key, tp, meta in numeric_fields(cls, prefix):
            cases.append((key, "abc"))
            if "ge" in meta:
                cases.append((key, repr(tp(meta["ge"] - 1))))
            elif "gt" in meta:
                cases.append((key, repr(tp(meta["gt"]))))
            if "le" in meta:
                cases.append((key, repr(tp(meta["le"] * 2 + 1))))
            elif "lt" in meta:
                cases.append((key, repr(tp(meta["lt"]))))
    return cases


CONFIG_CASES = config_cases()


@pytest.mark.parametrize(("key", "value"), CONFIG_CASES, ids=[f"{k}={v}" for k, v in CONFIG_CASES])
def test_every_bad_number_is_one_line(key, value, tmp_path, capsys):
    out = tmp_path / "runs"
    size = [] if key == "cohort.size" else ["cohort.size=200"]
    code, _, err = run_cli(
        ["run", "runtime=quiet", *size, f"{key}={value}", f"runtime.out_dir={out}"], capsys
    )
    assert_one_line_error(code, err, key.split(".")[-1])
    assert_nothing_written(out)


NAMED_CASES = [
    (["sites.0.name=all"], "sites[0].name"),
    (["sites.1.name=city_hospital"], "site names repeat"),
    (["policy.name=x/../../../../elsewhere/ESCAPED"], "policy.name"),
    (["policy.name=..."], "policy.name"),
    (["runtime.run_name=../escape"], "runtime.run_name"),
    (["runtime.run_name=a\\b"], "runtime.run_name"),
    (["runtime.run_name=.hidden"], "runtime.run_name"),
    (["disease.median_survival_years_uncured.I=-1"], "median_survival_years_uncured"),
    (["disease.median_survival_years_uncured.IV=0"], "median_survival_years_uncured"),
    (["disease.histology.squamous.type_mix=[-1,1,1]"], "type_mix"),
    (["disease.histology.small_cell.cure_scale=0"], "cure_scale"),
    (["disease.histology.squamous.central_share=1.5"], "central_share"),
    (["disease.central_conspicuity=0"], "central_conspicuity"),
    (["disease.other_cause_volunteer_hr=-0.5"], "other_cause_volunteer_hr"),
    (["disease.other_cause_female_hr=9"], "other_cause_female_hr"),
    (["scenario=nlst", "programme.radiograph.mimic_share=2"], "mimic_share"),
    (["scenario=nlst", "programme.radiograph.mimic_conspicuity=-1"], "mimic_conspicuity"),
    (["scenario=nlst", "programme.radiograph.density=[1,0.25,2]"], "radiograph.density"),
    (["scenario=nlst", "programme.radiograph.density=[1,0.25]"], "radiograph.density"),
    (["disease.histology.squamous.type_mix=[0,0,0]"], "type_mix"),
    (["disease.benign.type_mix=[0.5,-0.1,0.6]"], "type_mix"),
    (["cohort.population.age.max=300"], "cohort.population.age"),
    (["cohort.population.age.min=80", "cohort.population.age.max=60"], "age"),
    (["cohort.population.race.martian=1.0"], "race.martian"),
    (["cohort.population.education=[1,2]"], "education"),
    (["programme.protocol=acr"], "programme.protocol"),
    (["programme.name=breast"], "programme.name"),
    (["policy.role=oracle"], "policy.role"),
    (["policy.threshold.mode=magic"], "policy.threshold.mode"),
    (
        ["sites.0.readers.thoracic_radiologist=0", "sites.0.readers.general_radiologist=0"],
        "readers",
    ),
    (["sites.0.readers.no_such_profile=2"], "no_such_profile"),
    (["seed=null"], "seed"),
    (["seed=-1"], "seed"),
    (["+unknown_key=1"], "unknown_key"),
    (["scenario=no_such_world"], "unknown scenario"),
    (["policy=no_such_policy"], "unknown policy"),
]


@pytest.mark.parametrize(
    ("overrides", "needle"), NAMED_CASES, ids=[" ".join(o) for o, _ in NAMED_CASES]
)
def test_named_bad_configs(overrides, needle, tmp_path, capsys):
    out = tmp_path / "runs"
    code, _, err = run_cli(["run", *SMALL, *overrides, f"runtime.out_dir={out}"], capsys)
    assert_one_line_error(code, err, needle)
    assert_nothing_written(out)


# ------------------------------------------------------------------ output locations
def test_an_existing_run_name_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "runs"
    (out / "taken").mkdir(parents=True)
    code, _, err = run_cli(
        ["run", *SMALL, "runtime.run_name=taken", f"runtime.out_dir={out}"], capsys
    )
    assert_one_line_error(code, err, "already exists")
    assert list(out.iterdir()) == [out / "taken"] and not any((out / "taken").iterdir())


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_an_unusable_output_folder_is_one_line(kind, tmp_path, capsys):
    out = tmp_path / "runs"
    if kind == "file":
        out.write_text("not a folder")
    else:
        out.mkdir()
        out.chmod(0o500)
    try:
        code, _, err = run_cli(["run", *SMALL, f"runtime.out_dir={out}"], capsys)
    finally:
        if out.is_dir():
            out.chmod(0o700)
    if kind == "readonly" and code == 0:
        pytest.skip("running as a user who can write anywhere")
    assert_one_line_error(code, err, "runtime.out_dir")


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, capsys):
    out = tmp_path / "runs"
    from sandbox.runfolder import temporary_name

    mine = temporary_name(out / "old-run")
    stale = mine.with_name(mine.name.rsplit("-", 1)[0] + "-999999999")  # no such process here
    stale.mkdir(parents=True)
    (stale / "metrics.parquet").write_text("half")
    elsewhere = out / ".other-run.tmp-another-host-999999999"  # another machine's: left alone
    elsewhere.mkdir()
    code, _, err = run_cli(
        ["run", *SMALL, "runtime.run_name=fresh", f"runtime.out_dir={out}"], capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [elsewhere.name, "fresh"]


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_an_unusable_score_cache_is_one_line_before_work(kind, tmp_path, capsys, tiny_device):
    out, cache = tmp_path / "runs", tmp_path / "cache"
    if kind == "file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        cache.chmod(0o500)
    args = ["run", *SMALL, "policy=ai_triage", f"agent={tiny_device}"]
    try:
        code, _, err = run_cli(
            [*args, f"runtime.score_cache={cache}", f"runtime.out_dir={out}"], capsys
        )
    finally:
        if cache.is_dir():
            cache.chmod(0o700)
    if kind == "readonly" and code == 0:
        pytest.skip("running as a user who can write anywhere")
    assert_one_line_error(code, err, "runtime.score_cache")
    assert_nothing_written(out)


# ------------------------------------------------------------------ scenario files
SCENARIO_FILES = {
    "not_utf8": b"description: \xff\xfe broken\n",
    "malformed": b"cohort: {size: [\n",
    "a_list": b"- 1\n- 2\n",
    "alias_bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    b"g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
    "no_programme_name": None,  # the nlst world without programme.name
}


@pytest.mark.parametrize("name", sorted(SCENARIO_FILES))
def test_bad_scenario_files_are_one_line(name, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    for part in ("conf", "scenarios", "agents"):
        shutil.copytree(ROOT / part, home / part, symlinks=True)
    body = SCENARIO_FILES[name]
    if body is None:
        text = (home / "scenarios" / "nlst.yaml").read_text()
        body = text.replace("  name: lung_ldct", "").encode()
        (home / "scenarios" / "nlst.yaml").write_bytes(body)
        world = "nlst"
    else:
        (home / "scenarios" / f"{name}.yaml").write_bytes(b"# @package _global_\n" + body)
        world = name
    monkeypatch.setenv("SANDBOX_HOME", str(home))
    out = tmp_path / "runs"
    code, _, err = run_cli(["run", *SMALL, f"scenario={world}", f"runtime.out_dir={out}"], capsys)
    assert_one_line_error(code, err)
    assert_nothing_written(out)


# ------------------------------------------------------------------ run folders given to compare
@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert testkit.main(["run", *SMALL, "runtime.run_name=good", f"runtime.out_dir={out}"]) == 0
    return out / "good"


def broken(good: Path, tmp: Path, name: str) -> Path:
    f = tmp / name
    shutil.copytree(good, f)
    man, cfg, met = f / "manifest.json", f / "config.yaml", f / "metrics.parquet"
    if name == "manifest_list":
        man.write_text("[1, 2]")
    elif name == "manifest_not_utf8":
        man.write_bytes(b'{"seed": "\xff"}')
    elif name == "manifest_deep":
        man.write_text("[" * 100_000 + "]" * 100_000)
    elif name == "manifest_truncated":
        man.write_text(man.read_text()[:40])
    elif name == "config_scalar":
        cfg.write_text("42\n")
    elif name == "config_malformed":
        cfg.write_text("a: [\n")
    elif name == "metrics_not_parquet":
        met.write_text("nope")
    elif name == "metrics_missing_column":
        pl.read_parquet(met).drop("lo").write_parquet(met)
    elif name == "metrics_wrong_type":
        pl.read_parquet(met).with_columns(pl.col("value").cast(pl.Utf8)).write_parquet(met)
    elif name == "no_manifest":
        man.unlink()
    elif name == "no_metrics":
        met.unlink()
    elif name == "a_file":
        shutil.rmtree(f)
        f.write_text("a file, not a folder")
    return f


BROKEN = [
    "manifest_list",
    "manifest_not_utf8",
    "manifest_deep",
    "manifest_truncated",
    "config_scalar",
    "config_malformed",
    "metrics_not_parquet",
    "metrics_missing_column",
    "metrics_wrong_type",
    "no_manifest",
    "no_metrics",
    "a_file",
    "missing",
]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_run_folders_are_one_line(name, good_run, tmp_path, capsys):
    f = tmp_path / "missing" if name == "missing" else broken(good_run, tmp_path, name)
    code, _, err = run_cli(["compare", str(good_run), str(f)], capsys)
    assert_one_line_error(code, err, f.name)


def test_escape_codes_in_a_manifest_are_not_printed_raw(good_run, tmp_path, capsys):
    f = tmp_path / "ansi"
    shutil.copytree(good_run, f)
    man = json.loads((f / "manifest.json").read_text())
    man["policy"] = "evil\x1b[2J\x1b[31m"
    (f / "manifest.json").write_text(json.dumps(man))
    code, out, _ = run_cli(["compare", str(good_run), str(f)], capsys)
    assert code == 0 and "\x1b" not in out and "\\x1b[2J" in out


# ------------------------------------------------------------------ other commands
CLI_CASES = [
    (["train", "people=abc"], "people"),
    (["train", "epochs=0"], "epochs"),
    (["train", "nonsense"], "key=value"),
    (["train", "agent=no_such_agent"], "no_such_agent"),
    (["train", "unknown_key=1"], "unknown_key"),
    (["agent-card", "/no/such/folder"], "/no/such/folder"),
    (["validate", "no_such_trial"], "no_such_trial"),
    (["compare", "/no/such/run"], "/no/such/run"),
    (["run", *SMALL, "agent=/no/such/device", "policy=ai_triage"], "/no/such/device"),
]


@pytest.mark.parametrize(("argv", "needle"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_bad_command_arguments_are_one_line(argv, needle, tmp_path, capsys):
    code, _, err = run_cli(
        [*argv, f"runtime.out_dir={tmp_path / 'runs'}"] if argv[0] == "run" else argv, capsys
    )
    assert_one_line_error(code, err, needle)
    assert_nothing_written(tmp_path / "runs")

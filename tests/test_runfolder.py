"""A run folder, written by `sandbox run` and read back by `sandbox compare`."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from sandbox.cli import main
from sandbox.compose import load
from sandbox.config import run_config
from sandbox.outcomes import METRICS_SCHEMA
from sandbox.programmes.lung_ldct.people import PEOPLE_SCHEMA
from sandbox.programmes.lung_ldct.programme import LungLDCT
from sandbox.runfolder import read_run, write_run
from sandbox.workflow.exam import events_schema

EVENTS_SCHEMA = events_schema(LungLDCT)

OVERRIDES = [
    "scenario=lung_ldct",
    "policy=soc_single_read",
    "cohort.size=1500",
    "seed=4",
    "runtime=quiet",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("runs")
    assert main(["run", *OVERRIDES, f"runtime.out_dir={out_dir}"]) == 0
    assert (
        main(
            [
                "run",
                *OVERRIDES[:1],
                "policy=soc_double_read",
                *OVERRIDES[2:],
                f"runtime.out_dir={out_dir}",
            ]
        )
        == 0
    )
    return out_dir


def folders(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.iterdir())


def test_run_folders_are_complete_and_nothing_is_left_over(runs):
    fs = folders(runs)
    assert len(fs) == 2
    assert not [p for p in fs if p.name.startswith(".") or ".tmp-" in p.name]
    for f in fs:
        names = {p.name for p in f.iterdir()}
        assert {
            "config.yaml",
            "manifest.json",
            "metrics.parquet",
            "people.parquet",
            "events.parquet",
        } <= names
        assert re.fullmatch(r"lung_ldct-soc_(single|double)_read-seed4-\d{8}T\d{6}Z", f.name)


def test_manifest(runs):
    for f in folders(runs):
        man = json.loads((f / "manifest.json").read_text())
        assert man["seed"] == 4
        assert man["code_version"]
        assert {"numpy", "simpy", "polars", "hydra-core"} <= set(man["packages"])
        assert {"cohort_and_disease_s", "workflow_s", "outcomes_s", "total_s"} <= set(
            man["timings_s"]
        )
        assert all(v >= 0 for v in man["timings_s"].values())
        assert man["repeat"].startswith("sandbox run ")
        assert man["scenario"] == "lung_ldct" and man["people"] == 1500
        for name, digest in man["file_sha256"].items():
            assert hashlib.sha256((f / name).read_bytes()).hexdigest() == digest


def test_tables_match_their_schemas(runs):
    for f in folders(runs):
        assert pl.read_parquet(f / "events.parquet").schema == pl.Schema(EVENTS_SCHEMA)
        assert pl.read_parquet(f / "people.parquet").schema == pl.Schema(PEOPLE_SCHEMA)
        assert pl.read_parquet(f / "metrics.parquet").schema == pl.Schema(METRICS_SCHEMA)
        assert pl.read_parquet(f / "people.parquet").height == 1500


def test_config_yaml_rebuilds_the_run_config(runs):
    f = next(p for p in folders(runs) if "single" in p.name)
    data = yaml.safe_load((f / "config.yaml").read_text())
    name = data.pop("scenario_name")
    cfg = run_config(data, name)
    expected, _, _ = load(OVERRIDES + [f"runtime.out_dir={runs}"])
    assert cfg == expected


def test_config_yaml_is_resolved_and_manifest_holds_profiles_and_policy_versions(runs):
    f = next(p for p in folders(runs) if "single" in p.name)
    data = yaml.safe_load((f / "config.yaml").read_text())
    # defaults the YAML files never spell out are filled in
    assert data["runtime"]["shared_clock"] is False
    assert data["policy"]["threshold"] == {
        "mode": "absolute",
        "value": 0.5,
        "target_sensitivity": 0.9,
    }
    assert data["programme"]["name"] == "lung_ldct"
    man = json.loads((f / "manifest.json").read_text())
    profiles = man["reader_profiles"]
    assert set(profiles) == {n for s in data["sites"] for n in s["readers"]}
    for entry in profiles.values():
        blob = json.dumps(entry["profile"], sort_keys=True).encode()
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
    versions = man["policy_versions"]
    assert set(versions) == {s["name"] for s in data["sites"]}
    assert all(v == [{**v[0], "version": 0, "reason": "as run"}] for v in versions.values())


def test_repeat_command_reproduces_the_metrics(runs, tmp_path):
    f = next(p for p in folders(runs) if "single" in p.name)
    man = json.loads((f / "manifest.json").read_text())
    argv = shlex.split(man["repeat"])[1:]
    argv = [a for a in argv if not a.startswith("runtime.out_dir=")] + [
        f"runtime.out_dir={tmp_path}"
    ]
    assert main(argv) == 0
    (again,) = list(tmp_path.iterdir())
    assert_frame_equal(
        pl.read_parquet(again / "metrics.parquet"),
        pl.read_parquet(f / "metrics.parquet"),
        check_exact=True,
    )


def test_read_run(runs):
    r = read_run(folders(runs)[0])
    assert r["manifest"]["seed"] == 4
    assert r["metrics"].height > 0


def test_compare_prints_a_table(runs, capsys):
    a, b = folders(runs)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "same scenario and seed" in out
    assert "soc_single_read" in out and "soc_double_read" in out
    for metric in ("screens", "positive_rate", "human_reads", "life_years"):
        assert re.search(rf"^{metric}\s", out, re.M), metric
    assert (
        main(
            [
                "compare",
                str(a),
                str(b),
                "--metric",
                "screens",
                "--round",
                "T0",
                "--subgroup",
                "sex=F",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "round=T0" in out and re.search(r"^screens\s+\d", out, re.M)


def test_write_run_is_atomic(tmp_path):
    class Boom(Exception):
        pass

    class BadFrame:
        def write_parquet(self, path):
            raise Boom

    with pytest.raises(Boom):
        write_run(tmp_path / "r", {"a": 1}, {"seed": 1}, {"metrics": BadFrame()})
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary sibling


def test_events_can_be_left_out(tmp_path):
    assert (
        main(
            [
                "run",
                *OVERRIDES,
                "runtime.write_events=false",
                f"runtime.out_dir={tmp_path}",
                "runtime.run_name=r",
            ]
        )
        == 0
    )
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert "events.parquet" not in names and "metrics.parquet" in names


def test_run_folder_tables_are_documented(project_root):
    doc = project_root / "docs" / "run-folder.md"
    if not doc.exists():
        pytest.skip("docs/run-folder.md not written yet")
    text = doc.read_text()
    missing = [c for c in (*EVENTS_SCHEMA, *PEOPLE_SCHEMA, *METRICS_SCHEMA) if f"`{c}`" not in text]
    assert not missing, f"columns not in docs/run-folder.md: {missing}"

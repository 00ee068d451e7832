"""Probabilistic sensitivity analysis over the natural history: the calibration's accepted
parameter sets drawn, the strategies re-simulated under each (a sweep on Ray), and the draws
priced set by set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from testkit import assert_one_line_error, run_cli

from sandbox.compose import load, project_root
from sandbox.economics.psa import acceptability, evppi_sets
from sandbox.errors import SandboxInputError
from sandbox.validation.calibrate import calibration_sets


def test_sets_come_from_accepted_rows_and_a_world_keeps_its_own_values():
    cfg = load(["scenario=lung_ldct"])[0]
    sets = calibration_sets(cfg, 5, 11, project_root())
    cal = cfg.scenario.calibration
    # lung_ldct's invited population sets its own healthy-volunteer ratio (1.0): kept as it is
    assert "other_cause_volunteer_hr" in sets.own
    assert set(sets.kept) | set(sets.own) == set(cal["fitted"])
    frame = pl.read_parquet(project_root() / sets.source).with_row_index("row")
    assert len(set(sets.rows)) == 5
    for row, values in zip(sets.rows, sets.values, strict=True):
        line = frame.row(row, named=True)
        assert line["accepted"]
        for path, v in values.items():
            assert v == line[path.rsplit(".", 1)[-1]]
        assert not any("other_cause_volunteer_hr" in p for p in values)
    assert calibration_sets(cfg, 5, 11, project_root()) == sets  # keyed by the seed
    assert calibration_sets(cfg, 5, 12, project_root()).rows != sets.rows
    with pytest.raises(SandboxInputError, match="accepted"):
        calibration_sets(cfg, 100_000, 0, project_root())


def test_breast_sets_reach_the_readers_profile_and_the_disease_as_overrides():
    cfg = load(["scenario=breast_masai"])[0]
    sets = calibration_sets(cfg, 3, 7, project_root())
    assert set(sets.kept) == set(cfg.scenario.calibration["fitted"]) and not sets.own
    assert set(sets.values[0]) == {
        "disease.incidence_multiplier",
        "disease.invasive.doubling_days_median",
        "reader_profiles.breast_radiologist.detection_c50",
        "reader_profiles.breast_radiologist.false_positive_per_exam",
    }
    for values in sets.values:
        # each set, as the sweep passes it, is the world a run simulates: its readers included
        cfg_k, profiles, _ = load(
            ["scenario=breast_masai", *(f"{k}={v!r}" for k, v in values.items())]
        )
        reader = profiles["breast_radiologist"]
        assert reader.detection_c50 == values["reader_profiles.breast_radiologist.detection_c50"]
        assert (
            reader.false_positive_per_exam
            == values["reader_profiles.breast_radiologist.false_positive_per_exam"]
        )
        assert cfg_k.scenario.disease.incidence_multiplier == values["disease.incidence_multiplier"]
        assert (
            cfg_k.scenario.disease.invasive.doubling_days_median
            == values["disease.invasive.doubling_days_median"]
        )
    # the sets differ: they carry the calibration's uncertainty, not one vector
    assert len({v["reader_profiles.breast_radiologist.detection_c50"] for v in sets.values}) == 3


def test_a_world_without_a_calibration_has_no_sets(tmp_path):
    cfg = load(["scenario=lung_ldct"])[0]
    import dataclasses

    bare = dataclasses.replace(cfg, scenario=dataclasses.replace(cfg.scenario, calibration={}))
    with pytest.raises(SandboxInputError, match="no accepted parameter sets"):
        calibration_sets(bare, 2, 0, project_root())
    moved = dataclasses.replace(
        cfg,
        scenario=dataclasses.replace(
            cfg.scenario,
            calibration={**cfg.scenario.calibration, "accepted_sets": "nowhere.parquet (3)"},
        ),
    )
    with pytest.raises(SandboxInputError, match="nowhere.parquet: no such file"):
        calibration_sets(moved, 2, 0, project_root())


def _draws(set_effects: list[float], draws: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for d in range(draws):
        k = d % len(set_effects)
        rows.append({"draw": d, "strategy": "a", "cost": 0.0, "effect": 0.0, "nh_set": k})
        rows.append(
            {
                "draw": d,
                "strategy": "b",
                "cost": 1000 + rng.normal(0, 100),
                "effect": set_effects[k] + rng.normal(0, 0.001),
                "nh_set": k,
            }
        )
    return pl.DataFrame(rows)


def test_evppi_of_the_sets_is_between_zero_and_evpi():
    grid = np.array([0.0, 20_000.0, 50_000.0, 100_000.0])
    # the sets disagree: at 50,000 b pays in one set (effect 0.04) and not in the other (0.0)
    split = _draws([0.0, 0.04])
    evppi = evppi_sets(split, grid)
    _, evpi = acceptability(split, grid)
    assert (evppi["evppi_natural_history_per_person"] >= -1e-9).all()
    assert (
        evppi["evppi_natural_history_per_person"].to_numpy()
        <= evpi["evpi_per_person"].to_numpy() + 1e-9
    ).all()
    at = dict(zip(evppi["wtp"], evppi["evppi_natural_history_per_person"], strict=True))
    # knowing the set is worth about half of b's gain in the set where it pays: 0.5 * (2000 - 1000)
    assert at[50_000.0] == pytest.approx(500.0, rel=0.05)
    # when the sets agree, knowing which is true is worth nothing
    same = evppi_sets(_draws([0.02, 0.02]), grid)
    assert same["evppi_natural_history_per_person"].abs().max() < 5.0


def _psa_on_ray(tmp_path: Path, ray_tmp: Path, world: list[str], economics: str) -> list[str]:
    """``sandbox psa`` over two natural-history sets of ``world`` (scenario, size, policies), on
    a local Ray in ``ray_tmp``, priced with ``economics`` into ``tmp_path / "psa"``."""
    return [
        "psa",
        *world,
        "natural_history=2",
        "draws=40",
        "runtime=quiet",
        f"runtime.out_dir={tmp_path / 'runs'}",
        f"runtime.ray.temp_dir={ray_tmp}",
        "runtime.ray.num_cpus=2",
        "--economics",
        economics,
        "--name",
        "nh",
        "--out",
        str(tmp_path / "psa"),
    ]


@pytest.mark.ray
def test_psa_resimulates_the_strategies_under_calibration_sets(ray_tmp, tmp_path, capsys):
    out = tmp_path / "psa"
    argv = _psa_on_ray(
        tmp_path,
        ray_tmp,
        ["scenario=lung_ldct", "cohort.size=600", "policies=no_screening,soc_single_read"],
        "us_payer",
    )
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "2 strategies x 2 natural-history sets" in text
    assert "EVPPI of the 2 sets" in text
    draws = pl.read_parquet(out / "psa_draws.parquet")
    assert draws.height == 40 * 2
    assert draws["nh_set"].to_list() == [d % 2 for d in draws["draw"].to_list()]
    # the two sets are different natural histories: screening's cost differs between them
    # even at the same prices (compare the mean over draws of each set)
    by_set = (
        draws.filter(pl.col("strategy") == "soc_single_read")
        .group_by("nh_set")
        .agg(pl.col("effect").mean())
    )
    assert by_set["effect"].n_unique() == 2
    for name in ("ceac", "evpi", "evppi", "tornado"):
        assert (out / f"{name}.parquet").is_file(), name
    record = yaml.safe_load((out / "psa.yaml").read_text())
    sweep = Path(record["sweep"])
    assert (sweep / "sweep.yaml").is_file() and len(record["runs"]["no_screening"]) == 2
    assert "2 re-simulated sets of natural-history parameters" in record["uncertainty"]
    # the sweep folder alone re-prices the same runs into the same draws
    again = tmp_path / "again"
    code, _, err = run_cli(
        ["psa", str(sweep), "--draws", "40", "--economics", "us_payer", "--out", str(again)],
        capsys,
    )
    assert code == 0, err
    assert pl.read_parquet(again / "psa_draws.parquet").equals(draws)


@pytest.mark.ray
def test_breast_psa_resimulates_the_strategies_under_its_calibration_sets(
    ray_tmp, tmp_path, capsys
):
    out = tmp_path / "psa"
    argv = _psa_on_ray(
        tmp_path,
        ray_tmp,
        [
            "scenario=breast_masai",
            "cohort.size=2000",
            # MASAI's AI arm: its marks, relaxed reading and recall flag are cut-offs that the
            # sweep's shared scorer resolves on the device, as a local run's does
            "policies=soc_double_read_consensus,ai_triage_masai",
        ],
        "sweden_breast",
    )
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "2 strategies x 2 natural-history sets" in text
    assert "detection_c50" in text  # the readers' fitted keys are among the drawn parameters
    draws = pl.read_parquet(out / "psa_draws.parquet")
    assert draws.height == 40 * 2
    record = yaml.safe_load((out / "psa.yaml").read_text())
    runs = record["runs"]["ai_triage_masai"]
    assert len(runs) == 2
    # each run's readers are its set's: the run folders record different profiles
    c50 = [
        json.loads((Path(r) / "manifest.json").read_text())["reader_profiles"][
            "breast_radiologist"
        ]["profile"]["detection_c50"]
        for r in runs
    ]
    assert c50[0] != c50[1]


def test_a_bad_natural_history_request_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "psa"
    base = ["psa", "scenario=lung_ldct", f"runtime.out_dir={tmp_path}", "--out", str(out)]
    for args, needle in [
        (["policies=no_screening"], "policies="),
        (["policy=no_screening"], "policies=a,b,c"),
        (["policies=no_screening,soc_single_read", "natural_history=lots"], "natural_history"),
        (["policies=no_screening,soc_single_read", "natural_history=100000"], "natural_history"),
        (["policies=no_screening,soc_single_read", "draws=2"], "draws=2"),
        (["policies=no_screening,nobody"], "nobody"),
    ]:
        code, _, err = run_cli([*base, *args], capsys)
        assert_one_line_error(code, err, needle)
        assert not out.exists() and not (tmp_path / "sweeps").exists()

"""The Programme seam is real: a toy programme runs through the same site model under every
policy and AI role, with its own report, management, exam kinds and stages."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import toy_programme as toy
import yaml

from sandbox.compose import load_reader_profiles
from sandbox.config import run_config
from sandbox.outcomes.metrics import metric_catalogue
from sandbox.programmes import programme_for
from sandbox.simulate import build_cohort, outcomes, simulate_sites

POLICY_DIR = Path(__file__).resolve().parents[2] / "conf" / "policy"
# the toy screens with its own test only (no radiograph); no_screening has its own test below
# every screening policy the toy can read (a high-risk recall flag is a programme's own rule,
# which the toy does not have)
POLICIES = sorted(
    p.stem
    for p in POLICY_DIR.glob("*.yaml")
    if p.stem not in ("no_screening", "cxr_single_read")
    and "recall_top" not in yaml.safe_load(p.read_text())
)


def toy_config(policy: str, **runtime):
    data = {
        **toy.SCENARIO,
        "seed": 5,
        "policy": yaml.safe_load((POLICY_DIR / f"{policy}.yaml").read_text()),
        "runtime": {"progress": False, **runtime},
    }
    return run_config(data, "toy_world")


@pytest.fixture(scope="module")
def toy_runs():
    profiles = load_reader_profiles()
    out = {}
    for name in POLICIES:
        cfg = toy_config(name)
        prog = programme_for(cfg.scenario)
        cohort = build_cohort(cfg, programme=prog)
        ai = toy.ToyDevice(cfg.seed) if cfg.policy.role != "none" else None
        rec = simulate_sites(cfg, profiles, cohort, ai=ai, threshold=0.6, programme=prog)
        people, metrics = outcomes(cfg, cohort, rec, prog)
        out[name] = (cfg, rec.events, people, metrics)
    return out


def test_the_toy_programme_runs_as_a_no_screening_comparator():
    cfg = toy_config("no_screening")
    prog = programme_for(cfg.scenario)
    profiles = load_reader_profiles({n for s in cfg.scenario.sites for n in s.readers})
    rec = simulate_sites(cfg, profiles, build_cohort(cfg, programme=prog), programme=prog)
    assert rec.events.height == 0


def test_a_programme_without_radiographs_refuses_a_radiograph_policy():
    from sandbox.errors import SandboxInputError
    from sandbox.simulate import check_policy

    with pytest.raises(SandboxInputError, match="policy.modality.*no cxr screening"):
        check_policy(toy_config("cxr_single_read"))


def test_a_scenario_names_its_programme():
    cfg = toy_config("soc_single_read")
    assert isinstance(programme_for(cfg.scenario), toy.Toy)
    assert cfg.scenario.programme.workup_mm == 6.0


@pytest.mark.parametrize("policy", POLICIES)
def test_toy_programme_runs_under_every_policy(toy_runs, policy):
    cfg, events, people, metrics = toy_runs[policy]
    assert "toy_report" in events.columns and "lung_rads" not in events.columns
    assert set(events["toy_report"].unique()) <= {"normal", "abnormal"}
    assert set(events["management"].unique()) <= set(toy.Toy.management_kinds)
    assert set(events["exam_kind"].unique()) == {"screen", "recheck"}  # its own follow-up
    # management follows the toy's rule: abnormal -> recheck or work-up, normal -> next round
    ab = events.filter(pl.col("toy_report") == "abnormal")
    assert ab["management"].is_in(["recheck", "workup"]).all()
    assert (events.filter(pl.col("toy_report") == "normal")["management"] == "next_round").all()
    assert set(people["stage"].drop_nulls().unique()) <= {"small", "large"}
    assert (people["diagnosis_mode"] == "screen").sum() > 0
    screens = events.filter(pl.col("exam_kind") == "screen")
    if cfg.policy.role == "none":
        assert screens["ai_score"].is_null().all()
        reads = 1 if cfg.policy.reading == "single" else 2
        assert (screens["n_reads"] >= reads).all()
    else:
        assert screens["ai_score"].is_not_null().all()
    if cfg.policy.role == "rule_out":
        assert screens["ai_autonomous"].sum() > 0
        assert (screens.filter(pl.col("ai_autonomous"))["n_reads"] == 0).all()
    names = set(metrics["metric"].unique())
    assert names == set(metric_catalogue(toy.Toy))
    assert "screen_detected_stage_small" in names and not any("lung" in n for n in names)


def test_toy_people_are_the_same_under_every_policy(toy_runs):
    """Common random numbers hold for any programme: the cohort does not depend on the policy."""
    first = None
    for _, _events, people, _ in toy_runs.values():
        key = people.select("person_id", "site", "sex")
        assert first is None or key.equals(first)
        first = key

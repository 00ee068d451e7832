"""Configs loaded through Hydra's compose API, validated into frozen objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sandbox.compose import compose, load, load_reader_profiles, scenario_profiles
from sandbox.config import RunConfig, run_config
from sandbox.errors import SandboxInputError
from sandbox.simulate import check_policy

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
POLICIES = sorted(p.stem for p in (ROOT / "conf" / "policy").glob("*.yaml"))
RUNTIMES = sorted(p.stem for p in (ROOT / "conf" / "runtime").glob("*.yaml"))


def test_config_groups_exist():
    assert {"lung_ldct", "nlst"} <= set(SCENARIOS)
    assert {"soc_single_read", "soc_double_read", "soc_double_read_consensus"} <= set(POLICIES)
    assert (ROOT / "conf" / "scenario").resolve() == (ROOT / "scenarios").resolve()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_and_policy_composes_and_validates(scenario, policy):
    cfg, profiles, raw = load([f"scenario={scenario}", f"policy={policy}"])
    assert isinstance(cfg, RunConfig)
    assert cfg.scenario.name == scenario and cfg.policy.name == policy
    if cfg.scenario.programme.name == "breast_mammo" and cfg.policy.modality == "cxr":
        # a chest-radiograph policy on the breast programme: one line, naming the key
        with pytest.raises(SandboxInputError, match="'policy.modality'.*no cxr screening"):
            check_policy(cfg)
        return
    if cfg.scenario.programme.name != "breast_mammo" and cfg.policy.recall_top is not None:
        # a high-risk recall rule is the breast programme's (MASAI's): one line elsewhere
        with pytest.raises(SandboxInputError, match="'policy.recall_top'.*no rule"):
            check_policy(cfg)
        return
    check_policy(cfg)  # every site is staffed for the policy
    assert {n for s in cfg.scenario.sites for n in s.readers} <= set(profiles)
    assert isinstance(cfg.seed, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    # library code never sees OmegaConf objects: the raw mapping is plain data
    assert _plain(raw)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_runtime_composes(runtime):
    cfg, _, _ = load([f"runtime={runtime}"])
    assert cfg.runtime.out_dir


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    return x is None or isinstance(x, str | int | float | bool)


def test_lung_ldct_inherits_nlst_natural_history():
    lung, _, _ = load(["scenario=lung_ldct"])
    nlst, _, _ = load(["scenario=nlst"])
    # the same natural history; only the trial's healthy-volunteer effect is not inherited
    assert lung.scenario.disease.other_cause_volunteer_hr == 1.0
    assert nlst.scenario.disease.other_cause_volunteer_hr < 1.0
    assert lung.scenario.disease == dataclasses.replace(
        nlst.scenario.disease, other_cause_volunteer_hr=1.0
    )
    assert (
        lung.scenario.programme.protocol == "lung_rads_v2022"
        and nlst.scenario.programme.protocol == "nlst"
    )


def test_overrides_apply():
    cfg, _, raw = load(
        [
            "scenario=nlst",
            "policy=soc_single_read",
            "seed=123",
            "cohort.size=777",
            "programme.attendance=0.5",
            "sites.0.scanners=3",
            "runtime=quiet",
            "disease.histology.squamous.vdt_median_days=99",
        ]
    )
    assert cfg.seed == 123 and cfg.scenario.cohort.size == 777
    assert cfg.scenario.programme.attendance == 0.5
    assert cfg.scenario.sites[0].scanners == 3
    assert cfg.scenario.disease.histology["squamous"].vdt_median_days == 99.0
    assert cfg.runtime.progress is False
    assert cfg.policy.reading == "single"
    assert raw["cohort"]["size"] == 777


def test_compose_returns_plain_mapping_and_scenario_name():
    data, name = compose(["scenario=nlst"])
    assert name == "nlst"
    assert isinstance(data, dict) and _plain(data)
    assert "hydra" not in data


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["+foo=1"], "foo"),
        (["+cohort.foo=1"], "cohort.foo"),
        (["+disease.benign.colour=red"], "disease.benign.colour"),
        (["cohort.size=-5"], "cohort.size"),
        (["cohort.size=0"], "cohort.size"),
        (["cohort.size=abc"], "cohort.size"),
        (["cohort.size=2.5"], "cohort.size"),
        (["programme.attendance=1.5"], "programme.attendance"),
        (["programme.attendance=-0.1"], "programme.attendance"),
        (["programme.rounds=true"], "programme.rounds"),
        (["programme.interval_years=nan"], "programme.interval_years"),
        (["programme.interval_years=inf"], "programme.interval_years"),
        (["sites.0.scanners=0"], "sites[0].scanners"),
        (["sites.1.reading_hours_per_day=25"], "sites[1].reading_hours_per_day"),
        (["seed=-1"], "seed"),
        (["seed=null"], "seed"),
        (["runtime.site_block_size=-1"], "runtime.site_block_size"),
        (["runtime.progress=maybe"], "runtime.progress"),
        (["policy.reading=triple"], "policy.reading"),
        (["programme.protocol=acr"], "programme.protocol"),
        (["cohort.eligibility.rule=everyone"], "cohort.eligibility.rule"),
        (
            ["disease.histology.adenocarcinoma.type_mix=[0.5,0.5]"],
            "disease.histology.adenocarcinoma.type_mix",
        ),
        (["cohort.population.age={min: 70, max: 60}"], "cohort.population.age"),
        (["cohort.population.age_band_shares=[0.5,0.5]"], "cohort.population.age_band_shares"),
        (["cohort.population.age_band_shares=[0,0,0,0]"], "cohort.population.age_band_shares"),
        (["disease.solid_fraction=[1.0,0.5,0]"], "disease.solid_fraction"),
        (["disease.indolent_type_mix=[1,1]"], "disease.indolent_type_mix"),
        (["disease.subsolid_vdt_median_days=[457]"], "disease.subsolid_vdt_median_days"),
        (["disease.subsolid_vdt_median_days=[457,5]"], "disease.subsolid_vdt_median_days"),
        (["disease.onset_slope_current=-0.1"], "disease.onset_slope_current"),
        (["+cohort.eligibility.symptom_free_days=-1"], "cohort.eligibility.symptom_free_days"),
        (["programme.subsolid_workup_mm=-1"], "programme.subsolid_workup_mm"),
        (["+disease.histology.carcinoid={share: 1}"], "disease.histology"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(SandboxInputError) as e:
        load(overrides)
    msg = str(e.value)
    assert key in msg, msg
    assert "\n" not in msg


def test_unknown_override_key_is_an_input_error():
    with pytest.raises(SandboxInputError, match="cohort.colour"):
        load(["cohort.colour=red"])


def test_unknown_scenario_and_policy():
    with pytest.raises(SandboxInputError, match="unknown scenario") as e:
        load(["scenario=atlantis"])
    assert "atlantis" in str(e.value)
    with pytest.raises(SandboxInputError, match="unknown policy") as e:
        load(["policy=triple_read"])
    assert "triple_read" in str(e.value)


def test_understaffed_site_is_refused_before_any_work():
    cfg, _, _ = load(["policy=soc_double_read", "sites.1.readers.general_radiologist=2"])
    with pytest.raises(SandboxInputError, match=r"sites\[1\]\.readers"):
        check_policy(cfg)


def test_missing_reader_profile_names_the_key():
    with pytest.raises(SandboxInputError, match=r"sites\[0\]\.readers\.nobody"):
        load(["+sites.0.readers.nobody=3"])


def test_run_config_requires_a_seed():
    data, name = compose([])
    data["seed"] = None
    with pytest.raises(SandboxInputError, match="seed"):
        run_config(data, name)


def test_a_scenario_sets_its_readers_profile_keys_over_the_profile_file():
    base = load_reader_profiles({"breast_radiologist"})["breast_radiologist"]
    cfg, profiles, _ = load(
        ["scenario=breast_masai", "reader_profiles.breast_radiologist.detection_c50=17.5"]
    )
    got = profiles["breast_radiologist"]
    assert got.detection_c50 == 17.5 != base.detection_c50
    # the scenario's other keys as it sets them, the rest as the profile file has them
    assert (
        got.false_positive_per_exam
        == cfg.scenario.reader_profiles["breast_radiologist"]["false_positive_per_exam"]
    )
    assert got.read_minutes_median == base.read_minutes_median
    # setting the same values again changes nothing
    assert scenario_profiles(cfg, profiles) == profiles


@pytest.mark.parametrize(
    "override, needle",
    [
        ("+reader_profiles.nobody.detection_c50=3", "reader_profiles.nobody': no site reads with"),
        (
            "+reader_profiles.breast_radiologist.c50=3",
            "reader_profiles.breast_radiologist.c50': not a key of a reader profile",
        ),
        (
            "reader_profiles.breast_radiologist.false_positive_per_exam=1.5",
            "reader_profiles.breast_radiologist.false_positive_per_exam",
        ),
    ],
)
def test_bad_reader_profile_keys_in_a_scenario_are_refused_with_their_key(override, needle):
    with pytest.raises(SandboxInputError) as e:
        load(["scenario=breast_masai", override])
    assert needle in str(e.value) and "\n" not in str(e.value)

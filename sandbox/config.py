"""Frozen, typed configuration: what a run is.

Hydra (or any loader) produces a plain mapping; :func:`run_config` turns it into these objects
once, at the boundary. Library code never sees an OmegaConf object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.validate import build, fail

RACES = ("white", "black", "hispanic", "asian", "aian", "nhpi")
HISTOLOGIES = ("adenocarcinoma", "squamous", "small_cell", "other")
NODULE_TYPES = ("solid", "part_solid", "ground_glass")
STAGES = ("I", "II", "III", "IV")
POS = {"gt": 0.0}
PROB = {"ge": 0.0, "le": 1.0}


# ---------------------------------------------------------------- cohort
@dataclass(frozen=True)
class Range:
    min: float
    max: float

    def check(self, path: str) -> None:
        if self.min > self.max:
            fail(path, f"min {self.min} is above max {self.max}")


@dataclass(frozen=True)
class Population:
    """Candidate population from which the eligible cohort is drawn."""

    age: Range
    female: float = field(metadata=PROB)
    race: dict[str, float]
    current_smoker: float = field(metadata=PROB)
    cigs_per_day_median: float = field(metadata={"gt": 0, "le": 100})
    cigs_per_day_sigma: float = field(metadata={"ge": 0, "le": 3})
    smoking_start_age_mean: float = field(metadata={"ge": 8, "le": 40})
    smoking_start_age_sd: float = field(metadata={"ge": 0, "le": 20})
    years_since_quit_mean: float = field(metadata={"gt": 0, "le": 60})
    education: tuple[float, ...]
    bmi_mean: float = field(metadata={"ge": 12, "le": 60})
    bmi_sd: float = field(metadata={"ge": 0, "le": 20})
    copd: float = field(metadata=PROB)
    personal_cancer_history: float = field(metadata=PROB)
    family_history: float = field(metadata=PROB)

    def check(self, path: str) -> None:
        for r, p in self.race.items():
            if r not in RACES:
                fail(f"{path}.race.{r}", f"unknown race/ethnicity (known: {', '.join(RACES)})")
            if not 0 <= p:
                fail(f"{path}.race.{r}", f"{p} is negative")
        if sum(self.race.values()) <= 0:
            fail(f"{path}.race", "shares sum to zero")
        if len(self.education) != 6 or min(self.education) < 0 or sum(self.education) <= 0:
            fail(f"{path}.education", "needs six non-negative shares (PLCOm2012 levels 1-6)")


@dataclass(frozen=True)
class Eligibility:
    rule: str = field(metadata={"choices": ("plcom2012", "uspstf2021", "nlst")})
    plcom2012_threshold: float = field(default=0.0151, metadata=PROB)


@dataclass(frozen=True)
class Cohort:
    size: int = field(metadata={"ge": 1, "le": 50_000_000})
    population: Population
    eligibility: Eligibility


# ---------------------------------------------------------------- disease
@dataclass(frozen=True)
class Histology:
    share: float = field(metadata={"ge": 0})
    vdt_median_days: float = field(metadata={"gt": 0, "le": 10_000})
    vdt_sigma: float = field(metadata={"ge": 0, "le": 3})
    indolent_fraction: float = field(metadata=PROB)
    spread_scale: float = field(metadata={"gt": 0, "le": 10})
    type_mix: tuple[float, float, float]  # solid, part_solid, ground_glass
    spiculated: float = field(metadata=PROB)


@dataclass(frozen=True)
class BenignNodules:
    mean_count_at_start: float = field(metadata={"ge": 0, "le": 20})
    new_per_year: float = field(metadata={"ge": 0, "le": 10})
    size_median_mm: float = field(metadata={"gt": 0, "le": 30})
    size_sigma: float = field(metadata={"ge": 0, "le": 2})
    type_mix: tuple[float, float, float]
    resolving_fraction: float = field(metadata=PROB)
    resolve_median_days: float = field(metadata={"gt": 0})
    growing_fraction: float = field(metadata=PROB)
    growing_vdt_median_days: float = field(metadata={"gt": 0})


@dataclass(frozen=True)
class Disease:
    incidence_multiplier: float = field(metadata={"gt": 0, "le": 50})
    preclinical_window_years: float = field(metadata={"gt": 0, "le": 40})
    onset_diameter_mm: float = field(metadata={"gt": 0, "le": 5})
    indolent_vdt_median_days: float = field(metadata={"gt": 0})
    clinical_hazard_per_year_at_20mm: float = field(metadata={"gt": 0, "le": 100})
    clinical_hazard_size_exponent: float = field(metadata={"ge": 0, "le": 10})
    metastatic_symptom_hazard_per_year: float = field(metadata={"ge": 0, "le": 100})
    nodal_median_mm: float = field(metadata={"gt": 0})
    nodal_sigma: float = field(metadata={"ge": 0, "le": 3})
    n2_over_n1: float = field(metadata={"ge": 1})
    distant_median_mm: float = field(metadata={"gt": 0})
    distant_sigma: float = field(metadata={"ge": 0, "le": 3})
    histology: dict[str, Histology]
    benign: BenignNodules
    survival_5y: dict[str, float]
    median_survival_years_uncured: dict[str, float]
    other_cause_gompertz_a: float = field(metadata={"gt": 0})
    other_cause_gompertz_b: float = field(metadata={"gt": 0, "le": 1})
    other_cause_smoker_hr: float = field(metadata={"gt": 0, "le": 20})

    def check(self, path: str) -> None:
        for h in self.histology:
            if h not in HISTOLOGIES:
                fail(
                    f"{path}.histology.{h}", f"unknown histology (known: {', '.join(HISTOLOGIES)})"
                )
        for name in ("survival_5y", "median_survival_years_uncured"):
            table = getattr(self, name)
            if set(table) != set(STAGES):
                fail(f"{path}.{name}", f"needs exactly the stages {', '.join(STAGES)}")
        for s, v in self.survival_5y.items():
            if not 0 <= v <= 1:
                fail(f"{path}.survival_5y.{s}", f"{v} is not a probability")


# ---------------------------------------------------------------- sites
@dataclass(frozen=True)
class Scanner:
    model: str
    dose_mgy: float = field(metadata={"gt": 0, "le": 50})
    noise_hu_at_1mgy: float = field(metadata={"gt": 0, "le": 500})
    kernel_fwhm_mm: float = field(metadata={"gt": 0, "le": 5})
    slice_mm: float = field(metadata={"gt": 0, "le": 10})
    hu_offset: float = field(default=0.0, metadata={"ge": -200, "le": 200})


@dataclass(frozen=True)
class Site:
    name: str
    share: float = field(metadata={"ge": 0})
    scanner: Scanner
    scanners: int = field(metadata={"ge": 1, "le": 100})
    exams_per_scanner_day: int = field(metadata={"ge": 1, "le": 500})
    readers: dict[str, int]
    reading_hours_per_day: float = field(metadata={"gt": 0, "le": 24})
    workup_slots_per_day: int = field(metadata={"ge": 1, "le": 1000})
    workup_days_to_result: float = field(metadata={"ge": 0, "le": 365})

    def check(self, path: str) -> None:
        if not self.readers or sum(self.readers.values()) < 1:
            fail(f"{path}.readers", "a site needs at least one radiologist")


# ---------------------------------------------------------------- programme
@dataclass(frozen=True)
class Programme:
    rounds: int = field(metadata={"ge": 1, "le": 30})
    interval_years: float = field(metadata={"gt": 0, "le": 10})
    protocol: str = field(metadata={"choices": ("lung_rads_v2022", "nlst")})
    nlst_threshold_mm: float = field(default=4.0, metadata={"gt": 0, "le": 30})
    stable_exempt_years: float = field(default=2.0, metadata={"ge": 0, "le": 10})
    attendance: float = field(default=0.95, metadata=PROB)
    followup_adherence: float = field(default=0.9, metadata=PROB)
    benign_biopsy_given_workup: float = field(default=0.25, metadata=PROB)
    interval_cancer_window_years: float = field(default=1.0, metadata={"gt": 0, "le": 5})
    follow_up_years_after_last_round: float = field(default=4.5, metadata={"ge": 0, "le": 30})
    schedule_spread_days: float = field(default=300.0, metadata={"ge": 0, "le": 3650})


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    cohort: Cohort
    disease: Disease
    sites: tuple[Site, ...]
    programme: Programme
    calibration: dict[str, Any] = field(default_factory=dict)

    def check(self, path: str) -> None:
        if not self.sites:
            fail(f"{path}sites", "a scenario needs at least one site")
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            fail(f"{path}sites", f"site names repeat: {names}")
        if sum(s.share for s in self.sites) <= 0:
            fail(f"{path}sites", "site shares sum to zero")


# ---------------------------------------------------------------- policy, runtime, run
@dataclass(frozen=True)
class OperatingPoint:
    """Where an AI score becomes a positive call.

    ``absolute``: score >= ``value``. ``percentile``: the ``value`` quantile (0-1) of the device's
    reference (validation) score distribution. ``target_sensitivity``: the highest threshold
    reaching ``target_sensitivity`` on the device's validation set.
    """

    mode: str = field(
        default="absolute", metadata={"choices": ("absolute", "percentile", "target_sensitivity")}
    )
    value: float = field(default=0.5, metadata=PROB)
    target_sensitivity: float = field(default=0.9, metadata={"gt": 0.0, "le": 1.0})


AI_ROLES = ("second_reader", "triage", "rule_out", "concurrent", "safety_net")


@dataclass(frozen=True)
class Policy:
    name: str
    role: str = field(metadata={"choices": ("none", *AI_ROLES)})
    reading: str = field(metadata={"choices": ("single", "double")})
    discordance: str = field(
        default="arbitration", metadata={"choices": ("arbitration", "consensus")}
    )
    description: str = ""
    threshold: OperatingPoint = field(default_factory=OperatingPoint)
    audit_fraction: float = field(default=0.0, metadata=PROB)
    concurrent_gain: float = field(default=0.5, metadata={"ge": 0.0, "le": 5.0})
    automation_bias: float = field(default=0.4, metadata={"ge": 0.0, "lt": 1.0})


@dataclass(frozen=True)
class Runtime:
    out_dir: str = "runs"
    run_name: str = ""
    site_block_size: int = field(default=0, metadata={"ge": 0})
    progress: bool = True
    write_events: bool = True
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    ai_batch_size: int = field(default=256, metadata={"ge": 1, "le": 65536})
    score_cache: str = "runs/.score_cache"

    def check(self, path: str) -> None:
        name = self.run_name
        if name and (name in (".", "..") or "/" in name or "\\" in name):
            fail(f"{path}.run_name", f"{name!r} must be a plain folder name (no path separators)")


@dataclass(frozen=True)
class RunConfig:
    seed: int = field(metadata={"ge": 0, "lt": 2**63})
    scenario: Scenario
    policy: Policy
    runtime: Runtime
    agent: str = ""


SCENARIO_KEYS = ("cohort", "disease", "sites", "programme", "calibration", "description")


def run_config(data: Mapping[str, Any], scenario_name: str) -> RunConfig:
    """Validate a composed config mapping (scenario keys at top level) into a :class:`RunConfig`."""
    data = dict(data)
    if data.get("seed") is None:
        fail("seed", "is required (an integer); runs without a seed cannot be repeated")
    scenario = {k: data.pop(k) for k in SCENARIO_KEYS if k in data}
    scenario["name"] = scenario_name
    scenario.setdefault("description", "")
    scn = build(Scenario, scenario, "")
    rest = build(_Rest, data, "")
    return RunConfig(
        seed=rest.seed, scenario=scn, policy=rest.policy, runtime=rest.runtime, agent=rest.agent
    )


@dataclass(frozen=True)
class _Rest:
    seed: int = field(metadata={"ge": 0, "lt": 2**63})
    policy: Policy
    runtime: Runtime
    agent: str = ""

"""The lung programme's configuration: population, eligibility, disease, reporting keys.

Built by :func:`sandbox.config.run_config` for a scenario whose ``programme.name`` is
``lung_ldct``; errors name the dotted key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sandbox.config import PROB, ProgrammeConfig, Range
from sandbox.typed import fail

RACES = ("white", "black", "hispanic", "asian", "aian", "nhpi")
HISTOLOGIES = ("adenocarcinoma", "squamous", "small_cell", "other")
NODULE_TYPES = ("solid", "part_solid", "ground_glass")
STAGES = ("I", "II", "III", "IV")


def check_mix(mix: tuple[float, ...], path: str) -> None:
    """Shares: none negative, not all zero."""
    if min(mix) < 0 or sum(mix) <= 0:
        fail(path, f"{list(mix)} must be non-negative shares, not all zero")


# ---------------------------------------------------------------- cohort
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
    # candidates' shares by five-year age band from age.min (empty: ages uniform)
    age_band_shares: tuple[float, ...] = ()

    def check(self, path: str) -> None:
        if self.age_band_shares:
            bands = math.ceil((self.age.max - self.age.min + 1) / 5)
            if len(self.age_band_shares) != bands:
                fail(
                    f"{path}.age_band_shares",
                    f"needs {bands} shares, one per five-year band of {self.age.min:g}-{self.age.max:g}",
                )
            check_mix(self.age_band_shares, f"{path}.age_band_shares")
        for r, p in self.race.items():
            if r not in RACES:
                fail(f"{path}.race.{r}", f"unknown race/ethnicity (known: {', '.join(RACES)})")
            if not 0 <= p:
                fail(f"{path}.race.{r}", f"{p} is negative")
        if sum(self.race.values()) <= 0:
            fail(f"{path}.race", "shares sum to zero")
        if len(self.education) != 6 or min(self.education) < 0 or sum(self.education) <= 0:
            fail(f"{path}.education", "needs six non-negative shares (PLCOm2012 levels 1-6)")
        if not 18 <= self.age.min <= self.age.max <= 100:
            fail(f"{path}.age", f"{self.age.min}-{self.age.max} must lie within 18-100 years")


@dataclass(frozen=True)
class Eligibility:
    rule: str = field(metadata={"choices": ("plcom2012", "uspstf2021", "nlst")})
    plcom2012_threshold: float = field(default=0.0151, metadata=PROB)
    # candidates whose lung cancer would be diagnosed from symptoms within this many days of
    # entry already have the symptoms at enrolment, and are not enrolled (0: only those
    # diagnosed before entry are left out)
    symptom_free_days: float = field(default=0.0, metadata={"ge": 0, "le": 730})
    # beyond that window, early symptoms keep people away with a fading probability: one whose
    # cancer would surface t days after the window enrols with probability 1 - exp(-t / this)
    # (0: the window alone)
    symptom_free_tail_days: float = field(default=0.0, metadata={"ge": 0, "le": 3650})


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
    # share of tumours that arise centrally (main, lobar or segmental bronchi, near the hila)
    central_share: float = field(default=0.0, metadata=PROB)
    # the stage's cure probability is multiplied by this (small-cell: far worse at every stage)
    cure_scale: float = field(default=1.0, metadata={"gt": 0, "le": 1})

    def check(self, path: str) -> None:
        check_mix(self.type_mix, f"{path}.type_mix")


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

    def check(self, path: str) -> None:
        check_mix(self.type_mix, f"{path}.type_mix")


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
    # five-year survival of a stage I tumour by the diameter of its solid (invasive) component
    # at diagnosis: ``stage_I_survival_5y[k]`` up to ``stage_I_solid_mm[k]``, the last entry
    # above the last bound (the T descriptor: T1a, T1b, T1c, T2a); empty: ``survival_5y["I"]``
    stage_I_solid_mm: tuple[float, ...] = ()
    stage_I_survival_5y: tuple[float, ...] = ()
    # a sub-solid tumour whose solid component is at most this wide at diagnosis is
    # adenocarcinoma in situ or minimally invasive (Tis, T1mi) and is cured by resection
    # (0: none)
    minimally_invasive_mm: float = field(default=0.0, metadata={"ge": 0, "le": 10})
    # the conspicuity a central tumour keeps on CT (it abuts hilar vessels and bronchial walls,
    # soft tissue rather than aerated lung), and it lies behind the hila on a radiograph
    central_conspicuity: float = field(default=1.0, metadata={"gt": 0, "le": 1})
    # trial volunteers die of other causes less often than life tables predict
    other_cause_volunteer_hr: float = field(default=1.0, metadata={"gt": 0, "le": 2})
    # ... for this many years after entry (0: for life); the effect fades as the selection does
    other_cause_volunteer_years: float = field(default=0.0, metadata={"ge": 0, "le": 100})
    # women die of other causes less often than men of the same age (life tables)
    other_cause_female_hr: float = field(default=1.0, metadata={"gt": 0, "le": 2})
    # the share of a tumour's diameter that is solid, by nodule type (solid, part-solid,
    # ground-glass): symptoms and spread follow the solid (invasive) component, and so does
    # the T descriptor (IASLC 8th edition)
    solid_fraction: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # a person cured of a lung cancer dies of a second primary lung cancer at this rate per
    # year from five years after the first would have surfaced (the stage's five-year survival
    # holds the deaths before; 0: never)
    second_primary_death_per_year: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    # a third route to diagnosis without screening: imaging done for another reason (a chest
    # film or CT for a cough, a cardiac or abdominal CT, pre-operative films) shows the tumour
    # and work-up follows, at this rate per year once the solid component is at least
    # incidental_min_mm wide (0: symptoms only)
    incidental_hazard_per_year: float = field(default=0.0, metadata={"ge": 0, "le": 10})
    incidental_min_mm: float = field(default=10.0, metadata={"gt": 0, "le": 100})
    # nodule types (solid, part-solid, ground-glass) of indolent tumours (empty: the
    # histology's type_mix); slow-growing cancers are mostly sub-solid
    indolent_type_mix: tuple[float, ...] = ()
    # the onset hazard rises with age at these rates per year (log scale; current and former
    # smokers; 0: constant) up to onset_peak_age, flat after; its mean over the six years
    # after entry stays the risk model's
    onset_slope_current: float = field(default=0.0, metadata={"ge": 0, "le": 0.3})
    onset_slope_former: float = field(default=0.0, metadata={"ge": 0, "le": 0.3})
    onset_peak_age: float = field(default=200.0, metadata={"ge": 40, "le": 200})
    # sub-solid tumours (part-solid, ground-glass) may start this many years before entry
    # (0: preclinical_window_years): the atypical adenomatous hyperplasia to adenocarcinoma
    # in situ sequence lasts decades
    subsolid_window_years: float = field(default=0.0, metadata={"ge": 0, "le": 60})
    # volume doubling times of sub-solid tumours that are not indolent (part-solid,
    # ground-glass; log-normal medians and sigma; empty: the histology's): a tumour that looks
    # sub-solid grows slowly whatever its histology (Hasegawa et al., Br J Radiol 2000)
    subsolid_vdt_median_days: tuple[float, ...] = ()
    subsolid_vdt_sigma: float = field(default=0.5, metadata={"gt": 0, "le": 2})

    def check(self, path: str) -> None:
        if not all(0 < f <= 1 for f in self.solid_fraction):
            fail(f"{path}.solid_fraction", "needs three fractions in (0, 1]")
        if self.indolent_type_mix:
            if len(self.indolent_type_mix) != 3:
                fail(f"{path}.indolent_type_mix", "needs three shares (solid, part-solid, GGN)")
            check_mix(self.indolent_type_mix, f"{path}.indolent_type_mix")
        if self.subsolid_vdt_median_days and (
            len(self.subsolid_vdt_median_days) != 2
            or not all(20 <= v <= 20000 for v in self.subsolid_vdt_median_days)
        ):
            fail(
                f"{path}.subsolid_vdt_median_days",
                "needs two doubling times in days, 20-20000 (part-solid, ground-glass)",
            )
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
        bounds, surv = self.stage_I_solid_mm, self.stage_I_survival_5y
        if bounds or surv:
            if len(surv) != len(bounds) + 1:
                fail(
                    f"{path}.stage_I_survival_5y",
                    f"needs one value more than stage_I_solid_mm ({len(bounds) + 1}), got {len(surv)}",
                )
            if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)) or any(
                b <= 0 for b in bounds
            ):
                fail(f"{path}.stage_I_solid_mm", "needs increasing positive diameters (mm)")
            if not all(0 <= v <= 1 for v in surv):
                fail(f"{path}.stage_I_survival_5y", "needs probabilities")
        for s, v in self.median_survival_years_uncured.items():
            if not 0 < v <= 50:
                fail(
                    f"{path}.median_survival_years_uncured.{s}",
                    f"{v} must be a positive number of years (at most 50)",
                )
        if sum(h.share for h in self.histology.values()) <= 0:
            fail(f"{path}.histology", "shares sum to zero")


# ---------------------------------------------------------------- programme
@dataclass(frozen=True)
class Radiograph:
    """How a chest radiograph shows nodules and what readers call on it
    (:mod:`sandbox.programmes.lung_ldct.imaging.radiograph`; sources in docs/workflow.md).

    ``reference_mm``: the diameter of an unobscured solid nodule that the reference thoracic
    radiologist finds half the time; ``obscured_share``: the share of the lung field behind ribs,
    clavicles, heart, hila, mediastinum or diaphragm; ``obscured_factor``: the conspicuity a nodule
    keeps there; ``spurious_ratio``: a reader's rate of spurious findings on a radiograph (nipple
    shadows, bone islands, vessels end-on) relative to their rate on CT, called afresh at every
    read; ``mimic_share``: the share of people whose radiograph shows a persistent nodule mimic
    (nipple shadow, bone island, healed rib fracture, costochondral calcification), the same at
    every exam; ``mimic_conspicuity``: its conspicuity (the reference radiologist's
    ``detection_c50`` is 14: a mimic of 14 is called half the time on a read without prior
    films). ``nodal_conspicuity``: the least conspicuity of a tumour once it has mediastinal
    (N2) or distant spread (a widened mediastinum, a mediastinal or hilar mass, an effusion),
    whatever the primary's own size or place; 0 leaves only the primary visible. ``ct_workup_mm``: a
    positive radiograph is worked up by a diagnostic CT that shows every nodule of at least
    this diameter (0: the work-up sees only what the film showed). ``biopsy_min_mm``: a
    positive radiograph's work-up that finds no cancer ends in an invasive procedure only if
    the chest CT shows a benign nodule of at least this diameter to sample (a mimic or a
    reader's spurious finding is not on the CT). A reported finding
    unchanged since an earlier report or image is not positive: readers compare with the prior
    films (``LungProgrammeConfig.look_back_boost``).
    """

    reference_mm: float = field(default=15.0, metadata={"gt": 0, "le": 100})
    obscured_share: float = field(default=0.35, metadata=PROB)
    obscured_factor: float = field(default=0.4, metadata=PROB)
    spurious_ratio: float = field(default=1.0, metadata={"ge": 0, "le": 50})
    mimic_share: float = field(default=0.0, metadata=PROB)
    mimic_conspicuity: float = field(default=14.0, metadata={"gt": 0, "le": 1000})
    nodal_conspicuity: float = field(default=0.0, metadata={"ge": 0, "le": 1000})
    ct_workup_mm: float = field(default=0.0, metadata={"ge": 0, "le": 30})
    biopsy_min_mm: float = field(default=8.0, metadata={"ge": 0, "le": 100})
    density: tuple[float, float, float] = (1.0, 0.5, 0.15)

    def check(self, path: str) -> None:
        if not all(0 <= f <= 1 for f in self.density):
            fail(
                f"{path}.density", "needs three factors in [0, 1] (solid, part-solid, ground-glass)"
            )


@dataclass(frozen=True, kw_only=True)
class LungProgrammeConfig(ProgrammeConfig):
    """The schedule plus the lung reporting keys.

    ``protocol``: ``lung_rads_v2022`` or ``nlst`` (the reporting schemes of
    :mod:`sandbox.programmes.lung_ldct.lung_rads`).
    """

    protocol: str = field(metadata={"choices": ("lung_rads_v2022", "nlst")})
    nlst_threshold_mm: float = field(default=4.0, metadata={"gt": 0, "le": 30})
    stable_exempt_years: float = field(default=2.0, metadata={"ge": 0, "le": 10})
    # NLST rule: a sub-solid nodule of at least this size seen again (persistent) is worked up
    # (0: never; Lung-RADS has its own rules)
    subsolid_workup_mm: float = field(default=0.0, metadata={"ge": 0, "le": 100})
    # ... once it has been seen for this long (0: at the first exam that sees it again)
    subsolid_workup_years: float = field(default=0.0, metadata={"ge": 0, "le": 10})
    # a work-up that finds no cancer goes on to an invasive procedure (needle biopsy,
    # bronchoscopy or surgery) with this probability (after a radiograph, only if its
    # diagnostic CT shows something to sample: Radiograph.biopsy_min_mm)
    benign_biopsy_given_workup: float = field(default=0.25, metadata=PROB)
    # ... and that procedure is a surgical resection (wedge, segment or lobe) with this one
    benign_resection_given_biopsy: float = field(default=0.35, metadata=PROB)
    # comparison with earlier images: a finding no earlier report mentioned is looked for on the
    # person's earlier images with its conspicuity there times this (the reader knows where to
    # look: 2 is the consensus review's second look at a marked location), and, found, is not
    # new (reading.read_exam). 0 compares with the earlier reports alone.
    look_back_boost: float = field(default=0.0, metadata={"ge": 0, "le": 100})
    # a reader with earlier images of the person to compare calls spurious findings (a vessel,
    # a scar, an overlapping shadow) at this fraction of the rate without: what is unchanged
    # since the last exam is no longer a candidate (1: no difference)
    spurious_with_earlier: float = field(default=1.0, metadata={"gt": 0, "le": 1})
    radiograph: Radiograph = field(default_factory=Radiograph)

"""The breast programme's population and disease keys, with their sources.

Every default below is a published figure or is chosen to reproduce one (named beside it); the
incidence rates are where the model is calibrated (``sandbox validate masai``), so they are
starting values from the Nordic registries, not fitted ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sandbox.config import PROB, ProgrammeConfig, Range
from sandbox.typed import fail

DENSITIES = ("a", "b", "c", "d")  # BI-RADS 5th edition breast composition
STAGES = ("0", "I", "II", "III", "IV")  # 0: ductal carcinoma in situ
AGE_GROUPS = (40, 50, 60, 70)  # density shares are given for 40-49, 50-59, 60-69, 70+
BENIGN_KINDS = ("cyst", "fibroadenoma", "calcifications")


def _shares(values: tuple[float, ...], n: int, path: str) -> None:
    if len(values) != n or min(values) < 0 or sum(values) <= 0:
        fail(path, f"needs {n} non-negative shares, not all zero (got {list(values)})")


@dataclass(frozen=True)
class Women:
    """The invited women.

    ``density_by_age``: BI-RADS a-d shares for ages 40-49, 50-59, 60-69 and 70+, after the
    Breast Cancer Surveillance Consortium (Sprague et al., JNCI 2014: dense breasts, c or d, in
    43% of US women 40-74, most common at 40-49 and least at 70-74); these shares give 45% at
    40-74 with an even age spread. ``family_history``: a first-degree relative with breast
    cancer (about one woman in eight; Collaborative Group on Hormonal Factors, Lancet 2001).
    ``prior_biopsy``: a benign breast biopsy before (BCSC risk-factor prevalence, Tice et al.,
    Ann Intern Med 2008). ``hormone_therapy``: current menopausal hormone therapy at 50+
    (Swedish prescription register, about 8% of women 50-69 in the 2010s).
    """

    age: Range = field(default_factory=lambda: Range(40.0, 74.0))
    density_by_age: tuple[tuple[float, ...], ...] = (
        (0.05, 0.35, 0.46, 0.14),
        (0.09, 0.44, 0.39, 0.08),
        (0.12, 0.50, 0.33, 0.05),
        (0.14, 0.52, 0.30, 0.04),
    )
    family_history: float = field(default=0.12, metadata=PROB)
    prior_biopsy: float = field(default=0.12, metadata=PROB)
    hormone_therapy: float = field(default=0.08, metadata=PROB)

    def check(self, path: str) -> None:
        if not 18 <= self.age.min <= self.age.max <= 100:
            fail(f"{path}.age", f"{self.age.min}-{self.age.max} must lie within 18-100 years")
        if len(self.density_by_age) != len(AGE_GROUPS):
            fail(f"{path}.density_by_age", "needs four rows: ages 40-49, 50-59, 60-69, 70+")
        for i, row in enumerate(self.density_by_age):
            _shares(tuple(row), len(DENSITIES), f"{path}.density_by_age[{i}]")


@dataclass(frozen=True)
class RelativeRisks:
    """Relative risks of breast cancer, each against women without the factor (density: against
    b, scattered fibroglandular). Density: BCSC (Tice et al. 2008; Kerlikowske et al., JCO
    2017: about 0.6 for a, 1.3-1.5 for c and 1.8-2.1 for d). Family history: 1.80 for one
    affected first-degree relative (Collaborative Group, Lancet 2001). Benign biopsy: about
    1.5 (Tice et al. 2008). Current hormone therapy: about 1.3 averaged over preparations
    (Collaborative Group on Hormonal Factors, Lancet 2019)."""

    density: tuple[float, ...] = (0.6, 1.0, 1.4, 1.9)
    family_history: float = field(default=1.8, metadata={"ge": 0.1, "le": 20})
    prior_biopsy: float = field(default=1.5, metadata={"ge": 0.1, "le": 20})
    hormone_therapy: float = field(default=1.3, metadata={"ge": 0.1, "le": 20})

    def check(self, path: str) -> None:
        if len(self.density) != len(DENSITIES) or min(self.density) <= 0:
            fail(f"{path}.density", "needs four positive relative risks, for densities a-d")


@dataclass(frozen=True)
class Invasive:
    """Invasive cancer: how often it surfaces without screening, how it grows, how it spreads.

    ``clinical_incidence_per_100k``: clinical (symptomatic) incidence per 100,000 woman-years
    without screening, by five-year age from 40 (40-44, ..., 80-84): the Nordic rates before
    mammography screening (NORDCAN, Sweden, late 1980s: 110, 170, 190, 210, 240, 260, 270, 280
    and 280) times 1.25, the one factor fitted to the MASAI control arm's cancer detection and
    interval-cancer rates (docs/breast.md; incidence has risen since, with hormone therapy,
    later first births and fewer children). ``clinical_diameter_mm_median`` / ``_sigma``: the size at which a cancer is found
    from symptoms, log-normal (median about 20 mm: Michaelson et al., Radiology 2003;
    Weedon-Fekjaer et al., Breast Cancer Res 2008). ``doubling_days_median`` / ``_sigma``:
    volume doubling time, log-normal; Weedon-Fekjaer et al. 2008 estimated 1.7 years on
    average for a tumour to grow from 10 to 20 mm (three doublings: about 210 days each) with
    wide variation, and faster growth in younger women (``doubling_per_decade``: the
    multiplier per ten years of age at onset from 60). ``node_diameter_mm_*``: the diameter at
    which a tumour has spread to the axillary nodes, log-normal (median 30 mm, sigma 1.1: node
    positive in about 16% of 10 mm, 36% of 20 mm and 68% of 50 mm tumours, as in the Swedish
    and US series Michaelson et al. summarise); ``extensive_nodes_factor``: four or more nodes
    (N2, stage III at any size) once it has grown to this multiple of its node diameter (chosen
    so that about one symptomatic cancer in eight is stage III, as before screening);
    ``distant_diameter_mm_*`` likewise for distant metastasis (about 5% at 20 mm). ``calcification_share``: invasive cancers with
    mammographic microcalcifications (about 30%). ``onset_diameter_mm``: the diameter at which
    a cancer's history starts."""

    clinical_incidence_per_100k: tuple[float, ...] = (
        138.0,
        212.0,
        238.0,
        262.0,
        300.0,
        325.0,
        338.0,
        350.0,
        350.0,
    )
    clinical_diameter_mm_median: float = field(default=20.0, metadata={"gt": 1, "le": 100})
    clinical_diameter_mm_sigma: float = field(default=0.45, metadata={"ge": 0, "le": 3})
    doubling_days_median: float = field(default=150.0, metadata={"gt": 5, "le": 5000})
    doubling_days_sigma: float = field(default=0.8, metadata={"ge": 0, "le": 3})
    doubling_per_decade: float = field(default=1.15, metadata={"gt": 0.2, "le": 5})
    node_diameter_mm_median: float = field(default=30.0, metadata={"gt": 0, "le": 500})
    node_diameter_mm_sigma: float = field(default=1.1, metadata={"ge": 0, "le": 5})
    extensive_nodes_factor: float = field(default=2.5, metadata={"ge": 1, "le": 100})
    distant_diameter_mm_median: float = field(default=150.0, metadata={"gt": 0, "le": 5000})
    distant_diameter_mm_sigma: float = field(default=1.2, metadata={"ge": 0, "le": 5})
    calcification_share: float = field(default=0.3, metadata=PROB)
    onset_diameter_mm: float = field(default=1.0, metadata={"gt": 0, "le": 10})

    def check(self, path: str) -> None:
        if not self.clinical_incidence_per_100k or min(self.clinical_incidence_per_100k) < 0:
            fail(f"{path}.clinical_incidence_per_100k", "needs non-negative rates by five-year age")
        if self.onset_diameter_mm >= self.clinical_diameter_mm_median:
            fail(f"{path}.onset_diameter_mm", "must lie below the clinical diameter")


@dataclass(frozen=True)
class Dcis:
    """Ductal carcinoma in situ that does not progress: seen on a mammogram by its
    calcifications, rarely from symptoms; what screening finds of it is overdiagnosis.
    ``incidence_per_100k`` (onset per 100,000 woman-years by five-year age from 40), and how
    long it stays visible (``visible_years_*``, log-normal), give prevalences that make DCIS
    about a fifth of screen-detected cancers in biennial Nordic screening (Swedish national
    quality register: 15-20%); calibrated with the invasive rates. ``extent_mm_*``: the extent
    of its calcifications (log-normal, median about 15 mm)."""

    incidence_per_100k: tuple[float, ...] = (30.0, 45.0, 55.0, 60.0, 60.0, 55.0, 50.0, 45.0, 40.0)
    visible_years_median: float = field(default=4.0, metadata={"gt": 0, "le": 60})
    visible_years_sigma: float = field(default=0.6, metadata={"ge": 0, "le": 3})
    extent_mm_median: float = field(default=15.0, metadata={"gt": 0, "le": 200})
    extent_mm_sigma: float = field(default=0.5, metadata={"ge": 0, "le": 3})

    def check(self, path: str) -> None:
        if not self.incidence_per_100k or min(self.incidence_per_100k) < 0:
            fail(f"{path}.incidence_per_100k", "needs non-negative rates by five-year age")


@dataclass(frozen=True)
class Benign:
    """Benign findings a mammogram shows and readers may recall: cysts, fibroadenomas and
    clusters of benign calcifications (BENIGN_KINDS). Per kind: the mean number present at the
    first invitation by age group (40-49, 50-59, 60-69, 70+) and new ones per year, scaled by
    breast density (``density_multiplier``, a-d) and, for cysts, by current hormone therapy;
    their size (log-normal); and, for cysts, how long they last.

    Cysts are the commonest breast mass from 35 to 50 and regress after the menopause unless
    hormones sustain them (Hughes, Mansel and Webster's ANDI classification, Lancet 1987;
    ultrasound finds simple cysts in about a third of women 35-50, Berg et al., Radiology
    2010); fibroadenomas are found in about 2-3% of women and rarely change after 40
    (Greenberg et al., Breast Cancer Res Treat 1998); benign calcification clusters are common
    and stable. The counts are what a mammogram shows (many ultrasound cysts are not seen) and
    are calibrated with the readers' false-positive recalls."""

    at_entry: tuple[tuple[float, ...], ...] = (
        (0.12, 0.08, 0.03, 0.02),  # cysts
        (0.03, 0.03, 0.02, 0.02),  # fibroadenomas
        (0.04, 0.05, 0.06, 0.06),  # benign calcification clusters
    )
    new_per_year: tuple[tuple[float, ...], ...] = (
        (0.05, 0.03, 0.01, 0.005),
        (0.003, 0.002, 0.001, 0.001),
        (0.01, 0.012, 0.014, 0.014),
    )
    density_multiplier: tuple[float, ...] = (0.5, 0.8, 1.2, 1.5)
    hormone_therapy_cysts: float = field(default=2.0, metadata={"ge": 0, "le": 20})
    size_mm_median: tuple[float, ...] = (12.0, 15.0, 8.0)
    size_mm_sigma: tuple[float, ...] = (0.5, 0.4, 0.5)
    cyst_years_median: float = field(default=1.5, metadata={"gt": 0, "le": 50})

    def check(self, path: str) -> None:
        for name in ("at_entry", "new_per_year"):
            rows = getattr(self, name)
            if len(rows) != len(BENIGN_KINDS) or any(
                len(r) != len(AGE_GROUPS) or min(r) < 0 for r in rows
            ):
                fail(
                    f"{path}.{name}",
                    "needs three rows (cysts, fibroadenomas, calcifications) of four non-negative means (ages 40-49, 50-59, 60-69, 70+)",
                )
        if len(self.density_multiplier) != len(DENSITIES) or min(self.density_multiplier) < 0:
            fail(
                f"{path}.density_multiplier",
                "needs four non-negative multipliers, for densities a-d",
            )
        for name in ("size_mm_median", "size_mm_sigma"):
            v = getattr(self, name)
            if len(v) != len(BENIGN_KINDS) or min(v) < 0:
                fail(
                    f"{path}.{name}",
                    "needs three non-negative values: cysts, fibroadenomas, calcifications",
                )


@dataclass(frozen=True)
class Survival:
    """Death from breast cancer by stage at diagnosis: a cured share, and for the others an
    exponential time to death from diagnosis. ``lethal_share`` for stages I-IV and
    ``median_years_to_death`` are set to give the five-year relative survival of the Nordic and
    US registries: about 99% for stage I, 93% for II, 75% for III and 25-30% for IV (SEER;
    NORDCAN), with most deaths of stage I-II after five years. DCIS (stage 0) is not lethal.
    ``other_death_gompertz``: other-cause mortality of Swedish women, hazard ``a exp(b age)``
    per year (a Gompertz fit to the Statistics Sweden life table, women, 2019: about 0.0045 a
    year at 60 and 0.011 at 70)."""

    lethal_share: tuple[float, ...] = (0.06, 0.18, 0.45, 0.92)
    median_years_to_death: tuple[float, ...] = (9.0, 7.0, 4.5, 2.2)
    other_death_gompertz: tuple[float, float] = (2.17e-5, 0.089)

    def check(self, path: str) -> None:
        for name in ("lethal_share", "median_years_to_death"):
            v = getattr(self, name)
            if len(v) != 4 or min(v) < 0:
                fail(f"{path}.{name}", "needs four non-negative values, for stages I-IV")
        if max(self.lethal_share) > 1:
            fail(f"{path}.lethal_share", "shares must not exceed 1")
        a, b = self.other_death_gompertz
        if not (a > 0 and 0 < b < 1 and math.isfinite(a)):
            fail(f"{path}.other_death_gompertz", f"({a}, {b}): needs a > 0 and 0 < b < 1")


@dataclass(frozen=True)
class Morphology:
    """How findings look, for the rendered image: a mass's margin (shares of circumscribed,
    indistinct and spiculated) and whether calcifications are pleomorphic (varying specks along
    a duct) or round and alike. Cancers: about 45% of masses spiculated, 35% indistinct or
    microlobulated, 20% circumscribed (BI-RADS lexicon series: Liberman et al., AJR 1998, who give
    positive predictive values of 81% for spiculated and about 5% for circumscribed margins);
    DCIS calcifications mostly fine pleomorphic or linear; cysts and fibroadenomas mostly
    circumscribed; benign calcifications mostly round or punctate, some amorphous.

    A mass's shape (BI-RADS Atlas, 5th ed., D'Orsi et al., ACR 2013: round, oval or irregular):
    round-to-oval unless irregular. A spiculated mass is irregular; a circumscribed one never is
    (its outline is the smooth border that defines it); an indistinct mass is irregular with
    ``indistinct_irregular`` (invasive cancer, cyst, fibroadenoma). Irregular shape and an
    indistinct or spiculated margin are the mass descriptors with the highest malignancy
    (Liberman et al., AJR 1998); cysts are round or oval, and a minority of fibroadenomas are
    lobulated (assumed shares: 0.8, 0, 0.3)."""

    invasive_margin: tuple[float, ...] = (0.2, 0.35, 0.45)
    cyst_margin: tuple[float, ...] = (0.9, 0.1, 0.0)
    fibroadenoma_margin: tuple[float, ...] = (0.8, 0.2, 0.0)
    indistinct_irregular: tuple[float, ...] = (0.8, 0.0, 0.3)
    dcis_pleomorphic: float = field(default=0.8, metadata=PROB)
    benign_calcifications_pleomorphic: float = field(default=0.15, metadata=PROB)

    def check(self, path: str) -> None:
        for name in ("invasive_margin", "cyst_margin", "fibroadenoma_margin"):
            _shares(tuple(getattr(self, name)), 3, f"{path}.{name}")
        v = tuple(self.indistinct_irregular)
        if len(v) != 3 or not all(0.0 <= x <= 1.0 for x in v):
            fail(
                f"{path}.indistinct_irregular",
                f"{list(v)}: needs three probabilities (invasive, cyst, fibroadenoma)",
            )


@dataclass(frozen=True)
class BreastDisease:
    """The breast programme's disease keys. ``incidence_multiplier`` scales the invasive
    clinical incidence (``invasive.clinical_incidence_per_100k``, which holds the fitted factor
    1.25 already): the free incidence parameter of a calibration (``sandbox calibrate
    masai_control``) and of the natural-history sets that ``sandbox psa`` draws from it."""

    incidence_multiplier: float = field(default=1.0, metadata={"gt": 0, "le": 20})

    risks: RelativeRisks = field(default_factory=RelativeRisks)
    invasive: Invasive = field(default_factory=Invasive)
    dcis: Dcis = field(default_factory=Dcis)
    benign: Benign = field(default_factory=Benign)
    survival: Survival = field(default_factory=Survival)
    morphology: Morphology = field(default_factory=Morphology)


@dataclass(frozen=True)
class BreastCohortConfig:
    """The breast programme's ``cohort`` keys: how many women, and who they are."""

    size: int = field(metadata={"ge": 1, "le": 50_000_000})
    women: Women = field(default_factory=Women)


@dataclass(frozen=True)
class Reading:
    """How screen readers see and judge what a mammogram shows (the reader's own skill, its
    spread and reading speed are the reader profile's: ``agents/readers/breast_*.yaml``).

    A finding's conspicuity is its detectability index d' (:mod:`.visibility`) times the human
    observer's efficiency for its kind: ``mass_efficiency`` for masses, ``calcification_efficiency``
    for clusters of calcifications. Human efficiency relative to the ideal observer differs by
    task (about 0.1-0.5 in signal-known-exactly tasks, higher for large signals; Burgess, JOSA A
    1999): a cluster's ideal d' sums over sparse specks a reader must first find, so it is read
    at half the efficiency of a mass. Both are set, not fitted: with them DCIS is 13-18% of
    screen-detected cancers in the default runs (Swedish register: 15-20%).

    A detected finding is recalled with the probability its kind is judged suspicious: an
    invasive cancer (``recall_invasive``: the share of seen cancers that readers call,
    missed-cancer reviews find about a quarter of interval cancers were visible but judged
    benign, Hofvind et al., Radiology 2005), DCIS calcifications (``recall_dcis``), a cyst or
    fibroadenoma seen for the first time (``recall_benign_mass``), benign calcifications
    (``recall_benign_calcifications``). With an earlier mammogram showing the same benign
    finding, it is stable and recalled ``stable_benign_factor`` times as often. Spurious calls
    (summation of overlapping tissue, asymmetries) come at the reader's own rate, times
    ``first_screen_spurious_factor`` on a woman's first screen in the programme (no earlier
    mammogram to compare: first-round recall is about twice that of later rounds in European
    programmes; Hofvind et al., Eur J Cancer 2014). In consensus discussion a spurious call
    survives with probability ``consensus_keep_spurious``.
    """

    mass_efficiency: float = field(default=1.0, metadata={"gt": 0, "le": 100})
    calcification_efficiency: float = field(default=0.5, metadata={"gt": 0, "le": 100})
    recall_invasive: float = field(default=0.9, metadata=PROB)
    recall_dcis: float = field(default=0.85, metadata=PROB)
    recall_benign_mass: float = field(default=0.25, metadata=PROB)
    recall_benign_calcifications: float = field(default=0.1, metadata=PROB)
    stable_benign_factor: float = field(default=0.2, metadata=PROB)
    first_screen_spurious_factor: float = field(default=1.8, metadata={"ge": 0, "le": 10})
    consensus_keep_spurious: float = field(default=0.4, metadata=PROB)


@dataclass(frozen=True)
class Assessment:
    """Recall to assessment: diagnostic mammography, ultrasound and, where a finding stays
    suspicious, needle biopsy. A recalled cancer is diagnosed when the assessment examines it
    (``finds_recalled_cancer``: almost always; the rest are false-negative assessments); a
    recall without cancer ends in a benign needle biopsy with probability ``benign_biopsy``
    (about a third of false-positive recalls in Swedish and Norwegian programmes; Hofvind et
    al., Eur J Cancer 2014) and in surgery with probability ``benign_surgery`` of those."""

    finds_recalled_cancer: float = field(default=0.97, metadata=PROB)
    benign_biopsy: float = field(default=0.35, metadata=PROB)
    benign_surgery: float = field(default=0.03, metadata=PROB)


@dataclass(frozen=True)
class PreviousScreen:
    """Women already in a screening programme before the simulation starts: a share ``share``
    had a screen ``years_before`` their first simulated one (MASAI's women were invited by a
    programme running since the 1990s: its first-time attenders are mostly women turning 40, about
    one in ten of those 40-80). That screen was read by ``readers`` independent readers with
    detection ``c50`` and ``slope`` (the typical ``breast_radiologist``); a cancer or DCIS it
    found was treated then, so the woman enters without it (the earlier screen depleted the
    preclinical pool: a later round finds fewer cancers than a first one), and the findings it
    showed are on her earlier mammogram for the readers to compare."""

    share: float = field(default=0.9, metadata=PROB)
    years_before: float = field(default=2.0, metadata={"gt": 0, "le": 10})
    readers: int = field(default=2, metadata={"ge": 1, "le": 2})
    c50: float = field(default=13.0, metadata={"gt": 0})
    slope: float = field(default=2.0, metadata={"gt": 0, "le": 20})


@dataclass(frozen=True, kw_only=True)
class BreastProgrammeConfig(ProgrammeConfig):
    """The breast programme's ``programme`` keys: the schedule (ProgrammeConfig), the reading
    scheme (``protocol``), reading and assessment. An interval cancer is one surfacing within
    ``interval_cancer_window_years`` of a negative screen (two years in Swedish reporting)."""

    protocol: str = field(metadata={"choices": ("bi_rads_screening",)})
    interval_cancer_window_years: float = field(default=2.0, metadata={"gt": 0, "le": 5})
    reading: Reading = field(default_factory=Reading)
    assessment: Assessment = field(default_factory=Assessment)
    previous_screen: PreviousScreen = field(default_factory=PreviousScreen)

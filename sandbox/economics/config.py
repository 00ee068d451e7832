"""The economics of a run: prices, utilities, discounting, horizon and perspective.

A preset is a file of the ``economics`` config group (``conf/economics/<name>.yaml``): chosen
with ``economics=us_payer`` on any run, or named to ``sandbox economics`` to re-price run
folders that exist. A preset prices one programme (``programme``: its stages, its cancer, its
exams); sources and price years are in docs/economics.md and in each preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sandbox.config import NAME, PROB
from sandbox.typed import build, fail

COST = {"ge": 0.0, "le": 1e7}
# what a preset prices when it does not say (every preset written before breast screening was
# priced is a lung one)
DEFAULT_PROGRAMME = "lung_ldct"


@dataclass(frozen=True)
class Costs:
    """Unit costs in the preset's currency and price year (docs/economics.md)."""

    # a screening exam by modality (ct, cxr, mammo): acquisition and the radiologist's
    # professional fee are separate: the fee is reading minutes times reader_per_minute
    screen: dict[str, float]
    reader_per_minute: float = field(metadata=COST)  # radiologist time
    ai_per_exam: float = field(metadata=COST)  # the AI device's fee, per exam it scores
    # diagnostic work-up of a finding (lung: PET-CT, consultation; breast: recall assessment)
    workup: float = field(metadata=COST)
    # a needle biopsy (or bronchoscopy) that finds no cancer; a benign surgical procedure is
    # priced as ``resection``
    benign_biopsy: float = field(metadata=COST)
    # treatment by phase of care: the first year after diagnosis, by stage (the programme's
    # stages); each later year (up to continuing_years); the last year of life
    initial_by_stage: dict[str, float]
    continuing_per_year: float = field(metadata=COST)
    continuing_years: float = field(metadata={"ge": 0, "le": 100})
    terminal_other: float = field(metadata=COST)  # last year of a person treated, other cause
    # last year of life, death from the programme's cancer (``terminal_lung_cancer`` before
    # breast screening was priced: still read, in price lists, PSA paths and run folders)
    terminal_cancer: float = field(metadata={**COST, "alias": "terminal_lung_cancer"})
    # an interval CT (3- or 6-month) of a positive screen; required where the programme orders
    # follow-up exams (lung: check_fits), left out where it has none (breast)
    followup_ct: float | None = field(default=None, metadata=COST)
    # expected cost of managing incidental findings, per screening CT (none on other exams)
    incidental_per_screen_ct: float = field(default=0.0, metadata=COST)
    # surgical resection, on top of initial_by_stage, for the share of people resected by stage;
    # also the price of a benign surgical procedure (the work-up's ``benign_resection``)
    resection: float = field(default=0.0, metadata=COST)
    resection_share_by_stage: dict[str, float] = field(default_factory=dict)
    # societal perspective only: the person's time and travel per exam or work-up
    patient_time_per_visit: float = field(default=0.0, metadata=COST)

    def check(self, path: str) -> None:
        for name in ("screen", "initial_by_stage"):
            for k, v in getattr(self, name).items():
                if not 0 <= v <= COST["le"]:
                    fail(f"{path}.{name}.{k}", f"{v} must be a cost between 0 and {COST['le']:g}")
        for k, v in self.resection_share_by_stage.items():
            if k not in self.initial_by_stage:
                stages = ", ".join(self.initial_by_stage)
                fail(f"{path}.resection_share_by_stage.{k}", f"not a stage ({stages})")
            if not 0 <= v <= 1:
                fail(f"{path}.resection_share_by_stage.{k}", f"{v} is not a share between 0 and 1")


@dataclass(frozen=True)
class Utilities:
    """Quality-of-life weights (0 = dead, 1 = full health) and one-off QALY losses."""

    # general-population utility by age: {lowest age of the band: utility}, e.g. {"50": 0.84}
    baseline_by_age: dict[str, float]
    women_minus: float = field(metadata={"ge": -0.2, "le": 0.2})  # women's norm is lower by this
    # utility in the first year after a cancer diagnosis, by stage (capped at the baseline)
    first_year_by_stage: dict[str, float]
    later_years: float = field(metadata=PROB)  # after the first year, while alive
    last_year: float = field(metadata=PROB)  # the last year before death from the cancer
    false_positive_loss: float = field(metadata={"ge": 0, "le": 1})  # QALYs, per false positive
    biopsy_loss: float = field(metadata={"ge": 0, "le": 1})  # QALYs, per invasive work-up

    def check(self, path: str) -> None:
        for name in ("baseline_by_age", "first_year_by_stage"):
            for k, v in getattr(self, name).items():
                if not 0 <= v <= 1:
                    fail(f"{path}.{name}.{k}", f"{v} is not a utility between 0 and 1")
        if not self.baseline_by_age:
            fail(f"{path}.baseline_by_age", "needs at least one age band")
        for k in self.baseline_by_age:
            try:
                float(k)
            except ValueError:
                fail(f"{path}.baseline_by_age.{k}", "band keys are ages in years, e.g. '60'")

    def age_bands(self) -> tuple[list[float], list[float]]:
        """(band lower ages, utilities), ascending."""
        pairs = sorted((float(k), v) for k, v in self.baseline_by_age.items())
        return [a for a, _ in pairs], [u for _, u in pairs]


@dataclass(frozen=True)
class Economics:
    name: str
    description: str = ""
    # the programme whose exams, stages and cancer this price list prices (a registered
    # programme name, sandbox/programmes); checked against a run's by :func:`check_fits`
    programme: str = DEFAULT_PROGRAMME
    currency: str = field(default="USD", metadata={"choices": ("USD", "GBP", "EUR", "SEK")})
    price_year: int = field(default=2009, metadata={"ge": 1990, "le": 2100})
    perspective: str = field(default="payer", metadata={"choices": ("payer", "societal")})
    discount_costs: float = field(default=0.03, metadata={"ge": 0, "le": 0.2})
    discount_effects: float = field(default=0.03, metadata={"ge": 0, "le": 0.2})
    horizon_years: float = field(default=0.0, metadata={"ge": 0, "le": 100})  # 0: lifetime
    # costs counted for this many years only (0: the horizon); a within-trial cost analysis
    # with lifetime effects, as Black et al. 2014
    cost_horizon_years: float = field(default=0.0, metadata={"ge": 0, "le": 100})
    # how lives go on after the run's follow-up: "lifetime", as the model's natural history
    # gives them (cancers that surface later, and their deaths, included); "trial_survivors",
    # as a within-trial analysis extrapolates them: a person alive and without a cancer
    # diagnosis at the end of follow-up gets none later, and lives to their other-cause death
    # (Black et al. 2014)
    extrapolation: str = field(
        default="lifetime", metadata={"choices": ("lifetime", "trial_survivors")}
    )
    costs: Costs | None = None
    utilities: Utilities | None = None
    # probabilistic sensitivity analysis: {path: {dist, sd | low, high [, mean]}} (economics/psa.py)
    psa: dict[str, Any] = field(default_factory=dict)

    def check(self, path: str) -> None:
        where = f"{path}.name" if path else "name"
        if not NAME.fullmatch(self.name):
            fail(where, f"{self.name!r} is not a plain name")
        if not NAME.fullmatch(self.programme):
            fail(f"{path}.programme" if path else "programme", f"{self.programme!r} is not a name")
        if self.name != "none" and (self.costs is None or self.utilities is None):
            fail(f"{path}.costs" if path else "costs", "a price list needs costs and utilities")
        if self.psa and self.costs is not None and self.utilities is not None:
            from sandbox.economics.distributions import parse_params

            parse_params(self.psa, self.costs, self.utilities)  # refuses a bad section now

    @property
    def enabled(self) -> bool:
        return self.name != "none"


def check_fits(econ: Economics, programme: Any, path: str = "economics") -> None:
    """Refuse a price list that cannot price runs of ``programme`` (a programme class): one
    written for another programme, other stages than the programme's, or no price for the
    follow-up exams it orders."""
    if econ.programme != programme.name:
        fail(
            f"{path}.programme",
            f"preset {econ.name!r} prices programme '{econ.programme}', not "
            f"'{programme.name}': choose a price list with programme: {programme.name} "
            "(docs/economics.md)",
        )
    assert econ.costs is not None and econ.utilities is not None  # Economics.check
    stages = ", ".join(programme.stages)
    for key, table in (
        ("costs.initial_by_stage", econ.costs.initial_by_stage),
        ("utilities.first_year_by_stage", econ.utilities.first_year_by_stage),
    ):
        if set(table) != set(programme.stages):
            fail(
                f"{path}.{key}",
                f"needs exactly the stages of programme {programme.name} ({stages}), "
                f"got {', '.join(table) or 'none'}",
            )
    if len(programme.exam_kinds) > 1 and econ.costs.followup_ct is None:
        fail(
            f"{path}.costs.followup_ct",
            f"is required: programme {programme.name} orders follow-up exams",
        )


# PSA paths by the old names of renamed fields (``costs.terminal_lung_cancer``)
PATH_ALIASES = {
    f"costs.{f.metadata['alias']}": f"costs.{f.name}"
    for f in dataclasses.fields(Costs)
    if "alias" in f.metadata
}


def economics_config(data: Any, path: str = "economics") -> Economics | None:
    """The typed economics section (None when absent or ``name: none``)."""
    if data is None:
        return None
    econ = build(Economics, data, path)
    return econ if econ.enabled else None

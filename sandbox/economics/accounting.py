"""Per-person costs, life-years and QALYs of a run, priced from its events and people.

Pricing is a pure function of a run's tables and a price list (:class:`Economics`): the same run
can be re-priced under any preset without simulating again. Every amount is discounted to the
person's entry day (their time zero) at the preset's rates, separately for costs and effects,
and cut at the horizon (lifetime when ``horizon_years`` is 0). Rules in docs/economics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from sandbox.economics.config import Costs, Economics, Utilities
from sandbox.errors import SandboxInputError
from sandbox.programmes import programme_class

YEAR = 365.25
STEP_YEARS = 0.25  # QALY integration step (utilities change with age and disease phase)
CHUNK = 50_000  # people per block of the QALY integral (memory: CHUNK x steps floats)

ECONOMICS_SCHEMA = {
    "person_id": pl.Int64,
    "cost_screening": pl.Float64,
    "cost_reading": pl.Float64,
    "cost_ai": pl.Float64,
    "cost_followup": pl.Float64,
    "cost_incidental": pl.Float64,
    "cost_workup": pl.Float64,
    "cost_treatment": pl.Float64,
    "cost_patient_time": pl.Float64,
    "cost_total": pl.Float64,
    "life_years": pl.Float64,
    "life_years_disc": pl.Float64,
    "qalys": pl.Float64,
    "qalys_disc": pl.Float64,
}
COST_PARTS = [c for c in ECONOMICS_SCHEMA if c.startswith("cost_") and c != "cost_total"]
PEOPLE_NEEDS = (
    "person_id",
    "sex",
    "age",
    "entry_day",
    "diagnosis_mode",
    "diagnosis_round",
    "lifetime_years",
    "lifetime_death_cause",
    "lifetime_diagnosis_day",
    "lifetime_stage",
)
EVENTS_NEEDS = (
    "person_id",
    "round",
    "exam_seq",
    "exam_day",
    "reader_minutes",
    "positive",
    "workup_day",
    "workup_stage",
    "benign_biopsy",
    "ai_score",
)
# written since run folders recorded the kind of benign procedure; older ones lack it (none)
EVENTS_OPTIONAL = ("benign_resection",)


def discount_at(t: np.ndarray | float, rate: float) -> np.ndarray | float:
    """Discount factor of an amount at time ``t`` (years): (1 + rate)^-t."""
    return (1.0 + rate) ** (-np.asarray(t, dtype=float))


def discount_flow(t0: np.ndarray, t1: np.ndarray, rate: float) -> np.ndarray:
    """Discounted length of the interval [t0, t1] (years; 0 where t1 <= t0): the integral of
    (1 + rate)^-t dt, so a flow of x per year over it is worth x times this."""
    t0, t1 = np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)
    t1 = np.maximum(t1, t0)
    if rate == 0:
        return t1 - t0
    k = math.log1p(rate)
    return (np.exp(-k * t0) - np.exp(-k * t1)) / k


def _check_columns(frame: pl.DataFrame, needs: tuple[str, ...], what: str) -> None:
    missing = [c for c in needs if c not in frame.columns]
    if missing:
        raise SandboxInputError(
            f"{what}: column {missing[0]} is missing (run folders from before lifetime outcomes "
            "cannot be priced; run again)"
        )


@dataclass
class Exposures:
    """What a run's people used and lived, discounted, before any price or utility is applied.

    Costs and QALYs are linear in prices and utilities given these, so a probabilistic
    sensitivity analysis re-prices a run with a matrix product per draw (:func:`price`).
    ``items`` maps a cost item to its discounted quantity per person (exams, minutes, years of
    care, ...); ``cells`` holds discounted person-years per (age band, sex, disease state);
    ``cells_raw`` the same undiscounted; ``losses``/``losses_raw`` count the one-off QALY losses.
    ``stages`` are the programme's (the disease states of the cells: :func:`states`).
    """

    person_id: np.ndarray
    items: dict[str, np.ndarray]
    cells: np.ndarray  # [people, bands x 2 sexes x states(stages)]
    cells_raw: np.ndarray
    losses: dict[str, np.ndarray]
    losses_raw: dict[str, np.ndarray]
    life_years: np.ndarray
    life_years_disc: np.ndarray
    band_ages: tuple[float, ...]
    modality: str
    societal: bool
    stages: tuple[str, ...]


def states(stages: tuple[str, ...]) -> tuple[str, ...]:
    """The disease states of the QALY cells, for a programme's ``stages``: each caps the age-
    and sex-specific norm. ``last_*``: the last year before a death from the cancer (in the
    first year after diagnosis by stage, or later)."""
    return (
        "healthy",
        *(f"first_{s}" for s in stages),
        "later",
        *(f"last_first_{s}" for s in stages),
        "last_later",
    )


def screen_modality(policy_modality: str, site_modalities: list[str]) -> str:
    """What a run's screening exams are priced as (a key of ``costs.screen``): the policy's
    modality where it names a test of its own (``cxr``, a chest radiograph whatever the site
    has), else the sites' scanners' (a policy's ``ct`` is each site's own system: ``ct`` on a
    lung scenario, ``mammo`` on a breast one)."""
    if policy_modality != "ct":
        return policy_modality
    kinds = sorted(set(site_modalities)) or ["ct"]
    if len(kinds) > 1:
        raise SandboxInputError(
            f"economics: the sites screen with {' and '.join(kinds)}; a run is priced at one "
            "screening price (costs.screen)"
        )
    return kinds[0]


def trial_survivors(people: pl.DataFrame) -> pl.DataFrame:
    """``people`` as a within-trial analysis extrapolates them: whoever is alive and has had no
    cancer diagnosis by ``end_day`` gets no cancer later and lives to their other-cause death;
    everyone else keeps the model's lifetime."""
    _check_columns(people, ("end_day", "other_cause_death_day"), "people")
    dx = pl.col("lifetime_diagnosis_day")
    alive_at_end = pl.col("entry_day") + pl.col("lifetime_years") * YEAR > pl.col("end_day")
    survivor = alive_at_end & (dx.is_null() | (dx > pl.col("end_day")))
    return people.with_columns(
        pl.when(survivor)
        .then((pl.col("other_cause_death_day") - pl.col("entry_day")) / YEAR)
        .otherwise(pl.col("lifetime_years"))
        .alias("lifetime_years"),
        pl.when(survivor).then(None).otherwise(dx).alias("lifetime_diagnosis_day"),
        pl.when(survivor).then(None).otherwise(pl.col("lifetime_stage")).alias("lifetime_stage"),
        pl.when(survivor)
        .then(pl.lit("other"))
        .otherwise(pl.col("lifetime_death_cause").cast(pl.Utf8))
        .cast(people.schema["lifetime_death_cause"])
        .alias("lifetime_death_cause"),
    )


def exposures(
    people: pl.DataFrame, events: pl.DataFrame, econ: Economics, screen_modality: str
) -> Exposures:
    """Discounted quantities per person (``people``'s order) under ``econ``'s discount rates,
    horizon, perspective, continuing-care length and utility age bands; the stages and the
    cancer death are those of the programme ``econ`` prices."""
    programme = programme_class(econ.programme)
    stages = programme.stages
    _check_columns(people, PEOPLE_NEEDS, "people")
    _check_columns(events, EVENTS_NEEDS, "events")
    if econ.extrapolation == "trial_survivors":
        people = trial_survivors(people)
    costs, util = econ.costs, econ.utilities
    assert costs is not None and util is not None  # Economics.check
    if screen_modality not in costs.screen and events.filter(pl.col("exam_seq") == 0).height:
        raise SandboxInputError(
            f"economics.costs.screen: no price for a {screen_modality} screen "
            f"(priced: {', '.join(costs.screen) or 'none'})"
        )
    horizon = econ.horizon_years if econ.horizon_years > 0 else math.inf
    cost_horizon = min(horizon, econ.cost_horizon_years or math.inf)
    rc, re_ = econ.discount_costs, econ.discount_effects

    n = people.height
    pid = people["person_id"].to_numpy()
    entry = people["entry_day"].to_numpy()
    life = np.minimum(people["lifetime_years"].to_numpy(), horizon)

    # ---- exams and work-ups, each at its own day
    index = pl.DataFrame({"person_id": pid, "_row": np.arange(n), "_entry": entry})
    true_pos = people.filter(pl.col("diagnosis_mode") == "screen").select(
        "person_id", pl.col("diagnosis_round").alias("round"), pl.lit(True).alias("_tp")
    )
    for col in EVENTS_OPTIONAL:
        if col not in events.columns:
            events = events.with_columns(pl.lit(False).alias(col))
    ev = (
        events.select(*EVENTS_NEEDS, *EVENTS_OPTIONAL)
        .join(index, on="person_id", how="inner")
        .join(true_pos, on=["person_id", "round"], how="left")
        .with_columns(
            ((pl.col("exam_day") - pl.col("_entry")) / YEAR).alias("_t"),
            ((pl.col("workup_day") - pl.col("_entry")) / YEAR).alias("_tw"),
        )
        .filter(pl.col("_t") < horizon)
    )
    in_cost = ev["_t"].to_numpy() < cost_horizon  # exams within the cost horizon
    row = ev["_row"].to_numpy()
    screen = ev["exam_seq"].to_numpy() == 0
    t_exam = ev["_t"].to_numpy()
    d_exam = discount_at(t_exam, rc)
    tw = ev["_tw"].fill_null(np.inf).to_numpy()
    has_workup = np.isfinite(tw) & (tw < horizon)
    tw0 = np.where(has_workup, tw, 0.0)
    d_work = np.where(has_workup & (tw < cost_horizon), discount_at(tw0, rc), 0.0)
    d_exam = np.where(in_cost, d_exam, 0.0)
    benign = ev["benign_biopsy"].fill_null(False).to_numpy() & has_workup
    resected = ev["benign_resection"].fill_null(False).to_numpy() & benign
    cancer_found = ev["workup_stage"].is_not_null().to_numpy() & has_workup
    scored = ev["ai_score"].is_not_null().to_numpy()

    def per_person(values: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=values, minlength=n)

    items = {
        "screen": per_person(screen * d_exam),
        "followup_exams": per_person(~screen * d_exam),
        "reader_minutes": per_person(ev["reader_minutes"].fill_null(0.0).to_numpy() * d_exam),
        "ai_exams": per_person(scored * d_exam),
        "incidental_screens": per_person((screen & (screen_modality == "ct")) * d_exam),
        "workups": per_person(d_work),
        # a needle biopsy or bronchoscopy; a resection is priced as the surgery it is
        "benign_biopsies": per_person((benign & ~resected) * d_work),
        "benign_resections": per_person(resected * d_work),
        "visits": per_person(d_exam + d_work),
    }
    # false positives (a positive screen that found no cancer that round) and biopsies cost QALYs
    positive = ev["positive"].fill_null(False).to_numpy()
    false_pos = screen & positive & ~ev["_tp"].fill_null(False).to_numpy()
    biopsied = benign | cancer_found
    losses = {
        "false_positive": per_person(false_pos * discount_at(t_exam, re_)),
        "biopsy": per_person(biopsied * np.where(has_workup, discount_at(tw0, re_), 0.0)),
    }
    losses_raw = {
        "false_positive": per_person(false_pos * 1.0),
        "biopsy": per_person(biopsied * 1.0),
    }

    # ---- treatment by phase of care, from the lifetime diagnosis to death
    t_dx = ((people["lifetime_diagnosis_day"].fill_null(np.inf).to_numpy()) - entry) / YEAR
    t_death = people["lifetime_years"].to_numpy()
    stage = people["lifetime_stage"].fill_null("").to_numpy()
    cancer_death = (people["lifetime_death_cause"] == programme.cancer_death_cause).to_numpy()
    treated = np.isfinite(t_dx) & (t_dx < cost_horizon)
    short = t_death - t_dx < 1.0  # died within the year: the terminal phase covers it
    d_dx = np.where(treated & ~short, discount_at(np.where(treated, t_dx, 0.0), rc), 0.0)
    for s in stages:
        items[f"initial_{s}"] = d_dx * (stage == s)
    cont_end = np.minimum.reduce(
        [t_dx + 1.0 + costs.continuing_years, t_death - 1.0, np.full(n, cost_horizon)]
    )
    items["continuing_years"] = np.where(
        treated,
        discount_flow(np.where(treated, t_dx + 1.0, 0.0), np.where(treated, cont_end, 0.0), rc),
        0.0,
    )
    t_term = np.maximum(t_death - 0.5, np.where(treated, t_dx, 0.0))
    dies = treated & (t_death < horizon) & (t_term < cost_horizon)
    d_term = np.where(dies, discount_at(np.where(dies, t_term, 0.0), rc), 0.0)
    items["terminal_cancer"] = d_term * cancer_death
    items["terminal_other"] = d_term * ~cancer_death

    band_ages, _ = util.age_bands()
    cells, cells_raw = _time_cells(
        people, np.array(band_ages), life, t_dx, stage, stages, cancer_death, re_
    )
    return Exposures(
        pid,
        items,
        cells,
        cells_raw,
        losses,
        losses_raw,
        life,
        discount_flow(np.zeros(n), life, re_),
        tuple(band_ages),
        screen_modality,
        econ.perspective == "societal",
        stages,
    )


def _time_cells(
    people: pl.DataFrame,
    band_ages: np.ndarray,
    life: np.ndarray,
    t_dx: np.ndarray,
    stage: np.ndarray,
    stages: tuple[str, ...],
    cancer_death: np.ndarray,
    rate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Person-years over [0, life] in each (age band, sex, state) cell, discounted and not,
    integrated on a grid of ``STEP_YEARS`` (the state at the middle of the part lived)."""
    n = len(life)
    ages = people["age"].to_numpy()
    women = (people["sex"] == "F").to_numpy().astype(np.int64)
    t_death = people["lifetime_years"].to_numpy()
    stage_ix = np.array([stages.index(s) if s in stages else 0 for s in stage], dtype=np.int64)
    # states(): healthy, first_<stage> (1..k), later, last_first_<stage>, last_later
    k = len(stages)
    n_states = len(states(stages))
    n_cells = len(band_ages) * 2 * n_states
    steps = int(math.ceil(min(float(np.max(life, initial=0.0)), 120.0) / STEP_YEARS)) + 1
    start = np.arange(steps) * STEP_YEARS
    cells = np.zeros((n, n_cells))
    cells_raw = np.zeros((n, n_cells))
    for lo in range(0, n, CHUNK):
        sl = slice(lo, min(lo + CHUNK, n))
        width = np.clip(life[sl, None] - start[None, :], 0.0, STEP_YEARS)
        mid = start[None, :] + width / 2.0
        band = np.clip(
            np.searchsorted(band_ages, ages[sl, None] + mid, side="right") - 1,
            0,
            len(band_ages) - 1,
        )
        since = mid - t_dx[sl, None]
        last = cancer_death[sl, None] & (t_death[sl, None] - mid < 1.0) & (since >= 0)
        first = (since >= 0) & (since < 1.0)
        st = stage_ix[sl, None]
        state = np.where(
            since < 0,
            0,
            np.where(
                first,
                np.where(last, k + 2 + st, 1 + st),
                np.where(last, 2 * k + 2, k + 1),
            ),
        )
        cell = (band * 2 + women[sl, None]) * n_states + state
        rows = np.broadcast_to(np.arange(sl.stop - sl.start)[:, None], cell.shape)
        flat = (rows * n_cells + cell).ravel()
        size = (sl.stop - sl.start) * n_cells
        cells_raw[sl] = np.bincount(flat, weights=width.ravel(), minlength=size).reshape(
            -1, n_cells
        )
        cells[sl] = np.bincount(
            flat, weights=(width * discount_at(mid, rate)).ravel(), minlength=size
        ).reshape(-1, n_cells)
    return cells, cells_raw


def cell_utilities(
    util: Utilities, band_ages: tuple[float, ...], stages: tuple[str, ...]
) -> np.ndarray:
    """Utility of each (age band, sex, state) cell: the norm capped by the state."""
    by_age = dict(zip(*util.age_bands(), strict=True))
    caps = {
        "healthy": 1.0,
        "later": util.later_years,
        "last_later": min(util.later_years, util.last_year),
    }
    for s in stages:
        caps[f"first_{s}"] = util.first_year_by_stage[s]
        caps[f"last_first_{s}"] = min(util.first_year_by_stage[s], util.last_year)
    out = []
    for a in band_ages:
        for woman in (0, 1):
            norm = by_age[a] - util.women_minus * woman
            out += [min(norm, caps[state]) for state in states(stages)]
    return np.array(out)


def item_prices(costs: Costs, exp: Exposures) -> dict[str, tuple[str, float]]:
    """Each exposure item's (cost column, unit price) under ``costs``."""
    out = {
        "screen": ("cost_screening", costs.screen.get(exp.modality, 0.0)),
        "followup_exams": ("cost_followup", costs.followup_ct or 0.0),
        "reader_minutes": ("cost_reading", costs.reader_per_minute),
        "ai_exams": ("cost_ai", costs.ai_per_exam),
        "incidental_screens": ("cost_incidental", costs.incidental_per_screen_ct),
        "workups": ("cost_workup", costs.workup),
        "benign_biopsies": ("cost_workup", costs.benign_biopsy),
        "benign_resections": ("cost_workup", costs.resection),
        "visits": ("cost_patient_time", costs.patient_time_per_visit if exp.societal else 0.0),
        "continuing_years": ("cost_treatment", costs.continuing_per_year),
        "terminal_cancer": ("cost_treatment", costs.terminal_cancer),
        "terminal_other": ("cost_treatment", costs.terminal_other),
    }
    for s in exp.stages:
        resected = costs.resection * costs.resection_share_by_stage.get(s, 0.0)
        out[f"initial_{s}"] = ("cost_treatment", costs.initial_by_stage[s] + resected)
    return out


def price(exp: Exposures, costs: Costs, util: Utilities) -> pl.DataFrame:
    """One row per person (``ECONOMICS_SCHEMA``): ``exp`` priced and weighted (the utilities'
    age bands must be those the exposures were cut by)."""
    if tuple(util.age_bands()[0]) != exp.band_ages:
        raise SandboxInputError(
            "economics.utilities.baseline_by_age: other age bands than the exposures were cut by"
        )
    n = len(exp.person_id)
    parts = {c: np.zeros(n) for c in COST_PARTS}
    for item, (col, unit) in item_prices(costs, exp).items():
        parts[col] += unit * exp.items[item]
    u = cell_utilities(util, exp.band_ages, exp.stages)
    lost = (
        util.false_positive_loss * exp.losses["false_positive"]
        + util.biopsy_loss * exp.losses["biopsy"]
    )
    lost_raw = (
        util.false_positive_loss * exp.losses_raw["false_positive"]
        + util.biopsy_loss * exp.losses_raw["biopsy"]
    )
    out = {"person_id": exp.person_id, **parts}
    out["cost_total"] = sum(parts.values())
    out["life_years"] = exp.life_years
    out["life_years_disc"] = exp.life_years_disc
    out["qalys"] = exp.cells_raw @ u - lost_raw
    out["qalys_disc"] = exp.cells @ u - lost
    return pl.DataFrame(out, schema=ECONOMICS_SCHEMA)


def price_run(
    people: pl.DataFrame, events: pl.DataFrame, econ: Economics, screen_modality: str
) -> pl.DataFrame:
    """One row per person (``ECONOMICS_SCHEMA``), in ``people``'s order.

    ``screen_modality`` is the modality of the run's screening exams (:func:`screen_modality`:
    ``ct``, ``cxr`` or ``mammo``); follow-up exams are priced as ``costs.followup_ct``.
    """
    exp = exposures(people, events, econ, screen_modality)
    assert econ.costs is not None and econ.utilities is not None
    return price(exp, econ.costs, econ.utilities)


ECONOMIC_METRICS = {
    "cost_per_person": "cost_total",
    "qalys_per_person": "qalys_disc",
    "life_years_per_person": "life_years_disc",
}


def economic_metrics(priced: pl.DataFrame, scenario: str, policy: str, seed: int) -> pl.DataFrame:
    """Rows for the run's metrics table: discounted cost, QALYs and life-years per person, with
    normal-approximation 95% intervals of the mean (all sites, subgroups and rounds)."""
    n = priced.height
    rows = []
    for metric, col in ECONOMIC_METRICS.items():
        x = priced[col].to_numpy()
        mean = float(x.mean()) if n else math.nan
        se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        rows.append(
            {
                "scenario": scenario,
                "policy": policy,
                "seed": seed,
                "site": "all",
                "subgroup": "all",
                "round": "all",
                "metric": metric,
                "value": mean,
                "lo": mean - 1.96 * se,
                "hi": mean + 1.96 * se,
                "n": n,
            }
        )
    return pl.DataFrame(rows)

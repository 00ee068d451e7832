"""Per-person costs, life-years and QALYs of a run, priced from its events and people.

Pricing is a pure function of a run's tables and a price list (:class:`Economics`): the same run
can be re-priced under any preset without simulating again. Every amount is discounted to the
person's entry day (their time zero) at the preset's rates, separately for costs and effects,
and cut at the horizon (lifetime when ``horizon_years`` is 0). Rules in docs/economics.md.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from sandbox.economics.config import Economics
from sandbox.errors import SandboxInputError

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


def price_run(
    people: pl.DataFrame, events: pl.DataFrame, econ: Economics, screen_modality: str
) -> pl.DataFrame:
    """One row per person (``ECONOMICS_SCHEMA``), in ``people``'s order.

    ``screen_modality`` is the modality of the run's screening exams (its policy's: ``ct`` or
    ``cxr``); follow-up exams are CT.
    """
    _check_columns(people, PEOPLE_NEEDS, "people")
    _check_columns(events, EVENTS_NEEDS, "events")
    costs, util = econ.costs, econ.utilities
    assert costs is not None and util is not None  # Economics.check
    if screen_modality not in costs.screen and events.filter(pl.col("exam_seq") == 0).height:
        raise SandboxInputError(
            f"economics.costs.screen: no price for a {screen_modality} screen "
            f"(priced: {', '.join(costs.screen) or 'none'})"
        )
    horizon = econ.horizon_years if econ.horizon_years > 0 else math.inf
    rc, re_ = econ.discount_costs, econ.discount_effects
    societal = econ.perspective == "societal"

    n = people.height
    pid = people["person_id"].to_numpy()
    entry = people["entry_day"].to_numpy()
    life = np.minimum(people["lifetime_years"].to_numpy(), horizon)

    # ---- exams and work-ups, each at its own day
    index = pl.DataFrame({"person_id": pid, "_row": np.arange(n), "_entry": entry})
    true_pos = people.filter(pl.col("diagnosis_mode") == "screen").select(
        "person_id", pl.col("diagnosis_round").alias("round"), pl.lit(True).alias("_tp")
    )
    ev = (
        events.select(EVENTS_NEEDS)
        .join(index, on="person_id", how="inner")
        .join(true_pos, on=["person_id", "round"], how="left")
        .with_columns(
            ((pl.col("exam_day") - pl.col("_entry")) / YEAR).alias("_t"),
            ((pl.col("workup_day") - pl.col("_entry")) / YEAR).alias("_tw"),
        )
        .filter(pl.col("_t") < horizon)
    )
    row = ev["_row"].to_numpy()
    screen = ev["exam_seq"].to_numpy() == 0
    d_exam = discount_at(ev["_t"].to_numpy(), rc)
    tw = ev["_tw"].fill_null(np.inf).to_numpy()
    has_workup = np.isfinite(tw) & (tw < horizon)
    d_work = np.where(has_workup, discount_at(np.where(has_workup, tw, 0.0), rc), 0.0)
    benign = ev["benign_biopsy"].fill_null(False).to_numpy() & has_workup
    cancer_found = ev["workup_stage"].is_not_null().to_numpy() & has_workup
    scored = ev["ai_score"].is_not_null().to_numpy()

    def per_person(values: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=values, minlength=n)

    screen_price = costs.screen.get(screen_modality, 0.0)
    parts = {
        "cost_screening": per_person(np.where(screen, screen_price, 0.0) * d_exam),
        "cost_followup": per_person(np.where(screen, 0.0, costs.followup_ct) * d_exam),
        "cost_reading": per_person(
            ev["reader_minutes"].fill_null(0.0).to_numpy() * costs.reader_per_minute * d_exam
        ),
        "cost_ai": per_person(scored * costs.ai_per_exam * d_exam),
        "cost_incidental": per_person(
            (screen & (screen_modality == "ct")) * costs.incidental_per_screen_ct * d_exam
        ),
        "cost_workup": per_person(
            costs.workup * d_work + np.where(benign, costs.benign_biopsy, 0.0) * d_work
        ),
        "cost_patient_time": per_person(
            (costs.patient_time_per_visit if societal else 0.0) * (d_exam + d_work)
        ),
    }
    # false positives (a positive screen that found no cancer that round) and biopsies cost QALYs
    positive = ev["positive"].fill_null(False).to_numpy()
    false_pos = screen & positive & ~ev["_tp"].fill_null(False).to_numpy()
    qaly_loss = per_person(
        util.false_positive_loss * false_pos * discount_at(ev["_t"].to_numpy(), re_)
        + util.biopsy_loss
        * (benign | cancer_found)
        * discount_at(np.where(has_workup, tw, 0.0), re_)
    )
    qaly_loss_raw = per_person(
        util.false_positive_loss * false_pos + util.biopsy_loss * (benign | cancer_found)
    )

    # ---- treatment by phase of care, from the lifetime diagnosis to death
    t_dx = ((people["lifetime_diagnosis_day"].fill_null(np.inf).to_numpy()) - entry) / YEAR
    t_death = people["lifetime_years"].to_numpy()
    stage = people["lifetime_stage"].fill_null("").to_numpy()
    lc_death = (people["lifetime_death_cause"] == "lung_cancer").to_numpy()
    treated = np.isfinite(t_dx) & (t_dx < horizon)
    initial = np.array([costs.initial_by_stage.get(s, 0.0) for s in stage])
    short = t_death - t_dx < 1.0  # died within the year: the terminal phase covers it
    cost_initial = np.where(
        treated & ~short, initial * discount_at(np.where(treated, t_dx, 0), rc), 0.0
    )
    cont_end = np.minimum.reduce(
        [t_dx + 1.0 + costs.continuing_years, t_death - 1.0, np.full(n, horizon)]
    )
    cost_cont = np.where(
        treated,
        costs.continuing_per_year
        * discount_flow(np.where(treated, t_dx + 1.0, 0), np.where(treated, cont_end, 0), rc),
        0.0,
    )
    dies = treated & (t_death < horizon)
    terminal = np.where(lc_death, costs.terminal_lung_cancer, costs.terminal_other)
    t_term = np.maximum(t_death - 0.5, np.where(treated, t_dx, 0.0))
    cost_term = np.where(dies, terminal * discount_at(np.where(dies, t_term, 0.0), rc), 0.0)
    parts["cost_treatment"] = cost_initial + cost_cont + cost_term

    # ---- effects
    qalys, qalys_disc = _qalys(people, util, life, t_dx, stage, lc_death, re_)
    out = {"person_id": pid}
    out.update(parts)
    out["cost_total"] = sum(parts.values())
    out["life_years"] = life
    out["life_years_disc"] = discount_flow(np.zeros(n), life, re_)
    out["qalys"] = qalys - qaly_loss_raw
    out["qalys_disc"] = qalys_disc - qaly_loss
    return pl.DataFrame(out, schema=ECONOMICS_SCHEMA)


def _qalys(
    people: pl.DataFrame,
    util,
    life: np.ndarray,
    t_dx: np.ndarray,
    stage: np.ndarray,
    lc_death: np.ndarray,
    rate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted and discounted QALYs over [0, life]: the age- and sex-specific norm, capped by
    the disease phase (first year after diagnosis by stage, later years, the last year before a
    lung-cancer death), integrated on a grid of ``STEP_YEARS``."""
    n = len(life)
    ages = people["age"].to_numpy()
    women = (people["sex"] == "F").to_numpy()
    t_death = people["lifetime_years"].to_numpy()
    band_age, band_u = util.age_bands()
    band_age, band_u = np.array(band_age), np.array(band_u)
    first = np.array([util.first_year_by_stage.get(s, 1.0) for s in stage])
    steps = int(math.ceil(min(float(np.max(life, initial=0.0)), 120.0) / STEP_YEARS)) + 1
    start = np.arange(steps) * STEP_YEARS
    q = np.zeros(n)
    qd = np.zeros(n)
    for lo in range(0, n, CHUNK):
        sl = slice(lo, min(lo + CHUNK, n))
        s0 = start[None, :]
        width = np.clip(life[sl, None] - s0, 0.0, STEP_YEARS)  # years lived in each step
        mid = s0 + width / 2.0
        age = ages[sl, None] + mid
        k = np.clip(np.searchsorted(band_age, age, side="right") - 1, 0, len(band_u) - 1)
        u = band_u[k] - util.women_minus * women[sl, None]
        since = mid - t_dx[sl, None]  # years since diagnosis (negative: before)
        cap = np.where(since < 0, 1.0, np.where(since < 1.0, first[sl, None], util.later_years))
        before_death = t_death[sl, None] - mid
        cap = np.where(
            lc_death[sl, None] & (before_death < 1.0) & (since >= 0),
            np.minimum(cap, util.last_year),
            cap,
        )
        u = np.minimum(u, cap)
        q[sl] = (u * width).sum(axis=1)
        qd[sl] = (u * width * discount_at(mid, rate)).sum(axis=1)
    return q, qd


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

"""`sandbox validate nlst-cea`: Black et al., NEJM 2014 (the NLST cost-effectiveness analysis)
reproduced from its setup.

Both NLST arms are simulated on the same people (the LDCT arm and the chest-radiograph arm, which
Black et al. take as no screening), priced with their unit costs (``conf/economics/nlst_cea.yaml``)
and compared with the published increments. Rules:

* a row with a published 95% interval passes when simulated and published are statistically
  indistinguishable: z = difference / sqrt(se_published^2 + se_simulated^2), |z| <= 1.96, the
  published se from its interval (on the log scale for an ICER), the simulated one from a paired
  bootstrap over people;
* a row without one is reported, not judged;
* a one-way sensitivity row passes when the ICER moves the published way and its relative change
  lies within 10 percentage points of the published one (e.g. LDCT at 100 dollars: 81,000 to
  56,000, -31%).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from sandbox.compose import load
from sandbox.economics.accounting import Exposures, exposures, price
from sandbox.economics.config import Costs, Economics
from sandbox.economics.report import load_preset
from sandbox.economics.tables import Arm, replicate_means
from sandbox.runners.local import simulate
from sandbox.validation.targets import Z_PASS

SHIFT_TOLERANCE = 0.10  # one-way rows: relative ICER change within 10 points of the published
# rows a parameter of conf/economics/nlst_cea.yaml was chosen to meet: the incremental cost
# (participants' time per visit) and the two incidental-finding rows (the incidental rate); the
# others are out of sample
FITTED = frozenset(
    {"incremental_cost_per_person", "one_way.incidental_cost_0", "one_way.incidental_cost_2500"}
)


def published() -> dict[str, Any]:
    """The published table (``sandbox/validation/targets/nlst_cea.yaml``)."""
    return yaml.safe_load((Path(__file__).with_name("targets") / "nlst_cea.yaml").read_text())


def _arm(
    trial_policy: str, seed: int, size: int, overrides: list[str], econ: Economics
) -> tuple[Exposures, int]:
    """The arm's exposures, and its lung-cancer deaths to the end of the trial."""
    ov = ["scenario=nlst", f"policy={trial_policy}", f"seed={seed}", *overrides]
    if size:
        ov.append(f"cohort.size={size}")
    cfg, profiles, _ = load(ov)
    res = simulate(cfg, profiles)
    deaths = int((res.people["death_cause"] == "lung_cancer").sum())
    return exposures(res.people, res.events, econ, cfg.policy.modality), deaths


# exposure items that only screening causes (accounting.exposures)
NOT_IN_NO_SCREENING = ("workups", "benign_biopsies", "benign_resections", "visits")


def _increments(
    ldct: Exposures, cxr: Exposures, costs: Costs, econ: Economics
) -> dict[str, np.ndarray]:
    """Per-person increments, LDCT minus the radiograph arm: cost, life-years, QALYs."""
    a = price(ldct, costs, econ.utilities)
    # the radiograph arm stands for no screening: neither its radiographs (priced at 0 in the
    # preset) nor the work-ups, procedures and visits they led to would happen (cancers it
    # found are treated as found)
    none = {k: np.zeros_like(cxr.items[k]) for k in NOT_IN_NO_SCREENING}
    b = price(dataclasses.replace(cxr, items={**cxr.items, **none}), costs, econ.utilities)
    assert np.array_equal(a["person_id"].to_numpy(), b["person_id"].to_numpy())
    return {
        "cost": a["cost_total"].to_numpy() - b["cost_total"].to_numpy(),
        "life_years": a["life_years_disc"].to_numpy() - b["life_years_disc"].to_numpy(),
        "qalys": a["qalys_disc"].to_numpy() - b["qalys_disc"].to_numpy(),
    }


def _bootstrap(d: dict[str, np.ndarray], replicates: int, seed: int) -> dict[str, np.ndarray]:
    """Replicate means of the increments, the same people resampled for all three (the
    cost-effectiveness table's Poisson bootstrap)."""
    ids = np.arange(len(d["cost"]))
    arms = [
        Arm("life_years", d["cost"], d["life_years"], ids),
        Arm("qalys", d["cost"], d["qalys"], ids),
    ]
    reps = replicate_means(arms, True, replicates, seed)
    return {"cost": reps[:, 0, 0], "life_years": reps[:, 0, 1], "qalys": reps[:, 1, 1]}


def validate(
    seed: int, size: int, overrides: list[str], replicates: int = 1000
) -> tuple[pl.DataFrame, dict]:
    """(rows, setup): every row of Black et al.'s table and one-way analysis, simulated."""
    econ = load_preset("nlst_cea")
    assert econ.costs is not None
    ldct, ldct_deaths = _arm("soc_single_read", seed, size, overrides, econ)
    cxr, cxr_deaths = _arm("cxr_single_read", seed, size, overrides, econ)
    pub = published()
    table = pub["table"]
    d = _increments(ldct, cxr, econ.costs, econ)
    point = {k: float(v.mean()) for k, v in d.items()}
    reps = _bootstrap(d, replicates, seed)
    rows = []

    def judged(name, sim, sim_reps, spec, log=False):
        value = spec["value"] if isinstance(spec, dict) else spec
        ci = spec.get("ci95") if isinstance(spec, dict) else None
        lo, hi = (
            np.quantile(sim_reps[np.isfinite(sim_reps)], [0.025, 0.975])
            if len(sim_reps)
            else (math.nan, math.nan)
        )
        z, ok = math.nan, None
        if ci is not None:
            f = (lambda x: math.log(x)) if log else (lambda x: x)
            if log and (sim <= 0 or lo <= 0):
                z, ok = math.nan, False
            else:
                se_pub = (f(ci[1]) - f(ci[0])) / (2 * 1.96)
                se_sim = (f(hi) - f(lo)) / (2 * 1.96)
                z = (f(sim) - f(value)) / math.sqrt(se_pub**2 + se_sim**2)
                ok = abs(z) <= Z_PASS
        rows.append(
            {
                "row": name,
                "published": float(value),
                "published_lo": ci[0] if ci else math.nan,
                "published_hi": ci[1] if ci else math.nan,
                "simulated": sim,
                "lo": float(lo),
                "hi": float(hi),
                "z": z,
                "pass": ok,
            }
        )

    judged(
        "incremental_cost_per_person",
        point["cost"],
        reps["cost"],
        table["incremental_cost_per_person"],
    )
    judged(
        "incremental_life_years_per_person",
        point["life_years"],
        reps["life_years"],
        table["incremental_life_years_per_person"],
    )
    judged(
        "incremental_qalys_per_person",
        point["qalys"],
        reps["qalys"],
        table["incremental_qalys_per_person"],
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        icer_ly = reps["cost"] / np.where(reps["life_years"] > 0, reps["life_years"], np.nan)
        icer_q = reps["cost"] / np.where(reps["qalys"] > 0, reps["qalys"], np.nan)
    base_icer = point["cost"] / point["qalys"] if point["qalys"] > 0 else math.nan
    judged(
        "icer_per_life_year",
        point["cost"] / point["life_years"] if point["life_years"] > 0 else math.nan,
        icer_ly,
        table["icer_per_life_year"],
        log=True,
    )
    judged("icer_per_qaly", base_icer, icer_q, table["icer_per_qaly"], log=True)

    # one-way sensitivity: re-price, no re-simulation
    base_pub = float(table["icer_per_qaly"]["value"])
    c = econ.costs
    variants = {
        "ldct_cost_100": dataclasses.replace(c, screen={**c.screen, "ct": 100.0}),
        "ldct_cost_500": dataclasses.replace(c, screen={**c.screen, "ct": 500.0}),
        "surgery_cost_x0_5": dataclasses.replace(c, resection=c.resection * 0.5),
        "surgery_cost_x3": dataclasses.replace(c, resection=c.resection * 3.0),
        # the paper's Table 5 (out of sample): follow-up LDCTs x 0.5 or x 5 (priced as such),
        # incidental findings at 0 or 2,500 dollars instead of 500
        "followup_ct_x0_5": dataclasses.replace(c, followup_ct=c.followup_ct * 0.5),
        "followup_ct_x5": dataclasses.replace(c, followup_ct=c.followup_ct * 5.0),
        "incidental_cost_0": dataclasses.replace(c, incidental_per_screen_ct=0.0),
        "incidental_cost_2500": dataclasses.replace(
            c, incidental_per_screen_ct=c.incidental_per_screen_ct * 5.0
        ),
    }
    published_rows = {
        **pub["one_way_sensitivity_icer_per_qaly"],
        **pub.get("one_way_table5_icer_per_qaly", {}),
    }
    for name, costs in variants.items():
        target = float(published_rows[name])
        p = {k: float(v.mean()) for k, v in _increments(ldct, cxr, costs, econ).items()}
        icer = p["cost"] / p["qalys"] if p["qalys"] > 0 else math.nan
        want, got = target / base_pub - 1.0, icer / base_icer - 1.0
        ok = bool(
            math.isfinite(got)
            and np.sign(got) == np.sign(want)
            and abs(got - want) <= SHIFT_TOLERANCE
        )
        rows.append(
            {
                "row": f"one_way.{name}",
                "published": target,
                "published_lo": math.nan,
                "published_hi": math.nan,
                "simulated": icer,
                "lo": math.nan,
                "hi": math.nan,
                "z": math.nan,
                "pass": ok,
                "published_change": want,
                "simulated_change": got,
            }
        )
    setup = {
        "people": len(ldct.person_id),
        "seed": seed,
        "economics": econ.name,
        "source": pub.get("source", ""),
        # where the effects come from: lung-cancer deaths to the end of the trial, and the
        # discounted life-years gained in all per death averted by then
        "lung_cancer_deaths": {"ldct": ldct_deaths, "cxr": cxr_deaths},
        "life_years_per_death_averted": (
            point["life_years"] * len(ldct.person_id) / (cxr_deaths - ldct_deaths)
            if cxr_deaths > ldct_deaths
            else math.nan
        ),
        "qalys_per_life_year": (
            point["qalys"] / point["life_years"] if point["life_years"] > 0 else math.nan
        ),
        "published_qalys_per_life_year": float(table["incremental_qalys_per_person"])
        / float(table["incremental_life_years_per_person"]),
    }
    frame = pl.DataFrame(rows, infer_schema_length=None)
    return frame.with_columns(fitted=pl.col("row").is_in(list(FITTED))), setup

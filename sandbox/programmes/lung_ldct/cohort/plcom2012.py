"""PLCOm2012 six-year lung cancer risk (Tammemagi et al., NEJM 2013;368:728-736)."""

from __future__ import annotations

import numpy as np

# Race/ethnicity coefficients, in the order of sandbox.programmes.lung_ldct.config.RACES.
RACE_COEF = {
    "white": 0.0,
    "black": 0.3944778,
    "hispanic": -0.7434744,
    "asian": -0.466585,
    "aian": 0.0,
    "nhpi": 1.027152,
}


def plcom2012_risk(
    age: np.ndarray,
    education: np.ndarray,
    bmi: np.ndarray,
    copd: np.ndarray,
    personal_cancer_history: np.ndarray,
    family_history: np.ndarray,
    race_coef: np.ndarray,
    current_smoker: np.ndarray,
    cigs_per_day: np.ndarray,
    years_smoked: np.ndarray,
    years_since_quit: np.ndarray,
) -> np.ndarray:
    """Six-year probability of lung cancer diagnosis for ever-smokers.

    Args:
        age: years. education: level 1-6. bmi: kg/m2. copd, personal_cancer_history,
        family_history, current_smoker: 0/1. race_coef: the race/ethnicity coefficient
        (:data:`RACE_COEF`). cigs_per_day: average intensity. years_smoked: duration.
        years_since_quit: 0 for current smokers.
    """
    logit = (
        -4.532506
        + 0.0778868 * (age - 62.0)
        - 0.0812744 * (education - 4.0)
        - 0.0274194 * (bmi - 27.0)
        + 0.3553063 * copd
        + 0.4589971 * personal_cancer_history
        + 0.587185 * family_history
        + race_coef
        + 0.2597431 * current_smoker
        - 1.822606 * (10.0 / np.maximum(cigs_per_day, 1e-3) - 0.4021541613)
        + 0.0317321 * (years_smoked - 27.0)
        - 0.0308572 * (years_since_quit - 10.0)
    )
    return 1.0 / (1.0 + np.exp(-logit))

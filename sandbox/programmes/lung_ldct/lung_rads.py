"""Lung-RADS v2022 categories and management, and the NLST positivity rule.

Categories are integers in ascending order of suspicion: 1, 2, 3, 4A, 4B, 4X. Every report is
categorised with Lung-RADS; a reporting scheme (:data:`SCHEMES`, chosen by
``programme.protocol``) says what is positive and what management follows.
"""

from __future__ import annotations

from typing import Any, ClassVar

CATEGORIES = ("1", "2", "3", "4A", "4B", "4X")
C1, C2, C3, C4A, C4B, C4X = range(6)
GROWTH_MM = 1.5  # Lung-RADS growth: an increase of more than 1.5 mm in mean diameter
MANAGEMENT = ("next_round", "ct_6m", "ct_3m", "workup")
FOLLOW_UP_DAYS = {"ct_6m": 182.0, "ct_3m": 91.0}
STABILITY_WINDOW_DAYS = 60.0


def nodule_category(size_mm: float, nodule_type: int, status: str, spiculated: bool) -> int:
    """Category of one nodule.

    Args:
        size_mm: measured mean diameter. nodule_type: 0 solid, 1 part-solid, 2 ground-glass.
        status: 'baseline' (first screen), 'new', 'growing' or 'stable' (seen before, not growing).
        spiculated: the reader sees features that raise suspicion (4X if category >= 3).
    """
    if nodule_type == 0:
        if status == "baseline":
            cat = C2 if size_mm < 6 else C3 if size_mm < 8 else C4A if size_mm < 15 else C4B
        elif status == "new":
            cat = C2 if size_mm < 4 else C3 if size_mm < 6 else C4A if size_mm < 8 else C4B
        elif status == "growing":
            cat = C4A if size_mm < 8 else C4B
        else:
            cat = C2  # unchanged on follow-up: benign behaviour
    elif nodule_type == 1:
        solid_part = 0.5 * size_mm
        if status == "stable":
            cat = C2
        elif size_mm < 6:
            cat = C2 if status == "baseline" else C3
        elif solid_part < 6 and status == "baseline":
            cat = C3
        else:
            cat = C4A if solid_part < 8 else C4B
    else:
        cat = C2 if (size_mm < 30 or status == "stable") else C3
    if spiculated and cat >= C3:
        cat = C4X
    return cat


def management(category: int) -> str:
    """Lung-RADS v2022 management: 1-2 next round; 3 six-month LDCT; 4A three-month; 4B/4X work-up."""
    if category <= C2:
        return "next_round"
    if category == C3:
        return "ct_6m"
    if category == C4A:
        return "ct_3m"
    return "workup"


def nlst_positive(
    size_mm: float,
    status: str,
    first_seen_day: float,
    exam_day: float,
    threshold_mm: float,
    stable_exempt_days: float,
) -> bool:
    """NLST rule: a non-calcified nodule >= threshold is positive unless stable long enough.

    "Long enough" allows a screening window of two months: a nodule first reported at T0 and
    unchanged at T2 is exempt even if T2 falls a few days short of two calendar years.
    """
    if size_mm < threshold_mm:
        return False
    if (
        status == "stable"
        and exam_day - first_seen_day >= stable_exempt_days - STABILITY_WINDOW_DAYS
    ):
        return False
    return True


class LungRadsV2022:
    """Lung-RADS v2022: category 3 or above is positive; management by category."""

    name: ClassVar[str] = "lung_rads_v2022"
    per_finding: ClassVar[bool] = False  # positivity follows the category, not each finding
    all_suspicious: ClassVar[bool] = False  # a work-up examines every reported finding

    def finding_positive(self, size_mm: float, status: str, first: float, day: float) -> bool:
        return False

    def finding_suspicious(self, finding: Any, status: str, first: float, day: float) -> bool:
        """Whether a finding below category 3 is still one a work-up examines (``first``: the
        day it was first reported; ``day``: this exam's)."""
        return False

    def positive(self, category: int) -> bool:
        return category >= C3

    def manage(
        self, category: int, positive: bool, suspicious: frozenset[int], follow_up: bool
    ) -> str:
        """Management of a report: ``suspicious`` are the keys a work-up would examine;
        ``follow_up`` is true for an exam that follows up an earlier one in the round."""
        return management(category)


class NLSTRule(LungRadsV2022):
    """The NLST rule: any non-calcified nodule of at least ``threshold_mm`` is positive unless
    stable for ``stable_exempt_days``. A negative screen returns to the annual round; a positive
    one with no Lung-RADS-actionable nodule (e.g. a stable or 4-6 mm nodule) gets a 6-month LDCT.

    Diagnostic follow-up was left to the sites, following a recommended algorithm (Aberle et
    al., NEJM 2011, supplementary appendix): a follow-up CT that shows the nodules unchanged
    returns the person to annual screening, growth leads on (Lung-RADS management of the
    follow-up's category); and a sub-solid nodule of at least ``subsolid_workup_mm`` that is
    still there when seen again is worked up (biopsy or resection): persistent sub-solid
    nodules were presumed adenocarcinoma-spectrum lesions and resected in that era (Henschke
    et al., AJR 2002; Naidich et al., Radiology 2013), whence much of NLST's overdiagnosis of
    bronchioloalveolar carcinoma (Patz et al., JAMA Intern Med 2014).
    """

    name: ClassVar[str] = "nlst"
    per_finding: ClassVar[bool] = True

    def __init__(
        self,
        threshold_mm: float,
        stable_exempt_days: float,
        subsolid_workup_mm: float = 0.0,
        subsolid_workup_days: float = 0.0,
    ) -> None:
        self.threshold_mm, self.stable_exempt_days = threshold_mm, stable_exempt_days
        self.subsolid_workup_mm = subsolid_workup_mm
        self.subsolid_workup_days = subsolid_workup_days

    def finding_positive(self, size_mm: float, status: str, first: float, day: float) -> bool:
        return nlst_positive(
            size_mm, status, first, day, self.threshold_mm, self.stable_exempt_days
        )

    def finding_suspicious(self, finding: Any, status: str, first: float, day: float) -> bool:
        return (
            self.subsolid_workup_mm > 0
            and finding.nodule_type > 0
            and status in ("stable", "growing")
            and finding.size_mm >= self.subsolid_workup_mm
            and day - first >= self.subsolid_workup_days - STABILITY_WINDOW_DAYS
        )

    def manage(
        self, category: int, positive: bool, suspicious: frozenset[int], follow_up: bool
    ) -> str:
        if suspicious and category < C3:
            return "workup"  # a persistent sub-solid nodule (finding_suspicious)
        mgmt = management(category)
        if follow_up:
            return mgmt  # unchanged: back to annual screening; grown: onwards
        if not positive:
            return "next_round"
        return "ct_6m" if mgmt == "next_round" else mgmt


class ChestRadiographRule(LungRadsV2022):
    """NLST's chest-radiograph arm: any non-calcified nodule or mass seen is positive, and a
    positive radiograph is worked up (diagnostic CT, then biopsy of what it shows); the work-up
    examines every reported finding. A finding reported before, or seen again on an earlier
    film, and unchanged since (not grown by more than the growth threshold) is not positive:
    NLST's readers compared with the prior films. The report column keeps the Lung-RADS size
    category of the largest finding, for reference only."""

    name: ClassVar[str] = "nlst_cxr"
    per_finding: ClassVar[bool] = True
    all_suspicious: ClassVar[bool] = True

    def finding_positive(self, size_mm: float, status: str, first: float, day: float) -> bool:
        return status != "stable"

    def manage(
        self, category: int, positive: bool, suspicious: frozenset[int], follow_up: bool
    ) -> str:
        return "workup" if positive else "next_round"


SCHEMES = {"lung_rads_v2022": LungRadsV2022, "nlst": NLSTRule}
"""Reporting schemes by ``programme.protocol``."""

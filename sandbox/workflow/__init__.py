"""Screening workflow: sites, worklists, readers, Lung-RADS, policies."""

from sandbox.workflow.calendar import Calendar, is_workday
from sandbox.workflow.lung_rads import CATEGORIES, management, nlst_positive, nodule_category
from sandbox.workflow.policies import POLICIES, Decision, ReadingPolicy, make_policy
from sandbox.workflow.site import EXAM_COLUMNS, SiteModel

__all__ = [
    "CATEGORIES",
    "EXAM_COLUMNS",
    "POLICIES",
    "Calendar",
    "Decision",
    "ReadingPolicy",
    "SiteModel",
    "is_workday",
    "make_policy",
    "management",
    "nlst_positive",
    "nodule_category",
]

"""The engine every programme shares: sites, calendars, worklists, readers, policies, observers."""

from sandbox.workflow.calendar import Calendar, is_workday
from sandbox.workflow.exam import Exam, ExamRecord, events_schema
from sandbox.workflow.exam_log import ExamLog
from sandbox.workflow.observers import LivePolicy, Observer, PolicyVersion, WorkupDone
from sandbox.workflow.policies import POLICIES, ROLES, Decision, ReadingPolicy, make_policy
from sandbox.workflow.site import SiteModel, SiteSetup

__all__ = [
    "POLICIES",
    "ROLES",
    "Calendar",
    "Decision",
    "Exam",
    "ExamLog",
    "ExamRecord",
    "LivePolicy",
    "Observer",
    "PolicyVersion",
    "ReadingPolicy",
    "SiteModel",
    "SiteSetup",
    "WorkupDone",
    "events_schema",
    "is_workday",
    "make_policy",
]

"""Exam observers and the live policy handle.

After each exam is reported, each work-up done, each diagnosis and each death, a site hands a
typed record to its observers, in simulated time; each observer also gets a daily tick. The
exam log is the first observer; monitors, cost accumulators and live progress attach the same
way, without touching the engine.

An observer may change the policy in force at a site through ``site.policy`` (a
:class:`LivePolicy`): from a given day on, exams are read under the new version; the event log
records which version read each exam (``policy_version``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.config import Policy
from sandbox.errors import SandboxInputError

if TYPE_CHECKING:
    from sandbox.programmes.base import PersonEvent
    from sandbox.workflow.exam import ExamRecord
    from sandbox.workflow.policies import ReadingPolicy
    from sandbox.workflow.site import SiteModel


@dataclass(frozen=True, slots=True)
class WorkupDone:
    """A work-up performed on ``workup_day`` for the exam (person, round, exam_seq)."""

    person_id: int
    round: int
    exam_seq: int
    workup_day: float
    diagnosis_day: float | None
    stage: str | None
    benign_biopsy: bool
    benign_resection: bool


class Observer:
    """Base observer: every hook does nothing. ``site`` is the :class:`SiteModel` calling it
    (``site.name``, ``site.index``, ``site.now``, ``site.policy``)."""

    def on_exam(self, site: SiteModel, record: ExamRecord) -> None:
        """An exam's final report was issued (``record.reported_day``)."""

    def on_workup(self, site: SiteModel, event: WorkupDone) -> None:
        """A work-up was performed."""

    def on_person(self, site: SiteModel, event: PersonEvent) -> None:
        """A diagnosis (screen-detected or clinical) or a death, reported at the next daily tick."""

    def on_day(self, site: SiteModel, day: int) -> None:
        """The start of programme day ``day`` at ``site``."""


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of a site's policy: in force for exams scanned from ``from_day`` on."""

    version: int
    from_day: float
    policy: ReadingPolicy
    reason: str

    def describe(self) -> dict[str, Any]:
        p = self.policy
        out = {
            "version": self.version,
            "from_day": self.from_day,
            "policy": p.config.name,
            "role": p.config.role,
            "reading": p.config.reading,
            "threshold": p.threshold,
            "reason": self.reason,
        }
        if p.device is not None:  # a device update with its own weights
            model = p.device.model
            out["device"] = {"name": model.name, "version": model.version, "digest": model.digest}
        return out


class LivePolicy:
    """The policy in force at one site, by day (the live policy handle).

    Version 0 is the run's policy. A change applies to exams scanned on or after ``from_day``,
    which may not lie before the site's current time: what has been read stays read.

    Args:
        site: the site model (for its clock, its staffing check and its AI device).
        policy: the run's policy.
    """

    def __init__(self, site: SiteModel, policy: ReadingPolicy) -> None:
        self._site = site
        self.versions: list[PolicyVersion] = [PolicyVersion(0, 0.0, policy, "as run")]

    def at(self, day: float) -> PolicyVersion:
        """The version in force for an exam scanned on ``day``."""
        if len(self.versions) == 1:
            return self.versions[0]
        for v in reversed(self.versions):
            if v.from_day <= day:
                return v
        return self.versions[0]

    @property
    def current(self) -> PolicyVersion:
        return self.at(self._site.now)

    def change(self, policy: ReadingPolicy, from_day: float, reason: str = "") -> PolicyVersion:
        """Put ``policy`` in force from ``from_day`` (not before now, nor before the last change)."""
        now = self._site.now
        if from_day < now:
            raise ValueError(f"a policy change cannot start in the past (day {from_day} < {now})")
        if from_day < self.versions[-1].from_day:
            raise ValueError("policy changes must be made in order of their start day")
        if policy.uses_ai and self._site.ai is None:
            raise SandboxInputError(
                f"site '{self._site.name}': policy '{policy.config.name}' needs an AI device, and none is loaded"
            )
        policy.check_site(self._site.site, self._site.index)
        v = PolicyVersion(len(self.versions), float(from_day), policy, reason)
        self.versions.append(v)
        return v

    def switch(
        self, config: Policy, from_day: float, threshold: float | None = None, reason: str = ""
    ):
        """Put the policy described by ``config`` in force (its threshold: ``threshold``, or the
        current one)."""
        from sandbox.workflow.policies import make_policy

        if threshold is None:
            threshold = self.current.policy.threshold
        return self.change(
            make_policy(config, threshold), from_day, reason or f"switch to {config.name}"
        )

    def set_threshold(self, threshold: float, from_day: float, reason: str = "") -> PolicyVersion:
        """Keep the current policy with the AI operating point moved to ``threshold``."""
        cur = self.current.policy
        new = type(cur)(cur.config, threshold)
        new.device = cur.device
        return self.change(new, from_day, reason or f"threshold {threshold:.4g}")

    def update_device(
        self, device: Any, threshold: float, from_day: float, reason: str = ""
    ) -> PolicyVersion:
        """Keep the current policy with another AI device (new weights: a
        :class:`~sandbox.agents.inference.DeviceScorer`) at ``threshold``."""
        cur = self.current.policy
        new = type(cur)(cur.config, threshold)
        new.device = device
        return self.change(new, from_day, reason or f"device update: {device.model.name}")

    def standard_of_care(self, from_day: float, reason: str = "") -> PolicyVersion:
        """Switch the AI off: the current policy's human reading rule alone."""
        from sandbox.workflow.policies import POLICIES

        cfg = self.current.policy.config
        cfg = dataclasses.replace(cfg, name=f"{cfg.name}/standard_of_care", role="none")
        return self.change(
            POLICIES[cfg.reading](cfg), from_day, reason or "AI off: standard of care"
        )

    def roll_back(self, from_day: float, reason: str = "") -> PolicyVersion:
        """Put the run's own policy back in force (version 0: the device as validated, at its
        validated operating point), undoing any device update or switch since."""
        return self.change(self.versions[0].policy, from_day, reason or "roll back to version 0")


class OperatingPointChanges(Observer):
    """A device update on the timeline (``drift.device_changes``): from its day, a site's device
    calls positives at a new score cut-off, and reads with new weights when the update brings
    them, through the site's live policy handle.

    Args:
        changes: ``(site name, day, cut-off, reason, device)``, the cut-offs resolved on the
            device that reads from then on; ``device`` None keeps the site's device.
    """

    def __init__(self, changes: list[tuple[str, float, float, str, Any]]) -> None:
        self.pending = sorted(changes, key=lambda c: c[1])

    def on_day(self, site: SiteModel, day: int) -> None:
        due = [c for c in self.pending if c[0] == site.name and c[1] <= day]
        for change in due:
            self.pending.remove(change)
            _, start, threshold, reason, device = change
            # never before now, nor before a change already made (a plan's fallback, say)
            when = max(start, site.now, site.policy.versions[-1].from_day)
            if device is not None:
                site.policy.update_device(device, threshold, when, reason)
            else:
                site.policy.set_threshold(
                    threshold, when, reason or f"device update: {threshold:.4g}"
                )

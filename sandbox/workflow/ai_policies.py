"""The AI roles as reading policies (DESIGN.md, "AI roles a policy can give the model").

Each role wraps the human reading rule of the policy (``reading: single | double``) and asks the
site's AI service for the exam's score; the operating point (``threshold``) turns a score into
a positive call. The AI sees only the rendered image; readers see only what the image shows
(and, in the concurrent role, the AI's output).

* second_reader: the AI replaces the second human reader; discordance between the human read
  and the AI call goes to a human arbiter.
* triage: AI-positive exams are double read, AI-negative exams single read.
* rule_out: AI-negative exams are reported normal with no human read, except an audit fraction
  that is read anyway; AI-positive exams get the policy's human reading.
* concurrent: readers see the AI output while reading: conspicuity is multiplied by
  ``1 + concurrent_gain`` where the AI is positive and by ``1 - automation_bias`` where it is
  negative (readers relax on a negative AI; Dratsch et al., Radiology 2023).
* safety_net: after a negative human report, an AI-positive exam gets a second look by another
  radiologist with the AI's mark (conspicuity doubled); a positive second look stands.

Three options add to any role but ``concurrent`` (MASAI's trial arm uses all three with triage):

* ``marks``: exams scoring at or above this second operating point are read with the AI's marks
  on screen, every read's conspicuity times ``1 + concurrent_gain``;
* ``recall_top``: exams scoring at or above it are flagged high risk: a negative report is
  turned into a recall unless the readers judge the flag obviously false, which the programme
  decides from what they saw (:meth:`~sandbox.programmes.base.Programme.high_risk_recall`).
* ``relaxed_below``: readers see every exam's score, and read the exams scoring below this
  point (and not marked) relaxed, conspicuity times ``1 - automation_bias`` as in the concurrent
  role where the AI is negative (MASAI's readers saw scores 1-7 with no marks).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sandbox.workflow.policies import (
    POLICIES,
    ROLES,
    Decision,
    DoubleReading,
    ReadingPolicy,
    ReadingService,
    SingleReading,
)


class AIRole(ReadingPolicy):
    """Base of the AI roles: the human rule of ``reading`` plus an AI score per screen."""

    uses_ai = True

    def __init__(self, config, threshold: float | None = None) -> None:
        super().__init__(config, threshold)
        self.base = POLICIES[config.reading](config)

    @property
    def min_readers(self) -> int:  # type: ignore[override]
        return self.base.min_readers

    def positive(self, score: float) -> bool:
        if self.threshold is None:
            raise RuntimeError("an AI role needs a resolved operating point")
        return score >= self.threshold

    def decide_screen(self, service: ReadingService, exam: Any) -> Generator[Any, Any, Decision]:
        score = yield service.ai_score(exam)
        cfg = self.config
        marked = cfg.marks is not None and score >= service.ai_cutoff(exam, cfg.marks)
        boost = 1.0 + cfg.concurrent_gain if marked else 1.0
        if (
            not marked
            and cfg.relaxed_below is not None
            and score < service.ai_cutoff(exam, cfg.relaxed_below)
        ):
            boost = 1.0 - cfg.automation_bias
        decision = yield from self.with_score(service, exam, score, self.positive(score), boost)
        if (
            cfg.recall_top is not None
            and not decision.final.positive
            and score >= service.ai_cutoff(exam, cfg.recall_top)
        ):
            flagged = service.programme.high_risk_recall(exam, decision.reads)
            if flagged is not None:
                decision = Decision(flagged, decision.reads, decision.arbitrated)
        decision.ai_score, decision.ai_positive = score, self.positive(score)
        return decision

    def with_score(
        self, service: ReadingService, exam: Any, score: float, ai_pos: bool, boost: float = 1.0
    ) -> Generator[Any, Any, Decision]:
        """The reads of an exam the AI scored ``score`` (``ai_pos``: at the operating point);
        ``boost`` multiplies conspicuity for every read (the AI's marks, where shown)."""
        raise NotImplementedError


class SecondReader(AIRole):
    """One human read; the AI is the second reader; discordance goes to a human arbiter."""

    @property
    def min_readers(self) -> int:  # type: ignore[override]
        return 2

    def with_score(self, service, exam, score, ai_pos, boost=1.0):
        r1 = yield service.read(exam, 0, boost=boost)
        if r1.positive == ai_pos:
            return Decision(r1, [r1])
        r3 = yield service.read(exam, 2, boost=boost)
        return Decision(r3, [r1, r3], arbitrated=True)


class Triage(AIRole):
    """AI-positive exams are double read; the others single read (MASAI)."""

    def __init__(self, config, threshold: float | None = None) -> None:
        super().__init__(config, threshold)
        self.double = DoubleReading(config)
        self.single = SingleReading(config)

    @property
    def min_readers(self) -> int:  # type: ignore[override]
        return self.double.min_readers

    def with_score(self, service, exam, score, ai_pos, boost=1.0):
        chosen = self.double if ai_pos else self.single
        return (yield from chosen.decide_screen(service, exam, boost))


class RuleOut(AIRole):
    """AI-negative exams are reported normal without a human read, except the audit fraction."""

    def with_score(self, service, exam, score, ai_pos, boost=1.0):
        if not ai_pos and exam.u("ai.audit") >= self.config.audit_fraction:
            return Decision(service.programme.normal_report(), [], autonomous=True)
        return (yield from self.base.decide_screen(service, exam, boost))


class Concurrent(AIRole):
    """Readers read with the AI output on screen: gain where it is positive, bias where not."""

    def with_score(self, service, exam, score, ai_pos, boost=1.0):
        boost = 1.0 + self.config.concurrent_gain if ai_pos else 1.0 - self.config.automation_bias
        return (yield from self.base.decide_screen(service, exam, boost))


class SafetyNet(AIRole):
    """A negative human report with a positive AI gets a marked second look (PRAIM)."""

    @property
    def min_readers(self) -> int:  # type: ignore[override]
        # the second look is by a radiologist who has not read the exam yet
        return self.base.min_readers + 1

    def with_score(self, service, exam, score, ai_pos, boost=1.0):
        decision = yield from self.base.decide_screen(service, exam, boost)
        if decision.final.positive or not ai_pos:
            return decision
        look = yield service.read(exam, 3, boost=2.0 * boost)
        reads = [*decision.reads, look]
        if look.positive:
            return Decision(look, reads, arbitrated=True)
        return Decision(decision.final, reads, decision.arbitrated)


ROLES.update(
    second_reader=SecondReader,
    triage=Triage,
    rule_out=RuleOut,
    concurrent=Concurrent,
    safety_net=SafetyNet,
)

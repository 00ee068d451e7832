"""A policy's AI marks and high-risk flag (MASAI's trial arm), read by a queue-free service:
which reads are shown marks, and when a flag turns a negative report into a recall."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sandbox.config import OperatingPoint, Policy
from sandbox.programmes.base import Read
from sandbox.whatif import _decide, _Now
from sandbox.workflow.policies import make_policy

MARKS, TOP = OperatingPoint("percentile", 0.7), OperatingPoint("percentile", 0.99)
RELAXED = OperatingPoint("percentile", 0.5)
CUTS = {MARKS: 0.6, TOP: 0.95, RELAXED: 0.4}


@dataclass
class Exam:
    kind: str = "screen"


@dataclass
class Programme:
    """Flags are acted on when a read reported something (the breast programme's rule, reduced)."""

    def high_risk_recall(self, exam, reads):
        seen = [f for r in reads for f in r.findings]
        return Read(9, 3, seen, 2, True, 0.0) if seen else None


@dataclass
class Service:
    score: float
    findings: list = field(default_factory=list)
    boosts: list = field(default_factory=list)
    programme: Programme = field(default_factory=Programme)

    def read(self, exam, slot, boost=1.0, reviewer=None, marked=None):
        self.boosts.append(boost)
        return _Now(Read(slot, slot, list(self.findings), 1 if self.findings else 0, False, 1.0))

    def ai_score(self, exam):
        return _Now(self.score)

    def ai_cutoff(self, exam, point):
        return CUTS[point]


def masai(**kw) -> Policy:
    base = dict(
        name="m",
        role="triage",
        reading="double",
        discordance="consensus",
        concurrent_gain=0.5,
        marks=MARKS,
        recall_top=TOP,
    )
    return Policy(**{**base, **kw})


@pytest.mark.parametrize(
    ("score", "boosts"),
    [(0.3, [1.0]), (0.6, [1.5]), (0.8, [1.5, 1.5]), (0.97, [1.5, 1.5])],
)
def test_marks_are_shown_at_and_above_their_point_and_triage_double_reads_above_its(score, boosts):
    service = Service(score)
    decision = _decide(make_policy(masai(), threshold=0.75), service, Exam())
    assert service.boosts == boosts
    assert decision.ai_score == score and not decision.final.positive


@pytest.mark.parametrize("role", ["triage", "second_reader", "rule_out", "safety_net"])
def test_a_flag_recalls_what_the_readers_saw_and_nothing_else(role):
    policy = make_policy(masai(role=role, reading="single"), threshold=0.75)
    saw = _decide(policy, Service(0.97, ["a finding"]), Exam())
    assert saw.final.positive and saw.final.reader_id == 9
    assert not _decide(policy, Service(0.97), Exam()).final.positive  # obviously false
    below = _decide(policy, Service(0.9, ["a finding"]), Exam())
    assert not below.final.positive  # under the flag's point the readers' report stands


def test_without_marks_or_flag_the_roles_read_as_before():
    service = Service(0.97, ["a finding"])
    decision = _decide(make_policy(masai(marks=None, recall_top=None), 0.75), service, Exam())
    assert service.boosts == [1.0, 1.0] and not decision.final.positive


@pytest.mark.parametrize(
    ("score", "boosts"),
    [(0.2, [0.6]), (0.45, [1.0]), (0.6, [1.5]), (0.8, [1.5, 1.5])],
)
def test_readers_relax_below_the_relaxed_point_and_nowhere_else(score, boosts):
    """Readers who see a low score read with conspicuity x (1 - automation_bias); at and above
    the point they read as usual, and a marked exam is never relaxed."""
    service = Service(score)
    policy = make_policy(masai(relaxed_below=RELAXED, automation_bias=0.4), threshold=0.75)
    _decide(policy, service, Exam())
    assert service.boosts == pytest.approx(boosts)
    overlap = Service(0.7)  # marked, and below a relaxed point set above the marks': marked
    _decide(make_policy(masai(relaxed_below=TOP), 0.75), overlap, Exam())
    assert overlap.boosts == [1.5]


def test_a_consensus_review_is_shown_the_other_readers_marks():
    """Discordant double reads: the negative reader reviews with conspicuity doubled, shown
    the findings the positive reader called suspicious (where the programme locates marks)."""

    class Discordant(Service):
        def read(self, exam, slot, boost=1.0, reviewer=None, marked=None):
            self.boosts.append((slot, boost, marked))
            positive = slot == 0
            return _Now(
                Read(
                    slot,
                    slot,
                    [],
                    2 if positive else 0,
                    positive,
                    1.0,
                    -1,
                    frozenset({7}) if positive else frozenset(),
                )
            )

    class Agreed(Programme):
        def consensus(self, exam, positive, negative, review):
            return positive

    service = Discordant(0.8, programme=Agreed())
    decision = _decide(make_policy(masai(), threshold=0.75), service, Exam())
    assert decision.arbitrated and decision.final.positive
    assert service.boosts[-1] == (2, 3.0, frozenset({7}))  # marks shown: 2 x 1.5

"""Reading policies: who reads an exam, and how their reads become one report.

A policy is a class with a SimPy process ``decide(service, exam)`` that requests reads from
the site's :class:`ReadingService` and returns a :class:`Decision`. New roles (the AI roles)
subclass :class:`ReadingPolicy` and register in :data:`POLICIES`; the workflow never branches
on a policy's name.

Screening exams are read as the policy says; follow-up exams are read once. What a read
reports, and what two discordant readers agree on, is the programme's
(``service.programme``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sandbox.config import Policy, Site
from sandbox.programmes.base import Read
from sandbox.typed import fail

if TYPE_CHECKING:
    import simpy


class ReadingService(Protocol):
    def read(
        self,
        exam: Any,
        slot: int,
        boost: float = 1.0,
        reviewer: int | None = None,
        marked: frozenset[int] | None = None,
    ) -> simpy.Event: ...

    def ai_score(self, exam: Any) -> simpy.Event: ...

    def ai_cutoff(self, exam: Any, point: Any) -> float: ...

    @property
    def programme(self) -> Any: ...


@dataclass(slots=True)
class Decision:
    """The report of an exam and how it came about.

    ``ai_score``/``ai_positive`` are None when no AI read the exam; ``autonomous`` is True when
    the report was issued by the AI with no human read.
    """

    final: Read
    reads: list[Read]
    arbitrated: bool = False
    ai_score: float | None = None
    ai_positive: bool | None = None
    autonomous: bool = False


class ReadingPolicy:
    """Base policy: one independent read of every exam."""

    min_readers: ClassVar[int] = 1
    uses_ai: ClassVar[bool] = False
    invites: ClassVar[bool] = True  # False: nobody is invited to screening

    def __init__(self, config: Policy, threshold: float | None = None) -> None:
        self.config = config
        self.threshold = threshold
        self.device: Any = None  # the AI device that reads under this policy (None: the run's)

    def check_site(self, site: Site, index: int) -> None:
        n = sum(site.readers.values())
        if n < self.min_readers:
            fail(
                f"sites[{index}].readers",
                f"policy '{self.config.name}' needs at least {self.min_readers} radiologists at site '{site.name}', it has {n}",
            )

    def decide(
        self, service: ReadingService, exam: Any, boost: float = 1.0
    ) -> Generator[Any, Any, Decision]:
        """``boost`` multiplies conspicuity for every read (what readers are shown besides the image)."""
        read = yield service.read(exam, 0, boost=boost)
        return Decision(read, [read])

    def decide_screen(
        self, service: ReadingService, exam: Any, boost: float = 1.0
    ) -> Generator[Any, Any, Decision]:
        return (yield from self.decide(service, exam, boost))

    def process(self, service: ReadingService, exam: Any) -> Generator[Any, Any, Decision]:
        if exam.kind == "screen":
            return (yield from self.decide_screen(service, exam))
        return (yield from ReadingPolicy.decide(self, service, exam))


class SingleReading(ReadingPolicy):
    """One radiologist reads each screen (the NLST protocol)."""


class DoubleReading(ReadingPolicy):
    """Two independent reads; discordance on positivity goes to arbitration or consensus.

    * arbitration: a third radiologist reads independently and their report stands;
    * consensus: the reader who called it negative reviews the exam with the other's marks
      (conspicuity doubled, of the findings the other called suspicious where the programme
      locates marks); the programme turns the two reads and the review into the agreed report.
    Concordant reports take the more suspicious of the two.
    """

    @property
    def min_readers(self) -> int:  # type: ignore[override]
        return 3 if self.config.discordance == "arbitration" else 2

    def decide_screen(
        self, service: ReadingService, exam: Any, boost: float = 1.0
    ) -> Generator[Any, Any, Decision]:
        first, second = service.read(exam, 0, boost=boost), service.read(exam, 1, boost=boost)
        yield first & second
        r1, r2 = first.value, second.value
        if r1.positive == r2.positive:
            final = r1 if r1.category >= r2.category else r2
            return Decision(final, [r1, r2])
        if self.config.discordance == "arbitration":
            r3 = yield service.read(exam, 2, boost=boost)
            return Decision(r3, [r1, r2, r3], arbitrated=True)
        pos, neg = (r1, r2) if r1.positive else (r2, r1)
        review = yield service.read(
            exam, 2, boost=2.0 * boost, reviewer=neg.reader_id, marked=pos.suspicious
        )
        final = service.programme.consensus(exam, pos, neg, review)
        return Decision(final, [r1, r2, review], arbitrated=True)


class NoScreening(ReadingPolicy):
    """Usual care: nobody is invited, cancers are found when symptoms or imaging done for
    another reason lead to a diagnosis (the comparator arm of a screening trial)."""

    min_readers: ClassVar[int] = 0
    invites: ClassVar[bool] = False


POLICIES: dict[str, type[ReadingPolicy]] = {
    "single": SingleReading,
    "double": DoubleReading,
    "none": NoScreening,
}
# AI roles register here (sandbox.workflow.ai_policies): role -> class
ROLES: dict[str, type[ReadingPolicy]] = {}


def make_policy(config: Policy, threshold: float | None = None) -> ReadingPolicy:
    """The policy object for a validated policy config (``threshold``: the AI operating point)."""
    if config.role == "none":
        return POLICIES[config.reading](config)
    import sandbox.workflow.ai_policies  # noqa: F401  (registers the AI roles)

    return ROLES[config.role](config, threshold)

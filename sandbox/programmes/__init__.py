"""Screening programmes, registered in one place.

A programme (:class:`~sandbox.programmes.base.Programme`) owns its cohort and natural history,
what an exam shows, its reporting scheme, management, work-up, exam record fields and metrics;
the engine (:mod:`sandbox.workflow`) owns what every programme shares. A scenario names its
programme in ``programme.name``. To add one: a package under ``sandbox/programmes/`` with a
``Programme`` subclass, and an entry in :data:`PROGRAMMES` (docs/architecture.md).
"""

from __future__ import annotations

from sandbox.programmes.base import Cohort, PersonEvent, Programme, Read, WorkupOutcome
from sandbox.programmes.breast_mammo.programme import BreastMammo
from sandbox.programmes.lung_ldct.programme import LungLDCT
from sandbox.typed import fail

PROGRAMMES: dict[str, type[Programme]] = {LungLDCT.name: LungLDCT, BreastMammo.name: BreastMammo}
"""Programme classes by the name a scenario gives in ``programme.name``."""


def programme_class(name: str) -> type[Programme]:
    """The registered programme called ``name`` (one-line config error if there is none)."""
    cls = PROGRAMMES.get(name)
    if cls is None:
        fail(
            "programme.name", f"unknown programme {name!r} (known: {', '.join(sorted(PROGRAMMES))})"
        )
    return cls


def programme_for(scenario) -> Programme:
    """The programme object of a validated scenario."""
    return programme_class(scenario.programme.name)(scenario)


__all__ = [
    "PROGRAMMES",
    "Cohort",
    "PersonEvent",
    "Programme",
    "Read",
    "WorkupOutcome",
    "programme_class",
    "programme_for",
]

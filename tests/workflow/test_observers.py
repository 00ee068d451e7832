"""Observers, the live policy handle and the shared clock, on small lung runs."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from sandbox.config import Policy
from sandbox.simulate import build_cohort, outcomes, simulate_sites
from sandbox.workflow import Observer

RUN = (
    "scenario=lung_ldct",
    "policy=soc_double_read",
    "cohort.size=2500",
    "seed=21",
    "runtime=quiet",
)
SINGLE = Policy(name="soc_single_read", role="none", reading="single")


class SwitchAfter(Observer):
    """After the ``n``-th report at site 0, single reading from that moment on."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.switch_day = n, 0, None

    def on_exam(self, site, record):
        if site.index != 0:
            return
        self.seen += 1
        if self.seen == self.n:
            self.switch_day = site.now
            site.policy.switch(SINGLE, from_day=site.now, reason="test")


class Recorder(Observer):
    """Keeps every hook call as (hook, site index, time, payload)."""

    def __init__(self) -> None:
        self.calls = []

    def on_exam(self, site, record):
        self.calls.append(("exam", site.index, site.now, record))

    def on_workup(self, site, event):
        self.calls.append(("workup", site.index, site.now, event))

    def on_person(self, site, event):
        self.calls.append(("person", site.index, site.now, event))

    def on_day(self, site, day):
        self.calls.append(("day", site.index, site.now, day))


@pytest.fixture(scope="module")
def base(load_config):
    cfg, profiles, _ = load_config(*RUN)
    return cfg, profiles, build_cohort(cfg)


def run(base, *observers, **runtime):
    cfg, profiles, cohort = base
    if runtime:
        cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, **runtime))
    return simulate_sites(cfg, profiles, cohort, observers=observers)


@pytest.fixture(scope="module")
def plain(base):
    return run(base)


def test_a_mid_run_switch_takes_effect_on_the_next_exam_and_nowhere_earlier(base, plain):
    switch = SwitchAfter(400)
    rec = run(base, switch)
    day = switch.switch_day
    ev, ref = rec.events, plain.events
    site0 = ev.filter(pl.col("site") == 0)
    before, after = site0.filter(pl.col("exam_day") < day), site0.filter(pl.col("exam_day") >= day)
    assert before.height >= 400 and after.height > 0
    assert (before["policy_version"] == 0).all() and (after["policy_version"] == 1).all()
    # the new policy reads every later screen once; the old one read them twice
    assert (after.filter(pl.col("exam_kind") == "screen")["n_reads"] == 1).all()
    assert (before.filter(pl.col("exam_kind") == "screen")["n_reads"] >= 2).all()
    # everything reported before the switch is exactly as without it (same people, same reads)
    done = pl.col("reported_day") < day
    cols = [c for c in ev.columns if c != "policy_version"]
    got = ev.filter((pl.col("site") == 0) & done).select(cols)
    want = ref.filter((pl.col("site") == 0) & done).select(cols)
    assert got.equals(want)
    # the other site is untouched
    assert ev.filter(pl.col("site") == 1).equals(ref.filter(pl.col("site") == 1))
    versions = rec.policy_versions["city_hospital"]
    assert [v["version"] for v in versions] == [0, 1] and versions[1]["policy"] == "soc_single_read"
    assert versions[1]["from_day"] == day and versions[1]["reason"] == "test"


def test_policy_changes_cannot_reach_into_the_past(base):
    class Backdate(Observer):
        def __init__(self):
            self.error = None

        def on_day(self, site, day):
            if day == 100 and self.error is None:
                try:
                    site.policy.switch(SINGLE, from_day=50.0)
                except ValueError as e:
                    self.error = str(e)

    ob = Backdate()
    run(base, ob)
    assert ob.error and "past" in ob.error


def test_observers_hear_every_exam_workup_diagnosis_and_death(base, plain):
    rec = Recorder()
    out = run(base, rec)
    assert out.events.equals(plain.events)  # watching changes nothing
    kinds = [c for c in rec.calls if c[0] == "exam"]
    assert len(kinds) == out.events.height
    assert all(c[3].reported_day == c[2] for c in kinds)  # told when the report is issued
    workups = [c for c in rec.calls if c[0] == "workup"]
    assert len(workups) == out.events["workup_day"].is_not_null().sum()
    persons = [c[3] for c in rec.calls if c[0] == "person"]
    screen_dx = {e.person_id for e in persons if e.kind == "diagnosis" and e.route == "screen"}
    found = set(out.events.filter(pl.col("workup_diagnosis_day").is_not_null())["person_id"])
    assert screen_dx and screen_dx <= found
    assert any(e.kind == "diagnosis" and e.route == "clinical" for e in persons)
    assert {e.route for e in persons if e.kind == "death"} == {"cancer", "other"}
    # every person event is told after it happened, at the next daily tick
    assert all(c[2] >= c[3].day for c in rec.calls if c[0] == "person")
    # nobody is diagnosed or dies after their death
    dead = {}
    for e in persons:
        assert e.person_id not in dead
        if e.kind == "death":
            dead[e.person_id] = e.day


def test_what_observers_are_told_matches_the_people_table(base):
    """Diagnoses and deaths told in simulated time agree with the run's resolved outcomes."""
    cfg, _, cohort = base
    rec = Recorder()
    people = outcomes(cfg, cohort, run(base, rec))[0]
    told = [c[3] for c in rec.calls if c[0] == "person"]

    def count(kind, routes):
        return sum(e.kind == kind and e.route in routes for e in told)

    modes = people["diagnosis_mode"].value_counts()
    n = dict(zip(modes["diagnosis_mode"].cast(pl.Utf8), modes["count"], strict=True))
    assert count("diagnosis", {"screen"}) == n.get("screen", 0)
    clinical = sum(n.get(m, 0) for m in ("interval", "not_screened", "after_screening"))
    assert count("diagnosis", {"clinical"}) == clinical
    causes = people["death_cause"].cast(pl.Utf8)
    assert count("death", {"cancer"}) == (causes == "lung_cancer").sum()
    assert count("death", {"other"}) == (causes == "other").sum()
    stages = sorted(e.stage for e in told if e.kind == "diagnosis")
    assert stages == sorted(people["stage"].drop_nulls().to_list())


def test_a_shared_clock_gives_the_same_results_on_one_timeline(base, plain):
    rec = Recorder()
    shared = run(base, rec, shared_clock=True)
    assert shared.events.equals(plain.events)
    assert shared.backlog.equals(plain.backlog)
    times = [c[2] for c in rec.calls]
    assert times == sorted(times)  # one timeline across both sites
    assert {c[1] for c in rec.calls} == {0, 1}

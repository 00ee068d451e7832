"""Findings, one reader's read, the Lung-RADS category that follows, and reading policies."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sandbox.agents.readers import Reader
from sandbox.config import Policy, Site
from sandbox.errors import SandboxInputError
from sandbox.programmes.lung_ldct.lung_rads import (
    C2,
    C3,
    C4B,
    ChestRadiographRule,
    LungRadsV2022,
    NLSTRule,
)
from sandbox.programmes.lung_ldct.reading import (
    MALIGNANT_KEY,
    MIMIC_KEY,
    SPURIOUS_KEY,
    Finding,
    Prior,
    categorise,
    read_exam,
    update_prior,
    visible_findings,
)
from sandbox.rng import Streams
from sandbox.workflow import POLICIES, make_policy
from sandbox.workflow.policies import DoubleReading, NoScreening, SingleReading


def scheme(protocol: str, threshold_mm: float = 4.0, stable_days: float = 730.5):
    """The reporting scheme of ``protocol`` (NLST: ``threshold_mm``, exempt after ``stable_days``)."""
    return NLSTRule(threshold_mm, stable_days) if protocol == "nlst" else LungRadsV2022()


READER = Reader(
    reader_id=7,
    site=0,
    profile="t",
    c50=14.0,
    slope=2.5,
    fp_per_exam=0.05,
    fp_size_median_mm=5.0,
    size_error_sd_mm=0.5,
    size_bias_mm=0.0,
    read_minutes_median=3.0,
    read_minutes_sigma=0.35,
)


def _read(
    visible,
    prior=None,
    slot=0,
    person=1,
    exam=0,
    protocol="lung_rads_v2022",
    boost=1.0,
    reader=READER,
):
    return read_exam(
        reader,
        visible,
        prior or Prior({}),
        Streams(5),
        person,
        exam,
        slot,
        100.0,
        scheme(protocol),
        boost,
    )


def test_read_is_a_pure_function_of_its_keys():
    vis = [Finding(0, 5.0, 0, False, 20.0), Finding(MALIGNANT_KEY, 9.0, 0, True, 60.0)]
    a, b = _read(vis), _read(vis)
    assert a == b
    assert a.reader_id == 7 and a.slot == 0 and a.minutes > 0


def test_conspicuous_findings_are_found_and_invisible_ones_are_not():
    bright = [Finding(MALIGNANT_KEY, 12.0, 0, False, 1e6)]
    faint = [Finding(0, 3.0, 2, False, 1e-3)]
    assert all(
        any(f.key == MALIGNANT_KEY for f in _read(bright, person=p).findings) for p in range(200)
    )
    assert not any(any(f.key == 0 for f in _read(faint, person=p).findings) for p in range(200))


def test_boost_only_helps_detection():
    vis = [Finding(0, 5.0, 0, False, 14.0)]
    plain = sum(any(f.key == 0 for f in _read(vis, person=p).findings) for p in range(2000))
    boosted = sum(
        any(f.key == 0 for f in _read(vis, person=p, boost=2.0).findings) for p in range(2000)
    )
    assert boosted > plain
    assert plain == pytest.approx(1000, abs=120)  # conspicuity = c50: found half the time


def test_spurious_findings_have_their_own_keys_and_rate():
    n = 4000
    fps = [f for p in range(n) for f in _read([], person=p).findings]
    assert all(f.key == SPURIOUS_KEY for f in fps)
    assert len(fps) / n == pytest.approx(READER.fp_per_exam, abs=0.015)


def test_categorise_uses_prior_reports():
    f = Finding(0, 7.0, 0, False)
    baseline = categorise([f], Prior({}), 0.0, scheme("lung_rads_v2022", 4.0, 730.0))
    assert baseline[:2] == (C3, True) and baseline[3] == frozenset({0})
    prior = Prior({})
    update_prior(prior, [f], 0.0)
    assert prior.screened and prior.seen[0] == (0.0, 7.0)
    assert (
        categorise(
            [Finding(0, 7.5, 0, False)], prior, 365.0, scheme("lung_rads_v2022", 4.0, 730.0)
        )[0]
        == C2
    )  # stable
    assert (
        categorise(
            [Finding(0, 9.0, 0, False)], prior, 365.0, scheme("lung_rads_v2022", 4.0, 730.0)
        )[0]
        == C4B
    )  # growing, >= 8 mm
    assert (
        categorise(
            [Finding(1, 4.5, 0, False)], prior, 365.0, scheme("lung_rads_v2022", 4.0, 730.0)
        )[0]
        == C3
    )  # new
    update_prior(prior, [Finding(0, 7.4, 0, False)], 365.0)
    assert prior.seen[0] == (0.0, 7.4)  # first-seen day kept, size updated


def test_categorise_nlst_rule_and_empty_exam():
    assert categorise([], Prior({}), 0.0, scheme("nlst", 4.0, 730.0)) == (0, False, -1, frozenset())
    cat, pos, top, suspicious = categorise(
        [Finding(3, 4.2, 2, False)], Prior({}), 0.0, scheme("nlst", 4.0, 730.0)
    )
    assert pos and top == 3 and cat == C2 and not suspicious  # NLST positive although Lung-RADS 2


def _read_with_earlier(now, earlier_images, boost, person, prior_seen=None):
    """A read at day 400 of ``now`` by a reader who may compare with ``earlier_images``
    (day -> findings shown then) under the chest-radiograph rule (no spurious findings, exact
    measurement)."""
    prior = Prior(dict(prior_seen or {}), screened=True, image_days=tuple(sorted(earlier_images)))
    return read_exam(
        dataclasses.replace(READER, fp_per_exam=0.0, size_error_sd_mm=0.0),
        now,
        prior,
        Streams(5),
        person,
        0,
        0,
        400.0,
        ChestRadiographRule(),
        earlier=lambda d: {f.key: f for f in earlier_images[d]},
        look_back_boost=boost,
    )


def test_a_finding_no_report_mentioned_is_looked_for_on_earlier_images():
    """A reader who finds something the earlier reports never mentioned looks at the same place
    on the earlier images: seen there and unchanged, it is not new (and not positive); too faint
    there to be seen, or with no earlier image to compare, it is new."""
    now = [Finding(MIMIC_KEY, 10.0, 0, False, 1e6)]
    clear = {20.0: [Finding(MIMIC_KEY, 10.0, 0, False, 1e6)]}
    faint = {20.0: [Finding(MIMIC_KEY, 10.0, 0, False, 1e-3)]}
    for p in range(50):
        seen = _read_with_earlier(now, clear, 2.0, p)
        (f,) = seen.findings
        assert f.seen_day == 20.0 and f.seen_mm == 10.0
        assert not seen.positive  # stable against the earlier image
        assert _read_with_earlier(now, clear, 0.0, p).positive  # reports alone: new
        assert _read_with_earlier(now, faint, 2.0, p).positive
        assert _read_with_earlier(now, {}, 2.0, p).positive
    # a finding already in a report is compared with the report, not looked for again
    reported = _read_with_earlier(now, clear, 2.0, 1, {MIMIC_KEY: (300.0, 10.0)})
    assert math.isnan(reported.findings[0].seen_day) and not reported.positive
    # grown since the earlier image: seen there, and positive as growing
    grown = _read_with_earlier([Finding(MIMIC_KEY, 16.0, 0, False, 1e6)], clear, 2.0, 3)
    assert grown.findings[0].seen_day == 20.0 and grown.positive


def test_the_look_back_finds_the_earliest_clear_image_and_its_rate_follows_conspicuity():
    images = {
        20.0: [Finding(0, 6.0, 0, False, 1e6)],
        380.0: [Finding(0, 6.0, 0, False, 1e6)],
    }
    now = [Finding(0, 6.0, 0, False, 1e6)]
    assert all(
        _read_with_earlier(now, images, 2.0, p).findings[0].seen_day == 20.0 for p in range(50)
    )
    # at conspicuity c50 / 2 on the earlier image, a boost of 2 finds it half the time
    half = {20.0: [Finding(0, 6.0, 0, False, READER.c50 / 2.0)]}
    n = 2000
    found = sum(
        _read_with_earlier(now, half, 2.0, p).findings[0].seen_day == 20.0 for p in range(n)
    )
    assert found == pytest.approx(n / 2, abs=0.06 * n)


def test_the_prior_keeps_the_earlier_image_day_of_a_finding_first_reported_later():
    prior = Prior({})
    update_prior(prior, [], 20.0, keep_image=True)
    f = Finding(0, 6.0, 0, False, seen_day=20.0, seen_mm=5.8)
    update_prior(prior, [f], 400.0, keep_image=True)
    assert prior.seen[0] == (20.0, 6.0) and prior.image_days == (20.0, 400.0)
    update_prior(prior, [], 400.0, keep_image=True)  # the same exam's image is listed once
    assert prior.image_days == (20.0, 400.0)
    update_prior(prior, [], 800.0)  # readers who compare with reports alone keep no images
    assert prior.image_days == (20.0, 400.0)


def test_spurious_findings_are_not_carried_into_the_prior():
    prior = Prior({})
    update_prior(prior, [Finding(SPURIOUS_KEY, 7.0, 0, False), Finding(2, 5.0, 0, False)], 0.0)
    assert set(prior.seen) == {2}


def _site(readers: dict[str, int]) -> Site:
    from sandbox.config import Scanner

    return Site(
        name="s",
        share=1.0,
        scanner=Scanner("m", 1.0, 70.0, 1.0, 1.0),
        scanners=1,
        exams_per_scanner_day=10,
        readers=readers,
        reading_hours_per_day=4.0,
        workup_slots_per_day=2,
        workup_days_to_result=10.0,
    )


@pytest.mark.parametrize(
    "reading, discordance, needed",
    [("single", "arbitration", 1), ("double", "arbitration", 3), ("double", "consensus", 2)],
)
def test_policies_check_staffing(reading, discordance, needed):
    policy = make_policy(Policy(name="p", role="none", reading=reading, discordance=discordance))
    assert isinstance(policy, POLICIES[reading])
    policy.check_site(_site({"x": needed}), 0)
    if needed > 1:
        with pytest.raises(SandboxInputError, match=r"sites\[4\]\.readers"):
            policy.check_site(_site({"x": needed - 1}), 4)


def test_policy_registry():
    assert POLICIES == {"single": SingleReading, "double": DoubleReading, "none": NoScreening}
    assert not NoScreening.invites and SingleReading.invites
    assert dataclasses.is_dataclass(Policy)


def _one_person_history(entry: float, appear: float, vdt: float, onset: float = float("inf")):

    from sandbox.programmes.lung_ldct.disease.history import LungCohort

    people = {
        "person_id": np.array([0]),
        "entry_day": np.array([entry]),
        "end_day": np.array([entry + 3000.0]),
    }
    cancer = {
        "onset_day": np.array([onset]),
        "vdt_days": np.array([100.0]),
        "nodule_type": np.array([0]),
        "spiculated": np.array([False]),
        "central": np.array([False]),
    }
    nodules = {
        "row": np.array([0, 0]),
        "appear_day": np.array([appear, entry + 50.0]),
        "resolve_day": np.array([np.inf, entry + 80.0]),
        "size_mm": np.array([5.0, 4.0]),
        "vdt_days": np.array([vdt, np.inf]),
        "nodule_type": np.array([0, 2]),
    }
    return LungCohort(people, cancer, nodules, np.array([0, 2]), entry + 3000.0, 1, 1.0)


def test_visible_findings_follow_the_natural_history():
    from sandbox.config import Scanner
    from sandbox.programmes.lung_ldct.reading import visible_findings

    scanner = Scanner("m", 1.0, 70.0, 1.0, 1.0)
    entry, vdt = 400.0, 300.0
    h = _one_person_history(entry, -float("inf"), vdt, onset=entry + 10.0)
    # a prevalent growing nodule has its drawn size at entry and doubles in volume every VDT
    at_entry = {f.key: f for f in visible_findings(h, 0, entry, scanner)}
    assert set(at_entry) == {0} and at_entry[0].size_mm == pytest.approx(5.0)
    later = {f.key: f for f in visible_findings(h, 0, entry + 3 * vdt, scanner)}
    assert later[0].size_mm == pytest.approx(10.0)
    # a new nodule is present from its appearance until it resolves
    assert {f.key for f in visible_findings(h, 0, entry + 60.0, scanner)} == {0, 1, MALIGNANT_KEY}
    assert 1 not in {f.key for f in visible_findings(h, 0, entry + 80.0, scanner)}
    # the tumour is visible from onset, at its natural-history diameter
    tumour = next(
        f for f in visible_findings(h, 0, entry + 310.0, scanner) if f.key == MALIGNANT_KEY
    )
    assert tumour.size_mm == pytest.approx(
        2.0
    )  # 1 mm at onset, doubling in diameter every 3 x 100 days
    assert tumour.conspicuity > 0


def test_finding_keys_fit_in_a_read_key():
    """read_exam adds a finding's key to the read's base key: every key must be below ITEMS."""
    from sandbox.programmes.lung_ldct.disease.nodules import MAX_NODULES
    from sandbox.rng import ITEMS

    assert max(MAX_NODULES - 1, MALIGNANT_KEY, SPURIOUS_KEY, MIMIC_KEY) < ITEMS
    assert MAX_NODULES - 1 < MALIGNANT_KEY < SPURIOUS_KEY < MIMIC_KEY  # keys never collide


def test_a_central_tumour_is_faint_on_ct_and_behind_the_hila_on_a_radiograph():
    from sandbox.config import Scanner
    from sandbox.programmes.lung_ldct.config import Radiograph

    scanner = Scanner("m", 1.0, 70.0, 1.0, 1.0)
    cxr = Scanner("cxr", 0.02, 1.0, 1.0, 1.0, modality="cxr")
    entry = 400.0
    h = _one_person_history(entry, -float("inf"), 300.0, onset=entry + 10.0)
    central = dataclasses.replace(
        h, cancer={**h.cancer, "central": np.array([True])}, central_conspicuity=0.3
    )
    # a radiograph where nothing is behind anatomy unless it is central
    rg = Radiograph(obscured_share=0.0, obscured_factor=0.4)
    day = entry + 1500.0

    def tumour(history, sc, radiograph=None):
        shown = visible_findings(history, 0, day, sc, radiograph)
        return next(f for f in shown if f.key == MALIGNANT_KEY)

    assert tumour(central, scanner).conspicuity == pytest.approx(
        0.3 * tumour(h, scanner).conspicuity
    )
    assert tumour(central, scanner).size_mm == tumour(h, scanner).size_mm
    assert tumour(central, cxr, rg).conspicuity == pytest.approx(
        0.4 * tumour(h, cxr, rg).conspicuity
    )


def test_a_radiograph_mimic_is_the_same_at_every_exam_and_stable_findings_are_not_positive():
    from sandbox.config import Scanner
    from sandbox.programmes.lung_ldct.config import Radiograph
    from sandbox.programmes.lung_ldct.lung_rads import ChestRadiographRule

    cxr = Scanner("cxr", 0.02, 1.0, 1.0, 1.0, modality="cxr")
    h = dataclasses.replace(_one_person_history(400.0, -float("inf"), 300.0), mimic_key=12345)
    everyone = Radiograph(mimic_share=1.0, mimic_conspicuity=20.0)
    nobody = Radiograph(mimic_share=0.0)
    shown = [{f.key: f for f in visible_findings(h, 0, d, cxr, everyone)} for d in (400.0, 800.0)]
    assert MIMIC_KEY in shown[0] and MIMIC_KEY in shown[1]
    assert shown[0][MIMIC_KEY].size_mm == shown[1][MIMIC_KEY].size_mm  # the same anatomy
    assert shown[0][MIMIC_KEY].conspicuity == 20.0
    assert MIMIC_KEY not in {f.key for f in visible_findings(h, 0, 400.0, cxr, nobody)}
    # the radiograph rule: new and growing findings are positive, an unchanged one is not
    rule = ChestRadiographRule()
    mimic = Finding(MIMIC_KEY, 10.0, 0, False)
    first = categorise([mimic], Prior({}, screened=True), 400.0, rule)
    assert first[1] and MIMIC_KEY in first[3]
    prior = Prior({MIMIC_KEY: (400.0, 10.0)}, screened=True)
    assert not categorise([mimic], prior, 765.0, rule)[1]
    grown = Finding(MIMIC_KEY, 14.0, 0, False)
    assert categorise([grown], prior, 765.0, rule)[1]


def test_a_cohort_pickles_after_fast_reads(small_cfg):
    """The cohort's scalar views are a cache: a pickled copy (another process) rebuilds them."""
    import pickle

    from sandbox.simulate import build_cohort

    cohort = build_cohort(small_cfg)
    scanner = small_cfg.scenario.sites[0].scanner
    rows = [r for r in range(len(cohort)) if cohort.nodule_start[r + 1] > cohort.nodule_start[r]]
    before = [visible_findings(cohort, r, 500.0, scanner) for r in rows[:50]]
    copy = pickle.loads(pickle.dumps(cohort))
    assert [visible_findings(copy, r, 500.0, scanner) for r in rows[:50]] == before
    assert any(before)


def test_nlst_follow_up_returns_unchanged_nodules_to_annual_screening():
    rule = NLSTRule(4.0, 730.0, subsolid_workup_mm=10.0)
    prior = Prior({0: (0.0, 6.0)}, screened=True)
    # six months on, the 6 mm solid nodule is unchanged: positive by size, but a follow-up
    # that shows no growth returns the person to the annual round
    cat, pos, _, suspicious = categorise([Finding(0, 6.2, 0, False)], prior, 182.0, rule)
    assert pos and cat == C2
    assert rule.manage(cat, pos, suspicious, follow_up=True) == "next_round"
    assert rule.manage(cat, pos, suspicious, follow_up=False) == "ct_6m"
    # grown by more than 1.5 mm: onwards (Lung-RADS 4A: a 3-month CT)
    cat, pos, _, suspicious = categorise([Finding(0, 7.9, 0, False)], prior, 182.0, rule)
    assert rule.manage(cat, pos, suspicious, follow_up=True) == "ct_3m"


@pytest.mark.parametrize(
    "nodule_type, size, seen_before, expected",
    [
        (2, 12.0, True, "workup"),  # a persistent ground-glass nodule of 12 mm
        (1, 10.0, True, "workup"),  # persistent part-solid at the threshold
        (2, 12.0, False, "ct_6m"),  # first seen: follow it up first
        (2, 8.0, True, "next_round"),  # below the threshold, unchanged
        (0, 12.0, True, "next_round"),  # a solid nodule unchanged at follow-up
    ],
)
def test_nlst_persistent_subsolid_nodules_are_worked_up(nodule_type, size, seen_before, expected):
    rule = NLSTRule(4.0, 730.0, subsolid_workup_mm=10.0)
    prior = Prior({4: (0.0, size)} if seen_before else {}, screened=True)
    cat, pos, _, suspicious = categorise([Finding(4, size, nodule_type, False)], prior, 182.0, rule)
    follow_up = seen_before
    assert rule.manage(cat, pos, suspicious, follow_up) == expected
    assert (4 in suspicious) == (expected == "workup")  # the work-up examines that nodule
    # Lung-RADS has its own sub-solid rules: a stable ground-glass nodule is category 2
    lr = LungRadsV2022()
    cat, pos, _, suspicious = categorise([Finding(4, size, nodule_type, False)], prior, 182.0, lr)
    if nodule_type == 2:
        assert lr.manage(cat, pos, suspicious, follow_up) == "next_round" and not suspicious
    # the threshold 0 switches the rule off
    off = NLSTRule(4.0, 730.0)
    _, _, _, suspicious = categorise([Finding(4, size, nodule_type, False)], prior, 182.0, off)
    assert not suspicious


def test_nlst_subsolid_work_up_waits_for_the_persistence_period():
    rule = NLSTRule(4.0, 730.0, subsolid_workup_mm=10.0, subsolid_workup_days=730.5)
    ggn = [Finding(4, 12.0, 2, False)]
    seen_at_t0 = Prior({4: (0.0, 12.0)}, screened=True)
    # one year on: followed, not yet worked up
    cat, pos, _, suspicious = categorise(ggn, seen_at_t0, 365.0, rule)
    assert not suspicious and rule.manage(cat, pos, suspicious, False) == "ct_6m"
    # two years on (within the screening window): worked up, and the screen is positive
    # although a stable nodule would be exempt by then
    cat, pos, _, suspicious = categorise(ggn, seen_at_t0, 700.0, rule)
    assert suspicious == frozenset({4}) and pos
    assert rule.manage(cat, pos, suspicious, False) == "workup"
    solid = [Finding(4, 12.0, 0, False)]
    cat, pos, _, suspicious = categorise(solid, seen_at_t0, 700.0, rule)
    assert not pos and not suspicious  # a stable solid nodule is exempt at two years

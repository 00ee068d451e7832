"""The chest-radiograph arm (`policy=cxr_single_read`): a projection's visibility model, the
radiograph reporting rule, and NLST's comparator arm run on the same people as the CT arm."""

from __future__ import annotations

import polars as pl
import pytest
import testkit
from testkit import assert_one_line_error, run_cli

from sandbox.compose import load
from sandbox.programmes.lung_ldct.config import Radiograph
from sandbox.programmes.lung_ldct.imaging.radiograph import C_REF, conspicuity_cxr

RG = Radiograph()


def test_a_radiograph_sees_large_dense_unobscured_nodules():
    assert conspicuity_cxr(RG.reference_mm, 0, 0.9) == pytest.approx(C_REF)  # reference c50
    smaller = Radiograph(reference_mm=10.0)
    assert conspicuity_cxr(10.0, 0, 0.9, smaller) == pytest.approx(C_REF)
    sizes = [4.0, 8.0, 12.0, 20.0, 30.0]
    solid = [conspicuity_cxr(d, 0, 0.9) for d in sizes]
    assert solid == sorted(solid) and solid[0] < 1.0  # a 4 mm nodule is nearly invisible
    assert conspicuity_cxr(20.0, 2, 0.9) < conspicuity_cxr(20.0, 1, 0.9) < solid[3]
    assert conspicuity_cxr(20.0, 0, 0.1) == pytest.approx(RG.obscured_factor * solid[3])
    assert conspicuity_cxr(0.0, 0, 0.9) == 0.0


def test_a_sub_solid_nodule_shows_on_a_radiograph_as_its_solid_part():
    """With nlst's factors (the solid fractions squared) a part-solid or ground-glass nodule
    is as conspicuous as a solid nodule of its solid component's diameter."""
    scenario = load(["scenario=nlst"])[0].scenario
    rg, solid = scenario.programme.radiograph, scenario.disease.solid_fraction
    assert rg.density == pytest.approx(tuple(f * f for f in solid))
    for t in (1, 2):
        solid_mm = 24.0 * solid[t]
        assert conspicuity_cxr(24.0, t, 0.9, rg) == pytest.approx(
            conspicuity_cxr(solid_mm, 0, 0.9, rg)
        )
    # a 40 mm ground-glass cancer is called less often than a 10 mm solid one
    assert conspicuity_cxr(40.0, 2, 0.9, rg) < conspicuity_cxr(10.0, 0, 0.9, rg)


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("cxr")
    for policy in ("soc_single_read", "cxr_single_read"):
        argv = ["run", "runtime=quiet", "scenario=nlst", "cohort.size=3000", "seed=5"]
        assert (
            testkit.main(
                [*argv, f"policy={policy}", f"runtime.out_dir={out}", f"runtime.run_name={policy}"]
            )
            == 0
        )
    return out


def test_the_radiograph_arm_screens_the_same_people_and_finds_fewer_cancers(arms):
    ct = pl.read_parquet(arms / "soc_single_read" / "people.parquet")
    cxr = pl.read_parquet(arms / "cxr_single_read" / "people.parquet")
    assert ct["person_id"].to_list() == cxr["person_id"].to_list()
    assert (ct["clinical_day"] == cxr["clinical_day"]).all()  # the same disease courses
    found = lambda p: (p["diagnosis_mode"] == "screen").sum()  # noqa: E731
    assert 0 < found(cxr) < found(ct)
    events = pl.read_parquet(arms / "cxr_single_read" / "events.parquet")
    assert set(events["exam_kind"].cast(pl.String)) == {"screen"}  # no interval CT follow-up
    positive = events.filter(pl.col("positive"))
    assert (positive["management"] == "workup").all()
    assert (events.filter(~pl.col("positive"))["management"] == "next_round").all()
    rate = events["positive"].mean()
    assert 0.005 < rate < 0.2, rate  # far below LDCT's positivity


def test_a_radiograph_policy_has_no_ai_role(capsys, tmp_path):
    argv = ["run", "policy=cxr_single_read", "policy.role=triage", f"runtime.out_dir={tmp_path}"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "modality: cxr")


def test_spread_shows_on_a_radiograph_wherever_the_primary_is():
    """Once a tumour has mediastinal (N2) or distant spread, the film shows it (a widened
    mediastinum, a hilar mass, an effusion) at least at ``nodal_conspicuity``, even while
    the primary is small or behind the hila; before the spread only the primary shows."""
    import dataclasses

    import numpy as np

    from sandbox.compose import load
    from sandbox.programmes.lung_ldct.reading import MALIGNANT_KEY, _radiograph_findings
    from sandbox.simulate import build_cohort

    cfg, _, _ = load(["scenario=nlst", "cohort.size=3000", "seed=3"])
    cohort = build_cohort(cfg)
    c = cohort.cancer
    rg = dataclasses.replace(RG, nodal_conspicuity=14.0)
    spread_mm = np.minimum(c["nodal_mm"] * cohort.n2_over_n1, c["distant_mm"]) / c["solid_fraction"]
    rows = np.flatnonzero(c["has_cancer"] & c["central"] & (spread_mm > 6.0))
    assert len(rows) >= 5
    raised = 0
    for row in rows[:20]:
        # the days the tumour reaches 0.9 and 1.05 times the diameter of its spread
        before, after = c["onset_day"][row] + 3.0 * c["vdt_days"][row] * np.log2(
            spread_mm[row] * np.array([0.9, 1.05]) / cohort.onset_diameter_mm
        )
        tumour = lambda fs: next(f for f in fs if f.key == MALIGNANT_KEY)  # noqa: E731
        small = tumour(_radiograph_findings(cohort, row, before, rg))
        spread = tumour(_radiograph_findings(cohort, row, after, rg))
        plain = tumour(_radiograph_findings(cohort, row, after, RG))
        # a central primary lies behind the hila
        assert small.conspicuity == pytest.approx(
            conspicuity_cxr(small.size_mm, small.nodule_type, -1.0, rg)
        )
        assert spread.conspicuity == pytest.approx(max(14.0, plain.conspicuity))
        raised += plain.conspicuity < 14.0  # the spread, not the primary, makes it visible
    assert raised >= 5


def _cxr_run(out, name: str, *overrides: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, people) of the radiograph arm of ``nlst`` (4,000 people, seed 5) with
    ``overrides``, run into ``out/name``."""
    argv = ["run", "runtime=quiet", "scenario=nlst", "cohort.size=4000", "seed=5"]
    argv += ["policy=cxr_single_read", *overrides]
    assert testkit.main([*argv, f"runtime.out_dir={out}", f"runtime.run_name={name}"]) == 0
    return (
        pl.read_parquet(out / name / "events.parquet"),
        pl.read_parquet(out / name / "people.parquet"),
    )


def test_a_positive_radiograph_worked_up_by_ct_finds_what_the_film_missed(tmp_path):
    """With ``ct_workup_mm`` the work-up of a positive radiograph is a diagnostic CT: it finds a
    tumour the film did not show (and so biopsies no benign nodule instead)."""
    out = {}
    for mm in (0, 4):
        events, people = _cxr_run(tmp_path, f"ct{mm}", f"programme.radiograph.ct_workup_mm={mm}")
        t0 = events.filter(pl.col("round") == 0)
        found = people.filter(
            (pl.col("diagnosis_mode") == "screen") & (pl.col("diagnosis_round") == 0)
        )
        out[mm] = (
            found.height,
            int(t0["benign_biopsy"].fill_null(False).sum()),
            int(t0["positive"].sum()),
        )
    # the same first films: the same positives but for who reads which (reading queues move)
    assert abs(out[4][2] - out[0][2]) <= 0.03 * out[0][2]
    assert out[4][0] > out[0][0]  # the CT finds tumours the film did not show
    assert out[4][1] <= out[0][1]


def test_readers_who_compare_with_earlier_films_call_fewer_findings_new(tmp_path):
    """With ``look_back_boost`` the radiograph reader looks for a finding the earlier reports
    never mentioned on the earlier films: the first round is unchanged (there is nothing to
    compare with), and later rounds are positive less often (a mimic or nodule one reader
    overlooked is recognised as old by the next)."""
    rates = {}
    for boost in (0, 2):
        events, _ = _cxr_run(tmp_path, f"lb{boost}", f"programme.look_back_boost={boost}")
        by_round = events.group_by("round").agg(pl.col("positive").sum()).sort("round")
        rates[boost] = by_round["positive"].to_list()
    assert rates[2][0] == pytest.approx(rates[0][0], rel=0.02)  # T0: nothing to compare with
    assert sum(rates[2][1:]) < 0.85 * sum(rates[0][1:]), rates


def test_readers_with_earlier_films_call_fewer_spurious_findings(tmp_path):
    """``spurious_with_earlier`` scales the reader's spurious findings once there are earlier
    films to compare: the first round is unchanged, later rounds are positive less often, and
    fewer of the later positives are a reader's spurious finding."""
    rates = {}
    for f in (1.0, 0.5):
        events, _ = _cxr_run(tmp_path, f"sp{f}", f"programme.spurious_with_earlier={f}")
        by_round = events.group_by("round").agg(pl.col("positive").sum()).sort("round")
        rates[f] = by_round["positive"].to_list()
    assert rates[0.5][0] == pytest.approx(rates[1.0][0], rel=0.02)  # T0: nothing to compare
    assert sum(rates[0.5][1:]) < 0.9 * sum(rates[1.0][1:]), rates


def test_a_positive_radiograph_is_biopsied_only_where_the_ct_shows_a_nodule(tmp_path):
    """The work-up of a positive radiograph that finds no cancer samples a benign nodule only if
    the chest CT shows one of at least ``biopsy_min_mm``: a mimic or a reader's spurious
    finding ends at the CT. Of the invasive procedures, the share set by
    ``benign_resection_given_biopsy`` are resections."""
    counts = {}
    for mm in (0, 8):
        events, _ = _cxr_run(tmp_path, f"min{mm}", f"programme.radiograph.biopsy_min_mm={mm}")
        benign = events.filter(
            pl.col("workup_day").is_not_null() & pl.col("workup_stage").is_null()
        )
        counts[mm] = (
            benign.height,
            int(benign["benign_biopsy"].sum()),
            int(benign["benign_resection"].sum()),
        )
        # a resection is one of the benign invasive procedures
        assert (benign["benign_biopsy"] | ~benign["benign_resection"]).all()
    assert counts[8][0] == counts[0][0]  # the same work-ups
    # with no size needed, any benign nodule on the CT will do (most people have one): at
    # most benign_biopsy_given_workup (0.8) of the benign work-ups
    assert 0.3 * counts[0][0] < counts[0][1] < 0.8 * counts[0][0]
    # most films' findings are not a nodule of 8 mm on CT
    assert counts[8][1] < 0.3 * counts[0][1]
    assert counts[0][2] == pytest.approx(
        0.35 * counts[0][1], abs=3 * (0.35 * 0.65 * counts[0][1]) ** 0.5
    )

"""The chest-radiograph arm (`policy=cxr_single_read`): a projection's visibility model, the
radiograph reporting rule, and NLST's comparator arm run on the same people as the CT arm."""

from __future__ import annotations

import polars as pl
import pytest
import testkit
from testkit import assert_one_line_error, run_cli

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

"""`sandbox validate nlst-cea` prints Black et al.'s table beside the simulated one."""

from __future__ import annotations

import re

import pytest
from testkit import run_cli


def test_validate_nlst_cea_reports_every_row(capsys):
    code, out, err = run_cli(["validate", "nlst-cea", "--size", "1500", "runtime=quiet"], capsys)
    assert code in (0, 1), err
    for row in (
        "incremental_cost_per_person",
        "incremental_qalys_per_person",
        "icer_per_qaly",
        "one_way.ldct_cost_100",
        "one_way.surgery_cost_x3",
    ):
        assert row in out, row
    assert "1,631 (1,557-1,709)" in out  # the published increment and its interval
    assert "judged rows pass" in out
    # the verdict and the exit code agree
    line = next(x for x in out.splitlines() if "judged rows pass" in x)
    passed, judged = (int(v) for v in line.split()[0].split("/"))
    assert (code == 0) == (passed == judged)


def test_validate_nlst_cea_over_seeds_summarises_every_row(capsys):
    code, out, err = run_cli(
        ["validate", "nlst-cea", "--size", "800", "--seed", "3,4", "runtime=quiet"], capsys
    )
    assert code in (0, 1), err
    assert "== seed 3" in out and "== seed 4" in out
    summary = out.split("over 2 seeds (3, 4):")[1]
    row = re.search(
        r"^incremental_cost_per_person\s+fitted\s+1,631\s+(\S+)\s+([+-]\d+\.\d\d)\s+(\d)/2$",
        summary,
        re.M,
    )
    assert row, summary
    # the mean z is the mean of the two seeds' z, and the count of seeds passing agrees
    per_seed = [
        float(m)
        for m in re.findall(
            r"^incremental_cost_per_person\s+fitted\s+1,631 \(1,557-1,709\)\s+\S+ \(\S+\)\s+([+-]\d+\.\d\d)",
            out,
            re.M,
        )
    ]
    assert len(per_seed) == 2
    assert float(row.group(2)) == pytest.approx(sum(per_seed) / 2, abs=0.011)
    assert int(row.group(3)) == sum(abs(v) <= 1.96 for v in per_seed)
    assert "one_way.incidental_cost_2500" in summary
    # which rows a parameter was chosen to meet, and which are out of sample
    assert re.search(r"^one_way\.incidental_cost_2500\s+fitted\s", summary, re.M)
    assert re.search(r"^one_way\.followup_ct_x5\s+out of sample\s", summary, re.M)
    assert re.search(r"^icer_per_qaly\s+out of sample\s", summary, re.M)
    assert "lung-cancer deaths to the end of the trial" in out


def test_the_no_screening_arm_takes_no_visits_under_a_societal_perspective():
    """The radiograph arm stands for no screening: under a societal perspective the person's
    time is added for the LDCT arm's visits only."""
    import dataclasses

    from sandbox.economics.report import load_preset
    from sandbox.validation import cea

    econ = load_preset("nlst_cea")
    ldct, _ = cea._arm("soc_single_read", 2011, 1500, ["runtime=quiet"], econ)
    cxr, _ = cea._arm("cxr_single_read", 2011, 1500, ["runtime=quiet"], econ)
    payer_costs = dataclasses.replace(econ.costs, patient_time_per_visit=0.0)
    payer = cea._increments(ldct, cxr, payer_costs, econ)["cost"]
    costs = dataclasses.replace(econ.costs, patient_time_per_visit=100.0)
    societal = dataclasses.replace(econ, perspective="societal", costs=costs)
    ldct_s = dataclasses.replace(ldct, societal=True)
    cxr_s = dataclasses.replace(cxr, societal=True)
    added = cea._increments(ldct_s, cxr_s, costs, societal)["cost"] - payer
    assert cxr.items["visits"].sum() > 0  # the radiograph arm had visits ...
    # ... and only the LDCT arm's count
    assert added == pytest.approx(100.0 * ldct.items["visits"])

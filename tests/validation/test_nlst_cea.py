"""`sandbox validate nlst-cea` prints Black et al.'s table beside the simulated one."""

from __future__ import annotations

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

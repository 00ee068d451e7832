"""Surveillance on the breast programme: the mammography system change (drift preset
``mammo_system_change``) moves the shipped device's scores at the site that changed, from its
day, and the default plan (``aimcu_cusum``) sees it there and nowhere else."""

from __future__ import annotations

import polars as pl
import pytest
import testkit
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.outcomes.surveillance import alarm_summary

DAY = 120
BASE = ["run", "scenario=breast_masai", "policy=ai_triage_masai", "cohort.size=4000", "seed=5"]
BASE += ["runtime=quiet", "runtime.device=cpu", "drift=mammo_system_change"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with testkit.one_torch_thread():
        yield


def test_a_mammography_system_change_is_seen_at_its_site_only(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = [*BASE, f"drift.scanner_changes.0.day={DAY}", "monitoring=aimcu_cusum"]
    argv += ["monitoring.baseline_days=60", f"runtime.out_dir={out}", "runtime.run_name=d"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    e = pl.read_parquet(out / "d" / "events.parquet").filter(pl.col("exam_seq") == 0)
    rate = (
        e.with_columns(after=pl.col("exam_day") >= DAY)
        .group_by("site", "after")
        .agg(pl.col("ai_positive").mean())
    )

    def r(site, after):
        return rate.filter((pl.col("site") == site) & (pl.col("after") == after)).item(0, 2)

    assert r(3, True) > 2.0 * r(3, False)  # landskrona: the new system's noise
    for site in (0, 1, 2):
        assert abs(r(site, True) - r(site, False)) < 0.04
    summary = alarm_summary(
        pl.read_parquet(out / "d" / "monitoring.parquet"), {"landskrona": float(DAY)}, 1e9
    )
    site = summary.filter(pl.col("site") == "landskrona")
    # the site screens under two women a day at this size: a month or so of charting
    assert site["days_to_detection"].min() <= 60
    # the unchanged sites: their mean score never alarms; their AI-positive rate, on one to
    # five reads a day at this size, may cross once by chance (a few positives in a row)
    calm = summary.filter(pl.col("site") != "landskrona")
    assert calm.filter(pl.col("statistic") == "mean_score")["false_alarms"].sum() == 0
    assert calm["false_alarms"].sum() <= 1


def test_a_system_change_at_a_site_the_scenario_lacks_is_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = [*BASE, "drift.scanner_changes.0.site=mobile_unit", f"runtime.out_dir={out}"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "drift.scanner_changes[0].site", "mobile_unit")
    assert_nothing_written(out)

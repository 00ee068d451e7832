"""Background jobs of the dashboard (dashboards/jobs.py): a run started, watched and finished; a
bad one failing with its one-line error; a cancelled one stopped through its own process group,
leaving no run folder."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dashboards"))

import jobs  # noqa: E402


def wait(job, seconds: float = 240) -> None:
    t0 = time.monotonic()
    while job.running:
        assert time.monotonic() - t0 < seconds, job.output()
        time.sleep(0.2)


def run_args(root: Path, people: int, *extra: str) -> list[str]:
    return ["run", f"cohort.size={people}", f"runtime.out_dir={root}", "seed=4", *extra]


def test_a_run_job_finishes_and_names_its_folder(tmp_path):
    job = jobs.start("run", run_args(tmp_path, 300, "runtime.run_name=small"), tmp_path)
    wait(job)
    assert job.returncode == 0, job.output()
    assert job.run_folder() == str(tmp_path / "small")
    assert (tmp_path / "small" / "manifest.json").is_file()
    assert job.log.parent == tmp_path / ".jobs"  # the app writes under its results root only


def test_a_bad_job_fails_with_its_one_line_error(tmp_path):
    job = jobs.start("run", run_args(tmp_path, 300, "policy=no_such_policy"), tmp_path)
    wait(job)
    assert job.returncode == 2
    assert job.error().startswith("error:") and "no_such_policy" in job.error()


def test_a_cancelled_run_stops_and_leaves_no_run_folder(tmp_path):
    job = jobs.start("run", run_args(tmp_path, 40_000, "runtime.run_name=big"), tmp_path)
    t0 = time.monotonic()
    while job.progress()[1] is None:  # until its progress bar has started
        assert job.running and time.monotonic() - t0 < 120, job.output()
        time.sleep(0.2)
    stage, frac = job.progress()
    assert 0.0 <= frac <= 1.0 and stage
    job.cancel()
    assert not job.running and job.cancelled
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".jobs"], left  # neither the run folder nor its hidden temporary

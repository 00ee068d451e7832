"""`sandbox sweep` on a real local Ray: many runs, one folder, one table; every run equal to the
serial runner's bit for bit; resumable after Ctrl-C; a killed worker is retried; bad input is
one line with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from testkit import assert_one_line_error, run_cli

from sandbox.runners.local import simulate

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = [str(Path(sys.executable).parent / "sandbox")]


def ray_args(ray_tmp, cpus: int = 2) -> list[str]:
    return ["runtime=quiet", f"runtime.ray.temp_dir={ray_tmp}", f"runtime.ray.num_cpus={cpus}"]


def tables(folder: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(folder / f"{t}.parquet") for t in ("metrics", "people", "events")}


@pytest.fixture(scope="module")
def swept(ray_tmp, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps")
    argv = [
        "sweep",
        "policy=soc_double_read,soc_single_read",
        "seed=3,4",
        "cohort.size=1500",
        "runtime.site_block_size=1",  # one unit per site: two units per run
        f"runtime.out_dir={out}",
        "--name",
        "grid",
        *ray_args(ray_tmp),
    ]
    from testkit import main

    assert main(argv) == 0
    return out / "sweeps" / "grid"


def test_a_sweep_is_one_folder_with_one_table(swept):
    plan = yaml.safe_load((swept / "sweep.yaml").read_text())
    assert plan["axes"] == ["policy", "seed"] and len(plan["runs"]) == 4
    man = json.loads((swept / "manifest.json").read_text())
    assert man["status"] == "complete" and man["finished"] == 4 and not man["failures"]
    assert man["executor"]["mode"] == "local"
    table = pl.read_parquet(swept / "metrics.parquet")
    assert table.columns[:4] == ["run", "scenario", "policy", "seed"]
    runs = sorted(p.name for p in (swept / "runs").iterdir())
    assert runs == sorted(r["name"] for r in plan["runs"])
    assert table["run"].n_unique() == 4
    assert set(zip(table["policy"], table["seed"], strict=True)) == {
        (p, s) for p in ("soc_double_read", "soc_single_read") for s in (3, 4)
    }
    for r in plan["runs"]:
        own = pl.read_parquet(swept / "runs" / r["name"] / "metrics.parquet")
        mine = table.filter(pl.col("run") == r["name"]).drop("run")
        assert mine.equals(own)


def test_every_run_equals_the_serial_runner_bit_for_bit(swept, load_config):
    """Sweep: two units per run on two Ray workers; serial: all sites in one unit."""
    plan = yaml.safe_load((swept / "sweep.yaml").read_text())
    for r in plan["runs"]:
        cfg, profiles, _ = load_config(
            "runtime=quiet", *r["overrides"], "runtime.site_block_size=0"
        )
        assert cfg.runtime.site_block_size == 0
        direct = simulate(cfg, profiles, progress=False)
        got = tables(swept / "runs" / r["name"])
        assert got["metrics"].equals(direct.metrics), r["name"]
        assert got["people"].equals(direct.people), r["name"]
        assert got["events"].equals(direct.events), r["name"]


def test_compare_reads_a_sweep_as_two_arms_over_seeds(swept, capsys):
    code, out, err = run_cli(["compare", str(swept), "--primary", "recall_rate"], capsys)
    assert code == 0, err
    assert "A: soc_double_read, seed 3, 4" in out and "B: soc_single_read, seed 3, 4" in out
    assert "2 seeds pooled" in out


def test_resume_runs_only_what_is_missing(swept, ray_tmp, tmp_path, capsys):
    folder = tmp_path / "grid"
    shutil.copytree(swept, folder)
    runs = sorted((folder / "runs").iterdir())
    lost = runs[2]
    before = tables(lost)
    shutil.rmtree(lost)
    lost.mkdir()  # the empty claim a killed sweep leaves
    stamps = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in runs if p != lost}
    code, out, err = run_cli(["sweep", "--resume", str(folder)], capsys)
    assert code == 0, err
    assert "3 of 4 runs finished" in out
    assert {p.name: (p / "manifest.json").stat().st_mtime_ns for p in runs if p != lost} == stamps
    after = tables(lost)
    assert all(after[t].equals(before[t]) for t in before)
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    assert pl.read_parquet(folder / "metrics.parquet").equals(
        pl.read_parquet(swept / "metrics.parquet")
    )


def test_resume_refuses_a_sweep_whose_configs_changed(swept, tmp_path, capsys):
    folder = tmp_path / "grid"
    shutil.copytree(swept, folder)
    run = next((folder / "runs").iterdir())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["cohort"]["size"] = 999
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["sweep", "--resume", str(folder)], capsys)
    assert_one_line_error(code, err, "differs from what its overrides compose to now")


# ---------------------------------------------------------------- processes: Ctrl-C, a killed worker
def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start(argv: list[str], tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*SANDBOX, *argv],
        cwd=ROOT,
        stdout=open(tmp / "stdout", "w"),  # noqa: SIM115
        stderr=open(tmp / "stderr", "w"),  # noqa: SIM115
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(check, seconds: float = 240) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < seconds, "timed out"
        time.sleep(0.2)


def test_ctrl_c_keeps_finished_runs_and_resume_finishes(ray_tmp, tmp_path):
    out = tmp_path / "out"
    argv = [
        "sweep",
        "seed=21,22,23,24",
        "policy=soc_single_read",
        "cohort.size=3000",
        f"runtime.out_dir={out}",
        "--name",
        "stop",
        *ray_args(ray_tmp, cpus=1),
    ]
    proc = start(argv, tmp_path)
    runs = out / "sweeps" / "stop" / "runs"
    wait_for(
        lambda: (
            proc.poll() is not None
            or (runs.is_dir() and any((p / "manifest.json").exists() for p in runs.iterdir()))
        )
    )
    assert proc.poll() is None, (tmp_path / "stderr").read_text()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130, (tmp_path / "stderr").read_text()
    man = json.loads((out / "sweeps" / "stop" / "manifest.json").read_text())
    assert man["status"] == "interrupted" and 1 <= man["finished"] < 4
    assert "resume" in (tmp_path / "stdout").read_text()
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]  # no half-written folder
    done = subprocess.run(
        [*SANDBOX, "sweep", "--resume", str(out / "sweeps" / "stop")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    man = json.loads((out / "sweeps" / "stop" / "manifest.json").read_text())
    assert man["status"] == "complete" and man["finished"] == 4


def test_a_worker_killed_mid_task_is_retried_and_changes_nothing(ray_tmp, tmp_path, load_config):
    out = tmp_path / "out"
    argv = [
        "sweep",
        "seed=31,32",
        "policy=soc_double_read",
        "cohort.size=4000",
        f"runtime.out_dir={out}",
        "--name",
        "kill",
        *ray_args(ray_tmp, cpus=2),
    ]
    proc = start(argv, tmp_path)
    victim: list[int] = []

    def unit_running() -> bool:
        victim[:] = [p for p in descendants(proc.pid) if " sites [" in cmdline(p)]
        return bool(victim) or proc.poll() is not None

    wait_for(unit_running)
    assert victim, (tmp_path / "stderr").read_text()
    os.kill(victim[0], signal.SIGKILL)
    assert proc.wait(600) == 0, (tmp_path / "stderr").read_text()
    man = json.loads((out / "sweeps" / "kill" / "manifest.json").read_text())
    assert man["status"] == "complete"
    for run in (out / "sweeps" / "kill" / "runs").iterdir():
        seed = int(run.name.rsplit("-", 1)[1])
        cfg, profiles, _ = load_config(
            "runtime=quiet", f"seed={seed}", "policy=soc_double_read", "cohort.size=4000"
        )
        direct = simulate(cfg, profiles, progress=False)
        assert tables(run)["metrics"].equals(direct.metrics)
        assert tables(run)["events"].equals(direct.events)


# ---------------------------------------------------------------- a two-node cluster
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def ray_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`ray start --block` in its own process group: stopped by that group, never `ray stop`."""
    ray = str(Path(sys.executable).parent / "ray")
    return subprocess.Popen(
        [ray, "start", "--block", "--node-ip-address=127.0.0.2", "--num-cpus=1", *args],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            time.sleep(1)  # the group's other processes follow their leader
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_sweep_on_a_two_node_cluster_equals_the_local_one(tmp_path, swept):
    import secrets

    port = free_port()
    session = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_ADDRESS": "",
    }
    head = ray_node(
        ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={session}"],
        env,
        tmp_path / "head.log",
    )
    worker = None
    try:
        wait_for(lambda: "Ray runtime started" in (tmp_path / "head.log").read_text(), 120)
        worker = ray_node([f"--address=127.0.0.2:{port}"], env, tmp_path / "worker.log")
        wait_for(lambda: "Ray runtime started" in (tmp_path / "worker.log").read_text(), 120)
        out = tmp_path / "out"
        argv = [
            *SANDBOX,
            "sweep",
            "runtime=quiet",
            "policy=soc_double_read,soc_single_read",
            "seed=3",
            "cohort.size=1500",
            f"runtime.out_dir={out}",
            "--name",
            "cluster",
        ]
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env={**env, "RAY_ADDRESS": f"127.0.0.2:{port}"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        assert "cluster (127.0.0.2:" in done.stdout and "on 2 node(s)" in done.stdout
        for run in (out / "sweeps" / "cluster" / "runs").iterdir():
            policy = "soc_double_read" if "double" in run.name else "soc_single_read"
            twin = next((swept / "runs").glob(f"*{policy}_seed-3"))
            assert all(tables(run)[t].equals(tables(twin)[t]) for t in ("metrics", "events"))
    finally:
        if worker is not None:
            stop(worker)
        stop(head)
        shutil.rmtree(session, ignore_errors=True)


def test_hydra_multirun_is_a_sweep(ray_tmp, tmp_path, capsys):
    argv = ["run", "-m", "policy=soc_double_read,soc_single_read", "seed=8", "cohort.size=300"]
    argv += [f"runtime.out_dir={tmp_path}", *ray_args(ray_tmp)]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "sweeps").iterdir()
    assert "2 of 2 runs finished (complete)" in out
    assert pl.read_parquet(folder / "metrics.parquet")["policy"].n_unique() == 2


def test_ai_policies_on_one_cohort_share_one_scoring_actor(ray_tmp, tmp_path, load_config):
    """Two AI policies, one cohort: the device loads once and every score is inferred once in
    the whole sweep; each run still equals its serial twin bit for bit."""
    out = tmp_path / "out"
    argv = ["sweep", "policy=ai_triage,ai_rule_out", "seed=9", "cohort.size=1200"]
    argv += [f"runtime.out_dir={out}", f"runtime.score_cache={tmp_path / 'cache'}", "--name", "ai"]
    from testkit import main

    assert main([*argv, *ray_args(ray_tmp)]) == 0
    inferred = alone = 0
    for run in sorted((out / "sweeps" / "ai" / "runs").iterdir()):
        policy = "ai_triage" if "triage" in run.name else "ai_rule_out"
        agent = json.loads((run / "manifest.json").read_text())["agents"]["lung_nodule_cnn"]
        inferred += agent["inferences"]
        cfg, profiles, _ = load_config(
            "runtime=quiet",
            f"policy={policy}",
            "seed=9",
            "cohort.size=1200",
            "runtime.score_cache=",
        )
        direct = simulate(cfg, profiles, progress=False)
        got = tables(run)
        assert got["events"].equals(direct.events) and got["metrics"].equals(direct.metrics)
        assert agent["threshold"] == direct.agents["lung_nodule_cnn"]["threshold"]
        alone += direct.agents["lung_nodule_cnn"]["inferences"]
    (cache,) = (tmp_path / "cache").glob("*.parquet")  # saved for next time
    assert inferred == pl.read_parquet(cache).height  # every exam image inferred once
    assert inferred < 0.6 * alone  # not once per policy


def test_resume_reuses_the_finished_units_of_an_unfinished_run(swept, tmp_path, capsys):
    """A run of two site blocks whose first block had finished when the sweep stopped: resume
    runs only the second, and the run is the same."""
    from sandbox.compose import load
    from sandbox.programmes import programme_for
    from sandbox.runners.distributed import save_unit, unit_folder
    from sandbox.simulate import build_cohort, simulate_sites
    from sandbox.sweep import compose_jobs, read_plan

    folder = tmp_path / "grid"
    shutil.copytree(swept, folder)
    plan = read_plan(folder)
    job = compose_jobs(plan, folder / "runs")[1]
    before = tables(folder / "runs" / job.run.name)
    shutil.rmtree(folder / "runs" / job.run.name)
    cfg, profiles, _ = load(list(job.run.overrides))
    programme = programme_for(cfg.scenario)
    part = simulate_sites(
        cfg, profiles, build_cohort(cfg, None, programme), [0], programme=programme
    )
    save_unit(unit_folder(folder / "units", job, [0]), job, (part, None))
    code, out, err = run_cli(["sweep", "--resume", str(folder)], capsys)
    assert code == 0, err
    assert "reused 1 finished unit(s)" in out
    after = tables(folder / "runs" / job.run.name)
    assert all(after[t].equals(before[t]) for t in before)
    assert not (folder / "units" / job.run.name).exists()  # kept units go once the run is written


def test_drifts_on_ray_equal_their_serial_twins(ray_tmp, tmp_path, load_config):
    """A device update with new weights (loaded in the workers), a population shift and a
    staffing cut, under a plan that rolls back: each run on Ray equals its serial twin."""
    out = tmp_path / "out"
    drifts = ("device_new_weights", "population_shift", "staffing_cut")
    argv = ["sweep", "policy=ai_concurrent", f"drift={','.join(drifts)}"]
    argv += ["monitoring=aimcu_rollback"]
    argv += ["seed=9", "cohort.size=1200", f"runtime.out_dir={out}", "--name", "drifts"]
    from testkit import main

    assert main([*argv, *ray_args(ray_tmp)]) == 0
    runs = sorted((out / "sweeps" / "drifts" / "runs").iterdir())
    assert len(runs) == 3
    for run in runs:
        drift = next(d for d in drifts if d in run.name)
        cfg, profiles, _ = load_config(
            "runtime=quiet",
            "policy=ai_concurrent",
            f"drift={drift}",
            "monitoring=aimcu_rollback",
            "seed=9",
            "cohort.size=1200",
        )
        direct = simulate(cfg, profiles, progress=False)
        got = tables(run)
        assert got["events"].equals(direct.events), drift
        assert got["metrics"].equals(direct.metrics), drift
        assert pl.read_parquet(run / "monitoring.parquet").equals(direct.monitoring), drift
        versions = json.loads((run / "manifest.json").read_text())["policy_versions"]
        if drift == "device_new_weights":
            assert versions["mobile_unit"][1]["device"]["name"] == "lung_nodule_cnn_skewed"
        if drift == "population_shift":
            assert (got["people"]["person_id"] >= 2**40).sum() == 2000

"""A sweep on local Ray against the same runs one after another: parallel efficiency, per-task
overhead and memory per worker.

What it measures
    Baseline, in the same invocation: the same ``--runs`` runs (soc_double_read, seeds 1..N,
    ``--people`` each) with the serial runner in this one process (compose, simulate, write the
    run folder: what ``sandbox run`` does, without paying Python's start-up per run). Then
    ``sandbox sweep`` of exactly those runs on an embedded local Ray with ``--cpus`` CPUs, as a
    subprocess, while the Ray workers' resident memory is sampled from /proc every 0.2 s.

    - parallel efficiency = serial seconds / (cpus x sweep seconds), for the sweep's execute
      stage (tasks submitted to last run folder written) and for its whole wall time (Ray start
      and composing every run included);
    - per-task overhead: the same two measurements on tiny runs (``--tiny-people``), where
      simulation costs almost nothing: (cpus x execute seconds - serial seconds) / tasks;
    - memory: the largest resident set of any Ray worker process (``ray::`` in its title), and
      of the driver.

    The sweep's runs are checked equal to the serial ones (metrics tables), so the speed is not
    bought with a different answer.

How to run::

    .venv/bin/python benchmarks/sweep_efficiency.py                     # 8 runs x 8,000 people, 2 CPUs
    .venv/bin/python benchmarks/sweep_efficiency.py --runs 16 --people 20000 --cpus 2

Writes ``<out>/sweep_efficiency.json`` (``--out``, default /tmp).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common
import polars as pl

ROOT = _common.ROOT
SANDBOX = Path(sys.executable).parent / "sandbox"


def serial(runs: int, people: int, out: Path) -> float:
    from sandbox.compose import load
    from sandbox.runners.local import run

    t0 = time.perf_counter()
    for seed in range(1, runs + 1):
        overrides = [
            "runtime=quiet",
            "policy=soc_double_read",
            f"seed={seed}",
            f"cohort.size={people}",
            f"runtime.out_dir={out}",
            f"runtime.run_name=seed{seed}",
        ]
        cfg, profiles, _ = load(overrides)
        run(cfg, profiles, overrides)
    return time.perf_counter() - t0


def rss_mb(pid: str) -> float:
    try:
        for line in (Path("/proc") / pid / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def title(pid: str) -> str:
    try:
        return (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def sweep(runs: int, people: int, cpus: int, out: Path, ray_tmp: str) -> dict:
    argv = [
        str(SANDBOX),
        "sweep",
        "runtime=quiet",
        "policy=soc_double_read",
        f"seed=range(1,{runs + 1})",
        f"cohort.size={people}",
        f"runtime.out_dir={out}",
        f"runtime.ray.num_cpus={cpus}",
        f"runtime.ray.temp_dir={ray_tmp}",
        "--name",
        "bench",
    ]
    peak = {"worker": 0.0, "driver": 0.0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for p in Path("/proc").iterdir():
                if p.name.isdigit() and "ray::" in title(p.name):
                    peak["worker"] = max(peak["worker"], rss_mb(p.name))
            peak["driver"] = max(peak["driver"], rss_mb(str(proc.pid)))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    if proc.returncode != 0:
        sys.exit(f"sweep failed: {stderr.decode()[-2000:]}")
    man = json.loads((out / "sweeps" / "bench" / "manifest.json").read_text())
    return {"wall_s": wall, **man["timings_s"], "tasks": man["tasks"], "peak_rss_mb": peak}


def same(serial_out: Path, sweep_out: Path, runs: int) -> bool:
    for seed in range(1, runs + 1):
        a = pl.read_parquet(serial_out / f"seed{seed}" / "metrics.parquet")
        b = next((sweep_out / "sweeps" / "bench" / "runs").glob(f"*seed-{seed}"))
        if not a.equals(pl.read_parquet(b / "metrics.parquet")):
            return False
    return True


def measure(runs: int, people: int, cpus: int, tmp: Path) -> dict:
    s_out, p_out = tmp / f"serial{people}", tmp / f"sweep{people}"
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    try:
        t_serial = serial(runs, people, s_out)
        par = sweep(runs, people, cpus, p_out, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return {
        "serial_s": t_serial,
        "sweep": par,
        "efficiency_execute": t_serial / (cpus * par["execute"]),
        "efficiency_wall": t_serial / (cpus * par["total"]),
        "overhead_per_task_s": (cpus * par["execute"] - t_serial) / par["tasks"],
        "identical": same(s_out, p_out, runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--people", type=int, default=8000)
    ap.add_argument("--tiny-people", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        big = measure(args.runs, args.people, args.cpus, tmp)
        tiny = measure(args.runs, args.tiny_people, args.cpus, tmp)
    rows = [
        [
            f"{args.runs} x {people:,} people",
            m["serial_s"],
            m["sweep"]["execute"],
            m["sweep"]["total"],
            m["efficiency_execute"],
            m["efficiency_wall"],
            m["identical"],
        ]
        for people, m in ((args.people, big), (args.tiny_people, tiny))
    ]
    print(
        _common.table(
            [
                "runs",
                "serial s",
                "sweep execute s",
                "sweep wall s",
                f"efficiency ({args.cpus} CPUs)",
                "efficiency, wall",
                "identical",
            ],
            rows,
        )
    )
    print(
        f"\nper-task overhead (tiny runs, {tiny['sweep']['tasks']} tasks): "
        f"{tiny['overhead_per_task_s'] * 1000:.0f} ms; Ray start {big['sweep']['ray_start']:.1f} s"
    )
    print(
        f"peak RSS: a Ray worker {big['sweep']['peak_rss_mb']['worker']:.0f} MiB, "
        f"the driver {big['sweep']['peak_rss_mb']['driver']:.0f} MiB"
    )
    path = _common.write_json(
        args.out,
        "sweep_efficiency.json",
        {"args": vars(args), "machine": _common.machine(), "big": big, "tiny": tiny},
    )
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()

"""A monitoring plan's operating characteristics over many seeds: false alarms per site-year
without drift, and days to detection of a drift.

Runs (or reads) one sweep of ``--seeds`` seeds x {no drift, ``--drift``} under ``--policy``
with ``--plan``, then, from each run's ``monitoring.parquet``:

* **false alarms per site-year**: alarm days (a day on which any of the plan's charts alarms
  at a site) where no drift has happened yet (every site of the no-drift runs; the drifted
  site before its drift day), over the site-years monitored there; with an exact Poisson 95 %
  interval (Garwood);
* **days to detection**: per drift run, the first alarm day at the drifted site on or after the
  drift day, minus the drift day; median, mean with a bootstrap 95 % interval over seeds, and
  the share of runs that detected it before the run ended;
* **harm during the delay**: at the drifted site, over the screens performed from the drift
  day until the plan's action could take effect (first alarm + 1 + ``days_to_act``), the drift
  run minus the no-drift run of the same seed (the same people): visible cancers not reported,
  positive reports (recalls), human reads and AI-positive screens, per 1,000 such screens.

Run:

    python benchmarks/surveillance.py [--seeds 20] [--policy ai_triage]
        [--drift scanner_update] [--plan aimcu_cusum] [--set cohort.size=20000 ...]
        [--sweep FOLDER]  # summarise a finished sweep instead of running one
        [--workers N]     # run by ``sandbox run`` in N processes instead of a Ray sweep
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
import numpy as np
import polars as pl
import yaml
from scipy import stats

from sandbox.outcomes.surveillance import HARM, drift_start, window_counts


def run_sweep(args: argparse.Namespace, out: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "sandbox.cli",
        "sweep",
        f"policy={args.policy}",
        f"drift=none,{args.drift}",
        f"monitoring={args.plan}",
        f"seed=range(1,{args.seeds + 1})",
        f"runtime.out_dir={out}",
        "runtime.progress=false",
        *args.set,
    ]
    print("$", " ".join(cmd[2:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=_common.ROOT)
    return sorted((out / "sweeps").iterdir())[-1]


def run_local(args: argparse.Namespace, out: Path) -> Path:
    """The same runs as the sweep, by ``sandbox run`` in ``--workers`` processes (each seed's
    no-drift run first, so that its drift run replays the scores before the drift)."""
    from concurrent.futures import ThreadPoolExecutor

    runs = out / "local" / "runs"
    runs.mkdir(parents=True)

    def seed_pair(seed: int) -> None:
        for drift in ("none", args.drift):
            cmd = [
                sys.executable,
                "-m",
                "sandbox.cli",
                "run",
                f"policy={args.policy}",
                f"drift={drift}",
                f"monitoring={args.plan}",
                f"seed={seed}",
                f"runtime.out_dir={runs}",
                f"runtime.run_name=seed{seed:03d}-{drift}",
                "runtime=quiet",
                *args.set,
            ]
            subprocess.run(cmd, check=True, cwd=_common.ROOT, stdout=subprocess.DEVNULL)

    print(f"$ sandbox run x {2 * args.seeds} in {args.workers} processes", file=sys.stderr)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(seed_pair, range(1, args.seeds + 1)))
    return runs.parent


def alarm_days(frame: pl.DataFrame) -> dict[str, tuple[np.ndarray, float, float]]:
    """Per site: the days any chart alarmed, and the first and last day monitored."""
    out = {}
    if "group" in frame.columns:  # the plan acts on a site's own charts, not a subgroup's
        frame = frame.filter(pl.col("group") == "")
    for (site,), g in frame.group_by("site", maintain_order=True):
        days = g.filter(pl.col("alarm"))["day"].unique().sort().to_numpy()
        out[str(site)] = (days, float(g["day"].min()), float(g["day"].max()))
    return out


def summarise(sweep: Path) -> dict:
    false_alarms, site_years, delays, undetected = 0, 0.0, [], 0
    runs = 0
    baseline: dict[int, Path] = {}
    windows: list[tuple[int, Path, int, float, float]] = []
    for run in sorted((sweep / "runs").iterdir()):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        frame = pl.read_parquet(run / "monitoring.parquet")
        drift = drift_start(cfg["drift"])
        if not drift:
            baseline[int(cfg["seed"])] = run
        runs += 1
        names = [s["name"] for s in cfg["sites"]]
        act = float(cfg["monitoring"]["days_to_act"])
        for site, (days, first, last) in alarm_days(frame).items():
            end = min(drift.get(site, math.inf), last + 1.0)
            false_alarms += int((days < end).sum())
            site_years += max(0.0, end - first) / 365.25
            if site in drift:
                after = days[days >= drift[site]]
                if len(after):
                    delays.append(float(after[0] - drift[site]))
                    # harm until the plan's action could take effect
                    stop = float(after[0]) + 1.0 + act
                    windows.append((int(cfg["seed"]), run, names.index(site), drift[site], stop))
                else:
                    undetected += 1
    # harm during the detection delay: the drift run minus the no-drift run, same people
    excess = {k: 0.0 for k in HARM}
    screens = 0.0
    for seed, run, site, start, stop in windows:
        if seed not in baseline:
            continue
        got, ref = (
            window_counts(pl.read_parquet(run / "events.parquet"), site, start, stop),
            window_counts(pl.read_parquet(baseline[seed] / "events.parquet"), site, start, stop),
        )
        screens += got["screens"]
        for k in HARM:
            excess[k] += got[k] - ref[k]
    lo = stats.chi2.ppf(0.025, 2 * false_alarms) / 2 if false_alarms else 0.0
    hi = stats.chi2.ppf(0.975, 2 * false_alarms + 2) / 2
    d = np.array(delays)
    rng = np.random.default_rng(0)
    boot = [rng.choice(d, len(d)).mean() for _ in range(2000)] if len(d) else [math.nan]
    return {
        "sweep": str(sweep),
        "runs": runs,
        "false_alarms": false_alarms,
        "site_years_monitored": site_years,
        "false_alarms_per_site_year": false_alarms / site_years if site_years else math.nan,
        "false_alarms_per_site_year_95ci": [lo / site_years, hi / site_years],
        "drift_runs": len(d) + undetected,
        "detected": len(d),
        "days_to_detection_median": float(np.median(d)) if len(d) else math.nan,
        "days_to_detection_mean": float(d.mean()) if len(d) else math.nan,
        "days_to_detection_mean_95ci": [
            float(np.percentile(boot, 2.5)),
            float(np.percentile(boot, 97.5)),
        ],
        "days_to_detection_range": [float(d.min()), float(d.max())] if len(d) else None,
        "screens_during_delay": screens,
        "excess_per_1000_screens_during_delay": {
            k: 1000.0 * v / screens if screens else math.nan for k, v in excess.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--policy", default="ai_triage")
    ap.add_argument("--drift", default="scanner_update")
    ap.add_argument("--plan", default="aimcu_cusum")
    ap.add_argument("--set", nargs="*", default=[], help="more overrides for every run")
    ap.add_argument("--sweep", help="a finished sweep folder to summarise")
    ap.add_argument(
        "--workers", type=int, default=0, help="run by sandbox run in N processes, not a sweep"
    )
    ap.add_argument("--out", default="/tmp")
    args = ap.parse_args()
    if args.sweep:
        sweep = Path(args.sweep)
    elif args.workers:
        sweep = run_local(args, Path(tempfile.mkdtemp(prefix="bench-surveillance-")))
    else:
        sweep = run_sweep(args, Path(tempfile.mkdtemp(prefix="bench-surveillance-")))
    res = summarise(sweep)
    ci = res["false_alarms_per_site_year_95ci"]
    dci = res["days_to_detection_mean_95ci"]
    rows = [
        ["runs (no drift and drift)", str(res["runs"])],
        ["site-years monitored before any drift", f"{res['site_years_monitored']:.1f}"],
        [
            "false alarms per site-year",
            f"{res['false_alarms_per_site_year']:.2f} ({ci[0]:.2f} to {ci[1]:.2f}), "
            f"{res['false_alarms']} alarms",
        ],
        ["drifts detected", f"{res['detected']} of {res['drift_runs']}"],
        [
            "days to detection, mean",
            f"{res['days_to_detection_mean']:.1f} ({dci[0]:.1f} to {dci[1]:.1f})",
        ],
        ["days to detection, median", f"{res['days_to_detection_median']:g}"],
        ["days to detection, range", str(res["days_to_detection_range"])],
        ["screens at the drifted site until the action", f"{res['screens_during_delay']:,.0f}"],
    ]
    for k, v in res["excess_per_1000_screens_during_delay"].items():
        rows.append([f"excess {k.replace('_', ' ')} per 1,000 of them", f"{v:+.2f}"])
    print(_common.table(["", "value"], rows))
    _common.write_json(args.out, "surveillance.json", {"machine": _common.machine(), **res})
    print(json.dumps({"sweep": res["sweep"]}))


if __name__ == "__main__":
    main()

"""Drift on the timeline and monitoring plans: config errors, the CUSUM monitor and its
actions, and a run with a scanner drift that the default plan catches and acts on."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import testkit
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.config import Cusum, Ewma, Label, Monitoring, Window
from sandbox.outcomes.surveillance import CusumMonitor, alarm_summary, label_test, psi
from sandbox.programmes.base import PersonEvent
from sandbox.workflow.observers import WorkupDone

SMALL = ["cohort.size=3000", "seed=11", "runtime=quiet", "runtime.device=cpu"]
DRIFT_DAY = 200
DRIFT = ["drift=scanner_update", f"drift.scanner_changes.0.day={DRIFT_DAY}"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with testkit.one_torch_thread():
        yield


# ------------------------------------------------------------------ config errors
@pytest.mark.parametrize(
    "argv, needles",
    [
        (["drift.scanner_changes.0.site=nowhere"], ["drift.scanner_changes[0].site", "nowhere"]),
        (
            ["drift.scanner_changes.0.scanner.hu_offset=999"],
            ["drift.scanner_changes[0].scanner.hu_offset", "999"],
        ),
        (["drift.scanner_changes.0.day=-3"], ["drift.scanner_changes[0].day", "-3"]),
        (["monitoring=aimcu_cusum", "monitoring.cusums.0.statistic=auc"], ["statistic", "auc"]),
        (["monitoring=aimcu_cusum", "monitoring.action=panic"], ["monitoring.action", "panic"]),
        (
            ["monitoring=score_distribution", "monitoring.windows.0.statistic=mad"],
            ["statistic", "mad"],
        ),
        (
            ["monitoring=score_distribution", "monitoring.windows.1.days=0"],
            ["monitoring.windows[1].days", "0"],
        ),
    ],
)
def test_bad_drift_or_plan_is_one_line(argv, needles, tmp_path, capsys):
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(
        ["run", *SMALL, "policy=ai_triage", *DRIFT, *argv, f"runtime.out_dir={out_dir}"], capsys
    )
    assert_one_line_error(code, err, *needles)
    assert_nothing_written(out_dir)


def test_a_scanner_change_replaces_only_its_fields(load_config):
    cfg, _, _ = load_config(*SMALL, *DRIFT)
    ((day, scanner, reason),) = cfg.scanner_changes("mobile_unit")
    base = next(s.scanner for s in cfg.scenario.sites if s.name == "mobile_unit")
    assert day == DRIFT_DAY and "update" in reason
    assert (scanner.hu_offset, scanner.kernel_fwhm_mm) == (40.0, 0.8)
    assert (scanner.dose_mgy, scanner.noise_hu_at_1mgy) == (base.dose_mgy, base.noise_hu_at_1mgy)
    assert scanner.model != base.model  # a new score-cache key for the new images
    assert cfg.scanner_changes("city_hospital") == []


# ------------------------------------------------------------------ the monitor alone
class FakeSite:
    def __init__(self, name: str) -> None:
        self.name, self.now, self.calls = name, 0.0, []
        self.policy = SimpleNamespace(
            standard_of_care=lambda day, reason: self.calls.append(("soc", day, reason)),
            set_threshold=lambda t, day, reason: self.calls.append(("threshold", t, day)),
            roll_back=lambda day, reason: self.calls.append(("roll_back", day, reason)),
        )
        self.site = SimpleNamespace(workup_days_to_result=10.0)
        self.schedule_cfg = SimpleNamespace(interval_cancer_window_years=1.0)


def feed(monitor: CusumMonitor, site: FakeSite, days: int, shift_from: int, shift: float):
    """Forty reads a day of scores ~ Beta(2, 5) (mean 0.29), plus ``shift`` from a day on."""
    rng = np.random.default_rng(5)
    for day in range(days):
        site.now = float(day)
        monitor.on_day(site, day)
        scores = np.clip(rng.beta(2, 5, 40) + (shift if day >= shift_from else 0.0), 0, 1)
        for s in scores:
            record = SimpleNamespace(
                ai_score=float(s), ai_positive=bool(s >= 0.5), reported_day=day + 0.3
            )
            monitor.on_exam(site, record)
    monitor.on_day(site, days)


def plan(action: str = "alert") -> Monitoring:
    return Monitoring(
        name="t",
        cusums=(Cusum("ai_positive_rate", 0.75, 7.0), Cusum("mean_score", 0.75, 7.0)),
        baseline_days=60,
        action=action,
        days_to_act=7.0,
    )


def test_no_alarm_in_control_and_a_fast_alarm_after_a_shift():
    quiet, shifted = CusumMonitor(plan(), 0.5), CusumMonitor(plan(), 0.5)
    feed(quiet, FakeSite("a"), 700, 10**9, 0.0)
    feed(shifted, FakeSite("a"), 700, 400, 0.05)
    q, s = quiet.frame(), shifted.frame()
    assert q.height == 2 * (700 - 60) and not q["alarm"].any()
    first = s.filter(pl.col("alarm"))["day"].min()
    assert s.filter(pl.col("day") < 400)["alarm"].sum() == 0
    assert 400 <= first <= 410  # a 0.05 shift of the mean score, ~1.5 SD of a day's mean
    summary = alarm_summary(s, {"a": 400.0}, 700.0)
    assert set(summary["days_to_detection"].to_list()) <= set(range(0, 30))
    assert summary["false_alarms"].sum() == 0


def test_standard_of_care_after_the_delay_to_act_once():
    monitor, site = CusumMonitor(plan("standard_of_care"), 0.5), FakeSite("a")
    feed(monitor, site, 600, 300, 0.1)
    (call,) = site.calls
    frame = monitor.frame()
    first = frame.filter(pl.col("alarm"))["day"].min()
    assert call[0] == "soc" and call[1] == first + 1 + 7 and "CUSUM alarm" in call[2]
    assert frame.filter(pl.col("alarm"))["action"].to_list()[0] == "standard_of_care"


def window_plan(action: str = "alert") -> Monitoring:
    return Monitoring(
        name="w",
        windows=(Window("psi", 30, 0.25), Window("ks", 30, 0.001)),
        baseline_days=60,
        action=action,
        days_to_act=7.0,
    )


def test_psi_is_zero_for_the_same_distribution_and_follows_its_formula():
    rng = np.random.default_rng(2)
    ref = rng.beta(2, 5, 20_000)
    assert psi(rng.beta(2, 5, 20_000), ref) < 0.01
    # every score in the reference's top decile: (1 - 0.1) ln 10 + 9 (1e-4 - 0.1) ln(1e-3)
    top = np.full(500, ref.max())
    want = 0.9 * np.log(10) + 9 * (1e-4 - 0.1) * np.log(1e-3)
    assert psi(top, ref) == pytest.approx(want, rel=1e-3)


def test_window_tests_stay_quiet_in_control_and_alarm_at_the_first_window_after_a_shift():
    quiet, shifted = CusumMonitor(window_plan(), 0.5), CusumMonitor(window_plan(), 0.5)
    feed(quiet, FakeSite("a"), 700, 10**9, 0.0)
    feed(shifted, FakeSite("a"), 700, 400, 0.05)
    q, s = quiet.frame(), shifted.frame()
    assert set(q["statistic"]) == {"psi", "ks"} and not q["alarm"].any()
    assert q.filter(pl.col("statistic") == "ks")["p_value"].min() > 0.001
    assert q.filter(pl.col("statistic") == "psi")["value"].max() < 0.1
    # windows of 30 days from the end of the 60-day baseline: the first to hold shifted reads
    first = s.filter(pl.col("alarm") & (pl.col("statistic") == "ks"))["day"].min()
    assert 400 <= first < 430
    assert s.filter(pl.col("day") < 400)["alarm"].sum() == 0


def test_a_window_alarm_acts_like_a_cusum_alarm():
    monitor, site = CusumMonitor(window_plan("standard_of_care"), 0.5), FakeSite("a")
    feed(monitor, site, 600, 300, 0.1)
    (call,) = site.calls
    assert call[0] == "soc" and "test alarm" in call[2]


def test_recalibration_restores_the_in_control_positive_rate():
    monitor, site = CusumMonitor(plan("recalibrate"), 0.5), FakeSite("a")
    feed(monitor, site, 500, 300, 0.1)
    kind, threshold, day = site.calls[0]
    assert kind == "threshold" and day > 300
    rng = np.random.default_rng(1)
    before = np.mean(rng.beta(2, 5, 100_000) >= 0.5)
    after = np.mean(np.clip(rng.beta(2, 5, 100_000) + 0.1, 0, 1) >= threshold)
    assert after == pytest.approx(before, abs=0.03)


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def drift_runs(tmp_path_factory):
    """The same people without drift, with a drift and an alert-only plan, and with the
    fallback plan (the site reads without the AI seven days after an alarm)."""
    root = tmp_path_factory.mktemp("surveillance")
    capsys = None
    runs = {}
    for name, extra in {
        "none": ["monitoring=aimcu_cusum", "monitoring.baseline_days=60"],
        "alert": [*DRIFT, "monitoring=aimcu_cusum", "monitoring.baseline_days=60"],
        "fallback": [*DRIFT, "monitoring=aimcu_fallback", "monitoring.baseline_days=60"],
    }.items():
        from sandbox.cli import main

        code = main(
            [
                "run",
                *SMALL,
                "policy=ai_triage",
                *extra,
                f"runtime.out_dir={root}",
                f"runtime.run_name={name}",
                f"runtime.score_cache={root / 'cache'}",
            ]
        )
        assert code == 0
        runs[name] = root / name
    del capsys
    return runs


def test_drift_changes_only_the_drifted_site_after_its_day(drift_runs):
    cols = ["site", "person_id", "exam_day", "ai_score", "ai_positive", "recalled"]
    keep = [c for c in cols if c in pl.read_parquet(drift_runs["none"] / "events.parquet").columns]
    none = pl.read_parquet(drift_runs["none"] / "events.parquet").select(keep)
    alert = pl.read_parquet(drift_runs["alert"] / "events.parquet").select(keep)
    before = pl.col("exam_day") < DRIFT_DAY
    assert none.filter(before).equals(alert.filter(before))
    city = pl.col("site") == 0
    assert none.filter(city).equals(alert.filter(city))
    late = ~before & ~city & pl.col("ai_score").is_not_null()
    assert alert.filter(late)["ai_score"].mean() > none.filter(late)["ai_score"].mean() + 0.1


def test_the_default_plan_detects_the_drift_and_the_fallback_acts(drift_runs):
    alert = pl.read_parquet(drift_runs["alert"] / "monitoring.parquet")
    summary = alarm_summary(alert, {"mobile_unit": float(DRIFT_DAY)}, 1e9)
    mobile = summary.filter(pl.col("site") == "mobile_unit")
    assert mobile["days_to_detection"].min() <= 30
    assert summary["false_alarms"].sum() == 0
    manifest = json.loads((drift_runs["fallback"] / "manifest.json").read_text())
    versions = manifest["policy_versions"]["mobile_unit"]
    assert len(versions) == 2 and versions[1]["role"] == "none"
    assert DRIFT_DAY < versions[1]["from_day"] <= DRIFT_DAY + 40
    assert "CUSUM alarm" in versions[1]["reason"]
    events = pl.read_parquet(drift_runs["fallback"] / "events.parquet")
    switched = events.filter(
        (pl.col("site") == 1) & (pl.col("exam_day") >= versions[1]["from_day"])
    )
    assert switched.height > 0 and switched["ai_score"].null_count() == switched.height
    assert (switched["policy_version"] == 1).all()
    assert len(manifest["policy_versions"]["city_hospital"]) == 1
    assert not math.isnan(float(mobile["days_to_detection"].min()))


def test_a_validation_reference_charts_from_the_first_day():
    ref = np.random.default_rng(2).beta(2, 5, 5000)
    p = Monitoring(name="v", cusums=(Cusum("mean_score", 0.75, 7.0),), reference="validation")
    same, shifted = CusumMonitor(p, 0.5, ref), CusumMonitor(p, 0.5, ref)
    feed(same, FakeSite("a"), 300, 10**9, 0.0)
    feed(shifted, FakeSite("a"), 300, 0, 0.05)  # a site that reads differently from day 0
    assert same.frame()["day"].min() == 0 and not same.frame()["alarm"].any()
    assert shifted.frame().filter(pl.col("alarm"))["day"].min() < 10
    with pytest.raises(ValueError, match="reference scores"):
        CusumMonitor(p, 0.5, None)


def test_sandbox_monitor_prints_the_alarms_and_plots_the_charts(drift_runs, tmp_path, capsys):
    plot = tmp_path / "charts.svg"
    code, out, err = run_cli(["monitor", str(drift_runs["fallback"]), "--plot", str(plot)], capsys)
    assert code == 0, err
    assert "aimcu_fallback" in out and "mobile_unit" in out and "days" in out
    svg = plot.read_text()
    assert svg.startswith("<?xml") and "mobile_unit: mean_score" in svg and "drift" in svg
    code, _, err = run_cli(
        ["monitor", str(drift_runs["fallback"]), "--plot", str(tmp_path / "x.pdf")], capsys
    )
    assert_one_line_error(code, err, "--plot", "x.pdf")


def test_sandbox_monitor_of_a_run_without_a_plan(tmp_path, capsys):
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(
        [
            "run",
            "cohort.size=300",
            "seed=3",
            "runtime=quiet",
            f"runtime.out_dir={out_dir}",
            "runtime.run_name=plain",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = run_cli(["monitor", str(out_dir / "plain")], capsys)
    assert_one_line_error(code, err, "monitoring.parquet")


def test_sandbox_compare_shows_the_plans_side_by_side(drift_runs, capsys):
    code, out, err = run_cli(
        [
            "compare",
            str(drift_runs["alert"]),
            str(drift_runs["fallback"]),
            "--site",
            "mobile_unit",
            "--metric",
            "ai_scored_screens",
        ],
        capsys,
    )
    assert code == 0, err
    plans = out[out.index("monitoring plans") : out.index("metric (95% interval)")]
    lines = {ln.split()[0] + ln.split()[2]: ln for ln in plans.splitlines()[3:] if ln.strip()}
    assert "aimcu_cusum" in lines["Amobile_unit"] and "1 of 1" in lines["Amobile_unit"]
    assert "aimcu_fallback" in lines["Bmobile_unit"] and "no drift" in lines["Bcity_hospital"]
    # only the fallback plan changed the drifted site's policy
    assert lines["Amobile_unit"].rstrip().endswith("0 of 1")
    assert lines["Bmobile_unit"].rstrip().endswith("1 of 1")
    # and the paired comparison on the same people: after the fallback no AI reads there
    paired = out[out.index("paired differences") :]
    scored = next(ln for ln in paired.splitlines() if ln.startswith("ai_scored_screens"))
    hi = float(scored.split("(")[1].split(" to ")[1].split(")")[0].replace(",", ""))
    assert hi < 0, scored


def test_sandbox_compare_counts_the_harm_until_the_plan_could_act(drift_runs, capsys):
    code, out, err = run_cli(["compare", str(drift_runs["none"]), str(drift_runs["alert"])], capsys)
    assert code == 0, err
    assert "harm until the plan could act (B - A" in out
    table = out[out.index("harm until the plan could act") : out.index("metric (95% interval)")]
    (row,) = [ln for ln in table.splitlines() if ln.startswith("mobile_unit")]
    cells = row.split()
    screens = int(cells[1].replace(",", ""))
    mon = pl.read_parquet(drift_runs["alert"] / "monitoring.parquet")
    first = mon.filter((pl.col("site") == "mobile_unit") & pl.col("alarm"))["day"].min()
    events = pl.read_parquet(drift_runs["alert"] / "events.parquet").filter(
        (pl.col("site") == 1)
        & (pl.col("exam_kind") == "screen")
        & pl.col("exam_day").is_between(DRIFT_DAY, first + 1 + 7, closed="left")
    )
    assert screens == events.height > 0
    # the +40 HU update makes the device call far more screens positive until the plan acts
    assert float(cells[-1]) > 300  # AI-positive per 1,000 screens
    # both arms drifted: no harm table
    code, out, _ = run_cli(
        ["compare", str(drift_runs["alert"]), str(drift_runs["fallback"])], capsys
    )
    assert code == 0 and "harm until the plan could act" not in out


# ------------------------------------------------------------------ a device update
def test_a_device_update_moves_one_sites_operating_point_from_its_day(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=ai_triage", "drift=device_update"]
    argv += ["drift.device_changes.0.day=200", "monitoring=aimcu_cusum"]
    argv += ["monitoring.baseline_days=60", f"runtime.out_dir={out}", "runtime.run_name=upd"]
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    man = json.loads((out / "upd" / "manifest.json").read_text())
    city = man["policy_versions"]["city_hospital"]
    assert [v["from_day"] for v in city] == [0.0, 200.0] and "device update" in city[1]["reason"]
    assert city[1]["threshold"] < city[0]["threshold"]  # percentile 0.75 against 0.9
    assert len(man["policy_versions"]["mobile_unit"]) == 1
    e = pl.read_parquet(out / "upd" / "events.parquet").filter(pl.col("ai_score").is_not_null())
    rate = (
        e.with_columns(after=pl.col("exam_day") >= 200)
        .group_by("site", "after")
        .agg(pl.col("ai_positive").mean())
    )

    def r(site, after):
        return rate.filter((pl.col("site") == site) & (pl.col("after") == after)).item(0, 2)

    assert r(0, True) > 1.8 * r(0, False)  # the city hospital: about 2.5 times as many
    assert r(1, True) == pytest.approx(r(1, False), abs=0.05)  # the mobile unit: unchanged
    # the plan sees the update as the drift it is: detected, not a false alarm
    assert "city_hospital  ai_positive_rate" in text and "false alarms" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("city_hospital  ai_positive_rate"))
    assert " 200 " in line and "days" in line.split(" 200 ")[1]


def test_a_device_update_at_an_unknown_site_is_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=ai_triage", "drift=device_update"]
    code, _, err = run_cli(
        [*argv, "drift.device_changes.0.site=moon", f"runtime.out_dir={out}"], capsys
    )
    assert_one_line_error(code, err, "drift.device_changes[0].site", "moon")
    assert_nothing_written(out)


def test_a_window_waits_for_its_minimum_of_reads():
    plan = Monitoring(name="w", windows=(Window("psi", 30, 0.25, 5000),), baseline_days=60)
    monitor = CusumMonitor(plan, 0.5)
    feed(monitor, FakeSite("a"), 700, 10**9, 0.0)
    frame = monitor.frame()
    assert (frame["reads"] >= 5000).all()
    assert frame.height == (700 - 60) // 125  # 40 reads a day: 125 days to hold 5,000


def feed_recalls(
    monitor: CusumMonitor, site: FakeSite, days: int, shift_from: int, p: float, seed: int = 9
):
    """Forty screens a day (no AI), each recalled with probability 0.10, ``p`` from a day on."""
    rng = np.random.default_rng(seed)
    for day in range(days):
        site.now = float(day)
        monitor.on_day(site, day)
        rate = p if day >= shift_from else 0.10
        for recalled in rng.random(40) < rate:
            record = SimpleNamespace(
                ai_score=None,
                exam_kind="screen",
                management="workup" if recalled else "next_round",
                reported_day=day + 0.3,
            )
            monitor.on_exam(site, record)
    monitor.on_day(site, days)


def ewma_plan(action: str = "alert") -> Monitoring:
    return Monitoring(
        name="e", ewmas=(Ewma("recall_rate", 0.1, 3.5),), baseline_days=90, action=action
    )


def test_an_ewma_of_the_recall_rate_sees_every_screen_and_a_shift_in_it():
    quiet = [CusumMonitor(ewma_plan(), 0.5) for _ in range(6)]
    for seed, monitor in enumerate(quiet):
        feed_recalls(monitor, FakeSite("a"), 700, 10**9, 0.10, seed)
    shifted = CusumMonitor(ewma_plan(), 0.5)
    feed_recalls(shifted, FakeSite("a"), 700, 400, 0.15)
    q, s = quiet[0].frame(), shifted.frame()
    assert set(q["statistic"]) == {"recall_rate"} and q.height == 700 - 90
    assert (q["reads"] == 40).all()  # screens without an AI score count too
    # in control: at most 6 alarms in 6 x 610 days (10 site-years of 40 screens a day)
    assert sum(int(m.frame()["alarm"].sum()) for m in quiet) <= 6
    # the limits: the EWMA's own noise and the error of the 90-day in-control estimate
    asymptotic = 3.5 * math.sqrt(0.1 / 1.9 + 40 / 3600)
    assert q["limit"].max() == pytest.approx(asymptotic, rel=1e-3)
    first = s.filter(pl.col("alarm") & (pl.col("day") >= 400))["day"].min()
    assert 400 <= first <= 440  # a shift of 0.05: half a daily SD per day


def test_an_ewma_alarm_acts_like_the_others():
    monitor, site = CusumMonitor(ewma_plan("standard_of_care"), 0.5), FakeSite("a")
    feed_recalls(monitor, site, 600, 300, 0.2)
    (call,) = site.calls
    assert call[0] == "soc" and "recall_rate EWMA alarm" in call[2]


# ------------------------------------------------------------------ delayed labels
def feed_outcomes(
    monitor: CusumMonitor,
    site: FakeSite,
    days: int,
    shift_from: int,
    sensitivity: float,
    ppv: float,
    seed: int = 3,
):
    """A year-long cohort's screens: 60 a day, one in 100 with a cancer that the screen finds
    (a diagnosis 20 days on) with probability 0.9, ``sensitivity`` for screens from a day on,
    or that surfaces 200 days on (an interval cancer); four work-ups a day, finding cancer
    with probability 0.5, ``ppv`` from a day on. Each person is screened once (first screens
    only), so one stratum."""
    rng = np.random.default_rng(seed)
    pending: dict[int, list[PersonEvent]] = {}
    pid = 0
    for day in range(days):
        site.now = float(day)
        for event in pending.pop(day, []):
            monitor.on_person(site, event)
        monitor.on_day(site, day)
        later = day >= shift_from
        for _ in range(60):
            pid += 1
            record = SimpleNamespace(
                ai_score=None,
                exam_kind="screen",
                management="next_round",
                reported_day=day + 0.3,
                exam_day=day + 0.1,
                person_id=pid,
                round=0,
            )
            monitor.on_exam(site, record)
            if rng.random() < 0.01:
                found = rng.random() < (sensitivity if later else 0.9)
                when = day + (20 if found else 200)
                route = "screen" if found else "clinical"
                pending.setdefault(when, []).append(
                    PersonEvent("diagnosis", pid, float(when), route, "IA")
                )
        for _ in range(4):
            cancer = rng.random() < (ppv if later else 0.5)
            monitor.on_workup(
                site,
                WorkupDone(
                    pid, 0, 1, day + 0.4, day + 10.4 if cancer else None, None, False, False
                ),
            )
    monitor.on_day(site, days)


def label_plan(action: str = "alert") -> Monitoring:
    return Monitoring(
        name="l",
        labels=(
            Label("ppv", 60, 0.01, 30, 180),
            Label("sensitivity", 180, 0.01, 20, 180),
            Label("interval_cancer_rate", 180, 0.01, 500, 180),
        ),
        action=action,
    )


def test_delayed_labels_arrive_only_when_the_world_reveals_them():
    quiet = CusumMonitor(label_plan(), 0.5)
    feed_outcomes(quiet, FakeSite("a"), 1500, 10**9, 0.9, 0.5)
    q = quiet.frame()
    first = q.group_by("statistic").agg(pl.col("day").min()).sort("statistic")
    day = dict(zip(first["statistic"], first["day"], strict=True))
    # work-up results from day 10 on; a baseline of 180 days; then a 60-day window
    assert 10 + 180 + 60 - 2 <= day["ppv"] <= 10 + 180 + 60 + 2
    # a screen's labels are final a year after it: the baseline, then a 180-day window
    assert day["sensitivity"] >= 365 + 180 + 180 - 2
    assert day["interval_cancer_rate"] >= 365 + 180 + 180 - 2
    assert q["alarm"].sum() <= 1  # p < 0.01 tests of about 30 in-control windows
    ic = q.filter(pl.col("statistic") == "interval_cancer_rate")
    assert ic["value"].mean() == pytest.approx(1.0, abs=0.5)  # 0.1 x 1% = 1 per 1,000 screens
    sens = q.filter(pl.col("statistic") == "sensitivity")
    assert sens["reference"].to_list()[0] == pytest.approx(0.9, abs=0.1)


def test_a_drop_in_sensitivity_is_seen_only_once_its_interval_window_has_passed():
    shifted = CusumMonitor(label_plan(), 0.5)
    feed_outcomes(shifted, FakeSite("a"), 1500, 600, 0.5, 0.2)
    s = shifted.frame()
    alarm = s.filter(pl.col("alarm")).group_by("statistic").agg(pl.col("day").min())
    first = dict(zip(alarm["statistic"], alarm["day"], strict=True))
    assert 600 + 10 <= first["ppv"] <= 600 + 10 + 2 * 60 + 2  # within two windows of results
    # sensitivity of screens from day 600 on is known from day 965 on, not before
    assert 600 + 365 <= first["sensitivity"] <= 600 + 365 + 2 * 180 + 2
    assert 600 + 365 <= first["interval_cancer_rate"] <= 600 + 365 + 2 * 180 + 2
    assert s.filter(pl.col("day") < 600)["alarm"].sum() == 0


def test_label_tests_compare_first_and_later_screens_each_with_their_own():
    # first screens find more (a prevalence round): a window of later screens at the same
    # per-stratum rates is in control, though its crude share is far below the baseline's
    base = [[90, 100], [50, 100]]
    same = [[9, 10], [45, 90]]
    p, value, reference = label_test(same, base)
    assert p > 0.5 and value == pytest.approx(0.54) and reference == pytest.approx(0.54)
    assert label_test([[54, 100]], [[90, 100]])[0] < 1e-6  # the crude comparison alarms
    worse = [[5, 10], [20, 90]]
    assert label_test(worse, base)[0] < 1e-4
    assert label_test([[0, 0], [0, 0]], base)[0] == 1.0


def test_a_roll_back_puts_the_validated_device_back():
    monitor, site = CusumMonitor(plan("roll_back"), 0.5), FakeSite("a")
    feed(monitor, site, 600, 300, 0.1)
    (call,) = site.calls
    first = monitor.frame().filter(pl.col("alarm"))["day"].min()
    assert call[0] == "roll_back" and call[1] == first + 1 + 7 and "CUSUM alarm" in call[2]


def test_a_plan_rolls_back_a_device_update_it_detects(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=ai_triage", "drift=device_update"]
    argv += ["drift.device_changes.0.day=200", "monitoring=aimcu_rollback"]
    argv += ["monitoring.baseline_days=60", f"runtime.out_dir={out}", "runtime.run_name=rb"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    city = json.loads((out / "rb" / "manifest.json").read_text())["policy_versions"]
    city = city["city_hospital"]
    assert len(city) == 3 and "device update" in city[1]["reason"]
    assert "aimcu_rollback" in city[2]["reason"] and 200 < city[2]["from_day"] <= 260
    assert city[2]["threshold"] == city[0]["threshold"] != city[1]["threshold"]
    e = pl.read_parquet(out / "rb" / "events.parquet").filter(
        (pl.col("site") == 0) & pl.col("ai_score").is_not_null()
    )
    rate = e.group_by("policy_version").agg(pl.col("ai_positive").mean()).sort("policy_version")
    r0, r1, r2 = rate["ai_positive"].to_list()
    assert r1 > 1.8 * r0 and r2 == pytest.approx(r0, abs=0.04)  # back where it was validated


def test_a_staffing_cut_slows_one_sites_reports_from_its_day(tmp_path, capsys):
    out = tmp_path / "runs"
    base = ["run", *SMALL, "policy=soc_single_read", f"runtime.out_dir={out}"]
    cut = ["drift=staffing_cut", "drift.staffing_changes.0.day=200"]
    cut += ["drift.staffing_changes.0.readers.general_radiologist=1"]
    for name, extra in {"none": [], "cut": cut}.items():
        code, _, err = run_cli([*base, *extra, f"runtime.run_name={name}"], capsys)
        assert code == 0, err
    cols = ["site", "person_id", "exam_day", "reported_day", "positive", "management"]
    none = pl.read_parquet(out / "none" / "events.parquet").select(cols)
    cut_ = pl.read_parquet(out / "cut" / "events.parquet").select(cols)
    before = pl.col("exam_day") < 190
    assert none.filter(before).equals(cut_.filter(before))  # the same people, read the same
    city = pl.col("site") == 0
    assert none.filter(city).equals(cut_.filter(city))

    def wait(frame):
        late = frame.filter(~city & (pl.col("exam_day") >= 230))
        return (late["reported_day"] - late["exam_day"]).mean()

    assert wait(cut_) > 3 * wait(none)  # one radiologist, two hours a day, for 40 scans a day
    import yaml

    drift = yaml.safe_load((out / "cut" / "config.yaml").read_text())["drift"]
    assert drift["staffing_changes"][0]["readers"] == {"general_radiologist": 1}


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["policy=soc_double_read"], ["drift.staffing_changes[0].readers", "at least 3"]),
        (
            ["+drift.staffing_changes.0.readers.nobody=1"],
            ["drift.staffing_changes[0].readers.nobody", "no reader profile"],
        ),
        (
            ["drift.staffing_changes.0.readers.general_radiologist=-1"],
            ["drift.staffing_changes[0].readers.general_radiologist"],
        ),
        (["drift.staffing_changes.0.site=moon"], ["drift.staffing_changes[0].site", "moon"]),
    ],
)
def test_a_bad_staffing_change_is_one_line(extra, needles, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=soc_single_read", "drift=staffing_cut", *extra]
    code, _, err = run_cli([*argv, f"runtime.out_dir={out}"], capsys)
    assert_one_line_error(code, err, *needles)
    assert_nothing_written(out)


SHIFT = ["drift=population_shift", "drift.population_changes.0.day=200"]
SHIFT += ["drift.population_changes.0.size=600", "drift.population_changes.0.spread_days=100"]


def test_a_population_shift_brings_new_people_to_one_site_and_leaves_the_rest(tmp_path, capsys):
    out = tmp_path / "runs"
    base = ["run", *SMALL, "policy=soc_single_read", f"runtime.out_dir={out}"]
    for name, extra in {"none": [], "shift": SHIFT}.items():
        code, _, err = run_cli([*base, *extra, f"runtime.run_name={name}"], capsys)
        assert code == 0, err
    cols = ["site", "person_id", "exam_day", "positive", "management"]
    none = pl.read_parquet(out / "none" / "events.parquet").select(cols)
    shift = pl.read_parquet(out / "shift" / "events.parquet").select(cols)
    new = pl.col("person_id") >= 2**40
    assert none.filter(pl.col("site") == 0).equals(shift.filter(pl.col("site") == 0))
    early = pl.col("exam_day") < 200
    assert none.filter(early).equals(shift.filter(early & ~new))
    arrived = shift.filter(new)
    assert arrived.height > 600 and (arrived["site"] == 1).all()
    assert arrived["exam_day"].min() >= 200
    people = pl.read_parquet(out / "shift" / "people.parquet")
    assert people.height == 3000 + 600
    if "age" in people.columns:
        ages = people.filter(pl.col("person_id") >= 2**40)["age"]
        assert ages.min() >= 50 and ages.max() <= 80 and ages.min() < 55  # the wider rule


def test_a_population_shift_has_cache_keys_of_its_own(load_config):
    from sandbox.runners.devices import cohort_key

    plain, _, _ = load_config(*SMALL)
    shifted, _, _ = load_config(*SMALL, *SHIFT)
    other, _, _ = load_config(
        *SMALL, *SHIFT, "+drift.population_changes.0.cohort.population.female=0.9"
    )
    keys = {cohort_key(plain), cohort_key(shifted), cohort_key(other)}
    assert len(keys) == 3


@pytest.mark.parametrize(
    "extra, needles",
    [
        (
            ["drift.population_changes.0.cohort.eligibility.rule=moon"],
            ["drift.population_changes[0].cohort.eligibility.rule", "moon"],
        ),
        (["drift.population_changes.0.site=moon"], ["drift.population_changes[0].site", "moon"]),
        (["drift.population_changes.0.size=0"], ["drift.population_changes[0].size"]),
    ],
)
def test_a_bad_population_shift_is_one_line(extra, needles, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=soc_single_read", *SHIFT, *extra]
    code, _, err = run_cli([*argv, f"runtime.out_dir={out}"], capsys)
    assert_one_line_error(code, err, *needles)
    assert_nothing_written(out)


def test_a_device_update_with_new_weights_reads_from_its_day_and_rolls_back(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=ai_triage", "drift=device_new_weights"]
    argv += ["drift.device_changes.0.day=200", "monitoring=aimcu_rollback"]
    argv += ["monitoring.baseline_days=60", f"runtime.out_dir={out}", "runtime.run_name=nw"]
    argv += [f"runtime.score_cache={tmp_path / 'cache'}"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    versions = json.loads((out / "nw" / "manifest.json").read_text())["policy_versions"]
    mobile = versions["mobile_unit"]
    assert len(mobile) == 3 and mobile[1]["device"]["name"] == "lung_nodule_cnn_skewed"
    assert "device" not in mobile[0] and "device" not in mobile[2]  # rolled back
    assert mobile[2]["threshold"] == mobile[0]["threshold"] and mobile[2]["from_day"] <= 240
    assert len(versions["city_hospital"]) == 1
    e = pl.read_parquet(out / "nw" / "events.parquet").filter(
        (pl.col("site") == 1) & pl.col("ai_score").is_not_null()
    )
    rate = e.group_by("policy_version").agg(pl.col("ai_positive").mean()).sort("policy_version")
    r0, r1, r2 = rate["ai_positive"].to_list()
    # a device that never saw the mobile unit's scanner calls nearly every exam there positive
    assert r1 > 0.8 and r0 < 0.4 and r2 == pytest.approx(r0, abs=0.05)


def test_a_device_update_from_a_bad_folder_is_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=ai_triage", "drift=device_new_weights"]
    argv += ["drift.device_changes.0.agent=no_such_device", f"runtime.out_dir={out}"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "drift.device_changes[0].agent", "no_such_device")
    assert_nothing_written(out)


class GroupedSite(FakeSite):
    """A fake site of 40 people a day, even ids women and odd ids men."""

    def __init__(self, name: str, people: int) -> None:
        super().__init__(name)
        ids = np.arange(people)
        self.rows = ids
        self.cohort = SimpleNamespace(people={"person_id": ids})
        sex = np.where(ids % 2 == 0, "F", "M")
        self.programme = SimpleNamespace(subgroup_labels=lambda cohort: {"sex": sex})


def test_a_subgroup_chart_sees_a_drift_in_its_group_only():
    plan = Monitoring(
        name="g",
        cusums=(Cusum("mean_score", 0.75, 7.0),),
        subgroups=("sex",),
        baseline_days=60,
        action="standard_of_care",
    )
    monitor, site = CusumMonitor(plan, 0.5), GroupedSite("a", 40 * 700)
    rng = np.random.default_rng(4)
    for day in range(700):
        site.now = float(day)
        monitor.on_day(site, day)
        for k in range(40):
            pid = day * 40 + k
            shift = 0.08 if day >= 400 and pid % 2 == 0 else 0.0  # women's exams only
            s = float(np.clip(rng.beta(2, 5) + shift, 0, 1))
            record = SimpleNamespace(
                ai_score=s,
                ai_positive=s >= 0.5,
                reported_day=day + 0.3,
                person_id=pid,
                exam_kind="other",
            )
            monitor.on_exam(site, record)
    frame = monitor.frame()
    assert set(frame["group"]) == {"", "sex=F", "sex=M"}
    first = frame.filter(pl.col("alarm")).group_by("group").agg(pl.col("day").min())
    first = dict(zip(first["group"], first["day"], strict=True))
    assert 400 <= first["sex=F"] <= 415 and "sex=M" not in first
    assert (frame.filter(pl.col("group") == "sex=F")["reads"] == 20).all()
    # the plan acts on the site's own chart, once; a subgroup's alarm alerts
    (call,) = site.calls
    assert call[0] == "soc" and "mean_score CUSUM alarm" in call[2]
    acts = frame.filter(pl.col("alarm") & (pl.col("group") != ""))["action"].unique().to_list()
    assert acts == ["alert"]
    summary = alarm_summary(frame, {"a": 400.0}, 700.0)
    assert summary.filter(pl.col("group") == "sex=M")["false_alarms"].item() == 0


def test_a_subgroup_the_programme_does_not_have_is_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", *SMALL, "policy=ai_triage", "monitoring=subgroup_cusum"]
    code, _, err = run_cli(
        [*argv, "monitoring.subgroups=[sex,income]", f"runtime.out_dir={out}"], capsys
    )
    assert_one_line_error(code, err, "monitoring.subgroups[1]", "income")
    assert_nothing_written(out)

"""The dashboard under Streamlit's AppTest: every page renders from a results root with runs,
a sweep and broken folders; its widgets change what they should; nothing is read outside the
root."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import testkit

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboards" / "app.py")
sys.path.insert(0, str(ROOT / "dashboards"))

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    testkit.write_runs(out, (1, 2), ("soc_double_read", "soc_single_read"), 1200)
    (out / "half_written").mkdir()
    (out / "half_written" / "metrics.parquet").write_bytes(b"PAR1 not really")
    secret = tmp_path_factory.mktemp("outside")
    shutil.copytree(out / "soc_double_read-1", secret / "elsewhere")
    os.symlink(secret / "elsewhere", out / "link_out")
    return out


def app(results: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("SANDBOX_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def test_the_runs_page_lists_runs_and_broken_folders(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/runs.py").run()
    assert not at.exception
    frame = at.dataframe[0].value
    folders = set(frame["folder"])
    assert {"soc_double_read-1", "soc_single_read-2", "half_written"} <= folders
    assert "link_out" not in folders  # a symlink out of the root is not listed
    broken = frame[frame["folder"] == "half_written"]
    assert list(broken["status"]) == ["broken"]
    assert "half_written" in list(broken["problem"])[0]  # the reason, naming the folder
    assert any("not complete run folders" in w.value for w in at.warning)


def test_the_compare_page_pairs_two_arms_over_seeds_and_gives_a_verdict(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/compare.py").run()
    assert not at.exception
    at.multiselect(key="runs").set_value(
        ["soc_double_read-1", "soc_double_read-2", "soc_single_read-1", "soc_single_read-2"]
    ).run()
    assert not at.exception
    texts = " ".join(m.value for m in at.markdown)
    assert "soc_double_read, seeds 1, 2" in texts and "soc_single_read, seeds 1, 2" in texts
    verdicts = [m.value for m in (*at.success, *at.warning) if m.value.startswith("verdict:")]
    assert len(verdicts) == 1 and "soc_single_read is" in verdicts[0]
    table = at.dataframe[0].value
    assert list(table["metric"])[:2] == ["screen_detected_cancers", "interval_cancers"]
    # another primary metric and the swap change the answer
    at.selectbox(key="primary").set_value("recall_rate").run()
    at.toggle(key="swap").set_value(True).run()
    assert not at.exception
    verdicts = [m.value for m in (*at.success, *at.warning) if m.value.startswith("verdict:")]
    assert "soc_double_read is" in verdicts[0]
    assert list(at.dataframe[0].value["metric"])[0] == "recall_rate"
    # restricted to one subgroup's people; round by round beside it
    whole = at.dataframe[0].value["a"].iloc[0]
    at.selectbox(key="subgroup").set_value("sex=F").run()
    assert not at.exception
    assert at.dataframe[0].value["a"].iloc[0] != whole
    rounds = at.dataframe[1].value
    assert set(rounds["round"]) == {"T0", "T1", "T2"} and (rounds["lo"] <= rounds["value"]).all()


def test_the_compare_page_says_when_runs_do_not_make_two_arms(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/compare.py").run()
    at.multiselect(key="runs").set_value(["soc_double_read-1"]).run()
    assert not at.exception
    assert any("exactly two arms" in w.value for w in at.warning)


@pytest.mark.parametrize("name", ["../outside", "/etc", "a/../../b", "link_out"])
def test_names_that_lead_out_of_the_results_root_are_refused(results, name):
    from results import inside

    from sandbox.errors import SandboxInputError

    with pytest.raises(SandboxInputError):
        inside(results.resolve(), name)


def test_an_empty_results_root_says_so(tmp_path, monkeypatch):
    at = app(tmp_path / "none", monkeypatch)
    at.switch_page("views/runs.py").run()
    assert not at.exception
    assert any("No run folders yet" in i.value for i in at.info)


def test_the_equity_page_shows_gaps_to_a_reference_group(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/equity.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert {"diff", "diff_lo", "diff_hi", "ratio", "flagged"} <= set(table.columns)
    reference = at.selectbox(key="reference").value
    ref = table[table["subgroup"] == reference]
    assert (ref["diff"] == 0).all() and not ref["flagged"].any()
    at.selectbox(key="dimension").set_value("race").run()
    assert not at.exception
    assert all(s.startswith("race=") for s in at.dataframe[0].value["subgroup"])
    # the run's own disparity summaries (equity.parquet), for the chosen dimension
    assert any("Fairlearn's summaries by race" in h.value for h in at.subheader)
    summaries = at.dataframe[1].value
    assert {"demographic_parity", "equalized_odds"} <= set(summaries["metric"])
    assert (summaries["max - min"] >= 0).all()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A results root holding a prepared what-if cohort of 300 people (seed 7, ai_triage)."""
    from sandbox.cli import main

    out = tmp_path_factory.mktemp("whatif_results")
    argv = ["whatif", "policy=ai_triage", "seed=7", "cohort.size=300", f"runtime.out_dir={out}"]
    assert main([*argv, f"runtime.score_cache={out / '.score_cache'}", "--prepare-only"]) == 0
    return out


def metric_cards(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_what_if_page_offers_to_prepare_a_cohort_it_does_not_have(tmp_path, monkeypatch):
    at = app(tmp_path, monkeypatch)
    assert not at.exception
    assert any("not prepared yet" in i.value for i in at.info)
    assert any(b.label == "Prepare this cohort" for b in at.button)


def test_the_what_if_page_answers_every_knob(prepared, monkeypatch):
    at = app(prepared, monkeypatch)
    at.number_input(key="people").set_value(300).run()
    assert not at.exception and not at.error
    triage = metric_cards(at)
    assert {"cancers found", "interval cancers", "recalls", "human reads"} <= set(triage)
    table = at.dataframe[0].value
    assert {"standard_of_care", "policy", "difference", "definition"} <= set(table.columns)
    assert table["definition"].str.len().min() > 0  # every row has its definition
    at.selectbox(key="role").set_value("rule_out").run()
    at.slider(key="audit").set_value(0.0).run()
    assert not at.exception
    rule_out = metric_cards(at)
    assert rule_out["human reads"] != triage["human reads"]
    at.selectbox(key="role").set_value("none").run()
    none = at.dataframe[0].value
    assert (none["policy"].fillna(0) == none["standard_of_care"].fillna(0)).all()
    # a staffing the role cannot run with is one clear line
    at.selectbox(key="role").set_value("triage").run()
    at.number_input(key="readers-0").set_value(2).run()
    assert any("needs at least 3 radiologists" in e.value for e in at.error)
    assert not at.exception


def test_the_workload_page_shows_hours_waits_and_backlog_per_site(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/workload.py").run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 3  # hours, waits, backlog
    table = at.dataframe[0].value
    assert set(table["site"]) == {"city_hospital", "mobile_unit"}
    assert (table["reads"] >= table["exams"]).all() and (table["utilisation"] > 0).all()
    before = table[table["run"] == table["run"].iloc[0]]["reads"].sum()
    at.multiselect(key="runs").set_value(["soc_single_read-1"]).run()
    single = at.dataframe[0].value
    assert set(single["run"]) == {"soc_single_read-1"}
    assert single["reads"].sum() < before  # one read per screen, not two
    at.select_slider(key="step").set_value(30).run()
    assert not at.exception


def test_the_safety_page_puts_harms_per_1000_screens_side_by_side(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/safety.py").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert {"interval_cancers", "false_positive_workups", "benign_biopsies"} <= set(table["metric"])
    ok = table["screens"] > 0
    assert (
        (table["lo"] <= table["per_1000_screens"]) & (table["per_1000_screens"] <= table["hi"])
    )[ok].all()
    stages = at.dataframe[1].value
    assert set(stages["cancers"]) == {"screen-detected", "every cancer"}
    shares = stages.groupby(["run", "cancers"])["share"].sum()
    assert (abs(shares - 1.0) < 1e-9).all()
    at.selectbox(key="site").set_value("mobile_unit").run()
    at.selectbox(key="round").set_value("T0").run()
    assert not at.exception
    t0 = at.dataframe[0].value
    assert (t0["screens"] < table["screens"].max()).all()


def test_a_damaged_prepared_cohort_is_said_and_can_be_prepared_again(
    prepared, tmp_path, monkeypatch
):
    root = tmp_path / "root"
    shutil.copytree(prepared, root)
    for f in (root / ".whatif").glob("*.parquet"):
        f.write_bytes(b"PAR1 damaged")
    at = app(root, monkeypatch)
    at.number_input(key="people").set_value(300).run()
    assert not at.exception
    assert any("damaged prepared cohort" in e.value for e in at.error)
    assert any(b.label == "Prepare this cohort" for b in at.button)


def test_the_runs_page_starts_a_run_in_the_background(tmp_path, monkeypatch):
    import time

    at = app(tmp_path, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.number_input(key="new_people").set_value(300).run()
    at.number_input(key="new_seed").set_value(11).run()
    assert any("sandbox run scenario=lung_ldct" in c.value for c in at.code)
    at.button(key="start_job").click().run()
    t0 = time.monotonic()
    while not any("done" in s.value for s in at.success):
        assert not at.error, [e.value for e in at.error]
        assert time.monotonic() - t0 < 180
        time.sleep(1.0)
        at.run()
    assert any(f.name.startswith("lung_ldct-soc_double_read-seed11") for f in tmp_path.iterdir())
    at.run()
    assert "complete" in list(at.dataframe[0].value["status"])  # listed with the others


def test_the_runs_page_turns_several_policies_or_seeds_into_a_sweep(tmp_path, monkeypatch):
    at = app(tmp_path, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.multiselect(key="new_policies").set_value(["soc_double_read", "ai_triage"]).run()
    at.number_input(key="new_seeds").set_value(3).run()
    command = next(c.value for c in at.code if c.value.startswith("sandbox "))
    assert command.startswith("sandbox sweep ")
    assert "policy=soc_double_read,ai_triage" in command and "seed=range(1,4)" in command


def test_the_cost_effectiveness_page_prices_runs_as_strategies(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/economics.py").run()
    assert not at.exception
    at.multiselect(key="runs").set_value(["soc_double_read-1", "soc_single_read-1"]).run()
    assert not at.exception
    icers = at.dataframe[0].value
    assert set(icers["Strategy"]) == {"soc_double_read", "soc_single_read"}
    assert set(icers["Status"]) <= {"ND", "D", "ED"}
    assert any("highest net monetary benefit" in s.value for s in at.success)
    # another price list re-prices the same runs
    usd = icers["Cost"].max()
    at.selectbox(key="preset").set_value("nice").run()
    assert not at.exception
    assert at.dataframe[0].value["Cost"].max() != usd
    # the PSA runs from the page
    at.button(key="psa").click().run()
    assert not at.exception


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> Path:
    """A results root with one run of a monitoring plan that falls back on a drift (day 200)."""
    from sandbox.cli import main

    out = tmp_path_factory.mktemp("monitored")
    with testkit.one_torch_thread():
        code = main(
            [
                "run",
                "policy=ai_triage",
                "cohort.size=2000",
                "seed=11",
                "runtime=quiet",
                "drift=scanner_update",
                "drift.scanner_changes.0.day=200",
                "monitoring=aimcu_fallback",
                "monitoring.baseline_days=60",
                f"runtime.out_dir={out}",
                "runtime.run_name=fallback",
                f"runtime.score_cache={out / '.score_cache'}",
            ]
        )
    assert code == 0
    return out


def test_the_surveillance_page_shows_a_plans_alarms_and_charts(monitored, monkeypatch):
    at = app(monitored, monkeypatch)
    at.switch_page("views/surveillance.py").run()
    assert not at.exception
    assert any("detected" in s.value and "mobile_unit" in s.value for s in at.success)
    table = at.dataframe[0].value
    drifted = table[table["site"] == "mobile_unit"]
    assert (drifted["days_to_detection"] >= 0).all() and (drifted["drift_day"] == 200).all()
    assert any("policy changed on day" in m.value for m in at.markdown)


def test_the_surveillance_page_without_a_plan_says_how_to_run_one(results, monkeypatch):
    at = app(results, monkeypatch)
    at.switch_page("views/surveillance.py").run()
    assert not at.exception
    assert any("monitoring=aimcu_cusum" in i.value for i in at.info)

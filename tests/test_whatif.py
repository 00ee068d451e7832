"""What if?: the queue-free replay of a prepared cohort (sandbox/whatif.py) and `sandbox whatif`.

The replay must be standard of care when the AI is off or never decides anything, move the way
each knob says, agree with the full event-by-event run on the same people, and survive its own
files being damaged."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
import pytest

from sandbox import whatif
from sandbox.cli import main
from sandbox.compose import load
from sandbox.errors import SandboxInputError
from sandbox.runners.local import simulate

PEOPLE = 900


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_device):
    root = tmp_path_factory.mktemp("whatif")
    overrides = [
        "policy=ai_triage",
        "seed=3",
        f"cohort.size={PEOPLE}",
        f"agent={tiny_device}",
        f"runtime.out_dir={root}",
        f"runtime.score_cache={root / '.score_cache'}",
        "runtime.progress=false",
    ]
    cfg, profiles, _ = load(overrides)
    prep = whatif.load_or_prepare(cfg, profiles, root / ".whatif")
    return cfg, profiles, prep, overrides, root


def values(ans: whatif.Answer, column: str = "policy") -> dict[str, float]:
    return dict(zip(ans.table["metric"], ans.table[column], strict=True))


def knobs(cfg, **kw) -> whatif.Knobs:
    base = whatif.Knobs(
        role="triage", threshold=0.5, audit_fraction=0.0, attendance=0.9, readers=None
    )
    return dataclasses.replace(base, **kw)


def test_with_the_ai_off_or_undecisive_the_policy_is_standard_of_care(world):
    cfg, _, prep, _, _ = world
    sites = list(cfg.scenario.sites)
    off = whatif.answer(prep, knobs(cfg, role="none"), sites)
    assert values(off) == values(off, "standard_of_care")
    # triage with every screen AI-positive is double reading for everyone
    everyone = whatif.answer(prep, knobs(cfg, threshold=0.0), sites)
    assert values(everyone) == values(everyone, "standard_of_care")
    # rule-out with every AI-cleared screen audited is the human reading of every screen
    audited = whatif.answer(
        prep, knobs(cfg, role="rule_out", threshold=0.9, audit_fraction=1.0), sites
    )
    assert values(audited) == values(audited, "standard_of_care")
    soc = values(off, "standard_of_care")
    assert soc["screens"] > PEOPLE and soc["screen_detected_cancers"] > 0


def test_the_knobs_move_the_answer_the_way_they_say(world):
    cfg, _, prep, _, _ = world
    sites = list(cfg.scenario.sites)
    reads = [
        values(whatif.answer(prep, knobs(cfg, threshold=t), sites))["human_reads"]
        for t in (0.0, 0.3, 0.6, 1.0)
    ]
    assert reads == sorted(reads, reverse=True) and reads[0] > reads[-1]
    saved = [
        values(
            whatif.answer(prep, knobs(cfg, role="rule_out", threshold=0.7, audit_fraction=a), sites)
        )["screen_reads_saved"]
        for a in (0.0, 0.5, 1.0)
    ]
    assert saved[0] > saved[1] > saved[2]
    cleared = values(whatif.answer(prep, knobs(cfg, role="rule_out", threshold=1.0), sites))
    assert cleared["human_reads"] <= cleared["screens"] * 0.05  # only follow-ups are read
    assert cleared["ai_rule_out_missed_cancers"] > 0
    fewer = values(whatif.answer(prep, knobs(cfg, role="none", attendance=0.5), sites))
    more = values(whatif.answer(prep, knobs(cfg, role="none", attendance=1.0), sites))
    assert fewer["screens"] < more["screens"]


def test_fewer_radiologists_load_the_sites_until_the_answer_is_flagged(world):
    cfg, _, prep, _, _ = world
    sites = list(cfg.scenario.sites)
    staff = tuple(sum(s.readers.values()) for s in sites)
    normal = whatif.answer(prep, knobs(cfg), sites)
    thin = whatif.answer(prep, knobs(cfg, readers=(3, 3)), sites)
    u0 = normal.capacity["utilisation"].to_list()
    u1 = thin.capacity["utilisation"].to_list()
    assert u1[0] > u0[0] and u1[1] == pytest.approx(u0[1])  # site 1 already had 3
    assert normal.exact
    # a site whose reads need more than its radiologists' hours is flagged (hours cut to 1 min)
    tiny_hours = [dataclasses.replace(s, reading_hours_per_day=1 / 60) for s in sites]
    flagged = whatif.answer(prep, knobs(cfg, readers=staff), tiny_hours)
    assert not flagged.exact and sites[0].name in flagged.why_inexact
    assert math.isinf(flagged.capacity["mean_wait_working_days"][0])
    assert whatif.staffing_problem(cfg, "triage", (2, 3))  # arbitration needs a third reader
    assert whatif.staffing_problem(cfg, "triage", staff) == ""


def test_erlang_c_matches_the_textbook():
    assert whatif.erlang_c_wait(1, 0.5, 1.0) == pytest.approx(1.0)  # M/M/1: rho / (mu - lambda)
    assert whatif.erlang_c_wait(2, 1.0, 1.0) == pytest.approx(1 / 3)
    assert math.isinf(whatif.erlang_c_wait(2, 2.0, 1.0))


def test_the_replay_agrees_with_the_full_run_on_the_same_people(world):
    cfg, profiles, prep, _, _ = world
    fast = values(
        whatif.answer(
            prep,
            whatif.Knobs("triage", whatif.resolve_knob_threshold(cfg.agent, "percentile", 0.9)),
            list(cfg.scenario.sites),
        )
    )
    full = simulate(cfg, profiles, progress=False).metrics.filter(
        (pl.col("site") == "all") & (pl.col("subgroup") == "all") & (pl.col("round") == "all")
    )
    got = {r["metric"]: r for r in full.iter_rows(named=True)}
    for m in ("screens", "human_reads", "screen_reads_saved"):
        assert fast[m] == pytest.approx(got[m]["value"], rel=0.03), m
    for m in ("screen_detected_cancers", "interval_cancers", "recall_rate"):
        assert got[m]["lo"] <= fast[m] <= got[m]["hi"], (m, fast[m], got[m])


def test_a_prepared_cohort_round_trips_and_a_damaged_one_is_named(world, tmp_path):
    cfg, _, prep, _, root = world
    again = whatif.load(root / ".whatif", prep.key)
    for v in whatif.VARIANTS:
        for f in whatif.FIELDS:
            np.testing.assert_array_equal(again.variants[v][f], prep.variants[v][f])
    np.testing.assert_array_equal(again.rounds["score"], prep.rounds["score"])
    path = whatif.save(prep, tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SandboxInputError, match=str(path)):
        whatif.load(tmp_path, prep.key)
    assert whatif.load(tmp_path, "nothing-here") is None
    # load_or_prepare prepares a damaged cohort again, over it
    cfg, profiles = world[0], world[1]
    told = []
    again = whatif.load_or_prepare(cfg, profiles, tmp_path, lambda s, f: told.append(s))
    assert again.key == prep.key and "preparing again" in told[0]
    assert whatif.load(tmp_path, prep.key).meta["people"] == PEOPLE


def test_bad_knobs_get_one_line(world):
    cfg, _, prep, _, _ = world
    with pytest.raises(SandboxInputError, match="attendance"):
        whatif.answer(prep, knobs(cfg, attendance=1.5), list(cfg.scenario.sites))
    with pytest.raises(SandboxInputError, match="role"):
        whatif.answer(prep, knobs(cfg, role="oracle"), list(cfg.scenario.sites))


def test_the_cli_answers_and_says_how_to_confirm(world, capsys):
    cfg, _, prep, overrides, _ = world
    assert main(["whatif", *overrides, "--role", "rule_out", "--audit", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "prepared cohort" in out and "rule_out" in out and "ai_rule_out_missed_cancers" in out
    confirm = out.split("confirm with the full run: sandbox run ")[1].split()
    confirmed, _, _ = load(confirm)
    assert confirmed.policy.role == "rule_out" and confirmed.policy.audit_fraction == 0.1
    assert main(["whatif", *overrides, "--attendance", "1.5"]) == 2
    assert "attendance" in capsys.readouterr().err
    assert main(["whatif", *overrides, "--readers", "4"]) == 2
    assert "--readers" in capsys.readouterr().err
    for comparator, needle in (("no_screening", "screens nobody"), ("cxr_single_read", "read CT")):
        assert main(["whatif", *overrides, f"policy={comparator}"]) == 2
        assert needle in capsys.readouterr().err


def test_radiologist_overrides_reach_the_full_run(world):
    cfg, _, _, overrides, _ = world
    sites = list(cfg.scenario.sites)
    args = whatif.run_overrides(
        overrides, whatif.Knobs("triage", 0.5, readers=(6, 3)), "percentile", 0.9, sites
    )
    confirmed, _, _ = load(args)
    assert [sum(s.readers.values()) for s in confirmed.scenario.sites] == [6, 3]

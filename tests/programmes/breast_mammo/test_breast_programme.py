"""The breast programme end to end and its reading: runs, reproducibility, what readers see and
call, the screen before the simulation, consensus, and one-line errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sandbox.agents.readers import Reader
from sandbox.errors import SandboxInputError
from sandbox.programmes import programme_for
from sandbox.programmes.base import Read
from sandbox.programmes.breast_mammo.config import Reading
from sandbox.programmes.breast_mammo.reading import (
    DCIS_KEY,
    INVASIVE_KEY,
    KINDS,
    SPURIOUS_KEY,
    Finding,
    Prior,
    consensus,
    read_exam,
)
from sandbox.rng import Streams

BREAST = ("scenario=breast_masai", "cohort.size=6000", "seed=5", "runtime=quiet")


def top(res) -> pl.DataFrame:
    return res.metrics.filter(
        (pl.col("site") == "all") & (pl.col("subgroup") == "all") & (pl.col("round") == "all")
    )


def value(res, metric: str) -> float:
    return float(top(res).filter(pl.col("metric") == metric)["value"][0])


def reader(c50=10.0, fp=0.0) -> Reader:
    return Reader(0, 0, "t", c50, 2.0, fp, 8.0, 0.0, 0.0, 1.0, 0.0)


class FeedStreams:
    """The streams object a read draws from (``u(stream, person, index)``)."""

    def __init__(self, seed: int) -> None:
        self.s = Streams(seed)

    def u(self, stream, person, index=0):
        return self.s.u(stream, person, index)


def test_double_reading_with_consensus_runs_and_repeats(run_sim):
    a = run_sim(*BREAST, "policy=soc_double_read_consensus")
    b = run_sim(*BREAST, "policy=soc_double_read_consensus", "runtime.site_block_size=1")
    assert a.events.equals(b.events) and a.people.equals(b.people)
    screens = value(a, "screens")
    assert 5000 < screens <= 6000  # one screen per woman, a few die or surface first
    # a screening programme's order of magnitude: about 2% recalled, a few cancers per 1,000
    assert 0.01 < value(a, "recall_rate") < 0.05
    assert 2.0 < value(a, "cancer_detection_rate_per_1000") < 10.0
    assert set(a.events["bi_rads"].unique()) <= {"1", "2", "0"}
    found = a.people.filter(pl.col("diagnosis_mode") == "screen")
    assert set(found["stage"].unique()) <= {"0", "I", "II", "III", "IV"}
    assert (found["stage"] == "0").sum() > 0  # DCIS is found by screening only
    clinical = a.people.filter(pl.col("diagnosis_mode").is_in(["interval", "after_screening"]))
    assert (clinical["stage"] != "0").all()


def test_double_reading_finds_more_than_single_reading_on_the_same_women(run_sim):
    single = run_sim(*BREAST, "policy=soc_single_read")
    double = run_sim(*BREAST, "policy=soc_double_read_consensus")
    assert single.people["person_id"].equals(double.people["person_id"])
    assert value(double, "screen_detected_cancers") > value(single, "screen_detected_cancers")
    assert value(double, "human_reads") > 1.8 * value(single, "human_reads")


def test_dense_breasts_hide_cancers(run_sim):
    res = run_sim(*BREAST, "policy=soc_single_read", "cohort.size=40000")
    p = res.people.filter(pl.col("diagnosis_mode").is_in(["screen", "interval"]))
    p = p.with_columns(dense=pl.col("density").is_in(["c", "d"]))
    share = p.group_by("dense").agg((pl.col("diagnosis_mode") == "screen").mean().alias("s"))
    by = dict(share.iter_rows())
    assert by[False] > by[True] + 0.1


def test_a_reader_sees_conspicuous_findings_and_judges_benign_ones_less_suspicious():
    rd, streams = Reading(), FeedStreams(3)
    faint = [Finding(INVASIVE_KEY, 0, 6.0, 3.0)]
    clear = [Finding(INVASIVE_KEY, 0, 20.0, 40.0)]
    cyst = [Finding(2, KINDS.index("cyst"), 15.0, 40.0)]

    def recalls(shows, prior=None):
        reads = [
            read_exam(reader(), shows, prior or Prior(True), streams, pid, 0, 0, rd)
            for pid in range(3000)
        ]
        return np.mean([r.positive for r in reads])

    assert recalls(clear) > 0.8 > 0.2 > recalls(faint)
    new_cyst, stable_cyst = recalls(cyst), recalls(cyst, Prior(True, {2}))
    assert abs(new_cyst - rd.recall_benign_mass * 0.93) < 0.04
    assert stable_cyst < 0.5 * new_cyst


def test_a_first_screen_gets_more_spurious_calls():
    rd, streams = Reading(), FeedStreams(4)
    r = reader(fp=0.02)

    def rate(prior):
        return np.mean(
            [read_exam(r, [], prior, streams, pid, 0, 0, rd).positive for pid in range(20000)]
        )

    first, later = rate(Prior(False)), rate(Prior(True))
    assert abs(later - 0.02) < 0.005
    assert abs(first / later - rd.first_screen_spurious_factor) < 0.4


def test_consensus_keeps_what_the_second_reader_sees_and_some_spurious_calls():
    real = Finding(INVASIVE_KEY, 0, 12.0, 20.0, True)
    dcis = Finding(DCIS_KEY, 1, 10.0, 8.0, True)
    spur = Finding(SPURIOUS_KEY, len(KINDS) - 1, 8.0, 0.0, True)
    pos = Read(1, 0, [real, dcis, spur], 2, True, 1.0)
    neg = Read(2, 1, [], 0, False, 1.0)
    review = Read(2, 2, [Finding(INVASIVE_KEY, 0, 12.0, 20.0)], 1, False, 1.0)
    kept = consensus(pos, neg, review, keep_spurious=0.4, u_spurious=0.9)
    assert [f.key for f in kept] == [INVASIVE_KEY]
    kept = consensus(pos, neg, review, keep_spurious=0.4, u_spurious=0.1)
    assert [f.key for f in kept] == [INVASIVE_KEY, SPURIOUS_KEY]


def test_the_screen_before_the_simulation_depletes_the_preclinical_pool(load_config):
    def visible_cancers(share: float) -> int:
        cfg = load_config(
            "scenario=breast_masai",
            "cohort.size=30000",
            f"+programme.previous_screen.share={share}",
        )[0]
        prog = programme_for(cfg.scenario)
        cohort = prog.sample_cohort(Streams(9))
        h, entry = cohort.history, cohort.people["entry_day"]
        return int((h["has_cancer"] & (h["onset_day"] <= entry)).sum())

    never, always = visible_cancers(0.0), visible_cancers(1.0)
    assert always < 0.8 * never


def test_masses_are_irregular_as_their_margins_and_kinds_say(load_config):
    from sandbox.programmes.breast_mammo.config import BENIGN_KINDS
    from sandbox.programmes.breast_mammo.imaging import MARGINS

    cfg = load_config("scenario=breast_masai", "cohort.size=60000")[0]
    cohort = programme_for(cfg.scenario).sample_cohort(Streams(11))
    m = cfg.scenario.disease.morphology
    circ, ind, spic = (MARGINS.index(k) for k in MARGINS)
    h, b = cohort.history, cohort.benign
    cancer = h["has_cancer"]
    margin, irregular = h["margin"][cancer], h["irregular"][cancer]
    assert irregular[margin == spic].all() and not irregular[margin == circ].any()
    share = irregular[margin == ind].mean()
    assert share == pytest.approx(m.indistinct_irregular[0], abs=0.05)
    for kind, p in zip(BENIGN_KINDS[:2], m.indistinct_irregular[1:], strict=True):
        mine = (b["kind"] == BENIGN_KINDS.index(kind)) & (b["margin"] == ind)
        assert b["irregular"][mine].mean() == pytest.approx(p, abs=0.06)
    assert not b["irregular"][b["kind"] == BENIGN_KINDS.index("calcifications")].any()


@pytest.mark.parametrize(
    "override, names",
    [
        ("+programme.previous_screen.share=1.5", "programme.previous_screen.share"),
        (
            "disease.morphology.indistinct_irregular=[0.8,1.2,0.3]",
            "disease.morphology.indistinct_irregular",
        ),
        ("+programme.reading.recall_invasive=-0.1", "programme.reading.recall_invasive"),
        ("cohort.women.age.min=10", "cohort.women.age"),
    ],
)
def test_bad_breast_keys_fail_in_one_line(load_config, override, names):
    with pytest.raises(SandboxInputError) as e:
        load_config("scenario=breast_masai", override)
    assert names in str(e.value) and "\n" not in str(e.value)


def test_a_lung_device_on_the_breast_programme_says_why_it_cannot_read(load_config):
    from sandbox.runners.local import simulate

    cfg, profiles, _ = load_config(
        "scenario=breast_masai", "policy=ai_triage", "agent=lung_nodule_cnn", "cohort.size=500"
    )
    with pytest.raises(SandboxInputError, match="renders 2-D images in mammo_relative") as e:
        simulate(cfg, profiles, progress=False)
    assert "input is 3-D in HU" in str(e.value) and "\n" not in str(e.value)


def test_a_lung_price_list_on_the_breast_programme_is_refused_in_one_line(load_config):
    with pytest.raises(SandboxInputError, match="prices programme 'lung_ldct'") as e:
        load_config("scenario=breast_masai", "economics=us_payer")
    assert str(e.value).startswith("config key 'economics.programme'")
    assert "'breast_mammo'" in str(e.value) and "\n" not in str(e.value)


def test_a_breast_run_folder_is_refused_by_a_lung_price_list_in_one_line(tmp_path):
    from sandbox.cli import main
    from sandbox.economics.report import price_folders

    argv = ["run", "scenario=breast_masai", "runtime=quiet", "cohort.size=800"]
    assert main([*argv, f"runtime.out_dir={tmp_path}", "runtime.run_name=b"]) == 0
    with pytest.raises(SandboxInputError, match="prices programme 'lung_ldct', not this run's"):
        price_folders([str(tmp_path / "b")], "us_payer")


def test_a_high_risk_flag_recalls_what_the_readers_saw_unless_obviously_false(load_config):
    cfg, _, _ = load_config(*BREAST)
    programme = programme_for(cfg.scenario)
    cancer = Finding(INVASIVE_KEY, 0, 9.0, 7.0)
    cyst = Finding(2, KINDS.index("cyst"), 12.0, 9.0)
    spur = Finding(SPURIOUS_KEY, len(KINDS) - 1, 8.0, 0.0, True)

    class Flagged:
        prior = Prior(True, {2, INVASIVE_KEY})
        ai_read = None  # no located mark: what the readers saw anywhere
        ai_mark = None

    # what the readers saw and did not act on is recalled, a cancer seen before too
    recall = programme.high_risk_recall(Flagged, [Read(1, 0, [cancer], 1, False, 1.0)])
    assert recall.positive and recall.suspicious == {INVASIVE_KEY}
    # a benign finding unchanged since the earlier mammogram, or nothing: obviously false
    assert programme.high_risk_recall(Flagged, [Read(1, 0, [cyst], 1, False, 1.0)]) is None
    assert programme.high_risk_recall(Flagged, [Read(1, 0, [spur], 0, False, 1.0)]) is None
    assert programme.high_risk_recall(Flagged, [Read(1, 0, [], 0, False, 1.0)]) is None
    Flagged.prior = Prior(True, set())  # a new benign finding: recalled under the flag
    assert programme.high_risk_recall(Flagged, [Read(1, 0, [cyst], 1, False, 1.0)]).positive
    # the AI's mark located: the readers look where it points, and only there
    both = [Read(1, 0, [cancer, cyst], 1, False, 1.0)]
    Flagged.ai_read, Flagged.ai_mark = (6, "cancer"), INVASIVE_KEY
    assert programme.high_risk_recall(Flagged, both).suspicious == {INVASIVE_KEY}
    Flagged.ai_read, Flagged.ai_mark = (6, "benign"), 2  # a new cyst marked: recalled
    assert programme.high_risk_recall(Flagged, both).suspicious == {2}
    Flagged.ai_read, Flagged.ai_mark = (6, "background"), None  # tissue marked: dismissed
    assert programme.high_risk_recall(Flagged, both) is None
    # a marked finding none of the readers detected: nothing there to act on
    Flagged.ai_read, Flagged.ai_mark = (6, "cancer"), INVASIVE_KEY
    assert programme.high_risk_recall(Flagged, [Read(1, 0, [cyst], 1, False, 1.0)]) is None


def test_a_mark_helps_the_readers_see_the_marked_finding_only():
    """A mark (boost above 1) raises the conspicuity of the marked finding alone; a boost
    below 1 (a relaxed reader) lowers every finding's; without a located mark, every finding
    gets the boost."""
    from sandbox.agents.readers import Reader
    from sandbox.programmes.breast_mammo.config import Reading
    from sandbox.programmes.breast_mammo.reading import read_exam
    from sandbox.rng import Streams

    reader = Reader(1, 0, "r", 13.0, 2.0, 0.0, 8.0, 0.0, 0.0, 1.0, 0.1)
    shows = [Finding(INVASIVE_KEY, 0, 9.0, 13.0), Finding(2, KINDS.index("cyst"), 9.0, 13.0)]
    streams = Streams(3)

    def seen(boost, marked):
        hits = {INVASIVE_KEY: 0, 2: 0}
        for person in range(600):
            r = read_exam(reader, shows, Prior(), streams, person, 0, 0, Reading(), boost, marked)
            for f in r.findings:
                hits[f.key] += 1
        return hits[INVASIVE_KEY] / 600, hits[2] / 600

    plain = seen(1.0, None)
    assert abs(plain[0] - 0.5) < 0.07 and abs(plain[1] - 0.5) < 0.07  # both at the reader's c50
    cancer_marked = seen(1.5, frozenset({INVASIVE_KEY}))
    assert cancer_marked[0] > plain[0] + 0.1 and cancer_marked[1] == plain[1]
    tissue_marked = seen(1.5, frozenset())
    assert tissue_marked == plain
    everywhere = seen(1.5, None)
    assert everywhere[0] == cancer_marked[0] and everywhere[1] > plain[1] + 0.1
    relaxed = seen(0.6, frozenset({INVASIVE_KEY}))
    assert relaxed[0] < plain[0] - 0.1 and relaxed[1] < plain[1] - 0.1


def test_a_relaxed_reader_makes_fewer_spurious_calls_and_a_mark_no_more():
    """Spurious calls scale with a boost below 1 (a reader relaxed by a low AI score); a mark
    (above 1) adds none."""
    from sandbox.agents.readers import Reader
    from sandbox.programmes.breast_mammo.config import Reading
    from sandbox.programmes.breast_mammo.reading import SPURIOUS_KEY, read_exam
    from sandbox.rng import Streams

    reader = Reader(1, 0, "r", 13.0, 2.0, 0.3, 8.0, 0.0, 0.0, 1.0, 0.1)
    streams = Streams(4)

    def rate(boost):
        calls = 0
        for person in range(3000):
            r = read_exam(reader, [], Prior(True), streams, person, 0, 0, Reading(), boost)
            calls += any(f.key == SPURIOUS_KEY for f in r.findings)
        return calls / 3000

    plain = rate(1.0)
    assert abs(plain - 0.3) < 0.03
    assert abs(rate(0.6) - 0.6 * plain) < 0.02  # same draws: the relaxed reader's calls
    assert rate(1.5) == plain


def test_marks_and_flags_need_a_programme_and_role_that_have_them(load_config):
    from sandbox.runners.local import simulate

    point = "{mode: absolute, value: 0.9}"
    with pytest.raises(SandboxInputError, match="policy.marks") as e:
        load_config(*BREAST, "policy=ai_concurrent", f"+policy.marks={point}")
    assert "\n" not in str(e.value)
    for policy in ("ai_concurrent", "soc_double_read_consensus"):
        with pytest.raises(SandboxInputError, match="policy.relaxed_below.*relaxed reading") as e:
            load_config(*BREAST, f"policy={policy}", f"+policy.relaxed_below={point}")
        assert "\n" not in str(e.value)
    cfg, profiles, _ = load_config("policy=ai_triage", f"+policy.recall_top={point}")
    with pytest.raises(SandboxInputError, match="'policy.recall_top': programme 'lung_ldct'") as e:
        simulate(cfg, profiles, progress=False)
    assert "\n" not in str(e.value)

"""Batched, cached inference (invariant 2) and operating points.

Unit checks of :class:`ScoreCache`, :class:`DeviceScorer` and ``resolve_threshold``, then whole
runs with the tiny device (tests/agents/conftest.py) sharing one score-cache folder: a second
policy replays the first one's scores, a repeated run infers nothing, and a warm cache gives
the same results as a cold one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import testkit
import torch
from polars.testing import assert_frame_equal

from sandbox.agents.inference import CACHE_SCHEMA, DeviceScorer, ScoreCache, scanner_key
from sandbox.agents.operating_point import resolve_threshold, validation_set
from sandbox.config import OperatingPoint
from sandbox.errors import SandboxInputError
from sandbox.programmes.lung_ldct.imaging.findings import Candidate
from sandbox.programmes.lung_ldct.programme import ExamImage, render_patches
from sandbox.runners.devices import cohort_key, prepare_device
from sandbox.runners.local import simulate

RUN = ("scenario=lung_ldct", "cohort.size=300", "seed=13", "runtime=quiet", "runtime.device=cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Render and score on one thread (a busy two-core machine; results do not depend on it)."""
    with testkit.one_torch_thread():
        yield


@pytest.fixture(scope="module")
def scanners(load_config):
    cfg = load_config("scenario=lung_ldct", "runtime=quiet")[0]
    return [s.scanner for s in cfg.scenario.sites]


def exams(scanners, n: int = 24, day: int = 100) -> list[ExamImage]:
    """Exam images of ``n`` people: one candidate (empty, benign-looking or large and
    spiculated), and a second, background, candidate every other exam."""
    out = []
    for i in range(n):
        diameter = (0.0, 5.0, 22.0)[i % 3]
        cands = [Candidate(7, diameter, 0, diameter > 20)]
        if i % 2:
            cands.insert(0, Candidate(3, 0.0, 0, False))
        out.append(ExamImage(1000 + i, day, scanners[i % 2], tuple(cands)))
    return out


# ------------------------------------------------------------------ ScoreCache
def test_score_cache_round_trip(tmp_path):
    cache = ScoreCache("d" * 64, "c" * 64, tmp_path)
    assert cache.path == tmp_path / f"{'d' * 16}-{'c' * 16}.parquet"
    cache.load()
    assert cache.scores == {}
    cache.save()
    assert not cache.path.exists()  # nothing new, nothing written
    cache.scores[(1, 10, "scanner_a", 0)] = 0.25
    cache.scores[(2**40, 3650, "scanner_b", 2**31 - 1)] = 0.75
    cache.save()
    frame = pl.read_parquet(cache.path)
    assert frame.schema == pl.Schema(CACHE_SCHEMA)
    again = ScoreCache("d" * 64, "c" * 64, tmp_path).load()
    assert again.scores == cache.scores
    mtime = cache.path.stat().st_mtime_ns
    again.save()
    assert cache.path.stat().st_mtime_ns == mtime
    # no temporary left (the lock file stays: removing it would race with another run)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f".{cache.path.name}.lock", cache.path.name]


def test_runs_sharing_a_cache_lose_no_scores(tmp_path):
    first = ScoreCache("d" * 64, "c" * 64, tmp_path).load()
    second = ScoreCache("d" * 64, "c" * 64, tmp_path).load()  # both start from an empty file
    first.scores[(1, 10, "a", 0)] = 0.25
    second.scores[(2, 20, "a", 0)] = 0.5
    first.save()
    second.save()  # merges what the first saved meanwhile
    merged = ScoreCache("d" * 64, "c" * 64, tmp_path).load()
    assert merged.scores == {(1, 10, "a", 0): 0.25, (2, 20, "a", 0): 0.5}


def test_score_cache_without_a_folder_stays_in_memory():
    cache = ScoreCache("d" * 64, "c" * 64, None).load()
    cache.scores[(1, 1, "s", 0)] = 0.5
    cache.save()
    assert cache.path is None


# ------------------------------------------------------------------ DeviceScorer
def test_device_scorer_refuses_another_models_cache(tiny_model):
    with pytest.raises(ValueError, match="another model"):
        DeviceScorer(tiny_model, ScoreCache("0" * 64, "c"), seed=1, render=render_patches)


def test_device_scorer_scores_once_then_replays(tiny_model, scanners):
    scorer = DeviceScorer(
        tiny_model, ScoreCache(tiny_model.digest, "c"), seed=1, batch_size=10, render=render_patches
    )
    batch = exams(scanners)
    patches = sum(len(e.candidates) for e in batch)  # 36
    first = scorer.scores(batch)
    assert first.shape == (len(batch),) and ((first >= 0) & (first <= 1)).all()
    assert (scorer.stats.inferences, scorer.stats.hits, scorer.stats.batches) == (patches, 0, 4)
    assert len(np.unique(first)) > 1
    second = scorer.scores(batch[::-1])
    np.testing.assert_array_equal(second, first[::-1])
    assert (scorer.stats.inferences, scorer.stats.hits) == (patches, patches)
    assert scorer.scores([]).shape == (0,)


def test_device_scorer_renders_ahead_into_two_kept_buffers(tiny_model, scanners):
    import threading

    seen, threads = [], set()

    def render(patches, seed, size, device, out=None):
        seen.append(out.data_ptr())
        threads.add(threading.current_thread().name)
        return render_patches(patches, seed, size, device, out)

    def scorer(batch_size, ahead, render=render):
        cache = ScoreCache(tiny_model.digest, "c")
        return DeviceScorer(
            tiny_model, cache, seed=1, batch_size=batch_size, render=render, render_ahead=ahead
        )

    ahead = scorer(10, True).scores(exams(scanners))
    fresh = scorer(36, False, render_patches).scores(exams(scanners))
    # four batches alternate between two buffers, rendered off the scoring thread
    assert len(seen) == 4 and len(set(seen)) == 2 and seen[0] == seen[2] != seen[1] == seen[3]
    assert threading.current_thread().name not in threads
    np.testing.assert_array_equal(ahead, fresh)
    # without rendering ahead: one buffer, on the scoring thread
    seen.clear(), threads.clear()
    np.testing.assert_array_equal(scorer(10, False).scores(exams(scanners)), fresh)
    assert len(seen) == 4 and len(set(seen)) == 1
    assert threads == {threading.current_thread().name}


def test_device_scorer_reports_a_render_error_from_the_render_thread(tiny_model, scanners):
    calls = []

    def render(patches, seed, size, device, out=None):
        calls.append(len(patches))
        if len(calls) == 2:
            raise ValueError("bad patch")
        return render_patches(patches, seed, size, device, out)

    scorer = DeviceScorer(
        tiny_model,
        ScoreCache(tiny_model.digest, "c"),
        seed=1,
        batch_size=10,
        render=render,
        render_ahead=True,
    )
    with pytest.raises(ValueError, match="bad patch"):
        scorer.scores(exams(scanners))


def test_exam_score_is_the_max_over_candidates_and_names_the_driver(tiny_model, scanners):
    scorer = DeviceScorer(
        tiny_model, ScoreCache(tiny_model.digest, "c"), seed=1, render=render_patches
    )
    batch = exams(scanners)
    reads = scorer.read(batch)
    for i, e in enumerate(batch):
        cand = [
            scorer.cache.scores[(e.person_id, e.exam_day, scanner_key(e.scanner), c.location)]
            for c in e.candidates
        ]
        assert reads.score[i] == max(cand)
        assert reads.driver[i] == int(np.argmax(cand))
        assert reads.candidates[i] == len(e.candidates)
    # a noisy-or device combines its candidates instead
    scorer.aggregation = "noisy_or"
    noisy = scorer.read(batch).score
    two = [i for i, e in enumerate(batch) if len(e.candidates) == 2]
    assert (noisy[two] >= reads.score[two]).all() and (noisy[two] > reads.score[two]).any()


def test_two_view_scores_a_region_with_its_match_in_the_other_view():
    """A region's score is averaged with the most suspicious region of the same breast's other
    view within the matching distance of its distance from the nipple (0 where none is); the
    exam's score is the best region's, and that region drives it."""
    from types import SimpleNamespace as C

    from sandbox.agents.inference import aggregate

    cands = [
        C(view=0, nipple_mm=50.0),  # R-CC: a finding
        C(view=1, nipple_mm=58.0),  # R-MLO: the same finding, 8 mm deeper
        C(view=1, nipple_mm=90.0),  # R-MLO: tissue far from it
        C(view=2, nipple_mm=52.0),  # L-CC: a summation, seen in one view only
        C(view=3, nipple_mm=20.0),  # L-MLO: tissue far from it
    ]
    s = np.array([0.6, 0.8, 0.3, 0.95, 0.1])
    score, driver = aggregate(s, "two_view", cands, 20.0)
    assert score == pytest.approx(0.5 * (0.6 + 0.8)) and driver == 0
    # a max would take the summation
    assert aggregate(s, "max") == (0.95, 3)
    # matching further out pairs the summation with faint tissue: still below the finding
    assert aggregate(s, "two_view", cands, 40.0)[0] == pytest.approx(0.7)
    # a narrower match leaves the finding's two views apart
    assert aggregate(s, "two_view", cands, 5.0)[0] == pytest.approx(0.5 * 0.95)
    # the other breast's views never match
    far = [C(view=0, nipple_mm=50.0), C(view=3, nipple_mm=50.0)]
    assert aggregate(np.array([0.9, 0.9]), "two_view", far, 20.0)[0] == pytest.approx(0.45)
    # lung candidates have no views: refused, not guessed
    with pytest.raises(ValueError, match="two_view aggregation needs candidates with a view"):
        aggregate(np.array([0.5]), "two_view", [Candidate(1, 10.0, 0, False)], 20.0)


def test_cache_key_is_person_day_scanner_and_location(tiny_model, scanners):
    scorer = DeviceScorer(
        tiny_model, ScoreCache(tiny_model.digest, "c"), seed=1, render=render_patches
    )
    e = exams(scanners, n=1)[0]
    c = e.candidates[0]
    scorer.scores([e])
    other_scanner = ExamImage(e.person_id, e.exam_day, scanners[1], e.candidates)
    other_day = ExamImage(e.person_id, e.exam_day + 1, e.scanner, e.candidates)
    other_place = ExamImage(e.person_id, e.exam_day, e.scanner, (Candidate(8, 5.0, 0, False),))
    scorer.scores([other_scanner, other_day, other_place])
    assert scorer.stats.inferences == 4
    assert set(scorer.cache.scores) == {
        (e.person_id, e.exam_day, scanner_key(scanners[0]), c.location),
        (e.person_id, e.exam_day, scanner_key(scanners[1]), c.location),
        (e.person_id, e.exam_day + 1, scanner_key(scanners[0]), c.location),
        (e.person_id, e.exam_day, scanner_key(scanners[0]), 8),
    }


def test_scores_do_not_depend_on_the_batch(tiny_model, scanners):
    """Rendering is bit-identical whatever the batch, and the network runs on fixed-size chunks:
    an exam's score is bit-identical at any batch size, so no decision or cached value moves."""
    batch = exams(scanners)
    scores = {}
    for size in (1, 7, 64):
        scorer = DeviceScorer(
            tiny_model, ScoreCache(tiny_model.digest, "c"), 1, size, render=render_patches
        )
        scores[size] = scorer.scores(batch)
        patches = sum(len(e.candidates) for e in batch)
        assert scorer.stats.batches == math.ceil(patches / size)
    assert np.array_equal(scores[1], scores[64]) and np.array_equal(scores[7], scores[64])


def test_scores_follow_the_render_seed(tiny_model, scanners):
    batch = exams(scanners, n=6)
    a = DeviceScorer(
        tiny_model, ScoreCache(tiny_model.digest, "c"), 1, render=render_patches
    ).scores(batch)
    b = DeviceScorer(
        tiny_model, ScoreCache(tiny_model.digest, "c"), 2, render=render_patches
    ).scores(batch)
    assert not np.array_equal(a, b)


# ------------------------------------------------------------------ operating points
def device_with_validation(folder: Path, scores, labels) -> Path:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "validation.json").write_text(
        json.dumps({"scores": list(scores), "labels": list(labels)})
    )
    return folder


def test_absolute_threshold_needs_no_validation_set(tmp_path):
    assert resolve_threshold(OperatingPoint("absolute", 0.42), tmp_path) == 0.42


def test_percentile_threshold_is_the_reference_quantile(tiny_device):
    """``percentile`` is a quantile of the screening population's scores (reference_scores),
    not of the cancer-enriched labelled set."""
    data = json.loads((tiny_device / "configs" / "validation.json").read_text())
    reference = np.array(data["reference_scores"])
    assert len(reference) > len(data["scores"])  # every held-out screen, not the balanced set
    cut = resolve_threshold(OperatingPoint("percentile", 0.8), tiny_device)
    assert cut == pytest.approx(np.quantile(reference, 0.8))
    assert (reference >= cut).mean() == pytest.approx(0.2, abs=0.02)


def test_percentile_without_reference_scores_uses_the_validation_set(tmp_path):
    folder = device_with_validation(tmp_path, [i / 10 for i in range(11)], [0] * 6 + [1] * 5)
    assert resolve_threshold(OperatingPoint("percentile", 0.7), folder) == pytest.approx(0.7)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
def test_target_sensitivity_is_the_highest_cut_off_reaching_it(tiny_device, target):
    scores, labels = validation_set(tiny_device)
    cut = resolve_threshold(OperatingPoint("target_sensitivity", 0.5, target), tiny_device)
    positives = scores[labels == 1]
    assert (positives >= cut).mean() >= target
    higher = positives[positives > cut]
    assert len(higher) / len(positives) < target  # any higher cut-off misses the target


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "configs/validation.json is missing"),
        ({"scores": [0.1, 0.2], "labels": [1]}, "equal-length"),
        ({"scores": [0.1, 1.2], "labels": [1, 0]}, "in [0, 1]"),
        ({"scores": [0.1, 0.2], "labels": [1, 2]}, "0 or 1"),
        ({"labels": [1, 0]}, "malformed"),
        ({"scores": [0.1, 0.2], "labels": [1, 0], "reference_scores": [0.5, 2.0]}, "reference"),
        ({"scores": [0.1, 0.2], "labels": [1, 0], "reference_scores": []}, "reference"),
    ],
)
def test_bad_validation_sets_are_one_line_errors(tmp_path, content, fragment):
    (tmp_path / "configs").mkdir()
    if content is not None:
        (tmp_path / "configs" / "validation.json").write_text(json.dumps(content))
    with pytest.raises(SandboxInputError) as info:
        resolve_threshold(OperatingPoint("percentile", 0.5), tmp_path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unreachable_target_names_the_config_key(tmp_path):
    folder = device_with_validation(tmp_path, [0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    with pytest.raises(SandboxInputError, match="policy.threshold.target_sensitivity"):
        resolve_threshold(OperatingPoint("target_sensitivity", 0.5, 0.9), folder)


def test_ten_malignant_cases_demonstrate_a_090_sensitivity(tmp_path):
    """Regression: the positives needed, ceil(1 / (1 - t)), was computed in floating point;
    1 / (1 - 0.9) = 10.000000000000002, so 11 were demanded for a 0.9 target."""
    folder = device_with_validation(tmp_path, [i / 20 for i in range(20)], [0] * 10 + [1] * 10)
    cut = resolve_threshold(OperatingPoint("target_sensitivity", 0.5, 0.9), folder)
    assert cut == pytest.approx(11 / 20)  # the 9th highest of the ten malignant scores


def test_target_cut_off_is_not_lowered_by_float_rounding(tmp_path):
    """Regression: k = ceil(t * n) in floating point gave 15 for 0.56 * 25 =
    14.000000000000002, a cut-off lower than the highest one reaching the target."""
    malignant = [round(0.50 + i / 100, 2) for i in range(25)]  # 0.50 ... 0.74
    folder = device_with_validation(tmp_path, [0.1, 0.2] + malignant, [0, 0] + [1] * 25)
    cut = resolve_threshold(OperatingPoint("target_sensitivity", 0.5, 0.56), folder)
    assert cut == pytest.approx(0.61)  # the 14th highest: 14 / 25 = 0.56


# ------------------------------------------------------------------ cohort key
def test_cohort_key_follows_seed_and_scenario_not_policy(load_config):
    key = cohort_key(load_config(*RUN, "policy=ai_triage")[0])
    assert cohort_key(load_config(*RUN, "policy=ai_second_reader")[0]) == key
    assert cohort_key(load_config(*RUN, "policy=ai_triage", "seed=14")[0]) != key
    assert cohort_key(load_config(*RUN, "policy=ai_triage", "cohort.size=301")[0]) != key


def test_cohort_key_ignores_staffing_and_follows_the_renderer(load_config, monkeypatch):
    """Only what changes the images changes the key: not reading hours or capacity."""
    from sandbox.programmes.lung_ldct import programme as lung

    key = cohort_key(load_config(*RUN, "policy=ai_triage")[0])
    staffing = ("sites.0.reading_hours_per_day=3.0", "sites.1.workup_slots_per_day=1")
    for o in staffing:
        assert cohort_key(load_config(*RUN, "policy=ai_triage", o)[0]) == key, o
    spread = "programme.schedule_spread_days=100"  # moves everyone in time: other images
    assert cohort_key(load_config(*RUN, "policy=ai_triage", spread)[0]) != key
    monkeypatch.setattr(lung, "renderer_version", lambda: "lung_ct_patch:changed")
    assert cohort_key(load_config(*RUN, "policy=ai_triage")[0]) != key


def test_a_device_must_read_what_the_programme_renders(
    load_config, tiny_device, tmp_path, monkeypatch
):
    from sandbox.errors import SandboxInputError
    from sandbox.programmes.lung_ldct.programme import LungLDCT

    cfg = load_config(
        *RUN, "policy=ai_triage", f"agent={tiny_device}", f"runtime.score_cache={tmp_path}"
    )[0]
    monkeypatch.setattr(LungLDCT, "image_spatial_dims", 2)  # as if the programme rendered 2-D
    with pytest.raises(SandboxInputError, match=r"metadata\.json: input is 3-D in HU.*2-D"):
        prepare_device(cfg)
    monkeypatch.setattr(LungLDCT, "image_units", None)
    with pytest.raises(SandboxInputError, match="renders no images"):
        prepare_device(cfg)


def test_a_device_run_restores_torch_threads(load_config, tiny_device, tmp_path):
    # CPU rendering runs on one thread while the device is in use; closing restores the setting
    cfg = load_config(
        *RUN, "policy=ai_triage", f"agent={tiny_device}", f"runtime.score_cache={tmp_path}"
    )[0]
    torch.set_num_threads(2)
    try:
        dev = prepare_device(cfg)
        during = torch.get_num_threads()
        dev.close()
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)  # this module's setting
    assert (during, after) == (1, 2)


# ------------------------------------------------------------------ whole runs, one cache
def cache_keys(folder: Path) -> dict[str, set[tuple[int, int, str, int]]]:
    """Keys in each cache file of ``folder`` (person, day, scanner, candidate location), by
    file name."""
    cols = ("person_id", "exam_day", "scanner", "location")
    return {
        p.name: set(pl.read_parquet(p).select(cols).iter_rows()) for p in folder.glob("*.parquet")
    }


def screen_keys(res, scanners) -> set[tuple[int, int, str]]:
    """The cache keys of a run's screening exams: (person, integer exam day, scanner key)."""
    s = res.events.filter(pl.col("exam_kind") == "screen")
    days = s["exam_day"].floor().cast(pl.Int64)
    models = [scanner_key(scanners[i]) for i in s["site"]]
    return set(zip(s["person_id"], days, models, strict=True))


def record(res) -> dict:
    assert len(res.agents) == 1
    return next(iter(res.agents.values()))


@pytest.fixture(scope="module")
def cached_runs(load_config, tiny_device, tmp_path_factory):
    """Policy A (triage), then B (second reader), then A again and A on another seed, all
    with one score-cache folder, with the cache's keys after each; and B alone with a fresh
    folder."""
    shared = tmp_path_factory.mktemp("shared_score_cache")
    fresh = tmp_path_factory.mktemp("fresh_score_cache")

    def go(name: str, folder: Path, *overrides: str) -> None:
        cfg, profiles, _ = load_config(
            *RUN, f"agent={tiny_device}", f"runtime.score_cache={folder}", *overrides
        )
        runs[name] = simulate(cfg, profiles, progress=False)  # a fresh run each time
        runs[f"cache_after_{name}"] = cache_keys(folder)

    runs: dict = {"folder": shared}
    go("a", shared, "policy=ai_triage")
    go("b", shared, "policy=ai_second_reader")
    go("a_again", shared, "policy=ai_triage")
    go("b_cold", fresh, "policy=ai_second_reader")
    go("other_seed", shared, "policy=ai_triage", "seed=14")
    return runs


def test_first_run_scores_every_screen_once_in_batches(cached_runs, scanners, tiny_model):
    a, cache = cached_runs["a"], cached_runs["cache_after_a"]
    rec = record(a)
    assert rec["cached_scores_at_start"] == 0
    (name,) = cache  # one file, named by model digest and cohort
    assert name.startswith(tiny_model.digest[:16]) and name.endswith(".parquet")
    assert screen_keys(a, scanners) <= {k[:3] for k in cache[name]}  # every screen is kept
    assert rec["inferences"] == len(cache[name])  # and was computed once
    # exams scanned at the same moment at a site are scored together, not one by one
    screens = a.events.filter(pl.col("exam_kind") == "screen")
    moments = screens.select("site", "exam_day").n_unique()
    assert rec["batches"] <= moments < screens.height


def test_second_policy_infers_only_exams_not_yet_scored(cached_runs, scanners):
    """Invariant 2 across policies: B replays every score A computed; each inference B runs
    is an exam no run has scored."""
    a, b = cached_runs["a"], cached_runs["b"]
    (name,) = cached_runs["cache_after_a"]
    before, after = cached_runs["cache_after_a"][name], cached_runs["cache_after_b"][name]
    rec = record(b)
    assert rec["cached_scores_at_start"] == len(before)
    assert rec["inferences"] == len(after - before)  # never an exam already in the cache
    shared = screen_keys(b, scanners) & {k[:3] for k in before}
    assert len(shared) > 0.9 * len(screen_keys(b, scanners))  # mostly the same screens
    assert rec["cache_hits"] >= len(shared)
    sa = a.events.filter(pl.col("exam_kind") == "screen")
    sb = b.events.filter(pl.col("exam_kind") == "screen")
    both = sa.join(sb, on=["person_id", "exam_day"], suffix="_b")
    assert both.height > 0.9 * sb.height
    assert (both["ai_score"] == both["ai_score_b"]).all()  # replayed, not recomputed


def test_repeated_run_infers_nothing_and_gives_the_same_results(cached_runs):
    a, again = cached_runs["a"], cached_runs["a_again"]
    rec = record(again)
    assert rec["inferences"] == 0 and rec["batches"] == 0
    assert rec["cache_hits"] >= a.events.filter(pl.col("exam_kind") == "screen").height
    assert cached_runs["cache_after_a_again"] == cached_runs["cache_after_b"]
    assert_frame_equal(again.metrics, a.metrics, check_exact=True)
    assert_frame_equal(again.events, a.events, check_exact=True)


def test_replayed_scores_give_the_results_of_computed_scores(cached_runs):
    """B after A (scores mostly replayed from A's batches) against B with an empty cache."""
    warm, cold = cached_runs["b"], cached_runs["b_cold"]
    assert record(cold)["cached_scores_at_start"] == 0
    assert record(cold)["threshold"] == record(warm)["threshold"]
    np.testing.assert_allclose(
        warm.events["ai_score"].fill_null(-1).to_numpy(),
        cold.events["ai_score"].fill_null(-1).to_numpy(),
        rtol=0,
        atol=1e-6,
    )
    assert_frame_equal(warm.events.drop("ai_score"), cold.events.drop("ai_score"), check_exact=True)
    assert_frame_equal(warm.metrics, cold.metrics, check_exact=True)


def test_another_seed_uses_another_cache_file(cached_runs):
    rec = record(cached_runs["other_seed"])
    assert rec["cached_scores_at_start"] == 0  # person ids of another cohort are other people
    before, after = cached_runs["cache_after_a_again"], cached_runs["cache_after_other_seed"]
    assert len(after) == 2 and set(before) < set(after)
    (new,) = set(after) - set(before)
    assert rec["inferences"] == len(after[new]) > 0
    for name, keys in before.items():
        assert after[name] == keys  # the first cohort's file is untouched

"""`sandbox train agent=breast_mammo_cnn`: the breast device's training pipeline end to end at a
small size (its weights mean little here; the full recipe's card is in docs/breast.md): the
folder loads as a 2-D device, its 1-10 scale is deciles of screening exams, the same command
gives the same weights, and MASAI's AI triage runs with it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from sandbox.agents.bundle import file_digest, load_bundle
from sandbox.cli import main
from sandbox.compose import project_root
from sandbox.config import Scanner

SHIPPED = project_root() / "agents" / "breast_mammo_cnn"

SMALL = ["train", "agent=breast_mammo_cnn", "people=4000", "epochs=1", "store=cache", "size=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SANDBOX_CACHE_DIR", str(root))
    assert main(SMALL) == 0
    yield root / "agents" / "breast_mammo_cnn", root, mp
    mp.undo()


def test_the_trained_folder_is_a_2d_mammogram_device_with_a_1_to_10_scale(trained):
    folder, _, _ = trained
    model = load_bundle(folder)
    assert model.input_shape == (1, 32, 32)
    meta = model.metadata
    assert meta["input"]["units"] == "mammo_relative"
    cuts = meta["score_scale"]["cut_points"]
    assert len(cuts) == 9 and cuts == sorted(cuts)
    val = json.loads((folder / "configs" / "validation.json").read_text())
    ref = np.asarray(val["reference_scores"])
    # about a tenth of screening exams above the last cut point: the scale is deciles
    assert abs((ref > cuts[-1]).mean() - 0.1) < 0.02
    card = (folder / "docs" / "README.md").read_text()
    assert "Held-out performance" in card and "density d" in card
    # where the device fails, by the mass's look, and its sensitivity in score 10, row by row
    held = meta["performance"]["held_out"]
    assert list(held["by_margin"]) == ["circumscribed", "indistinct", "spiculated"]
    assert list(held["by_shape"]) == ["round_or_oval", "irregular"]
    n_mass = sum(v["cancer_exams"] for v in held["by_margin"].values())
    assert n_mass == sum(v["cancer_exams"] for v in held["by_shape"].values()) > 0
    assert n_mass <= held["by_kind"]["invasive"]["cancer_exams"]
    in10 = held["overall"]["in_10"]
    assert in10 == held["score_bands"]["cancers_in_10"]
    assert "invasive mass, indistinct margin" in card and f"| {in10:.1%} |" in card
    # the scale is calibrated per system: a tenth of each system's screens in score 10
    assert set(meta["output"]["calibration"]["systems"]) == {"ffdm_2019", "ffdm_2016"}
    by_system = held["score_bands"]["exams_in_10_by_system"]
    for share in by_system.values():
        assert abs(share["calibrated"] - 0.1) < 0.03
    assert model.calibration is not None and "calibrated per mammography system" in card
    assert meta["training_data"]["command"] == "sandbox train " + " ".join(SMALL[1:])
    # the screens are on the recipe's mix of systems, and the card says which
    shares = meta["training_data"]["scanner_shares"]
    assert len(shares) == len(meta["training_data"]["scanners"]) == 2 and shares[0] > shares[1]


def test_screens_are_on_the_recipes_mix_of_systems():
    import dataclasses

    from sandbox.compose import load
    from sandbox.programmes.breast_mammo.programme import BreastMammo
    from sandbox.programmes.breast_mammo.train import screening_exams
    from sandbox.rng import Streams

    cfg, _, _ = load(["scenario=breast_masai", "runtime=quiet"])
    scn = dataclasses.replace(
        cfg.scenario, cohort=dataclasses.replace(cfg.scenario.cohort, size=3000)
    )
    programme = BreastMammo(scn)
    cohort = programme.sample_cohort(Streams(2))
    system = dict(dose_mgy=1.2, noise_hu_at_1mgy=0.055, kernel_fwhm_mm=0.16, slice_mm=0.085)
    systems = [Scanner(m, **system, modality="mammo") for m in ("a", "b")]
    even, _ = screening_exams(programme, cohort, systems, Streams(2))
    mixed, _ = screening_exams(programme, cohort, systems, Streams(2), [0.9, 0.1])
    assert abs((even["scanner"] == 0).mean() - 0.5) < 0.04
    assert abs((mixed["scanner"] == 0).mean() - 0.9) < 0.03
    # an even mix given as shares is the even mix
    same, _ = screening_exams(programme, cohort, systems, Streams(2), [1.0, 1.0])
    assert np.array_equal(same["scanner"], even["scanner"])


def run_path_scores(model, people: int, seed: int):
    """Exam scores of the held-out card exams of a draw of ``people`` women at ``seed``, through
    the run's own path (the programme's images and renderer, ``DeviceScorer``): (scores, whether
    the exam shows a cancer, the uniform screening sample, the exams' table)."""
    import dataclasses

    from sandbox.agents.inference import DeviceScorer, ScoreCache
    from sandbox.compose import load
    from sandbox.programmes.breast_mammo.programme import BreastMammo
    from sandbox.programmes.breast_mammo.train import evaluation_exams, screening_exams
    from sandbox.programmes.lung_ldct.train import held_out
    from sandbox.rng import Streams

    meta = model.metadata
    scanners = [Scanner(**p) for p in meta["training_data"]["scanner_parameters"]]
    cfg, _, _ = load(["scenario=breast_masai", "runtime=quiet"])
    scn = dataclasses.replace(
        cfg.scenario, cohort=dataclasses.replace(cfg.scenario.cohort, size=people)
    )
    programme = BreastMammo(scn)
    streams = Streams(seed)
    shares = meta["training_data"]["scanner_shares"]
    exams, cases = screening_exams(
        programme, programme.sample_cohort(streams), scanners, streams, shares
    )
    test = held_out(exams["person_id"], streams)
    chosen, uniform = evaluation_exams(exams, test, streams)
    image = {}
    for (img, _), e in zip(cases.pairs, cases.exam, strict=True):
        image.setdefault(int(e), img)
    scorer = DeviceScorer(model, ScoreCache(model.digest, "t"), seed, 256, render=programme.render)
    scores = scorer.scores([image[int(e)] for e in chosen])
    return (
        scores,
        exams["cancer"][chosen],
        uniform[chosen],
        {k: v[chosen] for k, v in exams.items()},
    )


def test_a_run_scores_the_card_exams_as_training_did(trained):
    """The run's path (candidates by ``image_of``, the renderer, window, network, sigmoid, the
    two-view aggregation, the per-system map) gives the scores training measured its card on."""
    folder, _, _ = trained
    model = load_bundle(folder)
    scores, cancer, uniform, _ = run_path_scores(model, 4000, 2026)
    val = json.loads((folder / "configs" / "validation.json").read_text())
    np.testing.assert_array_equal(cancer.astype(int), val["labels"])
    # float32 forward passes in other batch sizes, put through the small card's per-system map
    np.testing.assert_allclose(scores, val["scores"], atol=1e-4)
    np.testing.assert_allclose(scores[uniform], val["reference_scores"], atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / "configs" / "metadata.json").is_file(), reason="agents/breast_mammo_cnn absent"
)
def test_shipped_breast_device_auc_on_fresh_women_matches_its_card():
    """Fresh women (another seed), read through the run's own path: the exam-level AUC for the
    cancers an exam shows, and for those a typical reader sees at least half the time
    (conspicuity at or above the reader profile's c50), is the card's within 0.03."""
    from sandbox.programmes.breast_mammo.train import READER_C50
    from sandbox.programmes.lung_ldct.train import auc

    model = load_bundle(SHIPPED)
    card = model.metadata["performance"]["held_out"]
    seed = int(model.metadata["training_data"]["seed"]) + 1000
    scores, cancer, uniform, exams = run_path_scores(model, 60000, seed)
    neg = uniform & ~cancer  # the card's negatives: screens showing no cancer
    assert cancer.sum() >= 300
    fresh = auc(scores[cancer | neg], cancer[cancer | neg])
    assert abs(fresh - card["overall"]["auc"]) <= 0.03, (fresh, card["overall"]["auc"])
    seen = cancer & (exams["conspicuity"] >= READER_C50)
    fresh_seen = auc(scores[seen | neg], seen[seen | neg])
    on_card = card["by_conspicuity"]["reader_c50_and_over"]["auc"]
    assert abs(fresh_seen - on_card) <= 0.03, (fresh_seen, on_card)


def test_the_same_command_gives_the_same_weights(trained, tmp_path):
    folder, _, mp = trained
    mp.setenv("SANDBOX_CACHE_DIR", str(tmp_path))
    try:
        assert main(SMALL) == 0
    finally:
        mp.setenv("SANDBOX_CACHE_DIR", str(trained[1]))
    again = tmp_path / "agents" / "breast_mammo_cnn" / "models" / "model.safetensors"
    assert file_digest(again) == file_digest(folder / "models" / "model.safetensors")


def test_masai_ai_triage_double_reads_the_top_tenth(trained, run_sim):
    folder, _, _ = trained
    res = run_sim(
        "scenario=breast_masai",
        "policy=ai_triage_masai",
        f"agent={folder}",
        "cohort.size=1500",
        "runtime=quiet",
    )
    screens = res.events.filter(pl.col("exam_kind") == "screen")
    double = (screens["n_reads"] >= 2).mean()
    assert 0.05 < double < 0.2  # score 10: about a tenth of screens
    assert screens["ai_score"].is_not_null().all()


@pytest.mark.parametrize(
    "override, says",
    [
        (
            "scanners=[{model: ct, dose_mgy: 1, noise_hu_at_1mgy: 70, kernel_fwhm_mm: 1, "
            "slice_mm: 1}]",
            "modality: mammo",
        ),
        (
            "scanner_shares=[1.0]",
            "scanner_shares: [1.0] needs a non-negative share for each of the 2 scanners",
        ),
        ("scanner_shares=[0.5,-0.1]", "scanner_shares"),
    ],
)
def test_a_bad_breast_recipe_is_refused_in_one_line(trained, capsys, override, says):
    code = main(["train", "agent=breast_mammo_cnn", override])
    err = capsys.readouterr().err
    assert code != 0 and says in err and err.strip().count("\n") == 0


def test_a_lung_recipe_refuses_scanner_shares_in_one_line(capsys):
    code = main(["train", "agent=lung_nodule_cnn", "scanner_shares=[0.5,0.5]"])
    err = capsys.readouterr().err
    assert code != 0 and "scanner_shares: not available for lung devices" in err


def _masai(run_sim, folder, *extra):
    res = run_sim(
        "scenario=breast_masai",
        "policy=ai_triage_masai",
        f"agent={folder}",
        "cohort.size=3000",
        "seed=4",
        "runtime=quiet",
        *extra,
    )
    return res.events.filter(pl.col("exam_kind") == "screen").sort("person_id")


def _cut(folder, q: float) -> float:
    val = json.loads((folder / "configs" / "validation.json").read_text())
    return float(np.quantile(np.asarray(val["reference_scores"]), q))


def test_masai_marks_and_flag_find_more_where_they_are_shown(trained, run_sim):
    """Marks on the top 30% of scores and the flag on the top 1% (tests/workflow has the exact
    rule): more of the exams they touch are recalled than without them, on the same women. A
    changed report elsewhere can only come from who reads what when (consensus discussions
    take readers' time), so it is rare."""
    folder, _, _ = trained
    plain = _masai(run_sim, folder, "~policy.marks", "~policy.recall_top")
    marked = _masai(run_sim, folder, "~policy.recall_top")
    flagged = _masai(run_sim, folder)
    assert plain["ai_score"].equals(flagged["ai_score"])
    for q, a, b in ((0.7, plain, marked), (0.99, marked, flagged)):
        shown = (a["ai_score"] >= _cut(folder, q)).to_numpy()
        assert 0 < shown.sum() < (0.4 if q == 0.7 else 0.05) * len(shown)
        assert b.filter(shown)["positive"].sum() > a.filter(shown)["positive"].sum()
        changed = (a.filter(~shown)["positive"] != b.filter(~shown)["positive"]).sum()
        assert changed <= 0.002 * (~shown).sum()


class _Recorder(torch.nn.Module):
    """A one-weight network that keeps every batch it is trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.w * x.mean(dim=tuple(range(1, x.dim()))).unsqueeze(-1)


@pytest.mark.parametrize("spatial", [2, 3])
def test_augmentation_flips_and_turns_the_image_never_its_channels(spatial):
    """A 2-D patch's window and detail channels stay in order under every flip and turn (a flip
    of the third-last axis would swap them); a 3-D volume's depth axis is flipped too."""
    from sandbox.programmes.lung_ldct.train import fit

    n, side = 16, 6
    shape = (n, 2) + (side,) * spatial
    x = torch.zeros(shape)
    x[:, 1] = 1.0  # channel 0 all zeros, channel 1 all ones
    ramp = torch.arange(side, dtype=torch.float32)
    x[:, 0] += 0.01 * ramp.view((side,) + (1,) * (spatial - 1))  # the first spatial axis shows
    net = _Recorder()
    fit(net, lambda idx: x[torch.from_numpy(idx)], torch.ones(n), 8, 4, 1e-3, 0, lambda m: None)
    seen = torch.cat(net.seen)
    assert (seen[:, 1] == 1.0).all() and (seen[:, 0] < 0.5).all()
    first = seen[:, 0].flatten(1)[:, 0]  # the corner voxel: 0 unless the first axis flipped
    assert (first == 0).any() and (first > 0).any()


def test_a_run_scores_each_system_on_its_calibration_and_a_new_one_as_the_network_does(trained):
    """The same pixels under a system the calibration names and under another name: the named
    one's exam scores are its calibration of the other's, which are the network's own."""
    import dataclasses

    from sandbox.agents.inference import DeviceScorer, ScoreCache
    from sandbox.compose import load
    from sandbox.programmes.breast_mammo.programme import BreastMammo
    from sandbox.rng import Streams

    folder, _, _ = trained
    model = load_bundle(folder)
    known = Scanner(**model.metadata["training_data"]["scanner_parameters"][1])
    unknown = dataclasses.replace(known, model="another_vendor")
    cfg, _, _ = load(["scenario=breast_masai", "runtime=quiet", "cohort.size=60"])
    programme = BreastMammo(cfg.scenario)
    cohort = programme.sample_cohort(Streams(5))
    ids, days = cohort.people["person_id"], cohort.people["entry_day"]

    def scores(scanner):
        images = [
            programme.image_of(
                int(ids[r]),
                float(days[r]),
                scanner,
                programme.exam_shows(cohort, r, float(days[r]), scanner),
            )
            for r in range(len(ids))
        ]
        scorer = DeviceScorer(model, ScoreCache(model.digest, "t"), 5, 64, render=programme.render)
        return scorer.scores(images)

    raw, named = scores(unknown), scores(known)
    np.testing.assert_allclose(named, model.calibration.apply(raw, known.model), atol=1e-9)
    assert not np.allclose(named, raw)

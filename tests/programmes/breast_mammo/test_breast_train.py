"""`sandbox train agent=breast_mammo_cnn`: the breast device's training pipeline end to end at a
small size (its weights mean little here; the full recipe's card is in docs/breast.md): the
folder loads as a 2-D device, its 1-10 scale is deciles of screening exams, the same command
gives the same weights, and MASAI's AI triage runs with it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from sandbox.agents.bundle import file_digest, load_bundle
from sandbox.cli import main

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
    assert meta["training_data"]["command"] == "sandbox train " + " ".join(SMALL[1:])


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


def test_a_breast_recipe_refuses_a_ct_scanner_in_one_line(trained, capsys):
    code = main(
        [
            "train",
            "agent=breast_mammo_cnn",
            "scanners=[{model: ct, dose_mgy: 1, "
            "noise_hu_at_1mgy: 70, kernel_fwhm_mm: 1, slice_mm: 1}]",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "modality: mammo" in err


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

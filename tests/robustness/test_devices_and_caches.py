"""Devices that pass the probe but fail on real images, oversized or misshapen inputs, huge
weights, and tampered score caches: each ends in one line, before anything is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from testkit import assert_nothing_written, assert_one_line_error, run_cli

from sandbox.agents import bundle as bundle_module
from sandbox.agents.bundle import LoadedModel

SMALL = ["runtime=quiet", "cohort.size=300", "seed=3"]


def ai_args(device, tmp_path, policy="ai_triage"):
    return [
        "run",
        *SMALL,
        f"policy={policy}",
        f"agent={device}",
        f"runtime.out_dir={tmp_path / 'runs'}",
        f"runtime.score_cache={tmp_path / 'cache'}",
    ]


def edit_metadata(src, dst, **input_changes):
    shutil.copytree(src, dst)
    meta_path = dst / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["input"].update(input_changes)
    meta_path.write_text(json.dumps(meta))
    return dst


def test_a_device_that_gives_nan_on_real_images_stops_the_run(
    tiny_device, tmp_path, capsys, monkeypatch
):
    """Finite on the probe's noise, NaN on rendered patches: the first bad batch stops the run."""
    real_score = LoadedModel.score

    def nan_on_real_patches(self, batch_hu):
        scores = real_score(self, batch_hu).clone()
        if batch_hu.shape[0] > 2:  # the probe scores two; the run scores batches of screens
            scores[0] = float("nan")
        return scores

    monkeypatch.setattr(LoadedModel, "score", nan_on_real_patches)
    code, _, err = run_cli(ai_args(tiny_device, tmp_path), capsys)
    assert_one_line_error(code, err, "nan", "person", "nothing was written")
    assert_nothing_written(tmp_path / "runs")
    assert not list((tmp_path / "cache").glob("*.parquet"))  # no score was cached


def test_an_oversized_declared_input_is_refused_before_the_probe(tiny_device, tmp_path, capsys):
    big = edit_metadata(tiny_device, tmp_path / "big", shape=[1, 320, 320, 320])
    code, _, err = run_cli(ai_args(big, tmp_path), capsys)
    assert_one_line_error(code, err, "input.shape", "voxels")
    assert_nothing_written(tmp_path / "runs")


def test_a_batch_over_the_render_budget_is_refused(tiny_device, tmp_path, capsys):
    big = edit_metadata(tiny_device, tmp_path / "big", shape=[1, 128, 128, 128])
    code, _, err = run_cli([*ai_args(big, tmp_path), "runtime.ai_batch_size=4096"], capsys)
    assert_one_line_error(code, err, "GiB", "runtime.ai_batch_size")
    assert_nothing_written(tmp_path / "runs")


def test_a_shape_the_renderer_cannot_make_is_refused(tiny_device, tmp_path, capsys):
    flat = edit_metadata(tiny_device, tmp_path / "flat", shape=[1, 16, 16, 8])
    code, _, err = run_cli(ai_args(flat, tmp_path), capsys)
    assert_one_line_error(code, err, "cubic")
    assert_nothing_written(tmp_path / "runs")


def test_huge_weights_are_refused_before_reading(tiny_device, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bundle_module, "MAX_WEIGHTS_BYTES", 100)  # the tiny device is larger
    code, _, err = run_cli(ai_args(tiny_device, tmp_path), capsys)
    assert_one_line_error(code, err, "refused before reading")
    assert_nothing_written(tmp_path / "runs")


# ------------------------------------------------------------------ the score cache
@pytest.fixture(scope="module")
def warm_cache(tiny_device, tmp_path_factory):
    """A cache folder filled by one AI run, and that run's metrics."""
    import testkit

    tmp = tmp_path_factory.mktemp("warm")
    argv = [
        "run",
        *SMALL,
        "policy=ai_triage",
        f"agent={tiny_device}",
        f"runtime.out_dir={tmp / 'runs'}",
        f"runtime.score_cache={tmp / 'cache'}",
        "runtime.run_name=first",
    ]
    assert testkit.main(argv) == 0
    (cache_file,) = (tmp / "cache").glob("*.parquet")
    return cache_file, pl.read_parquet(tmp / "runs" / "first" / "metrics.parquet")


def tamper(cache_file, tmp_path, how):
    folder = tmp_path / "cache"
    folder.mkdir()
    target = folder / cache_file.name
    table = pq.read_table(cache_file)
    frame = pl.from_arrow(table)
    meta = table.schema.metadata
    if how == "rescored":  # someone edits the scores: every exam now looks malignant
        frame = frame.with_columns(pl.lit(0.99, dtype=pl.Float32).alias("score"))
    elif how == "nan":
        frame = frame.with_columns(pl.lit(float("nan"), dtype=pl.Float32).alias("score"))
    elif how == "retyped":
        frame = frame.with_columns(pl.col("score").cast(pl.Float64))
    elif how == "other_model":
        meta = {**meta, b"sandbox_model": b"0" * 64}
    elif how == "no_checksum":
        meta = {k: v for k, v in meta.items() if k != b"sandbox_sha256"}
    elif how == "garbage":
        target.write_bytes(b"PAR1 not really")
        return
    pq.write_table(frame.to_arrow().replace_schema_metadata(meta), target)


@pytest.mark.parametrize(
    "how", ["rescored", "nan", "retyped", "other_model", "no_checksum", "garbage"]
)
def test_a_tampered_cache_is_one_line_never_a_different_result(
    how, warm_cache, tiny_device, tmp_path, capsys
):
    cache_file, _ = warm_cache
    tamper(cache_file, tmp_path, how)
    before = (tmp_path / "cache" / cache_file.name).read_bytes()
    code, _, err = run_cli(ai_args(tiny_device, tmp_path), capsys)
    assert_one_line_error(code, err, "score cache", "delete it")
    assert_nothing_written(tmp_path / "runs")
    assert (tmp_path / "cache" / cache_file.name).read_bytes() == before


def test_an_intact_cache_replays_the_same_result(warm_cache, tiny_device, tmp_path, capsys):
    cache_file, first = warm_cache
    (tmp_path / "cache").mkdir()
    shutil.copy(cache_file, tmp_path / "cache" / cache_file.name)
    code, _, err = run_cli([*ai_args(tiny_device, tmp_path), "runtime.run_name=again"], capsys)
    assert code == 0, err
    again = pl.read_parquet(tmp_path / "runs" / "again" / "metrics.parquet")
    assert np.array_equal(first["value"].to_numpy(), again["value"].to_numpy(), equal_nan=True)


def test_same_seed_same_results_at_any_batch_size(load_config, tiny_device, tmp_path):
    """Scores do not depend on the batch, so neither does any decision or cached value."""
    from sandbox.runners.local import simulate

    events = []
    for size in (5, 256):
        cfg, profiles, _ = load_config(
            *SMALL,
            "policy=ai_triage",
            f"agent={tiny_device}",
            f"runtime.ai_batch_size={size}",
            f"runtime.score_cache={tmp_path / str(size)}",
        )
        events.append(simulate(cfg, profiles, progress=False).events)
    assert events[0].equals(events[1])
    assert events[0]["ai_score"].is_not_null().sum() > 0

"""`sandbox validate masai_control`: the MASAI trial's double-reading arm against its figures."""

from __future__ import annotations

import re

import pytest

from sandbox.cli import main
from sandbox.validation.targets import load_targets


def test_masai_control_targets_name_real_metrics_and_their_own_sizes():
    head, rows = load_targets("masai_control")
    assert head["scenario"] == "breast_masai" and head["policy"] == "soc_double_read_consensus"
    fitted = {r.name for r in rows if r.fitted}
    assert fitted == {"cancer_detection_per_1000", "interval_cancers_per_1000", "recall_rate"}
    assert {r.n for r in rows if r.name == "recall_rate"} == {40024.0}


@pytest.mark.parametrize("seed", [1, 2])
def test_masai_control_arm_passes_at_the_trials_size(capsys, seed):
    code = main(["validate", "masai_control", "--size", "52967", "--seed", str(seed)])
    out = capsys.readouterr().out
    assert "52,967 people" in out
    m = re.search(r"^(\d+)/(\d+) rows statistically indistinguishable", out, re.M)
    assert m and m.group(1) == m.group(2) == "6", out
    assert code == 0

"""The paired interval checked on whole simulations, not synthetic data.

Over 16 seeds (independent cohorts, and independent draws of each site's readers), single
against double reading: where the difference is carried by the people (cancers found,
false-positive work-ups) one seed's paired-bootstrap interval covers the true difference
(estimated by the mean over seeds) at about the nominal rate. Where it is carried by the
readers drawn (reading hours), the seeds disagree far more than resampling people says, one
seed's interval is much too narrow, and only pooling over seeds covers: which is why
``compare`` pools seeds and says so when it has one.
"""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.outcomes.metrics import person_sums
from sandbox.outcomes.paired import pairable, paired_differences, pool
from sandbox.programmes import programme_for
from sandbox.runners.local import simulate

SEEDS = list(range(101, 117))
PEOPLE_DRIVEN = ["screen_detected_cancers", "false_positive_workups"]
READER_DRIVEN = ["reader_hours"]
METRICS = [*PEOPLE_DRIVEN, "positive_rate", "human_reads", *READER_DRIVEN]


@pytest.mark.slow
def test_paired_intervals_over_many_seeds_of_real_simulations(load_config):
    per_seed = []
    for seed in SEEDS:
        tables = []
        for policy in ("soc_single_read", "soc_double_read"):
            cfg, profiles, _ = load_config(
                "runtime=quiet", f"policy={policy}", f"seed={seed}", "cohort.size=2000"
            )
            res = simulate(cfg, profiles, progress=False)
            programme = programme_for(cfg.scenario)
            tables.append(person_sums(res.events, res.people, programme))
        known = pairable(programme)
        per_seed.append(
            paired_differences(*tables, [known[m] for m in METRICS], seed=seed, replicates=1000)
        )
    truth, ratio = {}, {}
    covered = trials = 0
    for i, name in enumerate(METRICS):
        diff = np.array([f["diff"][i] for f in per_seed])
        truth[name] = diff.mean()
        ratio[name] = diff.var(ddof=1) / np.mean([f["diff_se"][i] ** 2 for f in per_seed])
        if name in PEOPLE_DRIVEN:
            lo = np.array([f["diff_lo"][i] for f in per_seed])
            hi = np.array([f["diff_hi"][i] for f in per_seed])
            covered += int(((lo <= truth[name]) & (truth[name] <= hi)).sum())
            trials += len(diff)
            # between-seed against within-run variance: chi2(15)/15 99.9% bounds are 0.23-2.5
            assert 0.23 < ratio[name] < 2.6, (name, ratio[name])
    # 32 single-seed intervals at a nominal 95%: 80% is 3.9 SD below
    assert covered / trials >= 0.80, covered / trials
    for name in READER_DRIVEN:  # the readers drawn, not the people, carry the variation
        assert ratio[name] > 10, (name, ratio[name])
    # pooled over 4 seeds at a time: 20 intervals, all five metrics, cover the 16-seed mean
    hits = 0
    for k in range(0, len(SEEDS), 4):
        pooled = pool(per_seed[k : k + 4])
        for row in pooled.iter_rows(named=True):
            assert row["seeds"] == 4
            hits += row["diff_lo"] <= truth[row["metric"]] <= row["diff_hi"]
    assert hits >= 17, hits  # 85% of 20

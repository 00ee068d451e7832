"""The metrics table of a small run: complete, consistent, and its counts add up."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from sandbox.outcomes import METRICS_SCHEMA, metric_catalogue
from sandbox.outcomes.metrics import SUBGROUPS
from sandbox.programmes.lung_ldct.lung_rads import CATEGORIES
from sandbox.programmes.lung_ldct.programme import LungLDCT

METRICS = metric_catalogue(LungLDCT)  # every metric a lung run reports

COUNTS = [m.name for m in METRICS.values() if m.kind == "count"]
SUMS = [m.name for m in METRICS.values() if m.kind == "sum"]


@pytest.fixture(scope="module")
def metrics(small_run) -> pl.DataFrame:
    return small_run.metrics


def cell(metrics, metric, site="all", subgroup="all", rnd="all"):
    row = metrics.filter(
        (pl.col("metric") == metric)
        & (pl.col("site") == site)
        & (pl.col("subgroup") == subgroup)
        & (pl.col("round") == rnd)
    )
    assert row.height == 1, (metric, site, subgroup, rnd)
    return row.row(0, named=True)


def test_schema_and_every_metric_present(metrics, small_cfg):
    assert metrics.schema == pl.Schema(METRICS_SCHEMA)
    assert set(metrics["metric"].unique()) == set(METRICS)
    assert set(metrics["site"].unique()) == {"all", *(s.name for s in small_cfg.scenario.sites)}
    assert metrics.select("metric", "site", "subgroup", "round").is_duplicated().sum() == 0
    rounds = {f"T{r}" for r in range(small_cfg.scenario.programme.rounds)} | {"all"}
    assert set(metrics["round"].unique()) <= rounds


def test_intervals_contain_estimates(metrics):
    m = metrics.filter(pl.col("value").is_not_nan() & pl.col("value").is_not_null())
    bad = m.filter(
        (pl.col("lo") > pl.col("value") + 1e-9) | (pl.col("hi") < pl.col("value") - 1e-9)
    )
    assert bad.height == 0, bad.head()
    props = [n for n, d in METRICS.items() if d.kind == "proportion"]
    p = m.filter(pl.col("metric").is_in(props))
    assert ((p["value"] >= 0) & (p["value"] <= 1)).all()


def test_screen_counts_match_the_event_log(metrics, small_run, small_cfg):
    ev = small_run.events
    screens = ev.filter(pl.col("exam_kind") == "screen")
    assert cell(metrics, "screens")["value"] == screens.height
    assert cell(metrics, "positives")["value"] == screens["positive"].sum()
    assert cell(metrics, "exams")["value"] == ev.height
    assert cell(metrics, "human_reads")["value"] == ev["n_reads"].sum()
    assert cell(metrics, "reader_hours")["value"] == pytest.approx(ev["reader_minutes"].sum() / 60)
    assert cell(metrics, "people")["value"] == small_cfg.scenario.cohort.size
    for r in range(small_cfg.scenario.programme.rounds):
        assert (
            cell(metrics, "screens", rnd=f"T{r}")["value"]
            == screens.filter(pl.col("round") == r).height
        )
    # positives + negatives = screens
    rate = cell(metrics, "positive_rate")
    assert rate["n"] == screens.height
    assert rate["value"] * rate["n"] == pytest.approx(screens["positive"].sum())
    assert screens["positive"].sum() + (~screens["positive"]).sum() == screens.height


def test_lung_rads_shares_add_up_to_one_in_every_cell(metrics):
    shares = metrics.filter(pl.col("metric").is_in([f"lung_rads_{c}_share" for c in CATEGORIES]))
    per_cell = shares.group_by("site", "subgroup", "round").agg(
        pl.col("value").sum(), (pl.col("value") * pl.col("n")).sum().alias("k"), pl.col("n").first()
    )
    assert np.allclose(per_cell["value"].to_numpy(), 1.0)
    assert np.allclose(per_cell["k"].to_numpy(), per_cell["n"].to_numpy())


def _margin_sums(metrics: pl.DataFrame, names: list[str], dim: str, parts) -> pl.DataFrame:
    """Sum of ``value`` over the levels of ``dim`` beside the 'all' margin, per remaining cell."""
    others = [d for d in ("site", "subgroup", "round") if d != dim]
    m = metrics.filter(pl.col("metric").is_in(names))
    summed = m.filter(parts).group_by("metric", *others).agg(pl.col("value").sum().alias("parts"))
    return m.filter(pl.col(dim) == "all").join(summed, on=["metric", *others], how="left")


def test_site_counts_add_up_to_all(metrics):
    j = _margin_sums(metrics, COUNTS + SUMS, "site", pl.col("site") != "all")
    j = j.with_columns(pl.col("parts").fill_null(0.0))
    assert np.allclose(j["value"].to_numpy(), j["parts"].to_numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dim", SUBGROUPS)
def test_subgroup_counts_add_up_to_all(metrics, dim):
    m = metrics.filter(
        pl.col("subgroup").str.starts_with(f"{dim}=") | (pl.col("subgroup") == "all")
    )
    j = _margin_sums(m, COUNTS + SUMS, "subgroup", pl.col("subgroup") != "all")
    j = j.with_columns(pl.col("parts").fill_null(0.0))
    assert np.allclose(j["value"].to_numpy(), j["parts"].to_numpy(), rtol=1e-9, atol=1e-9)


def test_round_counts_add_up_to_all(metrics):
    by_round = [
        n
        for n in COUNTS + SUMS
        if metrics.filter((pl.col("metric") == n) & (pl.col("round") == "T0")).height
    ]
    j = _margin_sums(metrics, by_round, "round", pl.col("round") != "all")
    j = j.with_columns(pl.col("parts").fill_null(0.0))
    assert np.allclose(j["value"].to_numpy(), j["parts"].to_numpy(), rtol=1e-9, atol=1e-9)


def test_stage_shares_and_counts_are_consistent(metrics, small_run):
    shares = sum(cell(metrics, f"stage_{s}_share")["value"] for s in ("I", "II", "III", "IV"))
    assert shares == pytest.approx(1.0)
    sd = sum(cell(metrics, f"screen_detected_stage_{s}")["value"] for s in ("I", "II", "III", "IV"))
    assert sd == cell(metrics, "screen_detected_cancers")["value"]
    pp = small_run.people
    assert (
        cell(metrics, "screen_detected_cancers")["value"]
        == (pp["diagnosis_mode"] == "screen").sum()
    )
    assert (
        cell(metrics, "lung_cancers_diagnosed")["value"] == pp["diagnosis_day"].is_not_null().sum()
    )
    assert (
        cell(metrics, "lung_cancer_deaths")["value"] == (pp["death_cause"] == "lung_cancer").sum()
    )
    assert cell(metrics, "life_years")["value"] == pytest.approx(pp["person_years"].sum())


def test_worst_backlog_all_is_the_largest_site_backlog(metrics, small_cfg):
    sites = [cell(metrics, "worst_backlog", site=s.name)["value"] for s in small_cfg.scenario.sites]
    assert cell(metrics, "worst_backlog")["value"] == max(sites)


def test_every_metric_is_documented(project_root):
    doc = project_root / "docs" / "metrics.md"
    if not doc.exists():
        pytest.skip("docs/metrics.md not written yet")
    names = set(re.findall(r"`([a-zA-Z0-9_]+)`", doc.read_text()))
    missing = sorted(set(METRICS) - names)
    assert not missing, f"metrics not in docs/metrics.md: {missing}"


def test_docs_say_which_way_is_better_as_the_metrics_do(project_root, small_cfg):
    from sandbox.outcomes.metrics import metric_catalogue
    from sandbox.programmes import programme_for

    text = (project_root / "docs" / "metrics.md").read_text()
    documented = {}
    for better in ("higher", "lower"):
        line = next(x for x in text.splitlines() if x.startswith(f"| {better} | "))
        documented |= {n: better for n in re.findall(r"`([a-zA-Z0-9_]+)`", line)}
    catalogue = metric_catalogue(programme_for(small_cfg.scenario))
    assert documented == {n: m.better for n, m in catalogue.items() if m.better}

"""`sandbox psa`: distributions as declared, re-pricing draws, acceptability, EVPI and tornado."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from testkit import assert_one_line_error, run_cli

from sandbox.compose import load
from sandbox.economics.psa import Param, acceptability, parse_params
from sandbox.errors import SandboxInputError


@pytest.mark.parametrize(
    "param",
    [
        Param("x", "gamma", 1500.0, 300.0),
        Param("x", "beta", 0.8, 0.05),
        Param("x", "lognormal", 1.2, 0.3),
        Param("x", "normal", 5.0, 2.0),
    ],
)
def test_distributions_have_the_declared_mean_and_sd(param):
    d = param.frozen()
    assert d.mean() == pytest.approx(param.mean, rel=1e-9)
    assert d.std() == pytest.approx(param.sd, rel=1e-9)


def test_a_bad_psa_section_is_refused_naming_the_key():
    cfg, _, _ = load(["economics=us_payer"])
    costs, util = cfg.economics.costs, cfg.economics.utilities
    cases = [
        ({"costs.workup": {"dist": "triangle", "sd": 1}}, "economics.psa.costs.workup.dist"),
        ({"costs.nothing": {"dist": "gamma", "sd": 1}}, "economics.psa.costs.nothing"),
        (
            {"utilities.later_years": {"dist": "beta", "sd": 0.6}},
            "economics.psa.utilities.later_years",
        ),
        ({"costs.workup": {"dist": "gamma", "sd": "a lot"}}, "economics.psa.costs.workup.sd"),
    ]
    for section, key in cases:
        with pytest.raises(SandboxInputError, match=key.replace(".", r"\.")):
            parse_params(section, costs, util)


def test_acceptability_sums_to_one_and_evpi_is_never_negative():
    rng = np.random.default_rng(3)
    rows = []
    for d in range(400):
        rows.append({"draw": d, "strategy": "a", "cost": 0.0, "effect": 0.0})
        rows.append(
            {
                "draw": d,
                "strategy": "b",
                "cost": 1000 + rng.normal(0, 300),
                "effect": 0.02 + rng.normal(0, 0.01),
            }
        )
    ceac, evpi = acceptability(pl.DataFrame(rows), np.array([0.0, 50_000.0, 1e6]))
    total = ceac.group_by("wtp").agg(pl.col("p_cost_effective").sum())
    assert np.allclose(total["p_cost_effective"], 1.0)
    assert (evpi["evpi_per_person"] >= -1e-9).all()
    p = {(r["wtp"], r["strategy"]): r["p_cost_effective"] for r in ceac.iter_rows(named=True)}
    assert p[(0.0, "a")] > 0.99 and p[(1e6, "b")] > 0.95
    # at the ICER (50,000) the decision is a coin toss, and uncertainty is worth most there
    assert 0.3 < p[(50_000.0, "b")] < 0.7
    assert evpi.sort("evpi_per_person")["wtp"][-1] == 50_000.0


def test_evppi_values_the_parameter_that_drives_the_decision():
    """Strategy b's cost is linear in one price (x) and ignores another (y): knowing x is worth
    (nearly) all of the EVPI, knowing y nothing, and knowing both all of it."""
    from sandbox.economics.psa import evppi_params, parameter_groups

    rng = np.random.default_rng(5)
    x = rng.gamma(4.0, 250.0, 2000)  # mean 1,000
    y = rng.gamma(4.0, 25.0, 2000)
    rows = []
    for d in range(2000):
        base = {"draw": d, "costs.x": x[d], "costs.y": y[d]}
        rows.append({**base, "strategy": "a", "cost": 0.0, "effect": 0.0})
        rows.append({**base, "strategy": "b", "cost": x[d], "effect": 0.02})
    psa = pl.DataFrame(rows)
    wtp = np.array([50_000.0])
    _, evpi = acceptability(psa, wtp)
    groups = parameter_groups(["costs.x", "costs.y"])
    assert list(groups) == ["costs.x", "costs.y", "all prices"]
    ev = {
        r["group"]: r["evppi_per_person"]
        for r in evppi_params(psa, groups, wtp).iter_rows(named=True)
    }
    total = evpi["evpi_per_person"][0]
    assert total > 10
    assert ev["costs.x"] == pytest.approx(total, rel=0.05)
    assert ev["all prices"] == pytest.approx(total, rel=0.05)
    assert ev["costs.y"] < 0.05 * total


def test_psa_writes_its_tables_and_figures(runs, policies, capsys, tmp_path):  # noqa: F811
    out = tmp_path / "psa"
    folders = [str(runs / p) for p in policies]
    code, text, err = run_cli(["psa", *folders, "--draws", "60", "--out", str(out)], capsys)
    assert code == 0, err
    assert "60 draws" in text and "the runs' clinical outcomes are fixed" in text
    for name in (
        "psa_draws.parquet",
        "ceac.parquet",
        "evpi.parquet",
        "evppi_parameters.parquet",
        "tornado.parquet",
        "psa.yaml",
    ):
        assert (out / name).is_file(), name
    for fig in ("ce_plane", "ceac", "tornado"):
        assert (out / f"{fig}.png").stat().st_size > 5000 and (out / f"{fig}.svg").is_file()
    draws = pl.read_parquet(out / "psa_draws.parquet")
    assert draws.height == 60 * len(policies)
    # a draw changes prices, so costs vary across draws; no screening never pays for screens
    spread = draws.group_by("strategy").agg(pl.col("cost").std())
    assert (spread["cost"] > 0).all()
    torn = pl.read_parquet(out / "tornado.parquet")
    assert torn["swing"].to_list() == sorted(torn["swing"].to_list(), reverse=True)
    assert not math.isnan(torn["base_inmb"][0])
    # the same seed gives the same draws
    code, _, err = run_cli(
        ["psa", *folders, "--draws", "60", "--out", str(tmp_path / "again")], capsys
    )
    assert code == 0, err
    assert pl.read_parquet(tmp_path / "again" / "psa_draws.parquet").equals(draws)
    # a willingness to pay above the axis's end (--wtp-max, default 200,000) is on the axis, and
    # what is printed is at it, not at the axis's end
    code, text, err = run_cli(
        ["psa", *folders, "--draws", "60", "--wtp", "333333", "--out", str(tmp_path / "w")],
        capsys,
    )
    assert code == 0, err
    assert "EVPI per person at 333,333:" in text
    ceac = pl.read_parquet(tmp_path / "w" / "ceac.parquet")
    assert ceac["wtp"].max() == 333_333.0 and 0.0 in ceac["wtp"].to_list()


def test_a_bad_psa_request_is_one_line_and_writes_nothing(
    runs, policies, capsys, tmp_path, project_root
):  # noqa: F811
    folders = [str(runs / p) for p in policies]
    out = tmp_path / "psa"
    text = (project_root / "conf" / "economics" / "us_payer.yaml").read_text()
    bad = tmp_path / "prices.yaml"
    bad.write_text(
        text.replace(
            "costs.workup: {dist: gamma, sd: 300}", "costs.workup: {dist: weibull, sd: 300}"
        )
    )
    for args, needle in [
        (["--economics", str(bad)], "costs.workup.dist"),
        (["--draws", "3"], "--draws 3"),
        (["--reference", "nobody"], "--reference nobody"),
        (["--wtp", "lots"], "--wtp lots"),
    ]:
        code, _, err = run_cli(["psa", *folders, *args, "--out", str(out)], capsys)
        assert_one_line_error(code, err, needle)
        assert not out.exists()

"""Figures of a probabilistic sensitivity analysis: the cost-effectiveness plane, acceptability
curves and frontier, EVPI, and the one-way tornado (PNG and SVG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def _money_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k" if abs(v) >= 1000 else f"{v:,.0f}")
    )


def _save(fig, folder: Path, name: str) -> list[Path]:
    import matplotlib
    import matplotlib.pyplot as plt

    out = []
    with matplotlib.rc_context({"svg.hashsalt": name, "svg.fonttype": "none"}):
        for ext in ("png", "svg"):
            path = folder / f"{name}.{ext}"
            fig.savefig(path, dpi=120, metadata={"Date": None} if ext == "svg" else None)
            out.append(path)
    plt.close(fig)
    return out


def ce_plane(psa: pl.DataFrame, reference: str, wtp: float, unit: str, currency: str, folder: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = psa.filter(pl.col("strategy") == reference).select("draw", "cost", "effect")
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = []
    for name in psa["strategy"].unique(maintain_order=True):
        if name == reference:
            continue
        d = psa.filter(pl.col("strategy") == name).join(ref, on="draw", suffix="_ref")
        de = (d["effect"] - d["effect_ref"]).to_numpy()
        dc = (d["cost"] - d["cost_ref"]).to_numpy()
        xs.append(de)
        ax.scatter(de, dc, s=6, alpha=0.4, label=name)
        ax.scatter([de.mean()], [dc.mean()], s=60, marker="X", edgecolor="black")
    if xs:
        lim = max(float(np.abs(np.concatenate(xs)).max()), 1e-9) * 1.1
        grid = np.linspace(-lim, lim, 3)
        ax.plot(grid, wtp * grid, color="grey", linestyle="--", label=f"WTP {wtp:,.0f}")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"incremental {unit} per person vs {reference}")
    ax.set_ylabel(f"incremental cost per person ({currency})")
    ax.set_title("Cost-effectiveness plane (each dot a PSA draw; X the mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, folder, "ce_plane")


def ceac(ceac: pl.DataFrame, evpi: pl.DataFrame, unit: str, currency: str, folder: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in ceac["strategy"].unique(maintain_order=True):
        d = ceac.filter(pl.col("strategy") == name).sort("wtp")
        ax.plot(d["wtp"], d["p_cost_effective"], label=name)
        f = d.filter(pl.col("on_frontier"))
        ax.scatter(f["wtp"], f["p_cost_effective"], s=14)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(
        f"willingness to pay ({currency} per {unit[:-1] if unit.endswith('s') else unit})"
    )
    ax.set_ylabel("probability cost-effective")
    ax.set_title("CEAC (lines) and CEAF (dots: highest expected NMB)")
    ax.legend(fontsize=8)
    _money_axis(ax.xaxis)
    bx.plot(evpi["wtp"], evpi["evpi_per_person"], color="black")
    _money_axis(bx.xaxis)
    bx.set_xlabel(ax.get_xlabel())
    bx.set_ylabel(f"EVPI per person ({currency})")
    bx.set_title("Expected value of perfect information")
    fig.tight_layout()
    return _save(fig, folder, "ceac")


def tornado(frame: pl.DataFrame, title: str, currency: str, folder: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = frame.head(15).reverse()
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(top.height, 4) + 1.5))
    base = float(frame["base_inmb"][0])
    y = np.arange(top.height)
    lo, hi = top["inmb_low"].to_numpy(), top["inmb_high"].to_numpy()
    ax.barh(y, lo - base, left=base, color="tab:blue", label="parameter at its 2.5% quantile")
    ax.barh(y, hi - base, left=base, color="tab:orange", label="at its 97.5% quantile")
    ax.axvline(base, color="black", linewidth=0.8)
    ax.set_yticks(y, top["parameter"].to_list(), fontsize=8)
    ax.set_xlabel(f"incremental net monetary benefit per person ({currency})")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, folder, "tornado")

"""`sandbox economics`: price run folders and tabulate them as strategies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from sandbox.economics.accounting import Exposures, exposures, price
from sandbox.economics.config import Economics, economics_config
from sandbox.economics.tables import Arm, cea_table
from sandbox.errors import SandboxInputError

EFFECTS = {"qalys": "qalys_disc", "life_years": "life_years_disc"}
# people columns a cost-effectiveness table can be split by (``sandbox economics --by``)
BY = ("sex", "race", "age_band", "site")


def load_preset(name: str) -> Economics:
    """A price list: a preset of the ``economics`` config group, or a YAML file of one."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise SandboxInputError(f"--economics {name}: no such file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise SandboxInputError(
                f"{name}: malformed YAML ({' '.join(str(e).split())[:160]})"
            ) from e
        econ = economics_config(data, "economics")
    else:
        from sandbox.compose import compose

        data, _ = compose([f"economics={name}"])
        econ = economics_config(data.get("economics"))
    if econ is None:
        raise SandboxInputError(f"--economics {name}: a price list is needed, not 'none'")
    return econ


@dataclass
class Priced:
    label: str
    folder: Path
    scenario: str
    seed: object
    frame: pl.DataFrame  # per person (ECONOMICS_SCHEMA)
    exposures: Exposures  # what a sensitivity draw re-prices
    groups: pl.DataFrame | None = None  # per person, in frame's order: the BY columns as text


def _priced(programme: str) -> bool:
    """Whether the price lists price ``programme`` (an unknown name: the error says so)."""
    from sandbox.programmes import programme_class

    return programme_class(str(programme)).has_cost_model


def price_folders(folders: list[str], preset: str | None) -> tuple[list[Priced], Economics]:
    """Price every run folder under one price list (``preset``, else the one they were run with)."""
    from sandbox.runfolder import read_run

    runs = [read_run(f) for f in folders]
    econ = load_preset(preset) if preset else None
    if econ is None:
        lists = {str(r["config"].get("economics")) for r in runs}
        first = runs[0]["config"].get("economics")
        econ = economics_config(first) if isinstance(first, dict) else None
        if econ is None:
            raise SandboxInputError(
                f"{runs[0]['folder']}: run without a price list; give one: --economics us_payer"
            )
        if len(lists) > 1:
            raise SandboxInputError(
                "these runs were priced under different price lists; choose one: --economics NAME"
            )
    out: list[Priced] = []
    labels: set[str] = set()
    for r in runs:
        folder = r["folder"]
        programme = (r["config"].get("programme") or {}).get("name", "lung_ldct")
        if not _priced(programme):
            raise SandboxInputError(
                f"{folder}: programme '{programme}' has no cost model yet (the price lists price "
                "lung screening)"
            )
        for name in ("people", "events"):
            if not (folder / f"{name}.parquet").is_file():
                hint = " (run with runtime.write_events=true)" if name == "events" else ""
                raise SandboxInputError(f"{folder}: {name}.parquet is missing{hint}")
        try:
            people = pl.read_parquet(folder / "people.parquet")
            events = pl.read_parquet(folder / "events.parquet")
        except (OSError, pl.exceptions.PolarsError) as e:
            raise SandboxInputError(f"{folder}: unreadable tables ({type(e).__name__})") from e
        modality = ((r["config"].get("policy") or {}).get("modality")) or "ct"
        try:
            exp = exposures(people, events, econ, str(modality))
        except SandboxInputError as e:
            raise SandboxInputError(f"{folder}: {e}") from e
        assert econ.costs is not None and econ.utilities is not None
        frame = price(exp, econ.costs, econ.utilities)
        site_names = [str(s.get("name")) for s in (r["config"].get("sites") or [])]
        groups = people.select(
            *[pl.col(c).cast(pl.String) for c in BY if c != "site" and c in people.columns],
            site=pl.col("site")
            .cast(pl.String)
            .replace({str(i): name for i, name in enumerate(site_names)}),
        )
        label = str(r["manifest"].get("policy") or folder.name)
        if label in labels:
            label = f"{label} [{folder.name}]"
        labels.add(label)
        out.append(
            Priced(
                label,
                folder,
                str(r["manifest"].get("scenario")),
                r["manifest"].get("seed"),
                frame,
                exp,
                groups,
            )
        )
    return out, econ


def parse_wtp(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise SandboxInputError(f"--wtp {text}: {part.strip()!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise SandboxInputError(f"--wtp {text}: {part.strip()} must be a finite amount >= 0")
        values.append(v)
    return values


def economics_tables(
    priced: list[Priced], effect: str, wtp: list[float], replicates: int, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame, bool]:
    col = EFFECTS[effect]
    arms = [
        Arm(
            p.label,
            p.frame["cost_total"].to_numpy(),
            p.frame[col].to_numpy(),
            p.frame["person_id"].to_numpy(),
        )
        for p in priced
    ]
    same_world = len({(p.scenario, str(p.seed)) for p in priced}) == 1
    return cea_table(arms, wtp, replicates, seed, same_people=same_world)


def subgroup_tables(
    priced: list[Priced], by: str, effect: str, wtp: list[float], replicates: int, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ICER and NMB tables within each level of the people column ``by`` (one of
    :data:`BY`), stacked with a first column ``Subgroup`` (``by=level``): each level is its own
    comparison of the strategies on the people in it (paired when they are the same people)."""
    if by not in BY:
        raise SandboxInputError(f"--by {by}: choose one of {', '.join(BY)}")
    for p in priced:
        if p.groups is None or by not in p.groups.columns:
            raise SandboxInputError(f"{p.folder}: people.parquet has no column {by}")
    col = EFFECTS[effect]
    levels = sorted(set().union(*(set(p.groups[by].to_list()) for p in priced)))
    same_world = len({(p.scenario, str(p.seed)) for p in priced}) == 1
    icers, nmbs = [], []
    for i, level in enumerate(levels):
        arms = []
        for p in priced:
            keep = (p.groups[by] == level).to_numpy()
            f = p.frame.filter(pl.Series(keep))
            arms.append(
                Arm(
                    p.label,
                    f["cost_total"].to_numpy(),
                    f[col].to_numpy(),
                    f["person_id"].to_numpy(),
                )
            )
        if any(len(a.cost) < 2 for a in arms):
            continue  # a level some strategy has (almost) nobody in: nothing to compare
        ic, nmb, _ = cea_table(arms, wtp, replicates, seed + i, same_people=same_world)
        tag = pl.lit(f"{by}={level}").alias("Subgroup")
        icers.append(ic.select(tag, pl.all()))
        nmbs.append(nmb.select(tag, pl.all()))
    return pl.concat(icers), pl.concat(nmbs)

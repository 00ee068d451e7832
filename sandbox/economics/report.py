"""`sandbox economics`: price run folders and tabulate them as strategies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from sandbox.economics.accounting import Exposures, exposures, price, screen_modality
from sandbox.economics.config import DEFAULT_PROGRAMME, Economics, check_fits, economics_config
from sandbox.economics.tables import Arm, cea_table
from sandbox.errors import SandboxInputError
from sandbox.programmes import PROGRAMMES, programme_class

EFFECTS = {"qalys": "qalys_disc", "life_years": "life_years_disc"}


def by_choices(programme: str) -> tuple[str, ...]:
    """The people columns a cost-effectiveness table of ``programme``'s runs can be split by
    (``sandbox economics --by``): the programme's subgroups and the site."""
    return (*programme_class(programme).subgroups, "site")


def presets_for(programme: str) -> list[str]:
    """The price lists of the ``economics`` config group (conf/economics) that price
    ``programme``, by name."""
    from sandbox.compose import project_root

    out = []
    for path in sorted((project_root() / "conf" / "economics").glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue  # a broken file is refused, naming it, when it is chosen
        if isinstance(data, dict) and data.get("name", path.stem) != "none":
            if data.get("programme", DEFAULT_PROGRAMME) == programme:
                out.append(path.stem)
    return out


def run_programme(config: dict) -> str:
    """The programme a run folder's config ran (folders from before breast screening: lung)."""
    return str((config.get("programme") or {}).get("name", DEFAULT_PROGRAMME))


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
    if econ.programme not in PROGRAMMES:
        raise SandboxInputError(
            f"config key 'economics.programme': {econ.programme!r} is not a programme "
            f"(known: {', '.join(sorted(PROGRAMMES))})"
        )
    return econ


@dataclass
class Priced:
    label: str
    folder: Path
    scenario: str
    seed: object
    frame: pl.DataFrame  # per person (ECONOMICS_SCHEMA)
    exposures: Exposures  # what a sensitivity draw re-prices
    # per person, in frame's order: the columns of by_choices(programme) as text
    groups: pl.DataFrame | None = None
    programme: str = DEFAULT_PROGRAMME


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
        programme = run_programme(r["config"])
        try:
            kind = programme_class(programme)
        except SandboxInputError as e:
            raise SandboxInputError(f"{folder}: {e}") from e
        if not kind.has_cost_model:
            raise SandboxInputError(f"{folder}: programme '{programme}' has no cost model yet")
        if econ.programme != programme:
            others = ", ".join(presets_for(programme)) or "none in conf/economics"
            raise SandboxInputError(
                f"{folder}: preset {econ.name!r} prices programme '{econ.programme}', not this "
                f"run's '{programme}' (price lists for {programme}: {others}; --economics NAME)"
            )
        try:
            check_fits(econ, kind)
        except SandboxInputError as e:
            raise SandboxInputError(f"{folder}: {e}") from e
        for name in ("people", "events"):
            if not (folder / f"{name}.parquet").is_file():
                hint = " (run with runtime.write_events=true)" if name == "events" else ""
                raise SandboxInputError(f"{folder}: {name}.parquet is missing{hint}")
        try:
            people = pl.read_parquet(folder / "people.parquet")
            events = pl.read_parquet(folder / "events.parquet")
        except (OSError, pl.exceptions.PolarsError) as e:
            raise SandboxInputError(f"{folder}: unreadable tables ({type(e).__name__})") from e
        sites = r["config"].get("sites") or []
        try:
            modality = screen_modality(
                str((r["config"].get("policy") or {}).get("modality") or "ct"),
                [str((s.get("scanner") or {}).get("modality") or "ct") for s in sites],
            )
            exp = exposures(people, events, econ, modality)
        except SandboxInputError as e:
            raise SandboxInputError(f"{folder}: {e}") from e
        assert econ.costs is not None and econ.utilities is not None
        frame = price(exp, econ.costs, econ.utilities)
        site_names = [str(s.get("name")) for s in sites]
        groups = people.select(
            *[
                pl.col(c).cast(pl.String)
                for c in by_choices(programme)
                if c != "site" and c in people.columns
            ],
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
                programme,
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
    :func:`by_choices` of the runs' programme), stacked with a first column ``Subgroup``
    (``by=level``): each level is its own comparison of the strategies on the people in it
    (paired when they are the same people)."""
    choices = by_choices(priced[0].programme)
    if by not in choices:
        raise SandboxInputError(f"--by {by}: choose one of {', '.join(choices)}")
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
    # a level where no strategy is compared with another has an all-null Compared_with
    return pl.concat(icers, how="vertical_relaxed"), pl.concat(nmbs, how="vertical_relaxed")

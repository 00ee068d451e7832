"""Frozen, typed configuration: what a run is.

Hydra (or any loader) produces a plain mapping; :func:`run_config` turns it into these objects
once, at the boundary. Library code never sees an OmegaConf object.

What every programme shares lives here (sites and scanners, the screening schedule, policy,
runtime). A scenario's ``cohort`` and ``disease`` sections, and the programme-specific keys of
its ``programme`` section, are typed by the programme the scenario names
(``programme.name``; see :mod:`sandbox.programmes`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.typed import build, fail, to_dict

POS = {"gt": 0.0}
# names that become folder names, file names or table keys: no separators, no control characters
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
PROB = {"ge": 0.0, "le": 1.0}


# ---------------------------------------------------------------- shared value types
@dataclass(frozen=True)
class Range:
    min: float
    max: float

    def check(self, path: str) -> None:
        if self.min > self.max:
            fail(path, f"min {self.min} is above max {self.max}")


# ---------------------------------------------------------------- sites
@dataclass(frozen=True)
class Scanner:
    model: str
    dose_mgy: float = field(metadata={"gt": 0, "le": 50})
    noise_hu_at_1mgy: float = field(metadata={"gt": 0, "le": 500})
    kernel_fwhm_mm: float = field(metadata={"gt": 0, "le": 5})
    slice_mm: float = field(metadata={"gt": 0, "le": 10})
    hu_offset: float = field(default=0.0, metadata={"ge": -200, "le": 200})
    # "ct": a CT volume (the fields above); "cxr": a chest radiograph (projection), whose
    # visibility model is the programme's (lung: imaging/radiograph.py); "mammo": a 2-D
    # mammography system, read by the breast programme as: noise_hu_at_1mgy the detector's
    # relative quantum noise at 1 mGy mean glandular dose, kernel_fwhm_mm its blur (FWHM),
    # slice_mm its pixel pitch (breast_mammo/reading.py, detector)
    modality: str = field(default="ct", metadata={"choices": ("ct", "cxr", "mammo")})


@dataclass(frozen=True)
class Site:
    name: str
    share: float = field(metadata={"ge": 0})
    scanner: Scanner
    scanners: int = field(metadata={"ge": 1, "le": 100})
    exams_per_scanner_day: int = field(metadata={"ge": 1, "le": 500})
    readers: dict[str, int]
    reading_hours_per_day: float = field(metadata={"gt": 0, "le": 24})
    workup_slots_per_day: int = field(metadata={"ge": 1, "le": 1000})
    workup_days_to_result: float = field(metadata={"ge": 0, "le": 365})

    def check(self, path: str) -> None:
        if not self.readers or sum(self.readers.values()) < 1:
            fail(f"{path}.readers", "a site needs at least one radiologist")
        if not NAME.fullmatch(self.name) or self.name == "all":
            fail(
                f"{path}.name",
                f"{self.name!r} must be a plain name (letters, digits, . _ -), and not 'all' (the all-sites row)",
            )


# ---------------------------------------------------------------- programme
@dataclass(frozen=True, kw_only=True)
class ProgrammeConfig:
    """The screening schedule every programme shares; a programme subclasses it for its own keys.

    ``name`` picks the programme (a key of :data:`sandbox.programmes.PROGRAMMES`); ``protocol``
    picks one of that programme's reporting schemes.
    """

    name: str
    rounds: int = field(metadata={"ge": 1, "le": 30})
    interval_years: float = field(metadata={"gt": 0, "le": 10})
    protocol: str
    attendance: float = field(default=0.95, metadata=PROB)
    followup_adherence: float = field(default=0.9, metadata=PROB)
    interval_cancer_window_years: float = field(default=1.0, metadata={"gt": 0, "le": 5})
    follow_up_years_after_last_round: float = field(default=4.5, metadata={"ge": 0, "le": 30})
    schedule_spread_days: float = field(default=300.0, metadata={"ge": 0, "le": 3650})


@dataclass(frozen=True)
class Scenario:
    """The world. ``cohort`` and ``disease`` are the named programme's own config types."""

    name: str
    description: str
    cohort: Any
    disease: Any
    sites: tuple[Site, ...]
    programme: ProgrammeConfig
    calibration: dict[str, Any] = field(default_factory=dict)
    # reader profiles' keys as this world sets them ({profile: {key: value}}, e.g. a calibrated
    # detection c50), over agents/readers/<profile>.yaml (sandbox.compose.scenario_profiles)
    reader_profiles: dict[str, dict[str, float]] = field(default_factory=dict)

    def check(self, path: str) -> None:
        if not self.sites:
            fail(f"{path}sites", "a scenario needs at least one site")
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            fail(f"{path}sites", f"site names repeat: {names}")
        if sum(s.share for s in self.sites) <= 0:
            fail(f"{path}sites", "site shares sum to zero")


# ---------------------------------------------------------------- policy, runtime, run
@dataclass(frozen=True)
class OperatingPoint:
    """Where an AI score becomes a positive call.

    ``absolute``: score >= ``value``. ``percentile``: the ``value`` quantile (0-1) of the device's
    reference (validation) score distribution. ``target_sensitivity``: the highest threshold
    reaching ``target_sensitivity`` on the device's validation set.
    """

    mode: str = field(
        default="absolute", metadata={"choices": ("absolute", "percentile", "target_sensitivity")}
    )
    value: float = field(default=0.5, metadata=PROB)
    target_sensitivity: float = field(default=0.9, metadata={"gt": 0.0, "le": 1.0})


AI_ROLES = ("second_reader", "triage", "rule_out", "concurrent", "safety_net")


@dataclass(frozen=True)
class Policy:
    name: str
    role: str = field(metadata={"choices": ("none", *AI_ROLES)})
    # "none": nobody is screened (usual care, a trial's comparator arm)
    reading: str = field(metadata={"choices": ("single", "double", "none")})
    discordance: str = field(
        default="arbitration", metadata={"choices": ("arbitration", "consensus")}
    )
    description: str = ""
    threshold: OperatingPoint = field(default_factory=OperatingPoint)
    audit_fraction: float = field(default=0.0, metadata=PROB)
    concurrent_gain: float = field(default=0.5, metadata={"ge": 0.0, "le": 5.0})
    automation_bias: float = field(default=0.4, metadata={"ge": 0.0, "lt": 1.0})
    # the screening test: "ct" (each site's scanner) or "cxr" (a chest radiograph, as in
    # NLST's comparator arm); the programme says what each shows
    modality: str = field(default="ct", metadata={"choices": ("ct", "cxr")})
    # AI roles: readers are shown the AI's marks on exams scoring at or above ``marks``
    # (conspicuity x (1 + concurrent_gain)), as MASAI showed CAD marks for scores 8-10
    marks: OperatingPoint | None = None
    # AI roles: exams scoring at or above ``recall_top`` are flagged high risk and recalled
    # unless the readers judge the flag obviously false (MASAI: the top 1% of scores)
    recall_top: OperatingPoint | None = None
    # AI roles: readers see every exam's score; on exams scoring below ``relaxed_below`` (and
    # not marked) they relax: conspicuity x (1 - automation_bias), as in the concurrent role
    # where the AI is negative (MASAI's readers saw scores 1-7 with no marks)
    relaxed_below: OperatingPoint | None = None

    def check(self, path: str) -> None:
        for key in ("marks", "recall_top", "relaxed_below"):
            if getattr(self, key) is not None and self.role in ("none", "concurrent"):
                fail(
                    f"{path}.{key}" if path else f"policy.{key}",
                    f"role {self.role!r} reads with the AI's output already (its own gain and "
                    "automation bias): no marks, flags or relaxed reading to add"
                    if self.role == "concurrent"
                    else f"role {self.role!r}: marks, high-risk flags and relaxed reading need "
                    "an AI role",
                )
        if not NAME.fullmatch(self.name):
            fail(
                f"{path}.name" if path else "policy.name",
                f"{self.name!r} must be a plain name (letters, digits, . _ -)",
            )
        if self.modality == "cxr" and self.role != "none":
            fail(
                f"{path}.role" if path else "policy.role",
                f"{self.role!r}: AI devices read CT; a chest-radiograph policy (modality: cxr) has no AI role",
            )
        if self.reading == "none" and self.role != "none":
            fail(
                f"{path}.role" if path else "policy.role",
                f"{self.role!r}: a policy that screens nobody (reading: none) has no AI role",
            )


@dataclass(frozen=True)
class RayRuntime:
    """Where ``sandbox sweep`` runs its units of work (never changes a result)."""

    address: str = ""  # a running cluster (host:port); "" = RAY_ADDRESS, else an embedded local Ray
    num_cpus: int = field(default=0, metadata={"ge": 0, "le": 4096})  # local Ray; 0 = every core
    temp_dir: str = ""  # local Ray's session folder; "" = Ray's default


@dataclass(frozen=True)
class Runtime:
    out_dir: str = "runs"
    run_name: str = ""
    site_block_size: int = field(default=0, metadata={"ge": 0})
    progress: bool = True
    write_events: bool = True
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    ai_batch_size: int = field(default=128, metadata={"ge": 1, "le": 65536})
    score_cache: str = "runs/.score_cache"
    # all sites of a unit of work in one SimPy environment (one timeline for observers);
    # results are identical either way
    shared_clock: bool = False
    ray: RayRuntime = field(default_factory=RayRuntime)

    def check(self, path: str) -> None:
        name = self.run_name
        if name and not NAME.fullmatch(name):
            fail(
                f"{path}.run_name",
                f"{name!r} must be a plain folder name (letters, digits, . _ -; no path separators)",
            )


# ---------------------------------------------------------------- drift and monitoring
@dataclass(frozen=True)
class ScannerChange:
    """From ``day`` on, ``site`` scans with its scanner's fields replaced by ``scanner`` (a
    software update, a recalibration, a new reconstruction kernel or a new machine)."""

    site: str
    day: float = field(metadata={"ge": 0})
    scanner: dict[str, Any]
    reason: str = ""


@dataclass(frozen=True)
class DeviceChange:
    """From ``day`` on, ``site``'s AI device calls a screen positive at another operating point
    (a device update: a vendor's new default threshold, a local recalibration) and, with
    ``agent`` (a device folder, as the run's ``agent`` names one), reads with other weights:
    a new version of the device, its operating point resolved on it."""

    site: str
    day: float = field(metadata={"ge": 0})
    threshold: OperatingPoint
    reason: str = ""
    agent: str = ""


@dataclass(frozen=True)
class StaffingChange:
    """From ``day`` on, ``site`` reads with another team: ``readers`` (radiologists per reader
    profile, the whole roster; empty: unchanged) for ``reading_hours_per_day`` hours a day (0:
    unchanged). Radiologists who stay keep their skill; those who join are drawn as a site's
    radiologists are; those who leave finish the reviews addressed to them and take no new
    reads."""

    site: str
    day: float = field(metadata={"ge": 0})
    readers: dict[str, int] = field(default_factory=dict)
    reading_hours_per_day: float = field(default=0.0, metadata={"ge": 0, "le": 24})
    reason: str = ""


@dataclass(frozen=True)
class PopulationChange:
    """From ``day`` on, ``site`` invites ``size`` more people over ``spread_days``, drawn as the
    scenario's cohort is with the fields in ``cohort`` replaced (a new eligibility rule, an
    older or heavier-smoking population, another community): a population shift. The
    scenario's own people are unchanged."""

    site: str
    day: float = field(metadata={"ge": 0})
    size: int = field(metadata={"ge": 1, "le": 10_000_000})
    spread_days: float = field(default=300.0, metadata={"ge": 0, "le": 3650})
    cohort: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Drift:
    """What changes on the timeline (config group ``drift``); ``none`` changes nothing."""

    name: str = "none"
    scanner_changes: tuple[ScannerChange, ...] = ()
    device_changes: tuple[DeviceChange, ...] = ()
    staffing_changes: tuple[StaffingChange, ...] = ()
    population_changes: tuple[PopulationChange, ...] = ()

    def check(self, path: str) -> None:
        if not NAME.fullmatch(self.name):
            fail(f"{path}.name" if path else "drift.name", f"{self.name!r} must be a plain name")


@dataclass(frozen=True)
class Cusum:
    """A two-sided CUSUM on a daily statistic of one site's AI reads, standardised by its
    in-control mean and SD (FDA's AIM-CU): ``S_t = max(0, S_{t-1} + z_t - k)`` upwards and
    downwards; an alarm when either exceeds ``h``."""

    statistic: str = field(metadata={"choices": ("ai_positive_rate", "mean_score")})
    k: float = field(default=0.5, metadata={"ge": 0, "le": 10})
    h: float = field(default=5.0, metadata={"gt": 0, "le": 100})


@dataclass(frozen=True)
class Ewma:
    """An EWMA chart (Roberts 1959) on a daily rate of all of one site's screens, whatever read
    them: ``recall_rate`` (screens recalled for more imaging or a work-up). With ``z_t`` the
    day's rate standardised by its in-control mean and per-screen SD, ``E_t = lam z_t + (1 -
    lam) E_{t-1}``; an alarm when ``|E_t|`` exceeds ``L`` times its standard deviation."""

    statistic: str = field(metadata={"choices": ("recall_rate",)})
    lam: float = field(default=0.1, metadata={"gt": 0, "le": 1})
    L: float = field(default=3.5, metadata={"gt": 0, "le": 20})


@dataclass(frozen=True)
class Window:
    """A test of one site's AI score distribution in consecutive windows of ``days`` reading
    days against the in-control reference: ``psi`` (population stability index over the
    reference's deciles; an alarm above ``limit``, 0.25 by convention) or ``ks`` (two-sample
    Kolmogorov-Smirnov test; an alarm when its p-value is below ``limit``). A window closes
    once it spans ``days`` and holds at least ``min_reads`` reads (PSI's noise grows as a window
    shrinks)."""

    statistic: str = field(metadata={"choices": ("psi", "ks")})
    days: int = field(default=30, metadata={"ge": 1, "le": 3650})
    limit: float = field(default=0.25, metadata={"gt": 0, "le": 10})
    min_reads: int = field(default=200, metadata={"ge": 1, "le": 10_000_000})


@dataclass(frozen=True)
class Label:
    """A test of an outcome whose label the simulated world reveals late, per site, in
    consecutive windows against the site's own first ``baseline_days`` of labels:

    - ``ppv``: the share of work-ups that find a cancer, labelled when the work-up's result
      is known (work-ups grouped by that day);
    - ``sensitivity``: screen-detected / (screen-detected + interval cancers), and
    - ``interval_cancer_rate``: interval cancers per 1,000 screens, both labelled once a screen's
      interval window (``programme.interval_cancer_window_years``) has passed (screens grouped
      by their day): a drift in sensitivity cannot be seen before a year has gone by.

    A window closes once it spans ``days`` and holds at least ``min_labels`` of what its
    statistic divides by (work-ups, cancers, screens); an alarm when Fisher's exact test of the
    window against the baseline gives ``p < limit``."""

    statistic: str = field(metadata={"choices": ("ppv", "sensitivity", "interval_cancer_rate")})
    days: int = field(default=90, metadata={"ge": 1, "le": 3650})
    limit: float = field(default=0.01, metadata={"gt": 0, "lt": 1})
    min_labels: int = field(default=20, metadata={"ge": 1, "le": 10_000_000})
    baseline_days: int = field(default=180, metadata={"ge": 7, "le": 3650})


@dataclass(frozen=True)
class Monitoring:
    """The post-market monitoring plan (config group ``monitoring``); ``none`` watches nothing.

    ``reference: baseline`` takes each statistic's in-control mean and SD from the site's own
    first ``baseline_days`` of AI reads; ``validation`` from the device's validation reference
    (the screening population it was validated on). ``action`` follows an alarm after
    ``days_to_act``: ``alert`` (recorded only), ``standard_of_care`` (the site reads without the
    AI from then on), ``recalibrate`` (the operating point moved so that the AI-positive rate
    of the reads during the delay to act matches the in-control one) or ``roll_back`` (the
    device as validated, the run's own policy and operating point, back in force: it undoes a
    device update). ``labels`` are the delayed-label monitors (:class:`Label`); they keep their
    own baselines. ``subgroups`` (the programme's people-table columns: ``sex``, ``race``,
    ``age_band``, ``smoking``) repeats every chart within each site for each subgroup, with its
    own baseline; a subgroup's alarm alerts, the plan acts on the site's.
    """

    name: str = "none"
    cusums: tuple[Cusum, ...] = ()
    windows: tuple[Window, ...] = ()
    ewmas: tuple[Ewma, ...] = ()
    labels: tuple[Label, ...] = ()
    subgroups: tuple[str, ...] = ()
    reference: str = field(default="baseline", metadata={"choices": ("baseline", "validation")})
    baseline_days: int = field(default=90, metadata={"ge": 7, "le": 3650})
    action: str = field(
        default="alert",
        metadata={"choices": ("alert", "standard_of_care", "recalibrate", "roll_back")},
    )
    days_to_act: float = field(default=7.0, metadata={"ge": 0, "le": 3650})

    def check(self, path: str) -> None:
        if not NAME.fullmatch(self.name):
            fail(
                f"{path}.name" if path else "monitoring.name", f"{self.name!r} must be a plain name"
            )


@dataclass(frozen=True)
class RunConfig:
    seed: int = field(metadata={"ge": 0, "lt": 2**63})
    scenario: Scenario
    policy: Policy
    runtime: Runtime
    agent: str = ""
    economics: Any = None  # sandbox.economics.config.Economics, or None (no pricing)
    drift: Drift = field(default_factory=Drift)
    monitoring: Monitoring = field(default_factory=Monitoring)

    def scanner_changes(self, site: str) -> list[tuple[float, Scanner, str]]:
        """``(from_day, scanner, reason)`` for each drift of ``site``'s scanner, by day."""
        base = next(s.scanner for s in self.scenario.sites if s.name == site)
        out = []
        for c in sorted(
            (c for c in self.drift.scanner_changes if c.site == site), key=lambda c: c.day
        ):
            base = build(Scanner, {**to_dict(base), **dict(c.scanner)}, "")
            out.append((c.day, base, c.reason))
        return out

    def staffing_changes(self, site: str) -> list[tuple[float, Site, str]]:
        """``(from_day, site config with the new team, reason)`` for each staffing change of
        ``site``, by day, each on top of the last."""
        base = next(s for s in self.scenario.sites if s.name == site)
        out = []
        for c in sorted(
            (c for c in self.drift.staffing_changes if c.site == site), key=lambda c: c.day
        ):
            base = dataclasses.replace(
                base,
                readers=dict(c.readers) or base.readers,
                reading_hours_per_day=c.reading_hours_per_day or base.reading_hours_per_day,
            )
            out.append((c.day, base, c.reason))
        return out

    def arrivals(self) -> list[tuple[int, float, int, float, Any, str]]:
        """``(site index, day, size, spread_days, cohort config, reason)`` of each population
        change, in the drift's order (its people's ids depend on it)."""
        names = [s.name for s in self.scenario.sites]
        out = []
        for i, c in enumerate(self.drift.population_changes):
            cohort = arrival_cohort(
                self.scenario, c.cohort, f"drift.population_changes[{i}].cohort"
            )
            out.append((names.index(c.site), c.day, c.size, c.spread_days, cohort, c.reason))
        return out


def _merged(base: Any, over: Mapping[str, Any]) -> Any:
    if not isinstance(base, Mapping) or not isinstance(over, Mapping):
        return over
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base.get(k), v) if k in base else v
    return out


def arrival_cohort(scenario: Scenario, over: Mapping[str, Any], where: str) -> Any:
    """The scenario's cohort config with the fields in ``over`` replaced (nested mappings
    merged), validated as the programme's cohort type."""
    cls = type(scenario.cohort)
    return build(cls, _merged(to_dict(scenario.cohort), dict(over)), where)


SCENARIO_KEYS = (
    "cohort",
    "disease",
    "sites",
    "programme",
    "calibration",
    "description",
    "reader_profiles",
)


def run_config(data: Mapping[str, Any], scenario_name: str) -> RunConfig:
    """Validate a composed config mapping (scenario keys at top level) into a :class:`RunConfig`."""
    from sandbox.programmes import programme_class  # the registry; programmes import this module

    data = dict(data)
    if data.get("seed") is None:
        fail("seed", "is required (an integer); runs without a seed cannot be repeated")
    scenario = {k: data.pop(k) for k in SCENARIO_KEYS if k in data}
    scenario["name"] = scenario_name
    scenario.setdefault("description", "")
    section = scenario.get("programme")
    if not isinstance(section, Mapping):
        fail("programme", f"expected a mapping, got {section!r}")
    if "name" not in section:
        fail("programme.name", "is required (the programme this scenario runs, e.g. lung_ldct)")
    kind = programme_class(str(section["name"]))
    for key, cls in kind.config_types().items():
        if key not in scenario:
            fail(key, "is required")
        scenario[key] = build(cls, scenario[key], key)
    scn = build(Scenario, scenario, "")
    from sandbox.economics.config import check_fits, economics_config

    econ = economics_config(data.pop("economics", None))
    if econ is not None and not kind.has_cost_model:
        fail(
            "economics",
            f"programme '{kind.name}' has no cost model yet (preset {econ.name!r}): run it "
            "with economics=none",
        )
    if econ is not None:
        check_fits(econ, kind)
    drift = build(Drift, data.pop("drift", None) or {}, "drift")
    monitoring = build(Monitoring, data.pop("monitoring", None) or {}, "monitoring")
    rest = build(_Rest, data, "")
    cfg = RunConfig(
        seed=rest.seed,
        scenario=scn,
        policy=rest.policy,
        runtime=rest.runtime,
        agent=rest.agent,
        economics=econ,
        drift=drift,
        monitoring=monitoring,
    )
    names = [s.name for s in scn.sites]
    for i, c in enumerate(drift.scanner_changes):
        where = f"drift.scanner_changes[{i}]"
        if c.site not in names:
            fail(f"{where}.site", f"{c.site!r} is not a site of the scenario ({', '.join(names)})")
        base = next(s.scanner for s in scn.sites if s.name == c.site)
        build(Scanner, {**to_dict(base), **dict(c.scanner)}, f"{where}.scanner")
    for changes in ("device_changes", "staffing_changes", "population_changes"):
        for i, c in enumerate(getattr(drift, changes)):
            if c.site not in names:
                fail(
                    f"drift.{changes}[{i}].site",
                    f"{c.site!r} is not a site of the scenario ({', '.join(names)})",
                )
    for i, c in enumerate(drift.staffing_changes):
        for name, count in c.readers.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                fail(
                    f"drift.staffing_changes[{i}].readers.{name}",
                    f"must be a count of radiologists (an integer >= 0), got {count!r}",
                )
        if c.readers and sum(c.readers.values()) == 0:
            fail(f"drift.staffing_changes[{i}].readers", "leaves the site with no radiologist")
    if drift.population_changes:
        cfg.arrivals()  # each cohort override is valid for the programme's cohort type
    for i, g in enumerate(monitoring.subgroups):
        if g not in kind.subgroups:
            fail(
                f"monitoring.subgroups[{i}]",
                f"{g!r} is not a subgroup of programme '{kind.name}' ({', '.join(kind.subgroups)})",
            )
    return cfg


def resolved(cfg: RunConfig) -> dict[str, Any]:
    """The fully resolved config as a plain mapping (defaults filled in), the inverse of
    :func:`run_config`: ``run_config(d, d.pop("scenario_name"))`` rebuilds ``cfg``."""
    from sandbox.typed import to_dict

    scn = to_dict(cfg.scenario)
    out = {k: scn[k] for k in SCENARIO_KEYS}
    out.update(
        seed=cfg.seed,
        policy=to_dict(cfg.policy),
        runtime=to_dict(cfg.runtime),
        agent=cfg.agent,
        economics=to_dict(cfg.economics) if cfg.economics is not None else {"name": "none"},
        drift=to_dict(cfg.drift),
        monitoring=to_dict(cfg.monitoring),
        scenario_name=cfg.scenario.name,
    )
    return out


@dataclass(frozen=True)
class _Rest:
    seed: int = field(metadata={"ge": 0, "lt": 2**63})
    policy: Policy
    runtime: Runtime
    agent: str = ""

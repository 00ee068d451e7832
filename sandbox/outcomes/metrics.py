"""Metric definitions (the one place they live) and their computation from a run's records.

Each metric is computed per site x subgroup x round, with "all" as the margin of each
dimension, and carries a 95% interval. :data:`METRICS` are every programme's; a programme adds
its own (:meth:`sandbox.programmes.base.Programme.metric_definitions`), and
:func:`metric_catalogue` lists both. docs/metrics.md documents every name; a test keeps the two
in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from sandbox.outcomes.intervals import garwood, mean_ci, quantile_ci, wilson


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # count | proportion | per_1000 | per_100k_py | quantile | sum | max
    description: str
    num: str = ""
    den: str = ""
    q: float = 0.5
    better: str = ""  # "higher", "lower" or "" (no direction): what a verdict judges


def _m(
    name: str,
    kind: str,
    description: str,
    num: str = "",
    den: str = "",
    q: float = 0.5,
    better: str = "",
) -> Metric:
    return Metric(name, kind, description, num, den, q, better)


PAIRABLE_KINDS = ("count", "proportion", "per_1000", "per_100k_py", "sum")
"""Kinds whose value is a ratio of per-person sums (a count or sum has no denominator): each
person's share can be resampled, so they have paired intervals (:mod:`sandbox.outcomes.paired`)."""
KIND_SCALE = {"per_1000": 1000.0, "per_100k_py": 1e5}


SCREEN_METRICS = [
    _m("screens", "count", "screening exams performed", "screens"),
    _m(
        "positives",
        "count",
        "positive screens (under the programme's protocol)",
        "positives",
        better="lower",
    ),
    _m(
        "positive_rate",
        "proportion",
        "positive screens / screens",
        "positives",
        "screens",
        better="lower",
    ),
    _m(
        "recall_rate",
        "proportion",
        "screens followed by extra imaging or work-up / screens",
        "recalls",
        "screens",
        better="lower",
    ),
    _m(
        "screen_detected_cancers",
        "count",
        "cancers diagnosed through a screen's work-up before symptoms",
        "screen_detected",
        better="higher",
    ),
    _m(
        "cancer_detection_rate_per_1000",
        "per_1000",
        "screen-detected cancers per 1000 screens",
        "screen_detected",
        "screens",
        better="higher",
    ),
    _m(
        "interval_cancers",
        "count",
        "cancers diagnosed clinically within the interval window after a screen that did not find them",
        "interval",
        better="lower",
    ),
    _m(
        "interval_cancer_rate_per_1000",
        "per_1000",
        "interval cancers per 1000 screens",
        "interval",
        "screens",
        better="lower",
    ),
    _m(
        "programme_sensitivity",
        "proportion",
        "screen-detected / (screen-detected + interval cancers)",
        "screen_detected",
        "cancers_in_window",
        better="higher",
    ),
    _m(
        "cancers_after_positive_screen",
        "count",
        "cancers diagnosed, by any route, in the window of a positive screen (screen-detected, or "
        "surfacing within the interval window): a screening trial's true positives",
        "after_positive",
        better="higher",
    ),
    _m(
        "cancers_after_negative_screen",
        "count",
        "cancers diagnosed within the interval window after a negative screen: a screening "
        "trial's false negatives (interval cancers as MASAI and NLST count them)",
        "after_negative",
        better="lower",
    ),
    _m(
        "screen_sensitivity",
        "proportion",
        "cancers after a positive screen / cancers in the window of any screen (sensitivity as "
        "screening trials report it)",
        "after_positive",
        "cancers_in_window",
        better="higher",
    ),
    _m(
        "programme_specificity",
        "proportion",
        "negative screens among screens with no cancer diagnosed in the window",
        "true_negatives",
        "no_cancer_screens",
        better="higher",
    ),
    _m(
        "false_positive_rate",
        "proportion",
        "positive screens among screens with no cancer diagnosed in the window (1 - specificity)",
        "positive_no_cancer",
        "no_cancer_screens",
        better="lower",
    ),
    _m(
        "ppv",
        "proportion",
        "positive screens whose round ended in a cancer diagnosis / positive screens",
        "true_positives",
        "positives",
        better="higher",
    ),
    _m(
        "false_positive_share_of_positives",
        "proportion",
        "positive screens without a cancer diagnosis in the round / positive screens",
        "false_positives",
        "positives",
        better="lower",
    ),
    _m(
        "screen_ppv",
        "proportion",
        "cancers after a positive screen / positive screens (positive predictive value as "
        "screening trials report it: any cancer diagnosed in the window of a positive screen)",
        "after_positive",
        "positives",
        better="higher",
    ),
    _m(
        "screen_false_positive_share",
        "proportion",
        "positive screens with no cancer diagnosed in their window / positive screens "
        "(= 1 - screen_ppv; screening trials' false positives)",
        "positive_no_cancer",
        "positives",
        better="lower",
    ),
    _m("workups", "count", "diagnostic work-ups performed", "workups", better="lower"),
    _m(
        "false_positive_workups",
        "count",
        "work-ups that ended without a cancer diagnosis",
        "fp_workups",
        better="lower",
    ),
    _m(
        "benign_biopsies",
        "count",
        "biopsies with a benign result",
        "benign_biopsies",
        better="lower",
    ),
    _m(
        "benign_resections",
        "count",
        "benign biopsies that were surgical resections",
        "benign_resections",
        better="lower",
    ),
    _m(
        "benign_biopsy_rate_per_1000",
        "per_1000",
        "benign biopsies per 1000 screens",
        "benign_biopsies",
        "screens",
        better="lower",
    ),
    _m(
        "days_to_diagnosis_median",
        "quantile",
        "days from the screening exam to diagnosis, screen-detected cancers, median",
        "days_to_dx",
        q=0.5,
    ),
    _m(
        "days_to_diagnosis_p90",
        "quantile",
        "days from the screening exam to diagnosis, screen-detected cancers, 90th percentile",
        "days_to_dx",
        q=0.9,
    ),
    _m("ai_scored_screens", "count", "screens scored by the AI device", "ai_scored"),
    _m(
        "ai_positive_rate",
        "proportion",
        "screens the AI scored at or above its operating point / screens the AI scored",
        "ai_positives",
        "ai_scored",
    ),
    _m(
        "ai_sensitivity",
        "proportion",
        "screens the AI scored positive among the screens it scored that showed the person's "
        "cancer / those screens (the device's own sensitivity, whatever the readers did)",
        "ai_positive_cancer_shown",
        "ai_cancer_shown",
        better="higher",
    ),
    _m(
        "ai_autonomous_share",
        "proportion",
        "screens reported by the AI with no human read / screens",
        "ai_autonomous",
        "screens",
    ),
    _m(
        "ai_wrong_candidate_share",
        "proportion",
        "AI-positive screens showing the person's cancer whose score came from another candidate "
        "region (right for the wrong reason) / AI-positive screens showing a cancer",
        "ai_wrong_candidate",
        "ai_positive_cancer_shown",
    ),
    _m(
        "ai_human_discordance",
        "proportion",
        "screens where the AI call differs from the first radiologist's call / screens with both",
        "ai_discordant",
        "ai_and_human",
    ),
    _m(
        "ai_flagged_share_of_screen_detected",
        "proportion",
        "screen-detected cancers whose screen the AI scored at or above its operating point / "
        "screen-detected cancers on screens the AI scored (MASAI's triage point is score 10)",
        "ai_positive_screen_detected",
        "ai_screen_detected",
    ),
    _m(
        "ai_flagged_share_of_interval",
        "proportion",
        "interval cancers whose negative screen the AI had scored at or above its operating "
        "point / interval cancers after screens the AI scored",
        "ai_positive_interval",
        "ai_interval",
    ),
    _m(
        "screen_readings",
        "count",
        "independent readings of screens by radiologists, not counting arbitration, consensus "
        "reviews or second looks (a trial's screen-reading workload)",
        "screen_readings",
        better="lower",
    ),
    _m(
        "screen_reads_saved",
        "sum",
        "reads saved on screens against independent double reading of every screen (2 per screen minus human reads; arbitration counted)",
        "reads_saved",
        better="higher",
    ),
    _m(
        "ai_rule_out_missed_cancers",
        "count",
        "screens reported normal by the AI alone while a cancer of at least the programme's reportable size (lung: 4 mm) was in the image, and that cancer was not found in the round",
        "ai_missed",
        better="lower",
    ),
]
WORK_METRICS = [
    _m("exams", "count", "all exams (screens and follow-ups)", "exams"),
    _m(
        "human_reads",
        "count",
        "reads by radiologists, arbitration and consensus included",
        "reads",
        better="lower",
    ),
    _m("reader_hours", "sum", "radiologist reading time, hours", "reader_hours", better="lower"),
    _m(
        "worklist_wait_days_median",
        "quantile",
        "days from scan to final report, median",
        "wait",
        q=0.5,
    ),
    _m(
        "worklist_wait_days_p95",
        "quantile",
        "days from scan to final report, 95th percentile",
        "wait",
        q=0.95,
    ),
    _m(
        "scanner_wait_days_median",
        "quantile",
        "days from an exam's due day to its scan (the appointment book's delay), median",
        "scan_wait",
        q=0.5,
        better="lower",
    ),
    _m(
        "scanner_wait_days_p95",
        "quantile",
        "days from an exam's due day to its scan (the appointment book's delay), 95th percentile",
        "scan_wait",
        q=0.95,
        better="lower",
    ),
]
PEOPLE_METRICS = [
    _m("people", "count", "people in the cohort", "people"),
    _m(
        "life_years",
        "sum",
        "person-years lived within each person's follow-up",
        "person_years",
        better="higher",
    ),
]
SITE_METRICS = [
    _m(
        "worst_backlog",
        "max",
        "largest number of reads requested and not yet completed at the start of a day (site 'all': the largest over sites); an observed maximum, interval = value",
        "backlog",
    )
]
METRICS = {m.name: m for m in SCREEN_METRICS + WORK_METRICS + PEOPLE_METRICS + SITE_METRICS}
"""The metrics every programme reports (a programme adds its own: :func:`metric_catalogue`)."""


def stage_metrics(stages: Sequence[str]) -> list[Metric]:
    """Screen-detected cancers by stage, for a programme's stages."""
    return [
        _m(
            f"screen_detected_stage_{s}",
            "count",
            f"screen-detected cancers at stage {s}",
            f"sd_stage_{s}",
        )
        for s in stages
    ]


def programme_metrics(programme: Any) -> tuple[list[Metric], list[Metric], list[Metric]]:
    """(screen, people, all) metrics of ``programme`` beyond :data:`METRICS`."""
    own = programme.metric_definitions()
    screen = stage_metrics(programme.stages) + list(own.get("screen", ()))
    people = list(own.get("people", ()))
    return screen, people, screen + people


def metric_catalogue(programme: Any) -> dict[str, Metric]:
    """Every metric a run of ``programme`` reports, by name."""
    return {**METRICS, **{m.name: m for m in programme_metrics(programme)[2]}}


METRICS_SCHEMA = {
    "scenario": pl.Utf8,
    "policy": pl.Utf8,
    "seed": pl.Int64,
    "site": pl.Utf8,
    "subgroup": pl.Utf8,
    "round": pl.Utf8,
    "metric": pl.Utf8,
    "value": pl.Float64,
    "lo": pl.Float64,
    "hi": pl.Float64,
    "n": pl.Int64,
}
SUBGROUPS = ("sex", "race", "age_band")
"""The subgroup columns every programme's people table has (a programme may add its own:
:attr:`~sandbox.programmes.base.Programme.subgroups`)."""


def _site_name(site_names: list[str]) -> pl.Expr:
    return (
        pl.col("site")
        .cast(pl.Int64)
        .replace_strict(list(range(len(site_names))), site_names, return_dtype=pl.Utf8)
    )


def _views(frame: pl.DataFrame, site_names: list[str], with_round: bool, subgroups: Sequence[str]):
    """Yield (site, subgroup, round)-labelled copies of ``frame`` for every margin."""
    site_col = _site_name(site_names)
    for by_site in (True, False):
        s = site_col if by_site else pl.lit("all")
        for dim in (None, *subgroups):
            g = pl.lit("all") if dim is None else (pl.lit(f"{dim}=") + pl.col(dim).cast(pl.Utf8))
            rounds = (True, False) if with_round else (False,)
            for by_round in rounds:
                r = (pl.lit("T") + pl.col("round").cast(pl.Utf8)) if by_round else pl.lit("all")
                yield frame.with_columns(s.alias("_site"), g.alias("_subgroup"), r.alias("_round"))


def _rows(agg: pl.DataFrame, metrics: list[Metric]) -> list[pl.DataFrame]:
    out = []
    keys = {"site": agg["_site"], "subgroup": agg["_subgroup"], "round": agg["_round"]}
    for m in metrics:
        if m.kind == "count":
            v, lo, hi = garwood(agg[m.num].to_numpy())
            n = agg[m.num].to_numpy()
        elif m.kind == "proportion":
            v, lo, hi = wilson(agg[m.num].to_numpy(), agg[m.den].to_numpy())
            n = agg[m.den].to_numpy()
        elif m.kind in ("per_1000", "per_100k_py"):
            scale = 1000.0 if m.kind == "per_1000" else 1e5
            v, lo, hi = garwood(agg[m.num].to_numpy(), agg[m.den].to_numpy(), scale)
            n = agg[m.den].to_numpy()
        elif m.kind == "quantile":
            trip = [quantile_ci(np.asarray(x), m.q) for x in agg[m.num].to_list()]
            v, lo, hi = (
                (np.array(t, dtype=float) for t in zip(*trip, strict=True))
                if trip
                else (np.array([]),) * 3
            )
            n = np.array([len(x) for x in agg[m.num].to_list()])
        elif m.kind == "sum":
            trip = [
                mean_ci(t, s2, c)
                for t, s2, c in zip(agg[m.num], agg[m.num + "_sq"], agg["_n"], strict=True)
            ]
            v, lo, hi = (
                (np.array(t, dtype=float) for t in zip(*trip, strict=True))
                if trip
                else (np.array([]),) * 3
            )
            n = agg["_n"].to_numpy()
        else:  # max
            v = lo = hi = agg[m.num].to_numpy().astype(float)
            n = agg["_n"].to_numpy()
        out.append(
            pl.DataFrame(
                {
                    **keys,
                    "metric": [m.name] * len(agg),
                    "value": v,
                    "lo": lo,
                    "hi": hi,
                    "n": np.asarray(n, dtype=np.int64),
                },
                schema_overrides=_ROW_TYPES,  # typed even when empty (a run with no exams)
            )
        )
    return out


_ROW_TYPES = {k: v for k, v in METRICS_SCHEMA.items() if k not in ("scenario", "policy", "seed")}


def _prepared(exams: pl.DataFrame, people: pl.DataFrame, programme: Any) -> dict[str, pl.DataFrame]:
    """The three views metrics are aggregated over: ``screen`` (one row per screen, with its
    round's work-ups and whether the round found its cancer), ``work`` (one row per exam) and
    ``people`` (one row per person)."""
    subgroup_cols = people.select(
        "person_id",
        *programme.subgroups,
        "diagnosis_mode",
        "diagnosis_round",
        "diagnosis_day",
        "stage",
    )
    ex = exams.join(subgroup_cols, on="person_id", how="left")
    screens = ex.filter(pl.col("exam_kind") == "screen")
    same_round = pl.col("diagnosis_round") == pl.col("round")
    # work-ups belong to the round of the exam that triggered them
    wk = exams.group_by("person_id", "round").agg(
        pl.col("workup_day").is_not_null().sum().alias("n_workups"),
        (pl.col("workup_day").is_not_null() & pl.col("workup_diagnosis_day").is_null())
        .sum()
        .alias("n_fp_workups"),
        pl.col("benign_biopsy").sum().alias("n_benign_biopsies"),
        pl.col("benign_resection").sum().alias("n_benign_resections"),
    )
    screens = screens.join(wk, on=["person_id", "round"], how="left").with_columns(
        screen_detected=(pl.col("diagnosis_mode") == "screen") & same_round,
        interval=(pl.col("diagnosis_mode") == "interval") & same_round,
        days_to_dx=pl.col("diagnosis_day") - pl.col("exam_day"),
    )
    return {"screen": screens, "work": ex, "people": people}


def _aggregations(programme: Any) -> dict[str, list[pl.Expr]]:
    """The sums (and samples, for quantiles) behind every metric, by view of :func:`_prepared`."""
    cancer_in_window = pl.col("screen_detected") | pl.col("interval")
    screen = [
        pl.len().alias("screens"),
        pl.col("positive").sum().alias("positives"),
        (pl.col("management") != "next_round").sum().alias("recalls"),
        pl.col("screen_detected").sum().alias("screen_detected"),
        *[
            (pl.col("screen_detected") & (pl.col("stage") == s)).sum().alias(f"sd_stage_{s}")
            for s in programme.stages
        ],
        pl.col("interval").sum().alias("interval"),
        cancer_in_window.sum().alias("cancers_in_window"),
        (cancer_in_window & pl.col("positive")).sum().alias("after_positive"),
        (cancer_in_window & ~pl.col("positive")).sum().alias("after_negative"),
        (~cancer_in_window & pl.col("positive")).sum().alias("positive_no_cancer"),
        (~cancer_in_window & ~pl.col("positive")).sum().alias("true_negatives"),
        (~cancer_in_window).sum().alias("no_cancer_screens"),
        (pl.col("positive") & pl.col("screen_detected")).sum().alias("true_positives"),
        (pl.col("positive") & ~pl.col("screen_detected")).sum().alias("false_positives"),
        pl.col("n_workups").sum().alias("workups"),
        pl.col("n_fp_workups").sum().alias("fp_workups"),
        pl.col("n_benign_biopsies").sum().alias("benign_biopsies"),
        pl.col("n_benign_resections").sum().alias("benign_resections"),
        pl.col("days_to_dx").filter(pl.col("screen_detected")).alias("days_to_dx"),
        pl.col("ai_score").is_not_null().sum().alias("ai_scored"),
        pl.col("ai_positive").fill_null(False).sum().alias("ai_positives"),
        (pl.col("ai_score").is_not_null() & pl.col("malignant_visible"))
        .sum()
        .alias("ai_cancer_shown"),
        pl.col("ai_autonomous").fill_null(False).sum().alias("ai_autonomous"),
        (pl.col("ai_positive").fill_null(False) & pl.col("malignant_visible"))
        .sum()
        .alias("ai_positive_cancer_shown"),
        (
            pl.col("ai_positive").fill_null(False)
            & pl.col("malignant_visible")
            & (pl.col("ai_driver").cast(pl.Utf8) != "cancer").fill_null(False)
        )
        .sum()
        .alias("ai_wrong_candidate"),
        (pl.col("ai_positive") != pl.col("human_positive"))
        .fill_null(False)
        .sum()
        .alias("ai_discordant"),
        (pl.col("ai_positive").is_not_null() & pl.col("human_positive").is_not_null())
        .sum()
        .alias("ai_and_human"),
        (pl.col("ai_score").is_not_null() & pl.col("screen_detected"))
        .sum()
        .alias("ai_screen_detected"),
        (pl.col("ai_positive").fill_null(False) & pl.col("screen_detected"))
        .sum()
        .alias("ai_positive_screen_detected"),
        (pl.col("ai_score").is_not_null() & pl.col("interval")).sum().alias("ai_interval"),
        (pl.col("ai_positive").fill_null(False) & pl.col("interval"))
        .sum()
        .alias("ai_positive_interval"),
        (pl.col("n_reads").cast(pl.Int64) - pl.col("arbitrated").cast(pl.Int64))
        .sum()
        .alias("screen_readings"),
        (2 - pl.col("n_reads").cast(pl.Int64)).sum().alias("reads_saved"),
        ((2 - pl.col("n_reads").cast(pl.Int64)) ** 2).sum().alias("reads_saved_sq"),
        pl.len().alias("_n"),
        (
            pl.col("ai_autonomous").fill_null(False)
            & pl.col("malignant_visible")
            & (pl.col("malignant_diameter_mm") >= programme.reportable_mm)
            & ~pl.col("screen_detected")
        )
        .sum()
        .alias("ai_missed"),
        *programme.screen_aggregations(),
    ]
    work = [
        pl.len().alias("exams"),
        pl.col("n_reads").sum().alias("reads"),
        (pl.col("reader_minutes").sum() / 60.0).alias("reader_hours"),
        ((pl.col("reader_minutes") / 60.0) ** 2).sum().alias("reader_hours_sq"),
        pl.len().alias("_n"),
        (pl.col("reported_day") - pl.col("exam_day")).alias("wait"),
        (pl.col("exam_day") - pl.col("due_day")).alias("scan_wait"),
    ]
    people = [
        pl.len().alias("people"),
        *programme.people_aggregations(),
        pl.col("person_years").sum().alias("person_years"),
        (pl.col("person_years") ** 2).sum().alias("person_years_sq"),
        pl.len().alias("_n"),
    ]
    return {"screen": screen, "work": work, "people": people}


def compute_metrics(
    exams: pl.DataFrame,
    people: pl.DataFrame,
    backlog: pl.DataFrame,
    site_names: list[str],
    scenario: str,
    policy: str,
    seed: int,
    programme: Any,
) -> pl.DataFrame:
    """Long-format metrics table (:data:`METRICS_SCHEMA`) from a run's records.

    ``programme`` (a :class:`sandbox.programmes.base.Programme`) adds its stages, its own
    metrics and the aggregations that feed them.
    """
    screen_metrics, people_metrics, _ = programme_metrics(programme)
    views = _prepared(exams, people, programme)
    aggs = _aggregations(programme)
    keys = ["_site", "_subgroup", "_round"]
    parts: list[pl.DataFrame] = []
    for v in _views(views["screen"], site_names, True, programme.subgroups):
        parts += _rows(v.group_by(keys).agg(aggs["screen"]), SCREEN_METRICS + screen_metrics)
    for v in _views(views["work"], site_names, True, programme.subgroups):
        parts += _rows(v.group_by(keys).agg(aggs["work"]), WORK_METRICS)
    for v in _views(views["people"], site_names, False, programme.subgroups):
        parts += _rows(v.group_by(keys).agg(aggs["people"]), PEOPLE_METRICS + people_metrics)
    bl = backlog.group_by("site").agg(pl.col("backlog").max(), pl.len().alias("_n"))
    bl = pl.concat(
        [
            bl.with_columns(_site_name(site_names).alias("_site")),
            bl.select(
                pl.lit("all").alias("_site"), pl.col("backlog").max(), pl.col("_n").sum()
            ).with_columns(pl.lit(0).cast(bl["site"].dtype).alias("site")),
        ],
        how="diagonal",
    )
    bl = bl.with_columns(pl.lit("all").alias("_subgroup"), pl.lit("all").alias("_round"))
    parts += _rows(bl, SITE_METRICS)
    frame = pl.concat(parts)
    frame = frame.with_columns(
        pl.lit(scenario).alias("scenario"),
        pl.lit(policy).alias("policy"),
        pl.lit(seed, dtype=pl.Int64).alias("seed"),
    )
    return (
        frame.select(list(METRICS_SCHEMA))
        .cast(METRICS_SCHEMA)
        .sort("metric", "site", "subgroup", "round")
    )


def person_sums(exams: pl.DataFrame, people: pl.DataFrame, programme: Any) -> pl.DataFrame:
    """One row per person (``person_id`` order) with that person's share of every sum behind
    the pairable metrics (:data:`PAIRABLE_KINDS`) of ``programme``'s runs.

    Summing a column over people gives exactly what :func:`compute_metrics` aggregates at site,
    subgroup and round ``all``: the same views and the same expressions, grouped by person.
    """
    wanted = {
        c
        for m in metric_catalogue(programme).values()
        if m.kind in PAIRABLE_KINDS
        for c in (m.num, m.den)
        if c
    }
    views = _prepared(exams, people, programme)
    table = people.select("person_id")
    for view, exprs in _aggregations(programme).items():
        keep = [e for e in exprs if e.meta.output_name() in wanted]
        if keep:
            table = table.join(
                views[view].group_by("person_id").agg(keep), on="person_id", how="left"
            )
    cols = sorted(c for c in table.columns if c != "person_id")
    return (
        table.fill_null(0)
        .sort("person_id")
        .select("person_id", *(pl.col(c).cast(pl.Float64) for c in cols))
    )

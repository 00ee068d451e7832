"""Radiologist agents: individual skill drawn from a profile.

A profile (``agents/readers/<name>.yaml``) gives the population of readers of one kind; each
reader at a site draws their own parameters from it once, from a keyed generator, so reader
variability is real and repeatable. Readers act on conspicuity (what the image shows), never
on the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

PROB = {"ge": 0.0, "le": 1.0}


@dataclass(frozen=True)
class ReaderProfile:
    """Typical reader of one kind and the spread between readers.

    Detection probability of a finding of conspicuity ``c`` is
    ``1 / (1 + (c50 / c) ** slope)``.
    """

    name: str
    description: str
    detection_c50: float = field(metadata={"gt": 0})
    detection_slope: float = field(metadata={"gt": 0, "le": 20})
    false_positive_per_exam: float = field(metadata=PROB)
    false_positive_size_median_mm: float = field(metadata={"gt": 0})
    size_error_sd_mm: float = field(metadata={"ge": 0, "le": 10})
    read_minutes_median: float = field(metadata={"gt": 0, "le": 120})
    read_minutes_sigma: float = field(metadata={"ge": 0, "le": 2})
    between_reader_c50_sigma: float = field(metadata={"ge": 0, "le": 2})
    between_reader_fp_sigma: float = field(metadata={"ge": 0, "le": 2})
    between_reader_size_bias_sd_mm: float = field(metadata={"ge": 0, "le": 5})
    between_reader_speed_sigma: float = field(metadata={"ge": 0, "le": 2})


@dataclass(frozen=True)
class Reader:
    """One radiologist, with their own parameters."""

    reader_id: int
    site: int
    profile: str
    c50: float
    slope: float
    fp_per_exam: float
    fp_size_median_mm: float
    size_error_sd_mm: float
    size_bias_mm: float
    read_minutes_median: float
    read_minutes_sigma: float

    def detect_probability(self, conspicuity: float) -> float:
        if conspicuity <= 0.0:
            return 0.0
        # logistic in log-conspicuity, computed without overflow for faint findings
        x = self.slope * (math.log(conspicuity) - math.log(self.c50))
        if x < -700.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-x))

    def measure_mm(self, true_mm: float, u: float) -> float:
        """Measured diameter (mm): reader bias plus measurement noise, never below 1 mm."""
        return max(1.0, true_mm + self.size_bias_mm + self.size_error_sd_mm * float(ndtri(u)))

    def read_minutes(self, u: float) -> float:
        return self.read_minutes_median * math.exp(self.read_minutes_sigma * float(ndtri(u)))


def draw_reader(
    profile: ReaderProfile, rng: np.random.Generator, reader_id: int, site: int
) -> Reader:
    """Draw one reader's parameters from ``profile`` (draw, then build)."""
    z = rng.standard_normal(4)
    return Reader(
        reader_id=reader_id,
        site=site,
        profile=profile.name,
        c50=profile.detection_c50 * math.exp(profile.between_reader_c50_sigma * z[0]),
        slope=profile.detection_slope,
        fp_per_exam=min(
            0.5, profile.false_positive_per_exam * math.exp(profile.between_reader_fp_sigma * z[1])
        ),
        fp_size_median_mm=profile.false_positive_size_median_mm,
        size_error_sd_mm=profile.size_error_sd_mm,
        size_bias_mm=profile.between_reader_size_bias_sd_mm * z[2],
        read_minutes_median=profile.read_minutes_median
        * math.exp(profile.between_reader_speed_sigma * z[3]),
        read_minutes_sigma=profile.read_minutes_sigma,
    )

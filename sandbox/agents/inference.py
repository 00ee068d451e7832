"""Batched, cached inference of an AI device on rendered exams.

One loaded model per device is reused for the whole run. Exams are rendered and scored in
batches; every score is cached by (model digest, person, exam day, scanner model), so a second
policy, threshold or run on the same cohort replays scores instead of repeating inference
(DESIGN.md invariant 2). The cache persists as one Parquet file per model digest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from sandbox.config import Scanner
from sandbox.errors import SandboxInputError

if TYPE_CHECKING:
    from sandbox.agents.bundle import LoadedModel

CACHE_SCHEMA = {
    "person_id": pl.Int64,
    "exam_day": pl.Int32,
    "scanner": pl.Utf8,
    "score": pl.Float32,
}


@dataclass(frozen=True, slots=True)
class ExamImage:
    """What the device is shown: the exam's key and the finding the image contains."""

    person_id: int
    exam_day: int  # integer programme day of the scan
    scanner: Scanner
    diameter_mm: float  # 0 = no finding in the field of view
    nodule_type: int
    spiculated: bool


@dataclass
class CacheStats:
    hits: int = 0
    inferences: int = 0
    batches: int = 0


@dataclass
class ScoreCache:
    """Scores by (person, exam day, scanner model) for one model digest and one cohort.

    ``cohort_key`` identifies the people and their histories (a digest of the scenario and the
    seed): person ids mean the same people only within one cohort.
    """

    digest: str
    cohort_key: str
    folder: Path | None = None
    scores: dict[tuple[int, int, str], float] = field(default_factory=dict)
    _loaded: int = 0

    @property
    def path(self) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{self.digest[:16]}-{self.cohort_key[:16]}.parquet"

    def load(self) -> ScoreCache:
        p = self.path
        if p is not None and p.is_file():
            try:
                frame = pl.read_parquet(p)
                frame.select(list(CACHE_SCHEMA))
            except (OSError, pl.exceptions.PolarsError) as e:
                raise SandboxInputError(
                    f"score cache {p} is unreadable ({type(e).__name__}); delete it and the scores will be recomputed"
                ) from e
            self.scores.update(
                ((pid, day, sc), float(s))
                for pid, day, sc, s in frame.select(list(CACHE_SCHEMA)).iter_rows()
            )
        self._loaded = len(self.scores)
        return self

    def save(self) -> None:
        """Write the cache if it grew (temporary file, then rename)."""
        p = self.path
        if p is None or len(self.scores) == self._loaded:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.scores)
        frame = pl.DataFrame(
            {
                "person_id": [k[0] for k in keys],
                "exam_day": [k[1] for k in keys],
                "scanner": [k[2] for k in keys],
                "score": [self.scores[k] for k in keys],
            },
            schema=CACHE_SCHEMA,
        )
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        frame.write_parquet(tmp)
        tmp.replace(p)
        self._loaded = len(self.scores)


class DeviceReader:
    """Scores exam images with one loaded model: render, infer, cache.

    Args:
        model: a loaded, probed device (sandbox.agents.bundle.LoadedModel).
        cache: the score cache for ``model.digest``.
        seed: root seed (images are rendered deterministically from it and the exam key).
        batch_size: exams rendered and scored per forward pass.
    """

    def __init__(
        self, model: LoadedModel, cache: ScoreCache, seed: int, batch_size: int = 256
    ) -> None:
        if cache.digest != model.digest:
            raise ValueError("the score cache belongs to another model")
        self.model, self.cache, self.seed, self.batch_size = model, cache, seed, batch_size
        self.stats = CacheStats()
        shape = model.input_shape
        self.size = int(shape[-1])

    def scores(self, exams: Sequence[ExamImage]) -> np.ndarray:
        """Scores in [0, 1] for ``exams``; only exams not in the cache are rendered and inferred."""
        out = np.empty(len(exams), dtype=np.float64)
        todo: list[int] = []
        for i, e in enumerate(exams):
            s = self.cache.scores.get((e.person_id, e.exam_day, e.scanner.model))
            if s is None:
                todo.append(i)
            else:
                out[i] = s
                self.stats.hits += 1
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            batch = self.infer([exams[i] for i in chunk])
            for i, s in zip(chunk, batch, strict=True):
                e = exams[i]
                self.cache.scores[(e.person_id, e.exam_day, e.scanner.model)] = float(s)
                out[i] = s
        return out

    def infer(self, exams: Sequence[ExamImage]) -> np.ndarray:
        """Render and score without the cache (one batch)."""
        from sandbox.imaging.render import PatchSpec, render_batch

        specs = [
            PatchSpec(
                (e.person_id, e.exam_day), e.diameter_mm, e.nodule_type, e.spiculated, e.scanner
            )
            for e in exams
        ]
        images = render_batch(specs, self.seed, size=self.size, device=self.model.device)
        scores = self.model.score(images).detach().cpu().numpy().astype(np.float64)
        self.stats.inferences += len(exams)
        self.stats.batches += 1
        return scores

"""Batched, cached inference of an AI device on rendered exams.

One loaded model per device is reused for the whole run. Exams are rendered (by the
programme's renderer) and scored in batches; every score is cached by (model digest, person,
exam day, scanner), so a second policy, threshold or run on the same cohort replays scores
instead of repeating inference (DESIGN.md invariant 2). The cache persists as one Parquet file
per (model digest, cohort key); the cohort key covers the seed, the image-relevant part of the
scenario and the renderer's version. Runs sharing a cache merge their scores on save, under a
file lock, so concurrent runs lose none.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

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


class ImageSpec(Protocol):
    """What a device is shown, as a programme specifies it: the exam's key and what its
    renderer needs (e.g. the finding the image is centred on)."""

    person_id: int
    exam_day: int  # integer programme day of the scan
    scanner: Scanner


@functools.lru_cache(maxsize=64)
def scanner_key(scanner: Scanner) -> str:
    """The scanner as a cache key: its model and a digest of every parameter that shapes pixels."""
    blob = json.dumps(asdict(scanner), sort_keys=True)
    return f"{scanner.model}@{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


@dataclass
class CacheStats:
    hits: int = 0
    inferences: int = 0
    batches: int = 0


@dataclass
class ScoreCache:
    """Scores by (person, exam day, :func:`scanner_key`) for one model digest and one cohort.

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
        """Read the cache file, verified: schema, the model and cohort it belongs to, a checksum
        of its contents, and scores that are probabilities. Anything else is one line."""
        p = self.path
        if p is not None and p.is_file():
            frame = self._read_verified(p)
            self.scores.update(
                ((pid, day, sc), float(s))
                for pid, day, sc, s in frame.select(list(CACHE_SCHEMA)).iter_rows()
            )
        self._loaded = len(self.scores)
        return self

    def _read_verified(self, p: Path) -> pl.DataFrame:
        def refuse(why: str) -> NoReturn:
            raise SandboxInputError(
                f"score cache {p} {why}; delete it and the scores will be recomputed"
            )

        try:
            table = pq.read_table(p)
            frame = pl.from_arrow(table)
        except (OSError, pa.ArrowException, pl.exceptions.PolarsError) as e:
            refuse(f"is unreadable ({type(e).__name__})")
        meta = table.schema.metadata or {}
        if dict(frame.schema) != CACHE_SCHEMA:
            refuse("does not have the cache's columns and types")
        if meta.get(b"sandbox_model") != self.digest.encode():
            refuse("belongs to another model")
        if meta.get(b"sandbox_cohort") != self.cohort_key.encode():
            refuse("belongs to another cohort")
        if meta.get(b"sandbox_sha256") != _content_digest(frame).encode():
            refuse("fails its checksum (changed after it was written)")
        score = frame["score"].to_numpy()
        if not (np.isfinite(score) & (score >= 0) & (score <= 1)).all():
            refuse("holds scores that are not probabilities in [0, 1]")
        return frame

    def save(self) -> None:
        """Merge this run's scores into the cache file if it grew.

        Under an exclusive lock on ``<file>.lock``: read what other runs saved meanwhile, merge,
        write a temporary file and rename it, so concurrent runs lose no scores.
        """
        p = self.path
        if p is None or len(self.scores) == self._loaded:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p.with_name(f".{p.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mine = self.scores
            self.scores = {}
            self.load()
            self.scores.update(mine)
            self._write(p)
        self._loaded = len(self.scores)

    def _write(self, p: Path) -> None:
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
        meta = {
            b"sandbox_model": self.digest.encode(),
            b"sandbox_cohort": self.cohort_key.encode(),
            b"sandbox_sha256": _content_digest(frame).encode(),
        }
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        pq.write_table(frame.to_arrow().replace_schema_metadata(meta), tmp)
        tmp.replace(p)


def _content_digest(frame: pl.DataFrame) -> str:
    """sha256 of a cache frame's rows, in order (the checksum stored with the file)."""
    h = hashlib.sha256()
    h.update(frame["person_id"].to_numpy().astype("<i8").tobytes())
    h.update(frame["exam_day"].to_numpy().astype("<i4").tobytes())
    h.update("\n".join(frame["scanner"].to_list()).encode())
    h.update(frame["score"].to_numpy().astype("<f4").tobytes())
    return h.hexdigest()


class DeviceScorer:
    """Scores exam images with one loaded model: render, infer, cache.

    Args:
        model: a loaded, probed device (sandbox.agents.bundle.LoadedModel).
        cache: the score cache for ``model.digest``.
        seed: root seed (images are rendered deterministically from it and the exam key).
        batch_size: exams rendered and scored per forward pass.
        render: the programme's renderer, ``render(images, seed, size, device)`` -> a tensor
            ``[B, *input_shape]`` (:meth:`sandbox.programmes.base.Programme.render`).
    """

    def __init__(
        self,
        model: LoadedModel,
        cache: ScoreCache,
        seed: int,
        batch_size: int = 256,
        *,
        render: Callable[[Sequence[Any], int, int, str], Any],
    ) -> None:
        if cache.digest != model.digest:
            raise ValueError("the score cache belongs to another model")
        self.model, self.cache, self.seed, self.batch_size = model, cache, seed, batch_size
        self.render = render
        self.stats = CacheStats()
        shape = model.input_shape
        self.size = int(shape[-1])

    def scores(self, exams: Sequence[ImageSpec]) -> np.ndarray:
        """Scores in [0, 1] for ``exams``; only exams not in the cache are rendered and inferred."""
        out = np.empty(len(exams), dtype=np.float64)
        todo: list[int] = []
        for i, e in enumerate(exams):
            s = self.cache.scores.get((e.person_id, e.exam_day, scanner_key(e.scanner)))
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
                self.cache.scores[(e.person_id, e.exam_day, scanner_key(e.scanner))] = float(s)
                out[i] = s
        return out

    def infer(self, exams: Sequence[ImageSpec]) -> np.ndarray:
        """Render and score without the cache (one batch)."""
        images = self.render(exams, self.seed, self.size, self.model.device)
        try:
            scores = self.model.score(images).detach().cpu().numpy().astype(np.float64)
        except ValueError as e:  # the device cannot read what the renderer makes
            raise SandboxInputError(f"device '{self.model.name}': {e}; nothing was written") from e
        bad = ~(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            e = exams[i]
            raise SandboxInputError(
                f"device '{self.model.name}' ({self.model.folder}) gave score {scores[i]!r} for "
                f"person {e.person_id} on day {e.exam_day} ({int(bad.sum())} of {len(exams)} in the "
                "batch are not probabilities in [0, 1]); the run stops and nothing was written"
            )
        self.stats.inferences += len(exams)
        self.stats.batches += 1
        return scores

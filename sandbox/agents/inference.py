"""Batched, cached inference of an AI device on rendered exams.

One loaded model per device is reused for the whole run. An exam is shown to the device as its
candidate regions (the programme's ``image_of``): every candidate is rendered (by the
programme's renderer) and scored, in batches, and the exam's score is the device's declared
aggregation of its candidates' scores (``output.aggregation``: max by default), put on the
device's per-system calibration where it declares one (``output.calibration``), with the index
of the candidate that drove it. Every candidate score is cached by (model digest, person, exam
day, scanner, candidate location), so a second policy, threshold or run on the same cohort
replays scores instead of repeating inference (DESIGN.md invariant 2). The cache persists as one Parquet file
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    "location": pl.Int64,
    "score": pl.Float32,
}


class CandidateSpec(Protocol):
    """One candidate region: an opaque place in the person's body (and what the programme's
    renderer needs to draw it)."""

    location: int


class ImageSpec(Protocol):
    """What a device is shown, as a programme specifies it: the exam's key and its candidate
    regions (at least one), none marked as the lesion."""

    person_id: int
    exam_day: int  # integer programme day of the scan
    scanner: Scanner
    candidates: Sequence[CandidateSpec]


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
    """Candidate scores by (person, exam day, :func:`scanner_key`, location) for one model
    digest and one cohort.

    ``cohort_key`` identifies the people and their histories (a digest of the scenario and the
    seed): person ids mean the same people only within one cohort.
    """

    digest: str
    cohort_key: str
    folder: Path | None = None
    scores: dict[tuple[int, int, str, int], float] = field(default_factory=dict)
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
                ((pid, day, sc, loc), float(s))
                for pid, day, sc, loc, s in frame.select(list(CACHE_SCHEMA)).iter_rows()
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
                "location": [k[3] for k in keys],
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
    h.update(frame["location"].to_numpy().astype("<i8").tobytes())
    h.update(frame["score"].to_numpy().astype("<f4").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ExamReads:
    """A device's reading of a batch of exams.

    Attributes:
        score: each exam's score, the aggregation of its candidates' scores.
        driver: index (into the exam's ``candidates``) of the candidate that drove the score
            (:func:`aggregate`): the highest-scoring one, or region, the first of equals.
        candidates: each exam's number of candidates.
    """

    score: np.ndarray
    driver: np.ndarray
    candidates: np.ndarray


def _spare_core(device: str) -> bool:
    """Whether a render thread beside the forward pass has a core of its own."""
    if not str(device).startswith("cpu"):
        return True
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return torch.get_num_threads() < (cores or 1)


def aggregate(
    scores: np.ndarray, how: str, candidates: Sequence[Any] = (), match_mm: float = 20.0
) -> tuple[float, int]:
    """An exam's score from its candidates' ``scores``, and the candidate that drove it (the
    first of equals).

    ``max``: the most suspicious candidate. ``noisy_or``: ``1 - prod(1 - p)`` (driven by the
    most suspicious). ``two_view`` (a mammogram's ``candidates``, each with its ``view``, 0-3 as
    R-CC, R-MLO, L-CC, L-MLO, and its distance from the nipple ``nipple_mm``): each region's
    score averaged with the most suspicious region of the same breast's other view lying
    within ``match_mm`` of its distance from the nipple, or with 0 where none does; the exam's
    score is the highest of those. A finding is seen in both views, a summation of tissue in
    one: the way two-view CAD sets one against the other (van Engeland and Karssemeijer, Med
    Phys 2007)."""
    if how == "max":
        i = int(np.argmax(scores))
        return float(scores[i]), i
    if how == "noisy_or":
        return float(1.0 - np.prod(1.0 - scores)), int(np.argmax(scores))
    if how == "two_view":
        if len(candidates) != len(scores) or not all(
            hasattr(c, "view") and hasattr(c, "nipple_mm") for c in candidates
        ):
            raise ValueError(
                "two_view aggregation needs candidates with a view and a distance from the "
                "nipple (a mammogram's)"
            )
        view = np.array([c.view for c in candidates])
        depth = np.array([c.nipple_mm for c in candidates], dtype=np.float64)
        other = (view[None, :] == (view[:, None] ^ 1)) & (
            np.abs(depth[:, None] - depth[None, :]) <= match_mm
        )
        partner = np.where(other, scores[None, :], 0.0).max(axis=1)
        region = 0.5 * (scores + partner)
        i = int(np.argmax(region))
        return float(region[i]), i
    raise ValueError(f"unknown aggregation {how!r}")


class DeviceScorer:
    """Scores exams with one loaded model: render every candidate, infer, cache, aggregate.

    Args:
        model: a loaded, probed device (sandbox.agents.bundle.LoadedModel).
        cache: the score cache for ``model.digest``.
        seed: root seed (images are rendered deterministically from it and the exam key).
        batch_size: candidate patches rendered and scored per forward pass.
        render: the programme's renderer, ``render(patches, seed, size, device, out)`` -> a
            tensor ``[B, *input_shape]`` for ``(image, candidate)`` pairs, into ``out`` when
            given (:meth:`sandbox.programmes.base.Programme.render`).

    Batches are rendered into two buffers of ``batch_size`` patches, kept between batches: a
    new tensor per batch would be given back to the system and faulted in again page by page,
    which costs about as much as drawing a patch. With ``render_ahead``, the next batch is
    rendered into the other buffer on a second thread while one batch is scored; by default
    it does so where that thread has a core of its own: on a GPU, or on a CPU whose torch
    intra-op threads leave a core free (a run sets them to one). Where they do not, the two
    threads' operations only contend (measured: 0.42 of the bare forward pass with two
    intra-op threads on two cores, against 0.63 without rendering ahead).
    """

    def __init__(
        self,
        model: LoadedModel,
        cache: ScoreCache,
        seed: int,
        batch_size: int = 128,
        *,
        render: Callable[[Sequence[Any], int, int, str], Any],
        render_ahead: bool | None = None,
    ) -> None:
        if cache.digest != model.digest:
            raise ValueError("the score cache belongs to another model")
        self.model, self.cache, self.seed, self.batch_size = model, cache, seed, batch_size
        self.render = render
        self.stats = CacheStats()
        shape = model.input_shape
        self.size = int(shape[-1])
        self.aggregation = model.aggregation
        self._buffers: list[Any] = []
        self.render_ahead = _spare_core(model.device) if render_ahead is None else render_ahead
        from sandbox.agents.operating_point import Cutoffs

        self._cutoffs = Cutoffs(self.folder)

    @property
    def folder(self) -> Path:
        """The device's folder (its validation set and reference scores)."""
        return Path(self.model.folder)

    def cutoff(self, point: Any) -> float:
        """The score cut-off of operating point ``point`` (a policy's ``OperatingPoint``) on
        this device, resolved once from its folder."""
        return self._cutoffs(point)

    def scores(self, exams: Sequence[ImageSpec]) -> np.ndarray:
        """Exam scores in [0, 1] for ``exams``; only candidates not in the cache are rendered
        and inferred."""
        return self.read(exams).score

    def read(self, exams: Sequence[ImageSpec]) -> ExamReads:
        """Exam scores (on the device's per-system calibration, where it has one), the
        candidate that drove each, and the number of candidates."""
        keys: list[list[tuple[int, int, str, int]]] = []
        todo: list[tuple[tuple[int, int, str, int], ImageSpec, Any]] = []
        queued: set[tuple[int, int, str, int]] = set()
        cached = self.cache.scores
        for e in exams:
            if not e.candidates:
                raise ValueError(
                    f"person {e.person_id} day {e.exam_day}: an image has no candidates"
                )
            sk = scanner_key(e.scanner)
            ks = [(e.person_id, e.exam_day, sk, c.location) for c in e.candidates]
            keys.append(ks)
            for k, c in zip(ks, e.candidates, strict=True):
                if k in cached:
                    self.stats.hits += 1
                elif k not in queued:
                    queued.add(k)
                    todo.append((k, e, c))
        chunks = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        for chunk, batch in zip(chunks, self._scored(chunks), strict=True):
            for (k, _, _), s in zip(chunk, batch, strict=True):
                cached[k] = float(s)
        n = len(exams)
        score, driver = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.int64)
        count = np.empty(n, dtype=np.int64)
        for i, ks in enumerate(keys):
            cand = np.array([cached[k] for k in ks], dtype=np.float64)
            score[i], driver[i] = aggregate(
                cand, self.aggregation, exams[i].candidates, self.model.view_match_mm
            )
            count[i] = len(ks)
        if self.model.calibration is not None:
            systems = np.array([e.scanner.model for e in exams])
            score = self.model.calibration.apply_each(score, systems)
        return ExamReads(score, driver, count)

    def _scored(self, chunks: list[list[tuple[Any, ImageSpec, Any]]]) -> Iterator[np.ndarray]:
        """The scores of each chunk of ``(key, image, candidate)``, in order. With more than one
        chunk, the next chunk is rendered on a second thread (into a second buffer) while this
        one is scored: rendering and the forward pass overlap, as a data loader's worker does.
        A patch renders and scores the same whatever its batch, so the scores do not change."""
        pairs = [[(e, c) for _, e, c in chunk] for chunk in chunks]
        if len(pairs) < 2 or not self.render_ahead:
            for p in pairs:
                yield self.infer(p)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="render") as pool:
            ahead = pool.submit(self._render, pairs[0], 0)
            for i, p in enumerate(pairs):
                images = ahead.result()
                if i + 1 < len(pairs):
                    ahead = pool.submit(self._render, pairs[i + 1], (i + 1) % 2)
                yield self._score(p, images)

    def _render(self, patches: Sequence[tuple[ImageSpec, Any]], slot: int = 0) -> Any:
        """``patches`` rendered into buffer ``slot`` (kept between batches)."""
        n = len(patches)
        while len(self._buffers) <= slot:
            self._buffers.append(None)
        buf = self._buffers[slot]
        if buf is None or buf.shape[0] < n:
            import torch

            shape = (max(n, self.batch_size), *self.model.input_shape)
            buf = torch.empty(shape, dtype=torch.float32, device=self.model.device)
            self._buffers[slot] = buf
        return self.render(patches, self.seed, self.size, self.model.device, buf[:n])

    def infer(self, patches: Sequence[tuple[ImageSpec, Any]]) -> np.ndarray:
        """Render and score ``(image, candidate)`` pairs without the cache (one batch)."""
        return self._score(patches, self._render(patches))

    def _score(self, patches: Sequence[tuple[ImageSpec, Any]], images: Any) -> np.ndarray:
        try:
            scores = self.model.score(images).detach().cpu().numpy().astype(np.float64)
        except ValueError as e:  # the device cannot read what the renderer makes
            raise SandboxInputError(f"device '{self.model.name}': {e}; nothing was written") from e
        bad = ~(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            e = patches[i][0]
            raise SandboxInputError(
                f"device '{self.model.name}' ({self.model.folder}) gave score {scores[i]!r} for "
                f"person {e.person_id} on day {e.exam_day} ({int(bad.sum())} of {len(patches)} in the "
                "batch are not probabilities in [0, 1]); the run stops and nothing was written"
            )
        self.stats.inferences += len(patches)
        self.stats.batches += 1
        return scores

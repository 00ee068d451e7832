"""Keyed random streams (common random numbers).

Every random number in a simulation is a pure function of
``(root seed, stream name, person id, index)``.  Nothing is drawn from a shared sequential
generator, so two policies run on the same seed see the same people with the same diseases,
and a result does not depend on how a cohort is sharded or how many workers run it.

The construction is a counter-based generator: the key is hashed with the SplitMix64
finaliser (Steele, Lea & Flood 2014), a bijective 64-bit mixer whose outputs pass BigCrush
when used in counter mode. The vectorised (numpy) and scalar (pure Python) paths give
bit-identical results; the scalar path serves the event-driven workflow, where draws happen
one exam at a time.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.special import ndtri

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_TO_UNIT = 1.0 / (1 << 53)


def stream_key(seed: int, stream: str) -> int:
    """A 64-bit key for a named stream under a root seed."""
    digest = hashlib.blake2b(f"{int(seed)}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix_scalar(z: int) -> int:
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def _mix_array(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def uniform_scalar(key: int, person: int, index: int = 0) -> float:
    """One uniform in (0, 1) for ``(stream key, person, index)``; equals :func:`uniform`.

    The two rounds of :func:`_mix_scalar` are written out: this is the workflow's hottest call.
    """
    z = ((key ^ (person & _MASK)) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    z = ((z ^ (z >> 31) ^ (index & _MASK)) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    z ^= z >> 31
    return ((z >> 11) + 0.5) * _TO_UNIT


def uniform(key: int, person: np.ndarray, index: np.ndarray | int = 0) -> np.ndarray:
    """Uniforms in (0, 1), one per element of the broadcast of ``person`` and ``index``."""
    p = np.asarray(person).astype(np.uint64)
    i = np.asarray(index).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _mix_array(_mix_array(np.uint64(key) ^ p) ^ i)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * _TO_UNIT


# ---------------------------------------------------------------- stream names
STREAMS: dict[str, str] = {
    "schedule.attend": "whether a person attends a screening round (index: round)",
    "schedule.adhere": "whether a person attends a follow-up exam (index: exam key)",
    "reader.*": "a radiologist's skill (generator keyed by site, profile and index in profile)",
    "ai.audit": "whether an AI-cleared screen is read anyway (index: exam item key)",
    "consensus": "whether a spurious finding survives consensus (index: exam item key)",
    "render.*": "what a rendered image holds besides its findings (anatomy, noise)",
    "train.*": "which synthetic exams train and test a device",
}
"""Every stream name, declared once with what it draws. A name ``family.*`` declares a family.
Programmes declare theirs with :func:`declare_streams`; drawing from an undeclared stream fails."""


def declare_streams(streams: dict[str, str]) -> None:
    """Declare stream names (``name`` or ``family.*``) with what each draws."""
    for name, purpose in streams.items():
        if STREAMS.get(name, purpose) != purpose:
            raise ValueError(f"random stream {name!r} is declared twice with different purposes")
        STREAMS[name] = purpose


def _declared(stream: str) -> bool:
    if stream in STREAMS:
        return True
    parts = stream.split(".")
    return any(".".join(parts[:i]) + ".*" in STREAMS for i in range(1, len(parts) + 1))


# ---------------------------------------------------------------- keys within a person's stream
EXAMS_PER_ROUND = 32  # exams in one round (the screen and its follow-ups)
READ_SLOTS = 4  # independent reads of one exam (first, second, arbitration/review, second look)
ITEMS = 64  # items drawn per exam or read (findings by key, or numbered draws)


def exam_key(round: int, seq: int) -> int:
    """Index of exam ``seq`` (0 = the screen) of round ``round`` in a person's streams."""
    if not 0 <= seq < EXAMS_PER_ROUND:
        raise OverflowError(
            f"exam {seq} of round {round}: a round holds at most {EXAMS_PER_ROUND} exams"
        )
    if round < 0:
        raise OverflowError(f"round {round} is negative")
    return round * EXAMS_PER_ROUND + seq


def item_key(exam: int, item: int = 0) -> int:
    """Index of draw ``item`` of exam key ``exam``."""
    if not 0 <= item < ITEMS:
        raise OverflowError(f"item {item} of an exam: at most {ITEMS} items")
    return exam * ITEMS + item


def read_key(exam: int, slot: int, item: int = 0) -> int:
    """Index of draw ``item`` (a finding's key) of read slot ``slot`` of exam key ``exam``."""
    if not 0 <= slot < READ_SLOTS:
        raise OverflowError(f"read slot {slot}: an exam has at most {READ_SLOTS} read slots")
    if not 0 <= item < ITEMS:
        raise OverflowError(f"item {item} of a read: at most {ITEMS} items")
    return (exam * READ_SLOTS + slot) * ITEMS + item


def label_key(label: str) -> int:
    """A stable 32-bit integer for a label (e.g. a reader profile's name) in generator keys."""
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=4).digest(), "little")


class Streams:
    """Named, keyed streams under one root seed. Stream names must be declared in :data:`STREAMS`.

    Args:
        seed: the run's root seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._keys: dict[str, int] = {}

    def key(self, stream: str) -> int:
        k = self._keys.get(stream)
        if k is None:
            if not _declared(stream):
                raise KeyError(f"random stream {stream!r} is not declared (sandbox.rng.STREAMS)")
            k = self._keys[stream] = stream_key(self.seed, stream)
        return k

    def uniform(self, stream: str, person, index=0) -> np.ndarray:
        return uniform(self.key(stream), person, index)

    def normal(self, stream: str, person, index=0) -> np.ndarray:
        return ndtri(self.uniform(stream, person, index))

    def exponential(self, stream: str, person, index=0) -> np.ndarray:
        return -np.log(self.uniform(stream, person, index))

    def u(self, stream: str, person: int, index: int = 0) -> float:
        """Scalar uniform, bit-identical to :meth:`uniform`."""
        k = self._keys.get(stream)
        if k is None:
            k = self.key(stream)
        return uniform_scalar(k, int(person), int(index))

    def generator(self, stream: str, *keys: int) -> np.random.Generator:
        """A numpy Generator for draws that are not per person (e.g. a reader's skill)."""
        entropy = [self.key(stream) & 0xFFFFFFFF, self.key(stream) >> 32, *map(int, keys)]
        return np.random.default_rng(np.random.SeedSequence(entropy))

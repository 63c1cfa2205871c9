"""Measure artifacts on this machine: size on disk, load time and median latency.

Numbers are measured, never asserted: each verification subprocess times its own
artifact with the same inputs, warm-up and run count, so the figures in one report are
comparable side by side. Single-threaded runtimes (see :mod:`converters.runtimes`) and a
lock that lets one step time at a time (loading still overlaps) keep them stable.
"""

from __future__ import annotations

import contextlib
import fcntl
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

WARMUP = 5
RUNS = 50

T = TypeVar("T")


def size_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (SavedModel)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """``function()``'s result and how long it took, in seconds."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def median_latency(function: Callable[[], Any], warmup: int = WARMUP, runs: int = RUNS) -> float:
    """Median seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold a cross-process lock while timing, so concurrent verification steps never skew each other."""
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def recommend(candidates: list[dict[str, Any]]) -> str | None:
    """The fastest (batch-1 median, then batch-32) servable artifact that passed verification."""
    usable = [c for c in candidates if c["passed"] and c["servable"] and c.get("latency_b1_s") is not None]
    if not usable:
        return None
    best = min(usable, key=lambda c: (c["latency_b1_s"], c["latency_b32_s"]))
    return str(best["target"])

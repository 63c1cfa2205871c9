"""Measure artifacts on this machine: size on disk, load time, latency percentiles, peak memory.

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

WARMUP = 10
RUNS = 100

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


def latency_samples(function: Callable[[], Any], warmup: int = WARMUP, runs: int = RUNS) -> list[float]:
    """Seconds per call for ``runs`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def latency_stats(samples: list[float], batch: int) -> dict[str, float]:
    """p50/p95/p99 seconds per call and samples per second (``batch`` rows per call, at the median)."""
    ordered = sorted(samples)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    p50 = statistics.median(ordered)
    return {"p50_s": p50, "p95_s": percentile(95), "p99_s": percentile(99), "samples_per_s": batch / p50}


def median_latency(function: Callable[[], Any], warmup: int = WARMUP, runs: int = RUNS) -> float:
    """Median seconds per call after ``warmup`` untimed calls."""
    return statistics.median(latency_samples(function, warmup, runs))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
    best = min(usable, key=lambda c: (c["latency_b1_s"], c["latency_b32_s"] or float("inf")))
    return str(best["target"])

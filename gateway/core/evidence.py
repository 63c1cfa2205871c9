"""What each version did with real traffic, for rollout decisions: requests, errors, latencies,
and (for shadow copies) disagreement with the primary's answers.

Counts are per (model, version) and can be reset (a rollout resets them at each step so a
decision only uses what the current weights produced). Latencies go into a fixed log-spaced
histogram: bounded memory, and replicas' evidence merges by adding counts.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Latency histogram bucket upper bounds: 64 log-spaced from 50 µs to 60 s (mergeable across replicas).
BUCKETS: tuple[float, ...] = tuple(float(b) for b in np.geomspace(50e-6, 60.0, 64))


@dataclass(slots=True)
class VersionEvidence:
    requests: int = 0
    errors: int = 0
    #: Request counts per latency bucket (``BUCKETS``; the last one also takes anything slower).
    histogram: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    #: Shadow comparisons with the primary's answers.
    compared_rows: int = 0
    disagreeing_rows: int = 0
    max_abs_diff: float = 0.0

    def add(self, ok: bool, seconds: float) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        index = min(bisect.bisect_left(BUCKETS, seconds), len(BUCKETS) - 1)
        self.histogram[index] += 1

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def disagreement(self) -> float:
        return self.disagreeing_rows / self.compared_rows if self.compared_rows else 0.0

    def p99(self) -> float | None:
        """The upper bound of the bucket holding the 99th percentile (None without samples)."""
        total = sum(self.histogram)
        if not total:
            return None
        rank = 0.99 * total
        seen = 0
        for bound, count in zip(BUCKETS, self.histogram, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return BUCKETS[-1]

    def merge(self, other: VersionEvidence) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]
        self.compared_rows += other.compared_rows
        self.disagreeing_rows += other.disagreeing_rows
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)

    def to_dict(self) -> dict[str, Any]:
        p99 = self.p99()
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p99_seconds": round(p99, 6) if p99 is not None else None,
            "compared_rows": self.compared_rows,
            "disagreement": round(self.disagreement, 6),
            "max_abs_diff": self.max_abs_diff,
        }

    def to_state(self) -> dict[str, Any]:
        """Everything, for another replica to merge (see :meth:`from_state`)."""
        return {"requests": self.requests, "errors": self.errors, "histogram": self.histogram,
                "compared_rows": self.compared_rows, "disagreeing_rows": self.disagreeing_rows,
                "max_abs_diff": self.max_abs_diff}  # fmt: skip

    @classmethod
    def from_state(cls, doc: Any) -> VersionEvidence:
        evidence = cls()
        if not isinstance(doc, dict):
            return evidence
        histogram = doc.get("histogram")
        if isinstance(histogram, list) and len(histogram) == len(BUCKETS):
            evidence.histogram = [int(c) for c in histogram]
        for name in ("requests", "errors", "compared_rows", "disagreeing_rows"):
            setattr(evidence, name, int(doc.get(name, 0)))
        evidence.max_abs_diff = float(doc.get("max_abs_diff", 0.0))
        return evidence


class EvidenceBook:
    """Evidence per (model, version): live traffic and shadow copies kept apart."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, int], VersionEvidence] = {}
        self._shadow: dict[tuple[str, int], VersionEvidence] = {}
        #: Called with the model name after each failed live request (a rollout checks its SLOs at once).
        self.on_error: Callable[[str], None] | None = None

    def observe(self, model: str, version: int, ok: bool, seconds: float) -> None:
        self.live(model, version).add(ok, seconds)
        if not ok and self.on_error is not None:
            self.on_error(model)

    def live(self, model: str, version: int) -> VersionEvidence:
        key = (model, version)
        evidence = self._live.get(key)
        if evidence is None:
            evidence = self._live[key] = VersionEvidence()
        return evidence

    def shadow(self, model: str, version: int) -> VersionEvidence:
        key = (model, version)
        evidence = self._shadow.get(key)
        if evidence is None:
            evidence = self._shadow[key] = VersionEvidence()
        return evidence

    def reset(self, model: str) -> None:
        for book in (self._live, self._shadow):
            for key in [k for k in book if k[0] == model]:
                del book[key]


def compare(primary: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]) -> tuple[int, int, float]:
    """``(rows compared, rows whose top-1 differs, max abs diff)`` over the numeric outputs both have."""
    rows = disagreeing = 0
    max_abs = 0.0
    for name, a in primary.items():
        b = shadow.get(name)
        if b is None or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
            continue
        if a.shape != b.shape:
            rows += a.shape[0] if a.ndim else 1
            disagreeing += a.shape[0] if a.ndim else 1
            max_abs = float("inf")
            continue
        if a.size:
            max_abs = max(max_abs, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
        if a.ndim >= 2 and a.shape[-1] > 1:
            top_a = a.reshape(-1, a.shape[-1]).argmax(axis=1)
            top_b = b.reshape(-1, b.shape[-1]).argmax(axis=1)
            rows += int(top_a.size)
            disagreeing += int(np.count_nonzero(top_a != top_b))
    return rows, disagreeing, max_abs

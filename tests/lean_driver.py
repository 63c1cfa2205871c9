"""The same metric updates applied to prometheus_client's classes or to :mod:`gateway.lean_series`'s.

Imported by tests/test_lean_series.py, and run as a process of its own (prometheus_client's
multiprocess mode is chosen per process, from ``PROMETHEUS_MULTIPROC_DIR``):

``python -m tests.lean_driver reference|lean|metrics`` writes into ``$PROMETHEUS_MULTIPROC_DIR``:

- ``reference``: prometheus_client's Counter, Gauge (livesum) and Histogram, both parts of the updates;
- ``lean``: the lean families, part one, a flush, part two, a flush;
- ``metrics``: a ``Metrics(multiprocess=True)`` answering three requests, then a scrape of
  :func:`gateway.metrics.exposition_registry` printed on stdout, then two more requests and a flush.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.lean_series import LeanCounter, LeanGauge, LeanHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)
COUNTER = ("t_requests", "Requests.", ("model", "status"))
GAUGE = ("t_inflight", "In flight.", ("protocol",))
HISTOGRAM = ("t_duration_seconds", "Duration.", ("model",))
#: Observations on each bucket's upper bound, just above it, zero and past the last bound.
OBSERVED = (0.0, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.1000001, 1.0, 1.5, 1e9)


def reference(registry: CollectorRegistry) -> tuple[Any, Any, Any]:
    return (
        Counter(*COUNTER, registry=registry),
        Gauge(*GAUGE, registry=registry, multiprocess_mode="livesum"),
        Histogram(*HISTOGRAM, registry=registry, buckets=BUCKETS),
    )


def lean(registry: CollectorRegistry) -> tuple[LeanCounter, LeanGauge, LeanHistogram]:
    return (
        LeanCounter(*COUNTER, registry),
        LeanGauge(*GAUGE, registry, multiprocess_mode="livesum"),
        LeanHistogram(*HISTOGRAM, registry, buckets=BUCKETS),
    )


def drive(families: tuple[Any, Any, Any], part: int) -> None:
    """Part 1 or 2 of the updates (part 2 touches series part 1 created, and new ones)."""
    counter, gauge, histogram = families
    counter.labels("a", "200").inc()
    counter.labels("a", "200").inc()
    counter.labels("b" if part == 1 else "c", "500").inc()
    gauge.labels("rest").inc()
    gauge.labels("rest").inc()
    gauge.labels("rest").dec()
    gauge.labels("grpc" if part == 1 else "rest").inc()
    for seconds in OBSERVED[part - 1 :: 2]:
        histogram.labels("a").observe(seconds)
    histogram.labels("b").observe(0.01 * part)


def _run_metrics() -> None:
    from gateway.metrics import Metrics, exposition_registry

    metrics = Metrics(multiprocess=True)
    metrics.set_known_models(["digits"], {"digits": ["1"]})
    for _ in range(3):
        metrics.observe_request("digits", "1", "rest", "200", "success", 0.002)
    metrics.inflight_for("rest").inc()
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    sys.stdout.write(generate_latest(exposition_registry(metrics, directory)).decode())
    for _ in range(2):
        metrics.observe_request("digits", "1", "rest", "200", "success", 0.002)
    metrics.backend_call("digits", 1, "onnxruntime", 0.001)
    metrics.batch("digits", 1, 4, [0.0, 0.001])
    metrics.flush()


def main(argv: Sequence[str]) -> int:
    (mode,) = argv
    registry = CollectorRegistry()
    if mode == "reference":
        families = reference(registry)
        drive(families, 1)
        drive(families, 2)
    elif mode == "lean":
        leans = lean(registry)
        for part in (1, 2):
            drive(leans, part)
            for family in leans:
                family.flush()
    else:
        _run_metrics()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

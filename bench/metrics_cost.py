"""CPU cost of the metric updates one V2 request makes, single-process and with ``--workers``.

Times the :class:`gateway.metrics.Metrics` calls on the request path (``observe_request``, the
in-flight gauge up and down, ``backend_call``, ``batch`` for one request) with ``time.thread_time``,
``--number`` calls per run, best of ``--repeat`` runs, in two fresh processes:

- ``single``: ``Metrics()``, as ``modelgate serve`` (one process) builds it;
- ``workers``: ``Metrics(multiprocess=True)`` with ``PROMETHEUS_MULTIPROC_DIR`` set (a temporary
  directory), as each serving process of ``modelgate serve --workers N`` builds it.

With workers it also times one ``Metrics.flush()`` (what the gateway runs every 0.5 s, and before a
scrape) after 100 requests' updates: its cost is per flush, not per request.

Run: ``python -m bench.metrics_cost [--repeat 5] [--number 20000]``. Prints µs of CPU per call.
Only the public ``Metrics`` API is used, so it also runs on a checkout from before the lean series.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

MODES = ("single", "workers")


def _best(fn: Callable[[], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time() - started) / number * 1e6)
    return best


def measure(mode: str, number: int, repeat: int) -> dict[str, float]:
    """In this process (``PROMETHEUS_MULTIPROC_DIR`` already set for ``workers``): µs per call."""
    from gateway.metrics import Metrics

    metrics = Metrics(multiprocess=mode == "workers")
    metrics.set_known_models(["digits_mlp"], {"digits_mlp": ["1"]})
    inflight = metrics.inflight_for("rest")

    def in_flight() -> None:
        inflight.inc()
        inflight.dec()

    calls: dict[str, Callable[[], object]] = {
        "observe_request": lambda: metrics.observe_request("digits_mlp", "1", "rest", "200", "success", 0.0012),
        "inflight inc+dec": in_flight,
        "backend_call": lambda: metrics.backend_call("digits_mlp", 1, "onnxruntime", 0.0004),
        "batch (1 request)": lambda: metrics.batch("digits_mlp", 1, 1, [0.0001]),
    }
    found = {name: _best(fn, number, repeat) for name, fn in calls.items()}
    found["total"] = sum(found.values())
    flush = getattr(metrics, "flush", None)  # absent before the lean series: every update was a write
    if mode == "workers" and flush is not None:
        found[f"flush ({FLUSHED} requests)"] = _flush_cost(flush, list(calls.values()), repeat * 4)
    return found


#: Requests' updates between two flushes in the flush figure (0.5 s at 200 req/s per worker).
FLUSHED = 100


def _flush_cost(flush: Callable[[], object], calls: list[Callable[[], object]], repeat: int) -> float:
    """µs of one flush after ``FLUSHED`` requests' updates (every series changed), best of ``repeat``."""
    best = float("inf")
    for _ in range(repeat):
        for _ in range(FLUSHED):
            for call in calls:
                call()
        started = time.thread_time()
        flush()
        best = min(best, (time.thread_time() - started) * 1e6)
    return best


def _run_mode(mode: str, number: int, repeat: int) -> str:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="mg-metrics-cost-") as tmp:
        if mode == "workers":
            env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [sys.executable, "-m", "bench.metrics_cost", "--inside", mode, "--number", str(number),
                   "--repeat", str(repeat)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--inside", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        for name, micros in measure(args.inside, args.number, args.repeat).items():
            print(f"{args.inside:8s} {name:20s} {micros:6.2f} us")
        return 0
    for mode in MODES:
        print(_run_mode(mode, args.number, args.repeat), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The HTTP server alone: the bare floor's ASGI app (:mod:`bench.floors`) on uvicorn and on the gateway's
own HTTP/1.1 server (:mod:`gateway.protocols.http_server`), same model, same ``wrk`` load, one run.

Both servers run at once; each round measures V2 REST JSON at concurrency 8 and 32 on both, back to back
(order reversed every round). It prints the median of each and the median of the per-round ratios
(own server / uvicorn: req/s and server CPU per request), which cancels the machine's drift.

Run: ``python -m bench.http_servers [--rounds 10] [--duration 2]``. Needs wrk.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from bench.v2_overhead import free_port, stop, v2_bodies, wait_port, wrk_run
from demo.mlp import build

SERVERS = ("uvicorn", "modelgate")


def measure(port: int, pid: int, body: bytes, concurrency: int, duration: int, work: Path) -> tuple[float, float]:
    """req/s and server CPU µs per request of one wrk run."""
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    figures = wrk_run(f"http://127.0.0.1:{port}/v2/models/m/infer", body, {"content-type": "application/json"},
                      concurrency, duration, work)  # fmt: skip
    used = sum(process.cpu_times()[:2]) - before
    return figures.rps, 1e6 * used / max(1.0, figures.rps * duration)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=2, help="seconds per measurement")
    args = parser.parse_args()
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    body = v2_bodies(x)[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "model.onnx"
        build(model)
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            for server in SERVERS:
                port = free_port()
                procs[server] = (subprocess.Popen([sys.executable, "-m", "bench.floors", "rest", "--model", str(model),
                                                   "--port", str(port), "--server", server]), port)  # fmt: skip
            for _, port in procs.values():
                wait_port(port)
            time.sleep(1)
            runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for round_ in range(args.rounds):
                for c in (8, 32):
                    for server in SERVERS if round_ % 2 == 0 else SERVERS[::-1]:
                        proc, port = procs[server]
                        runs.setdefault((server, c), []).append(measure(port, proc.pid, body, c, args.duration, work))
        finally:
            for proc, _ in procs.values():
                stop(proc)
    print(f"the floor's ASGI app on each HTTP server: {args.rounds} rounds of {args.duration} s, V2 REST JSON")
    for c in (8, 32):
        for server in SERVERS:
            rps = statistics.median(r for r, _ in runs[(server, c)])
            cpu = statistics.median(u for _, u in runs[(server, c)])
            print(f"  {server:<9} c={c:<3} {rps:8.0f} req/s  {cpu:6.1f} µs CPU/request (medians)")
        pairs = list(zip(runs[("modelgate", c)], runs[("uvicorn", c)], strict=True))
        rps_ratio = statistics.median(a[0] / b[0] for a, b in pairs)
        cpu_ratio = statistics.median(a[1] / b[1] for a, b in pairs)
        print(f"  modelgate / uvicorn c={c}: req/s {rps_ratio:.2f}x, CPU/request {cpu_ratio:.2f}x "
              "(median of per-round ratios)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``modelgate serve --workers 1`` vs ``--workers 2`` (and the bare-ASGI floor at 1 and 2 processes), one run.

All four servers run at once (idle ones cost nothing) and the measurements are interleaved
round by round, so a busy machine slows every target alike; each figure is the median of the
rounds. Load: ``wrk -t1`` (HTTP/1.1 keep-alive) on V2 REST JSON and binary, digits_mlp, one row.

Run: ``make bench-workers`` or ``python -m bench.workers_scaling [--duration 8] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.v2_overhead import free_port, start, stop, v2_bodies, wait_http, wait_port, wrk
from demo.mlp import CONFIG_YAML, build

CONCURRENCY = (8, 32)


def _gateway(repo: Path, workers: int) -> tuple[object, int]:
    http, grpc_port, metrics, management = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "MODELGATE_MANAGEMENT_PORT": str(management)}
    proc = start([sys.executable, "-m", "gateway.cli", "serve", "--model-repository", str(repo),
                  "--http-port", str(http), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics),
                  "--log-level", "warning", "--workers", str(workers)], env=env)  # fmt: skip
    wait_http(f"http://127.0.0.1:{http}/v2/health/ready", timeout=300)
    return proc, http


def _floor(model: str, workers: int) -> tuple[object, int]:
    port = free_port()
    proc = start([sys.executable, "-m", "bench.floors", "rest", "--model", model, "--port", str(port),
                  "--workers", str(workers)])  # fmt: skip
    wait_port(port, timeout=300)
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (figures are medians)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/workers_scaling.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    from sklearn.datasets import load_digits

    x = np.ascontiguousarray(load_digits().data[:1].astype(np.float32))
    json_body, binary_body, header_length = v2_bodies(x)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = work / "repo"
        build(repo / "digits_mlp" / "1" / "model.onnx")
        (repo / "digits_mlp" / "config.yaml").write_text(CONFIG_YAML)
        model = str(repo / "digits_mlp" / "1" / "model.onnx")
        servers: dict[str, tuple[object, int]] = {}
        try:
            for workers in (1, 2):
                servers[f"gateway w{workers}"] = _gateway(repo, workers)
                servers[f"floor w{workers}"] = _floor(model, workers)
            points = [(name, protocol, c) for c in CONCURRENCY for protocol in ("rest-json", "rest-binary")
                      for name in servers]  # fmt: skip
            samples: dict[tuple[str, str, int], list[tuple[float, float, float, int]]] = {p: [] for p in points}
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.duration} s per point, "
                  f"{args.rounds} interleaved rounds", flush=True)  # fmt: skip
            for round_number in range(args.rounds):
                for name, protocol, c in points:
                    port = servers[name][1]
                    body, hl = (json_body, None) if protocol == "rest-json" else (binary_body, header_length)
                    url = f"http://127.0.0.1:{port}/v2/models/digits_mlp/infer"
                    rps, p50, p99, errors, _ = wrk(url, body, hl, c, args.duration, work)
                    samples[(name, protocol, c)].append((rps, p50, p99, errors))
                    print(f"  round {round_number + 1} {name:<10} {protocol:<12} c={c:<3} {rps:>7.0f} req/s  "
                          f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  errors {errors}", flush=True)  # fmt: skip
        finally:
            for proc, _ in servers.values():
                stop(proc)  # type: ignore[arg-type]
    rows = _report(samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count(), "duration": args.duration,
                                    "rounds": args.rounds}, indent=2))  # fmt: skip
    print(f"\nwrote {args.out}")
    return 0


def _report(samples: dict[tuple[str, str, int], list[tuple[float, float, float, int]]]) -> list[dict[str, object]]:
    median = {key: [statistics.median(v[i] for v in values) for i in range(3)] for key, values in samples.items()}
    rows: list[dict[str, object]] = []
    print("\nmedians; scaling = workers 2 / workers 1 of the same target:")
    for (name, protocol, c), (rps, p50, p99) in sorted(median.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        row: dict[str, object] = {"target": name, "protocol": protocol, "concurrency": c, "rps": round(rps),
                                  "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}  # fmt: skip
        scaling = ""
        if name.endswith("w2"):
            one = median[(name[:-1] + "1", protocol, c)][0]
            row["scaling"] = round(rps / one, 2)
            scaling = f"  scaling {rps / one:.2f}x"
        rows.append(row)
        print(f"  {name:<10} {protocol:<12} c={c:<3} {rps:>7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{scaling}")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

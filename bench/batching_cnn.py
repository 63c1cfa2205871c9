"""Dynamic batching on vs off on the demo CNN, same run: throughput and p99 at concurrency 64.

The model is the demo Keras CNN's ONNX version (``<repository>/digits_keras/1/model.onnx``, built
by ``make models``), served by ONNX Runtime as ``digits_cnn`` in one gateway per configuration
(all started at once, measured point by point, order reversed each round). Load: ``wrk -t1``,
V2 REST binary, one image per request. Each configuration is a config.yaml fragment below.

Run: ``python -m bench.batching_cnn [--duration 10] [--rounds 2] [--concurrency 64]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil

from bench.v2_overhead import free_port, start, stop, v2_bodies, wait_http, wrk

BASE = """\
backend: onnxruntime
max_batch_size: 64
inputs:
  - {name: image, datatype: FP32, shape: [-1, 8, 8, 1]}
outputs:
  - {name: probs, datatype: FP32, shape: [-1, 10]}
parameters:
  intra_op_threads: 1
  concurrency: 2
"""
#: config.yaml of each configuration (batching off first: it is what the others are compared with).
CONFIGS = {
    "off": BASE,
    "on": BASE + "dynamic_batching: {max_delay_ms: 0, concurrency: 2}\n",
    "on-c1": BASE + "dynamic_batching: {max_delay_ms: 0, concurrency: 1}\n",
    "on-wait": BASE + "dynamic_batching: {max_delay_ms: 2, concurrency: 2, preferred_batch_sizes: [16, 32]}\n",
    "on-inline": BASE.replace("concurrency: 2\n", "inline: true\n")
    + "dynamic_batching: {max_delay_ms: 0, concurrency: 1}\n",
    "off-inline": BASE.replace("concurrency: 2\n", "inline: true\n"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--targets", default="off,on,on-c1,on-wait", help=f"comma-separated, of {', '.join(CONFIGS)}")
    args = parser.parse_args()
    onnx = args.model_repository / "digits_keras" / "1" / "model.onnx"
    if not onnx.is_file():
        print(f"bench: {onnx} is missing (run `make models`)", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in CONFIGS]
    if unknown:
        print(f"bench: unknown target(s) {unknown}; choose from {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    from sklearn.datasets import load_digits

    image = np.ascontiguousarray(load_digits().data[:1].reshape(1, 8, 8, 1).astype(np.float32) / 16)
    _, body, header_length = v2_bodies(image, name="image")
    figures: dict[str, list[tuple[float, float, float, float]]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers = {}
        try:
            for target in targets:
                repo = work / target / "digits_cnn"
                (repo / "1").mkdir(parents=True)
                shutil.copy(onnx, repo / "1" / "model.onnx")
                (repo / "config.yaml").write_text(CONFIGS[target])
                port = free_port()
                servers[target] = (start([sys.executable, "-m", "gateway.cli", "serve", "--model-repository",
                                          str(repo.parent), "--http-port", str(port), "--grpc-port", "0",
                                          "--metrics-port", "0", "--log-level", "warning"],
                                         env={**os.environ, "MODELGATE_MANAGEMENT_PORT": "0"}), port)  # fmt: skip
            for _, port in servers.values():
                wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
            print(f"digits_cnn at c={args.concurrency}, {args.duration} s per point, {args.rounds} rounds, "
                  f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
            for round_ in range(args.rounds):
                for target in targets if round_ % 2 == 0 else targets[::-1]:
                    proc, port = servers[target]
                    process = psutil.Process(proc.pid)
                    t0 = sum(process.cpu_times()[:2])
                    url = f"http://127.0.0.1:{port}/v2/models/digits_cnn/infer"
                    rps, p50, p99, errors, _ = wrk(url, body, header_length, args.concurrency, args.duration, work)
                    cpu = 100 * (sum(process.cpu_times()[:2]) - t0) / args.duration
                    figures[target].append((rps, p50, p99, cpu))
                    print(f"  {target:<10} {rps:7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  errors {errors}"
                          f"  server CPU {cpu:4.0f}%  {cpu * 1e4 / rps:4.0f} µs CPU/req", flush=True)  # fmt: skip
        finally:
            for proc, _ in servers.values():
                stop(proc)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    base = figures[targets[0]]
    print(f"\nAgainst {targets[0]!r}, round by round (throughput ratio, p99 ratio, CPU per request ratio):")
    for target in targets[1:]:
        pairs = [f"{r[0] / b[0]:.2f}x / p99 {r[2] / b[2]:.2f}x / CPU {(r[3] / r[0]) / (b[3] / b[0]):.2f}x"
                 for r, b in zip(figures[target], base, strict=True)]  # fmt: skip
        print(f"  {target:<10} " + ";  ".join(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

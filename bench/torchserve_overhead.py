"""Gateway -> TorchServe vs TorchServe direct: same model, same TorchServe, same load generator, one run.

A ``modelgate`` gateway (child process) serves a TorchScript digits MLP through its managed
TorchServe. wrk then drives, at the same concurrency and in alternating rounds:

* ``direct``: TorchServe's ``/predictions/<model>_v1`` with the gateway's tensor frame (what the
  gateway itself sends, so TorchServe's work is identical);
* ``gw-binary``: the gateway's V2 REST ``/infer`` with the binary tensor extension;
* ``gw-json``: the same with a V2 JSON body.

It prints requests/s and p50/p99 per path (median over rounds) and the gateway's cost
against the targets: at most 15 % lower throughput and at most 2 ms added p50.

Run: ``python -m bench.torchserve_overhead [--duration 10] [--concurrency 8] [--rounds 2]``.
Needs wrk (Debian package ``wrk``), Java 17, torchserve and torch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from gateway.backends.torchserve.frames import decode, encode

MODEL = "digits_ts"
CONFIG = """\
backend: torchserve
max_batch_size: 64
timeout_seconds: 10
inputs: [{name: pixels, datatype: FP32, shape: [-1, 64]}]
outputs: [{name: probs, datatype: FP32, shape: [-1, 10]}]
"""
THROUGHPUT_TARGET = 0.85
ADDED_P50_TARGET_MS = 2.0


@dataclass
class Point:
    path: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    loadgen_cpu_pct: float


# -- the gateway child process -------------------------------------------------------------------


def serve(repo: Path, run_dir: Path, http_port: int, grpc_port: int, metrics_port: int) -> int:
    """Run the gateway with ONNX Runtime and TorchServe backends until SIGTERM (child process)."""
    from gateway.backends.onnxruntime import OnnxRuntimeBackend
    from gateway.backends.torchserve.backend import TorchServeBackend, TorchServeFactory
    from gateway.backends.torchserve.managed import ManagedTorchServe
    from gateway.core.backend import BackendRegistry
    from gateway.server import Gateway, run_until_signal
    from gateway.settings import Settings

    registry = BackendRegistry()
    registry.register(OnnxRuntimeBackend)
    registry.register(TorchServeBackend, TorchServeFactory(ManagedTorchServe(run_dir=run_dir)))
    settings = Settings(
        model_repository=repo, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
        management_port=0, log_level="warning",
    )  # fmt: skip
    run_until_signal(Gateway(settings, registry))
    return 0


# -- set-up ----------------------------------------------------------------------------------------


def build_repo(repo: Path) -> None:
    """The digits MLP (trained on load_digits with numpy) traced to TorchScript."""
    import torch

    from demo.digits import load_digits_split
    from demo.mlp import train

    x, y, _, _ = load_digits_split(0)
    mlp = train(x, y, seed=0, epochs=5)
    hidden, out = torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)
    with torch.no_grad():
        hidden.weight.copy_(torch.from_numpy(mlp.w1.T / 16.0))  # the /16 input scaling folded into the weights
        hidden.bias.copy_(torch.from_numpy(mlp.b1))
        out.weight.copy_(torch.from_numpy(mlp.w2.T.copy()))
        out.bias.copy_(torch.from_numpy(mlp.b2))
    net = torch.nn.Sequential(hidden, torch.nn.ReLU(), out, torch.nn.Softmax(1))
    version = repo / MODEL / "1"
    version.mkdir(parents=True)
    (repo / MODEL / "config.yaml").write_text(CONFIG)
    traced = torch.jit.trace(net.eval(), torch.zeros(2, 64))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(version / "model.pt"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, child: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"gateway exited with {child.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready within {timeout:g} s")


def torchserve_address(run_dir: Path) -> str:
    """The inference address of the version's own TorchServe (one per version, in ``<run_dir>/<name>/``)."""
    props = (run_dir / f"{MODEL}_v1" / "config.properties").read_text()
    match = re.search(r"^inference_address=(\S+)$", props, re.M)
    if match is None:
        raise RuntimeError(f"no inference_address in {run_dir / f'{MODEL}_v1' / 'config.properties'}")
    return match.group(1)


def v2_bodies(x: np.ndarray) -> tuple[bytes, bytes, int]:
    """V2 JSON body, V2 binary body and its header length, for the same input."""
    tensor = {"name": "pixels", "datatype": "FP32", "shape": list(x.shape)}
    json_body = json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode()
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
    return json_body, header + x.tobytes(), len(header)


def direct_headers(run_dir: Path) -> dict[str, str]:
    """TorchServe's token authorization: the inference key from the version's key_file.json."""
    from gateway.backends.torchserve.tokens import read_key_file

    key = read_key_file(run_dir / f"{MODEL}_v1" / "key_file.json").inference
    return {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {key}"}


def check_same_answer(direct_url: str, gateway_url: str, x: np.ndarray, headers: dict[str, str]) -> float:
    """Both paths must answer alike before their speed is compared; returns the max difference."""
    direct = decode(httpx.post(direct_url, content=encode([x]), headers=headers).content)[0]
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    response = httpx.post(gateway_url, json=body)
    response.raise_for_status()
    via_gateway = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(direct.shape)
    return float(np.abs(via_gateway - direct).max())


# -- load --------------------------------------------------------------------------------------------


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, duration: int, work: Path
) -> tuple[float, float, float, int, float]:
    """One wrk run (1 thread, keep-alive); returns req/s, p50 ms, p99 ms, non-200 count, wrk CPU %."""
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script = work / "post.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\nwrk.method = "POST"\n'
        f"{header_lines}"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rps = float(_search(r"Requests/sec:\s+([\d.]+)", out))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    p50, p99 = (_ms(*_split_unit(lat[k])) for k in ("50", "99"))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return rps, p50, p99, errors, 100 * cpu / wall


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
    return match.group(1)


def _split_unit(value: str) -> tuple[str, str]:
    match = re.match(r"([\d.]+)(\w+)", value)
    if match is None:
        raise RuntimeError(f"cannot parse latency {value!r}")
    return match.group(1), match.group(2)


# -- report ------------------------------------------------------------------------------------------


def summarize(points: list[Point]) -> dict[str, dict[str, float]]:
    paths = sorted({p.path for p in points}, key=[p.path for p in points].index)
    summary = {}
    for path in paths:
        mine = [p for p in points if p.path == path]
        summary[path] = {
            "rps": statistics.median(p.rps for p in mine),
            "p50_ms": statistics.median(p.p50_ms for p in mine),
            "p99_ms": statistics.median(p.p99_ms for p in mine),
            "errors": float(sum(p.errors for p in mine)),
        }
    return summary


def report(summary: dict[str, dict[str, float]]) -> dict[str, dict[str, float | bool]]:
    direct = summary["direct"]
    verdicts: dict[str, dict[str, float | bool]] = {}
    print("\nGateway vs TorchServe direct (medians over rounds, this run):")
    for path in ("gw-binary", "gw-json"):
        s = summary[path]
        ratio = s["rps"] / direct["rps"]
        added = s["p50_ms"] - direct["p50_ms"]
        ok = ratio >= THROUGHPUT_TARGET and added <= ADDED_P50_TARGET_MS
        verdicts[path] = {"throughput_ratio": round(ratio, 3), "added_p50_ms": round(added, 2), "meets_targets": ok}
        print(f"  {path:<10} throughput {ratio:6.1%} of direct (target >= {THROUGHPUT_TARGET:.0%}); "
              f"p50 +{added:.2f} ms (target <= {ADDED_P50_TARGET_MS:g} ms); p99 {s['p99_ms']:.2f} vs "
              f"{direct['p99_ms']:.2f} ms -> {'meets' if ok else 'MISSES'} targets")  # fmt: skip
    return verdicts


def measure(
    args: argparse.Namespace, work: Path, direct_url: str, gateway_url: str, x: np.ndarray, headers: dict[str, str]
) -> list[Point]:
    json_body, binary_body, header_length = v2_bodies(x)
    plans = [
        ("direct", direct_url, encode([x]), headers),
        ("gw-binary", gateway_url, binary_body,
         {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)}),
        ("gw-json", gateway_url, json_body, {"Content-Type": "application/json"}),
    ]  # fmt: skip
    points = []
    for rnd in range(1, args.rounds + 1):
        for path, url, body, headers in plans:
            rps, p50, p99, errors, cpu = wrk(url, body, headers, args.concurrency, args.duration, work)
            points.append(Point(path, rnd, rps, p50, p99, errors, cpu))
            print(f"  round {rnd} {path:<10} c={args.concurrency} {rps:8.0f} req/s  p50 {p50:6.2f} ms  "
                  f"p99 {p99:6.2f} ms  errors {errors}  wrk CPU {cpu:3.0f}%", flush=True)  # fmt: skip
    return points


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    from sklearn.datasets import load_digits

    x = np.ascontiguousarray(load_digits().data[: args.batch].astype(np.float32))
    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp:
        work = Path(tmp)
        build_repo(work / "repo")
        run_dir = work / "torchserve"
        http = free_port()
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.torchserve_overhead", "serve", "--repo", str(work / "repo"),
             "--run-dir", str(run_dir), "--http-port", str(http), "--grpc-port", str(free_port()),
             "--metrics-port", str(free_port())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_ok(f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", child)
            direct_url = f"{torchserve_address(run_dir)}/predictions/{MODEL}_v1"
            gateway_url = f"http://127.0.0.1:{http}/v2/models/{MODEL}/infer"
            headers = direct_headers(run_dir)
            diff = check_same_answer(direct_url, gateway_url, x, headers)
            print(f"gateway pid {child.pid}; same answer both ways (max diff {diff:.1e}); batch {args.batch}, "
                  f"{args.duration} s per point, {args.rounds} rounds, {os.cpu_count()} CPUs, "
                  f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
            points = measure(args, work, direct_url, gateway_url, x, headers)
        finally:
            child.terminate()
            child.wait(90)
    summary = summarize(points)
    verdicts = report(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"points": [asdict(p) for p in points], "summary": summary, "verdicts": verdicts,
                                    "concurrency": args.concurrency, "batch": args.batch}, indent=2))  # fmt: skip
    print(f"\nwrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("serve", help="(internal) run the gateway child process")
    child.add_argument("--repo", type=Path, required=True)
    child.add_argument("--run-dir", type=Path, required=True)
    child.add_argument("--http-port", type=int, required=True)
    child.add_argument("--grpc-port", type=int, required=True)
    child.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over the three paths")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--out", type=Path, default=Path("bench-results/torchserve_overhead.json"))
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.repo, args.run_dir, args.http_port, args.grpc_port, args.metrics_port)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

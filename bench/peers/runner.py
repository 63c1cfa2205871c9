"""``make bench-peers``: the gateway, its peers and the bare floors, same ONNX model and inputs, one run.

Every server is started (each in its own process group, on 127.0.0.1), checked to give the same
answer as ONNX Runtime in this process, warmed up, then measured point by point with the targets
interleaved (the order rotates at every point). It prints requests/s and p50/p95/p99 with ratios
against the gateway, writes the figures to ``bench-results/peers.json`` and the dated table into
docs/performance.md. A peer that cannot be installed or run is listed as "not run: <reason>".

Run: ``make bench-peers`` or ``python -m bench.peers [--duration 5] [--only gateway,mlserver]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from bench.peers import load, machine, netns, report
from bench.peers.envs import DEFAULT_CACHE, PINS, ensure, env_for
from bench.peers.procs import Processes, signals_unwind
from bench.peers.targets import bentoml, floors, gateway, kserve, mlserver, rayserve, torchserve
from bench.peers.targets.base import MODEL_NAME, Context, NotRun, Target
from bench.v2_overhead import grpc_frame, v2_bodies

PREPARERS: dict[str, Callable[[Context], Target]] = {
    "gateway": gateway.prepare,
    "gateway-w2": gateway.prepare_workers,
    "floor-asgi": floors.prepare_rest,
    "floor-grpc": floors.prepare_grpc,
    "mlserver": mlserver.prepare,
    "kserve": kserve.prepare,
    "bentoml": bentoml.prepare,
    "rayserve": rayserve.prepare,
    "torchserve": torchserve.prepare,
}
READY_TIMEOUT = 300.0
BROKEN_AFTER = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--concurrency", default="1,8,32,64", help="closed-loop levels (default 1,8,32,64)")
    parser.add_argument("--rate", type=int, default=200, help="the fixed request rate, req/s (0: none)")
    parser.add_argument("--only", default=",".join(PREPARERS), help="targets to run (default: all)")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="peers' virtualenvs and run files")
    parser.add_argument("--no-install", action="store_true", help="do not build missing peer virtualenvs")
    parser.add_argument("--out", type=Path, default=Path("bench-results/peers.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/performance.md"), help="where the table goes")
    parser.add_argument("--no-doc", action="store_true", help="do not write the table into --doc")
    parser.add_argument("--no-netns", action="store_true",
                        help="stay in this network namespace (then Ray is not run)")  # fmt: skip
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(PREPARERS)
    if unknown:
        parser.exit(2, f"bench-peers: --only: unknown target(s) {', '.join(sorted(unknown))}; "
                       f"known: {', '.join(PREPARERS)}\n")  # fmt: skip
    try:
        args.levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.exit(2, "bench-peers: --concurrency must be a comma-separated list of integers\n")
    return args


def build_envs(names: list[str], cache: Path, install: bool) -> dict[str, str]:
    """Build (or reuse) each named peer's venv, one at a time; returns {peer: reason} for those not ready."""
    failed = {}
    for name in (n for n in names if n in PINS):
        env = env_for(name, cache)
        if env.ready():
            continue
        if not install:
            failed[name] = "its virtualenv is not built (--no-install)"
            continue
        print(f"building {name}'s virtualenv ({', '.join(PINS[name])}) in {env.root} ...", flush=True)
        reason = ensure(env)
        if reason:
            failed[name] = reason
    return failed


def wait_ready(target: Target, proc: subprocess.Popen[bytes], body: bytes, log: Path) -> None:
    """Bounded wait until the server answers its readiness URL and then the V2 JSON body with a 200.

    A server that keeps answering the body with a 5xx for :data:`BROKEN_AFTER` seconds is broken, not slow.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    urls = [target.ready_url] + ([target.http_url] if target.http_url else [])
    for url in urls:
        failing_since: float | None = None
        while (status := _status(url, body)) != 200:
            now = time.monotonic()
            failing_since = (failing_since or now) if status >= 500 else None
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise NotRun(f"exited with {proc.returncode} during start-up ({' '.join(tail)[:160]})")
            if failing_since is not None and now - failing_since > BROKEN_AFTER:
                raise NotRun(f"answers the V2 JSON body with HTTP {status} (see {log})")
            if now > deadline:
                raise NotRun(f"not ready within {READY_TIMEOUT:g} s (see {log})")
            time.sleep(0.25)  # polling interval, bounded by the deadline


def _status(url: str, body: bytes) -> int:
    """The HTTP status of the readiness probe (200 for an open ``tcp://`` port; 0 when nothing answers)."""
    try:
        if url.startswith("tcp://"):
            host, port = url[6:].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=1):
                return 200
        if url.endswith("/infer") or "/predictions/" in url:
            return httpx.post(url, content=body, headers=load.JSON_HEADERS, timeout=5).status_code
        return httpx.get(url, timeout=2).status_code
    except (OSError, httpx.HTTPError):
        return 0


def check_answer(target: Target, body: bytes, frame: bytes, expected: np.ndarray) -> None:
    """Every target must give ONNX Runtime's answer before its speed counts."""
    if target.http_url:
        doc = httpx.post(target.http_url, content=body, headers=load.JSON_HEADERS, timeout=10).json()
        got = np.asarray(doc["outputs"][0]["data"], np.float32).reshape(expected.shape)
        if not np.allclose(got, expected, atol=1e-4):
            raise NotRun(f"wrong V2 JSON answer (max difference {np.abs(got - expected).max():.1e})")
    if target.grpc_port:
        got = grpc_answer(target.grpc_port, frame).reshape(expected.shape)
        if not np.allclose(got, expected, atol=1e-4):
            raise NotRun(f"wrong V2 gRPC answer (max difference {np.abs(got - expected).max():.1e})")


def grpc_answer(port: int, frame: bytes) -> np.ndarray:
    import grpc

    from gateway.protos import open_inference_grpc_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"{load.GRPC_PATH}", request_serializer=None,
                                   response_deserializer=pb.ModelInferResponse.FromString)  # fmt: skip
        response = call(frame[5:], timeout=10)
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], np.float32)
    return np.asarray(response.outputs[0].contents.fp32_contents, np.float32)


def start_all(ctx: Context, names: list[str], procs: Processes, body: bytes, frame: bytes, expected: np.ndarray,
              not_run: dict[str, str], scratch: list[Path]) -> list[Target]:  # fmt: skip
    """Start the servers one after another (a start under load from the others can time out, Ray's does)."""
    ready = []
    for name in (n for n in names if n not in not_run):
        try:
            target = PREPARERS[name](ctx)
            if target.scratch is not None:
                scratch.append(target.scratch)
            log = ctx.work / f"{name}.log"
            proc = procs.start(target.command, log, env=target.env or None, cwd=target.cwd)
            wait_ready(target, proc, body, log)
            check_answer(target, body, frame, expected)
        except NotRun as exc:
            not_run[name] = str(exc)
            print(f"  {name:<11} not run: {exc}", flush=True)
            continue
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            not_run[name] = f"unexpected answer ({type(exc).__name__}: {str(exc)[:120]})"
            continue
        print(f"  {target.name:<11} ready (pid {proc.pid}): {target.setup}", flush=True)
        ready.append(target)
    return ready


def plan(targets: list[Target]) -> list[tuple[Target, str]]:
    return [(t, "V2 JSON") for t in targets if t.http_url] + [(t, "V2 gRPC") for t in targets if t.grpc_port]


def measure_one(target: Target, protocol: str, point: load.Point, body: bytes, frame: bytes, duration: int,
                work: Path) -> report.Row:  # fmt: skip
    try:
        if protocol == "V2 JSON":
            assert target.http_url is not None
            f = load.rest(target.http_url, body, point, duration, work)
        else:
            assert target.grpc_port is not None
            f = load.grpc(target.grpc_port, frame, point, duration, work)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        return report.Row(target.name, protocol, point.label, note=f"failed: {str(exc).splitlines()[0][:120]}")
    return report.Row(target.name, protocol, point.label, f.rps, f.p50_ms, f.p95_ms, f.p99_ms, f.errors,
                      f.loadgen_cpu_pct)  # fmt: skip


def run_points(targets: list[Target], points: list[load.Point], body: bytes, frame: bytes, args: argparse.Namespace,
               work: Path) -> list[report.Row]:  # fmt: skip
    runs = plan(targets)
    for target, protocol in runs:  # warm-up (JIT, caches, connection pools), not recorded
        measure_one(target, protocol, load.Point(concurrency=8), body, frame, args.warmup, work)
    rows = []
    for i, point in enumerate(points):
        print(f"\n{point.label} (load average {machine.load_average()}):", flush=True)
        for target, protocol in runs[i % len(runs) :] + runs[: i % len(runs)]:
            row = measure_one(target, protocol, point, body, frame, args.duration, work)
            rows.append(row)
            print("  " + "  ".join(report.cells(row, rows)[:8]), flush=True)
    return rows


def ordered(rows: list[report.Row], names: list[str], points: list[load.Point]) -> list[report.Row]:
    labels = [p.label for p in points]
    protocols = ["V2 JSON", "V2 gRPC"]
    return sorted(rows, key=lambda r: (protocols.index(r.protocol), labels.index(r.point) if r.point in labels
                                       else -1, names.index(r.target)))  # fmt: skip


def write_outputs(args: argparse.Namespace, rows: list[report.Row], targets: list[Target], not_run: dict[str, str],
                  started: datetime, loads: tuple[str, str]) -> None:  # fmt: skip
    peers = {t.name for t in targets if t.peer}
    verdict = report.verdicts(rows, peers, "V2 JSON") + report.verdicts(rows, peers, "V2 gRPC")
    print("\n" + report.console_table(rows) + "\n\n" + "\n".join(verdict))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"started": started.isoformat(), "machine": machine.describe(),
                                    "load_average": loads, "rows": [asdict(r) for r in rows],
                                    "not_run": not_run, "verdict": verdict}, indent=2))  # fmt: skip
    print(f"\nwrote {args.out}")
    if args.no_doc:
        return
    setups = [f"- **{t.name}**: {t.setup}" for t in targets] + [f"- **{n}**: not run: {r}" for n, r in not_run.items()]
    busy = max(float(loads[0].split(" / ")[0]), float(loads[1].split(" / ")[0])) > (os.cpu_count() or 1)
    shared = ("more runnable jobs than cores: the machine was shared with other jobs, so read the ratios within "
              "this run, not the absolute figures" if busy else "a quiet machine")  # fmt: skip
    machine_lines = [f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine.describe()}. Load average (1/5/15 min) "
                     f"{loads[0]} at the start and {loads[1]} at the end: {shared}."]  # fmt: skip
    method = [f"`python -m bench.peers --duration {args.duration}`: the same ONNX model (`digits_mlp`, batch 1) "
              "and the same V2 JSON body for every server (TorchServe: the same MLP as TorchScript), each checked to "
              "answer like ONNX Runtime first; all servers up at once (started one by one), targets interleaved "
              "point by point, the order rotating at each point. "
              "Closed loop: `wrk -t1` (V2 JSON), `h2load -t1` (V2 gRPC, up to 8 connections). Fixed rate, over "
              f"{load.RATE_CONNECTIONS} connections: `wrk` pacing its requests (V2 JSON), `h2load --rps` (V2 gRPC). "
              "Ratios are against the gateway at the same point "
              "(req/s: higher is better for the target; p99: lower)."]  # fmt: skip
    section = report.markdown_section(rows, machine_lines, setups, verdict, method)
    args.doc.write_text(report.replace_section(args.doc.read_text(), section))
    print(f"wrote the table into {args.doc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            print(f"bench-peers: {tool} is not installed (apt-get install wrk nghttp2-client)", file=sys.stderr)
            return 2
    onnx_model = (args.model_repository / MODEL_NAME / "1" / "model.onnx").resolve()
    if not onnx_model.is_file():
        print(f"bench-peers: {onnx_model} is missing (run `make models` first)", file=sys.stderr)
        return 2
    names = args.only.split(",")
    signals_unwind()
    not_run = build_envs(names, args.cache, not args.no_install)
    if not args.no_netns and not netns.inside():
        reason = netns.available()
        if reason is None:
            netns.reexec([*(argv if argv is not None else sys.argv[1:]), "--no-install"])
        print(f"bench-peers: no private network namespace ({reason}); running here", file=sys.stderr)
    if not netns.inside() and "rayserve" in names:
        not_run["rayserve"] = (
            "Ray's GCS, raylet and workers bind every interface: it runs only in the private namespace"
        )
    try:
        return run(args, names, onnx_model, not_run)
    except KeyboardInterrupt:
        print("bench-peers: interrupted; every server it started has been stopped", file=sys.stderr)
        return 130


def run(args: argparse.Namespace, names: list[str], onnx_model: Path, not_run: dict[str, str]) -> int:
    import onnxruntime as ort
    from sklearn.datasets import load_digits

    x = np.ascontiguousarray(load_digits().data[:1].astype(np.float32))
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: x})
    body, frame = v2_bodies(x)[0], grpc_frame(x)
    work = (args.cache / "run").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    torchscript = work / "torchscript" / "model.pt"
    if "torchserve" in names:
        subprocess.run([sys.executable, "-m", "bench.peers.torchscript", str(onnx_model), str(torchscript)],
                       check=False, stdout=subprocess.DEVNULL)  # fmt: skip
    envs = {name: env_for(name, args.cache) for name in PINS}
    ctx = Context(work, onnx_model, torchscript, sys.executable, envs)
    started, load_start = datetime.now(UTC), machine.load_average()
    targets: list[Target] = []
    scratch: list[Path] = []
    try:
        with Processes() as procs:
            print(f"starting {', '.join(n for n in names if n not in not_run)} ...", flush=True)
            targets = start_all(ctx, names, procs, body, frame, expected, not_run, scratch)
            points = load.points(args.levels, args.rate)
            rows = run_points(targets, points, body, frame, args, work)
    finally:
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)
    rows += [report.Row(n, "V2 JSON", "all", note=f"not run: {r}") for n, r in not_run.items()]
    write_outputs(args, ordered(rows, names, points), targets, not_run, started, (load_start, machine.load_average()))
    return 0

"""Gateway vs the thinnest possible servers, same ONNX model, same load generator, one run.

For V2 REST JSON, V2 REST binary and V2 gRPC at concurrency 8 and 32 it measures
requests/s, p50/p99 and server CPU per request of ``modelgate serve`` in each
configuration of ``--targets`` (``gateway``: the demo config, ONNX Runtime on its thread
pool with dynamic batching; ``inline``: the same with ``parameters: {inline: true}``;
``nobatch``: without dynamic batching; ``inline-nobatch``: both; ``nofreeze``: with
``gc_freeze`` and ``gc_gen0_threshold`` off; ``uvicorn``: the REST port on uvicorn instead of the gateway's own
HTTP server) and of the matching floor (:mod:`bench.floors`).
All servers run at once and are measured point by point (order reversed each round); then it
prints the throughput and p99 ratios.
Load comes from ``wrk`` (HTTP/1.1 keep-alive) and ``h2load`` (gRPC over HTTP/2,
per-request log for percentiles); the load generator's CPU time is reported so a
saturated generator is visible.

Run: ``make bench`` or ``python -m bench.v2_overhead [--duration 10] [--batch 1] [--targets gateway,inline]``.
``--baseline DIR`` also runs the demo config from another source tree (``git worktree add DIR <commit>``) and
prints every configuration against it: a before/after measured in one run.
Needs wrk and h2load (Debian packages wrk and nghttp2-client).
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
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import psutil

from demo.mlp import CONFIG_YAML, build
from gateway.protos import open_inference_grpc_pb2 as pb

CONCURRENCY = (8, 32)
PROTOCOLS = ["rest-json", "rest-binary", "grpc"]
#: Gateway configurations: the demo config.yaml edited by each function.
TARGETS = {
    "gateway": lambda config: config,
    "inline": lambda config: config.replace("parameters:\n", "parameters:\n  inline: true\n"),
    "nobatch": lambda config: config.replace("dynamic_batching: {max_delay_ms: 0, concurrency: 2}\n", ""),
}
TARGETS["inline-nobatch"] = lambda config: TARGETS["inline"](TARGETS["nobatch"](config))
#: Gateway settings (environment) of each configuration; ``nofreeze``: CPython's garbage collector as it is.
TARGET_ENV = {"nofreeze": {"MODELGATE_GC_FREEZE": "false", "MODELGATE_GC_GEN0_THRESHOLD": "0"},
              "uvicorn": {"MODELGATE_HTTP_SERVER": "uvicorn"}}  # fmt: skip
TARGETS["nofreeze"] = TARGETS["gateway"]
TARGETS["uvicorn"] = TARGETS["gateway"]


@dataclass
class Result:
    target: str
    protocol: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    loadgen_cpu_pct: float
    server_cpu_pct: float

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU per answered request: what a shared machine's load changes least."""
        return self.server_cpu_pct * 1e4 / self.rps if self.rps else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def v2_bodies(x: np.ndarray, name: str = "pixels") -> tuple[bytes, bytes, int]:
    """JSON body, binary body and its header length, for the same input."""
    json_body = json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                                        "data": x.ravel().tolist()}]}).encode()  # fmt: skip
    header = json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
    return json_body, header + x.tobytes(), len(header)


def grpc_frame(x: np.ndarray) -> bytes:
    request = pb.ModelInferRequest(model_name="digits_mlp", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="pixels", datatype="FP32", shape=list(x.shape))
    payload = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(port)


def run_loadgen(args: list[str]) -> tuple[str, float, float]:
    """Run the load generator; returns (stdout, wall seconds, its CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, time.monotonic() - started, cpu


@dataclass(frozen=True)
class LoadFigures:
    """One load generator run: achieved requests/s, latency percentiles (ms) and failed requests."""

    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    loadgen_cpu_pct: float = 0.0


#: Appended to every wrk script: wrk's own percentiles (microseconds) on one line the parser reads.
WRK_DONE = (
    "function done(summary, latency, requests)\n"
    '  io.write(string.format("PERCENTILES %d %d %d\\n", latency:percentile(50), latency:percentile(95),'
    " latency:percentile(99)))\nend\n"
)


#: Prepended to a wrk script for a fixed request rate (``%g``: ms between requests over all connections).
#: wrk calls ``delay()`` before each request; one schedule of slots (monotonic clock through LuaJIT's
#: FFI) spaces the requests of every connection, and a server slower than the rate is not caught up
#: on in a burst (it shows a lower achieved rate), as with ``h2load --rps``.
WRK_PACE = """local ffi = require("ffi")
ffi.cdef[[typedef struct { long tv_sec; long tv_nsec; } mg_timespec; int clock_gettime(int, mg_timespec *);]]
local mg_now = ffi.new("mg_timespec")
local mg_interval, mg_slot = %g, nil
function delay()
  ffi.C.clock_gettime(1, mg_now)
  local now = tonumber(mg_now.tv_sec) * 1000 + tonumber(mg_now.tv_nsec) / 1e6
  if mg_slot == nil or mg_slot < now - mg_interval then mg_slot = now else mg_slot = mg_slot + mg_interval end
  return math.max(0, mg_slot - now)
end
"""


def wrk_script(work: Path, body: bytes, headers: dict[str, str], rate: float = 0) -> Path:
    """A wrk Lua script POSTing ``body`` with ``headers`` (at ``rate`` requests/s in all when > 0) and
    printing p50/p95/p99 when done."""
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    pace = WRK_PACE % (1000 / rate) if rate > 0 else ""
    script = work / "post.lua"
    script.write_text(
        f'{pace}local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\nwrk.method = "POST"\n'
        f"{header_lines}{WRK_DONE}"
    )
    return script


def parse_wrk(out: str) -> LoadFigures:
    """wrk's report (with :data:`WRK_DONE`'s line): non-2xx responses and socket errors count as errors."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    pct = re.search(r"^PERCENTILES (\d+) (\d+) (\d+)$", out, re.M)
    if rps is None or pct is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    p50, p95, p99 = (int(v) / 1000 for v in pct.groups())
    return LoadFigures(float(rps.group(1)), p50, p95, p99, errors)


def wrk_run(url: str, body: bytes, headers: dict[str, str], concurrency: int, duration: int,
            work: Path, rate: float = 0) -> LoadFigures:  # fmt: skip
    """One wrk run (1 thread, HTTP/1.1 keep-alive) POSTing ``body``; ``rate`` > 0: that many requests/s
    in all, spread over the ``concurrency`` connections (:data:`WRK_PACE`)."""
    script = wrk_script(work, body, headers, rate)
    out, wall, cpu = run_loadgen(["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "5s",
                                  "-s", str(script), url])  # fmt: skip
    return replace(parse_wrk(out), loadgen_cpu_pct=100 * cpu / wall)


def wrk(url: str, body: bytes, header_length: int | None, concurrency: int, duration: int,
        work: Path) -> tuple[float, float, float, int, float]:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if header_length:
        headers["Inference-Header-Content-Length"] = str(header_length)
    f = wrk_run(url, body, headers, concurrency, duration, work)
    return f.rps, f.p50_ms, f.p99_ms, f.errors, f.loadgen_cpu_pct


def parse_h2load(out: str, log: str) -> LoadFigures:
    """h2load's summary (its own req/s) and its per-request log (percentiles; non-200 statuses are errors)."""
    rows = [line.split("\t") for line in log.splitlines() if line.strip()]
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    if rate is None or len(rows) < 2:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    if all(r[1] == "0" for r in rows):  # status 0: h2load could not read the response (not an answer)
        raise RuntimeError("h2load could not parse the responses (status 0 in its log)")
    latencies = sorted(int(r[2]) / 1000 for r in rows)
    errors = sum(1 for r in rows if r[1] != "200")
    failed = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed", out)
    # h2load's own figure: its log also holds requests outside the measured window.
    q = statistics.quantiles(latencies, n=100)
    return LoadFigures(float(rate.group(1)), q[49], q[94], q[98], max(errors, int(failed.group(1)) if failed else 0))


def h2load_run(url: str, data: bytes, headers: dict[str, str], connections: int, streams: int, duration: int,
               work: Path, extra: tuple[str, ...] = ()) -> LoadFigures:  # fmt: skip
    """One h2load run (1 thread) POSTing ``data``; ``extra`` adds flags (``--h1``, ``--rps N``)."""
    body = work / "h2load.bin"
    body.write_bytes(data)
    log = work / "h2load.log"
    log.unlink(missing_ok=True)  # h2load appends to its log file
    flags = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    out, wall, cpu = run_loadgen(["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-D{duration}", "-d",
                                  str(body), "--log-file", str(log), *flags, *extra, url])  # fmt: skip
    return replace(parse_h2load(out, log.read_text()), loadgen_cpu_pct=100 * cpu / wall)


GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}


def h2load(
    port: int, frame: bytes, concurrency: int, duration: int, work: Path
) -> tuple[float, float, float, int, float]:
    conns = min(concurrency, 8)
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    f = h2load_run(url, frame, GRPC_HEADERS, conns, concurrency // conns, duration, work)
    return f.rps, f.p50_ms, f.p99_ms, f.errors, f.loadgen_cpu_pct


@dataclass
class Server:
    """One running server under test: a gateway configuration or a floor."""

    target: str
    proc: subprocess.Popen[bytes]
    http: int | None
    grpc: int | None
    metrics: int | None = None


def measure_point(server: Server, protocol: str, c: int, x: np.ndarray, duration: int, work: Path) -> Result:
    """One load-generator run against one server; the server's CPU share is taken from /proc."""
    json_body, binary_body, header_length = v2_bodies(x)
    process = psutil.Process(server.proc.pid)
    t0 = sum(process.cpu_times()[:2])
    started = time.monotonic()
    if protocol == "grpc":
        assert server.grpc is not None
        figures = h2load(server.grpc, grpc_frame(x), c, duration, work)
    else:
        url = f"http://127.0.0.1:{server.http}/v2/models/digits_mlp/infer"
        body, hl = (json_body, None) if protocol == "rest-json" else (binary_body, header_length)
        figures = wrk(url, body, hl, c, duration, work)
    srv_cpu = 100 * (sum(process.cpu_times()[:2]) - t0) / (time.monotonic() - started)
    rps, p50, p99, errors, lg_cpu = figures
    result = Result(server.target, protocol, c, rps, p50, p99, errors, lg_cpu, srv_cpu)
    print(
        f"  {server.target:<8} {protocol:<12} c={c:<3} {rps:>8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"  errors {errors}  loadgen CPU {lg_cpu:4.0f}%  server CPU {srv_cpu:4.0f}%"
        f"  {result.cpu_us_per_request:5.0f} µs CPU/req",
        flush=True,
    )
    return result


Rounds = dict[tuple[str, str, int], list[Result]]


def measure_all(
    servers: list[Server], x: np.ndarray, duration: int, rounds: int, work: Path, protocols: list[str] = PROTOCOLS
) -> Rounds:
    """Every point on every server, interleaved (point by point, order reversed each round), so that
    the machine's load changes hit every target alike: every round of each point, in order."""
    by_point: Rounds = {}
    for round_ in range(rounds):
        for c in CONCURRENCY:
            for protocol in protocols:
                order = servers if round_ % 2 == 0 else servers[::-1]
                for server in order:
                    if (server.grpc if protocol == "grpc" else server.http) is None:
                        continue
                    r = measure_point(server, protocol, c, x, duration, work)
                    by_point.setdefault((server.target, protocol, c), []).append(r)
    return by_point


def median_rounds(by_point: Rounds) -> list[Result]:
    """The median round (by req/s) of each point."""
    return [sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for rs in by_point.values()]


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def report(results: list[Result], by_point: Rounds, reference: str | None) -> list[dict[str, object]]:
    """Throughput and p99 of every gateway target against the floor; issue 13's targets: throughput
    80% (JSON, gRPC) / 90% (binary) of the floor, p99 at most 2x the floor's."""
    floor = {(r.protocol, r.concurrency): r for r in results if r.target == "floor"}
    targets = {"rest-json": 0.80, "rest-binary": 0.90, "grpc": 0.80}
    rows = []
    print("\nGateway / floor (same model, same load generator, this run):")
    for r in (r for r in results if r.target != "floor"):
        f = floor[(r.protocol, r.concurrency)]
        ratio, p99_ratio = r.rps / f.rps, r.p99_ms / f.p99_ms
        verdict = "meets" if ratio >= targets[r.protocol] else "BELOW"
        tail = "meets" if p99_ratio <= 2 else "OVER"
        cpu_ratio = f.cpu_us_per_request / r.cpu_us_per_request
        print(f"  {r.target:<8} {r.protocol:<12} c={r.concurrency:<3} throughput {ratio:5.0%} of floor ({verdict} "
              f"{targets[r.protocol]:.0%}); p99 {r.p99_ms:6.2f} vs {f.p99_ms:6.2f} ms = {p99_ratio:4.1f}x ({tail} 2x); "
              f"p50 {r.p50_ms:.2f} vs {f.p50_ms:.2f} ms; CPU/request floor/gateway {cpu_ratio:4.0%}")  # fmt: skip
        rows.append({"target": r.target, "protocol": r.protocol, "concurrency": r.concurrency,
                     "throughput_ratio": round(ratio, 3), "p99_ratio": round(p99_ratio, 2),
                     "cpu_per_request_ratio": round(cpu_ratio, 3),
                     "target_ratio": targets[r.protocol]})  # fmt: skip
    if reference is not None:
        _against(reference, by_point)
    return rows


def _against(reference: str, by_point: Rounds) -> None:
    """Each configuration against ``reference``, point by point: the median over rounds of the ratio
    within each round (the two ran back to back, so the machine's drift cancels out)."""
    print(f"\nAgainst {reference} (same run; median of the per-round ratios: req/s, CPU per request, p99):")
    for (target, protocol, c), rounds in by_point.items():
        base = by_point.get((reference, protocol, c))
        if target in ("floor", reference) or base is None:
            continue
        pairs = list(zip(rounds, base, strict=True))

        def ratio(value: Callable[[Result], float]) -> float:
            return statistics.median(value(r) / value(b) for r, b in pairs)  # noqa: B023 (used at once)

        print(
            f"  {target:<8} {protocol:<12} c={c:<3} req/s {ratio(lambda r: r.rps):5.2f}x   "
            f"CPU/request {ratio(lambda r: r.cpu_us_per_request):5.2f}x   p99 {ratio(lambda r: r.p99_ms):5.2f}x"
            f"   ({len(pairs)} rounds)"
        )


def _names_of(allowed: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names, each one of ``allowed``."""
    known = list(allowed)

    def parse(value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; choose from {', '.join(known)}")
        return names

    return parse


_protocols = _names_of(PROTOCOLS, "protocol")
_targets = _names_of(TARGETS, "target")


def build_repo(repo: Path, config: str) -> str:
    """A repository holding digits_mlp with ``config``; returns the model file's path."""
    build(repo / "digits_mlp" / "1" / "model.onnx")
    (repo / "digits_mlp" / "config.yaml").write_text(config)
    return str(repo / "digits_mlp" / "1" / "model.onnx")


def start_gateway(target: str, repo: Path, checkout: Path | None = None) -> Server:
    """``checkout``: run the gateway package of that source tree (``--baseline``) instead of this one."""
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    env = {**os.environ, "MODELGATE_MANAGEMENT_PORT": "0", **TARGET_ENV.get(target, {})}
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    args = [sys.executable, "-m", "gateway.cli", "serve", "--model-repository", str(repo), "--http-port", str(http),
            "--grpc-port", str(grpc_port), "--metrics-port", str(metrics), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=checkout)
    return Server(target, proc, http, grpc_port, metrics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--out", type=Path, default=Path("bench-results/v2_overhead.json"))
    parser.add_argument("--rounds", type=int, default=1, help="repeat every point; the median round is kept")
    parser.add_argument("--targets", type=_targets, default=["gateway", "inline"],
                        help=f"comma-separated gateway configurations ({', '.join(TARGETS)})")  # fmt: skip
    parser.add_argument("--protocols", type=_protocols, default=list(PROTOCOLS),
                        help=f"comma-separated, of {', '.join(PROTOCOLS)}")  # fmt: skip
    parser.add_argument("--against", default=None,
                        help="print every target against this one (default: 'baseline' with --baseline), as the "
                             "median of per-round ratios; use many short rounds to see a few percent")  # fmt: skip
    parser.add_argument("--baseline", type=Path, default=None,
                        help="also run the demo config from this source tree (e.g. a `git worktree` of an older "
                             "commit) as target 'baseline': before and after in one run")  # fmt: skip
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "gateway" / "cli.py").is_file():
        print(f"bench: --baseline {args.baseline} is not a modelgate source tree (no gateway/cli.py)", file=sys.stderr)
        return 2
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (apt-get install wrk nghttp2-client)", file=sys.stderr)
            return 2
    from sklearn.datasets import load_digits

    x = np.ascontiguousarray(load_digits().data[: args.batch].astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers: list[Server] = []
        try:
            for target in args.targets:
                model = build_repo(work / target, TARGETS[target](CONFIG_YAML))
                servers.append(start_gateway(target, work / target))
            if args.baseline is not None:
                build_repo(work / "baseline", CONFIG_YAML)
                servers.append(start_gateway("baseline", work / "baseline", args.baseline.resolve()))
            for kind in ("rest", "grpc"):
                port = free_port()
                proc = start([sys.executable, "-m", "bench.floors", kind, "--model", model, "--port", str(port)])
                servers.append(
                    Server("floor", proc, port if kind == "rest" else None, port if kind == "grpc" else None)
                )
            for server in servers:
                wait_port(server.http or server.grpc or 0)
                if server.target != "floor":
                    wait_http(f"http://127.0.0.1:{server.http}/v2/health/ready")
            names = [*args.targets, *(["baseline"] if args.baseline is not None else [])]
            print(f"{', '.join(names)} and the floors; {args.duration} s per point, batch {args.batch}, "
                  f"{args.rounds} round(s), load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
            by_point = measure_all(servers, x, args.duration, args.rounds, work, args.protocols)
            results = median_rounds(by_point)
            for server in servers:
                if server.metrics is not None:
                    text = httpx.get(f"http://127.0.0.1:{server.metrics}/metrics").text
                    pattern = r'modelgate_requests_total\{[^}]*protocol="grpc"[^}]*status="OK"[^}]*\} (\S+)'
                    ok = sum(float(m) for m in re.findall(pattern, text))
                    print(f"  {server.target} counted {ok:.0f} gRPC OK responses (h2load does not read grpc-status)")
        finally:
            for server in servers:
                stop(server.proc)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    reference = args.against or ("baseline" if args.baseline is not None else None)
    ratios = report(results, by_point, reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": [asdict(r) for r in results], "ratios": ratios, "rounds": args.rounds,
                                    "cpus": os.cpu_count(), "batch": args.batch}, indent=2))  # fmt: skip
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

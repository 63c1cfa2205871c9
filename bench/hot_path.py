"""CPU per V2 REST request inside the gateway process, without the HTTP server or a load generator.

Loads the demo ``digits_mlp`` (``model_repo/``, ``make models``) the way ``modelgate serve`` wires it
(the protocols mount themselves on the data plane) and calls the gateway's ASGI app directly with a
V2 JSON infer request, next to the bare floor handler of :mod:`bench.floors` on the same model:

- **stages**: each stage of one request on its own (resolve, input rules, decode, encode, the metric
  updates, the data plane, the batcher + backend), µs of this thread's CPU, best of ``--repeat`` runs;
- **whole requests** at concurrency 1, 8 and 32 (coroutines calling the app in a loop), µs of process
  CPU per request (every thread: the ONNX Runtime pool included), best of ``--repeat`` runs, for the
  gateway and the floor handler, interleaved.

``--config pool`` (the demo config: ONNX Runtime on a thread pool, dynamic batching) or ``inline``
(``parameters: {inline: true}``). Nothing here measures the HTTP server, the kernel or the load generator:
``python -m bench.v2_overhead`` does, end to end. Run: ``python -m bench.hot_path [--config inline]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.floors import _session, rest_app
from gateway.core.dataplane import ModelRef
from gateway.protocols.v2.json_codec import decode_request, encode_response
from tests.harness import loaded

MODEL = "digits_mlp"
BODY = orjson.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]})
SCOPE: dict[str, Any] = {
    "type": "http", "method": "POST", "path": f"/v2/models/{MODEL}/infer",
    "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode())],
}  # fmt: skip
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def _best(fn: Callable[[], object], number: int, repeat: int) -> float:
    # Each in-process bench keeps this helper so that the one file runs in an older checkout (a "before").
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time() - started) / number * 1e6)
    return best


async def _best_async(fn: Callable[[], Awaitable[object]], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for _ in range(number):
            await fn()
        best = min(best, (time.thread_time() - started) / number * 1e6)
    return best


async def _requests(app: App, concurrency: int, total: int) -> None:
    async def client(n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE), _receive, _send)

    await asyncio.gather(*(client(total // concurrency) for _ in range(concurrency)))


async def _per_request(app: App, concurrency: int, total: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        await _requests(app, concurrency, total)
        best = min(best, (time.process_time() - started) / total * 1e6)
    return best


def _inflight_up_down(metrics: Any) -> None:
    gauge = metrics.inflight_for("rest")
    gauge.inc()
    gauge.dec()


def build_repo(source: Path, config: str, into: Path) -> Path:
    shutil.copytree(source / MODEL, into / MODEL, ignore=shutil.ignore_patterns(".modelgate"))
    if config == "inline":
        path = into / MODEL / "config.yaml"
        path.write_text(path.read_text().replace("parameters:\n", "parameters:\n  inline: true\n"))
    return into


async def run(repo: Path, number: int, repeat: int) -> None:
    async with loaded(repo) as served:
        plane, metrics = served.dataplane, served.metrics
        app = served.http_app()
        floor = rest_app(_session(str(repo / MODEL / "1" / "model.onnx")))
        target = plane.resolve(ModelRef(MODEL))
        rules = plane.input_rules(target)
        request = decode_request(BODY, None, MODEL, None, rules)
        response = await plane.infer(target, request)
        arrays = {t.name: t.data for t in request.inputs}
        assert target.call is not None
        call = target.call
        await _requests(app, 8, 400)  # warm up
        gc.freeze()
        print(f"stages (µs of CPU, best of {repeat} x {number}):")
        stages: list[tuple[str, Callable[[], object]]] = [
            ("resolve", lambda: plane.resolve(ModelRef(MODEL))),
            ("input rules", lambda: plane.input_rules(target)),
            ("decode V2 JSON", lambda: decode_request(BODY, None, MODEL, None, rules)),
            ("encode V2 JSON", lambda: encode_response(response, request)),
            ("metrics: request", lambda: metrics.observe_request(MODEL, "1", "rest", "200", "success", 0.001)),
            ("metrics: in flight", lambda: _inflight_up_down(metrics)),
            ("metrics: batch", lambda: metrics.batch(MODEL, 1, 1, [0.0001])),
        ]
        for name, fn in stages:
            print(f"  {name:<28} {_best(fn, number, repeat):7.1f}")
        print(
            f"  {'data plane infer':<28} {await _best_async(lambda: plane.infer(target, request), number, repeat):7.1f}"
        )
        print(f"  {'batcher + backend':<28} {await _best_async(lambda: call(arrays, ['probs']), number, repeat):7.1f}")
        print(f"whole requests (µs of process CPU per request, best of {repeat} x {number}):")
        for concurrency in (1, 8, 32):
            gateway = await _per_request(app, concurrency, number, repeat)
            bare = await _per_request(floor, concurrency, number, repeat)
            ratio = bare / gateway
            print(
                f"  c={concurrency:<3} gateway {gateway:7.1f}   floor handler {bare:6.1f}   floor/gateway {ratio:4.0%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", choices=["pool", "inline"], default="pool")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    parser.add_argument("--number", type=int, default=4000, help="calls or requests per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repo(args.model_repository, args.config, Path(tmp))
        print(f"config: {args.config}")
        uvloop.run(run(repo, args.number, args.repeat))


if __name__ == "__main__":
    main()

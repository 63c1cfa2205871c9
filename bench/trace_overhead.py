"""What tracing costs one V2 REST infer, in-process: the ASGI app called directly, min of many runs.

Loads the demo MLP (its shipped config, with dynamic batching) from a temporary repository, then
times one JSON ``/v2/models/digits_mlp/infer`` through the gateway's ASGI app, sequentially,
``--number`` calls per run, ``--repeat`` runs, and prints the best run's microseconds per request:

- ``off``: no endpoint configured (the no-op tracer; OpenTelemetry not imported),
- ``on``: the OpenTelemetry SDK recording every span (batch processor, exporter discarding them).

Run: ``python -m bench.trace_overhead [--mode off|on|both] [--repeat 30] [--number 300]``.
``--mode off`` also runs on a checkout from before tracing existed (for a before/after figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tests.harness import loaded
from tests.onnx_models import write_digits_repo

MODEL = "digits_mlp"


def _body() -> bytes:
    return orjson.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]})


async def _one(app: Any, body: bytes) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": f"/v2/models/{MODEL}/infer", "raw_path": f"/v2/models/{MODEL}/infer".encode(), "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    status = [0]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(scope, receive, send)
    return status[0]


def _tracer(mode: str) -> dict[str, Any]:
    if mode == "off":
        return {}
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from gateway.tracing.otel import otel_tracer

    class Discard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return {"tracer": otel_tracer(BatchSpanProcessor(Discard()))}


async def measure(repo: Path, mode: str, repeat: int, number: int) -> float:
    """Best run's microseconds per request."""
    extra = _tracer(mode)
    async with loaded(repo, **extra) as served:
        app, body = served.http_app(), _body()
        for _ in range(50):  # warm-up
            assert await _one(app, body) == 200
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(number):
                await _one(app, body)
            best = min(best, (time.perf_counter() - started) / number)
    if "tracer" in extra:
        extra["tracer"].close()
    return best * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["off", "on", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--number", type=int, default=300)
    args = parser.parse_args(argv)
    modes = ["off", "on"] if args.mode == "both" else [args.mode]
    with tempfile.TemporaryDirectory() as tmp:
        write_digits_repo(Path(tmp), MODEL)
        results = {mode: asyncio.run(measure(Path(tmp), mode, args.repeat, args.number)) for mode in modes}
    opentelemetry_loaded = any(name.startswith("opentelemetry") for name in sys.modules)
    print(json.dumps({"us_per_request": {m: round(v, 1) for m, v in results.items()},
                      "opentelemetry_imported": opentelemetry_loaded}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The load points and how each is driven, with the load generators of :mod:`bench.v2_overhead`.

- closed loop at concurrency 1, 8, 32, 64: ``wrk -t1`` (HTTP/1.1 keep-alive) for V2 JSON,
  ``h2load -t1`` (HTTP/2, up to 8 connections with streams for the rest) for V2 gRPC;
- a fixed request rate over 8 connections: ``wrk`` pacing its requests (:data:`bench.v2_overhead.WRK_PACE`)
  for V2 JSON, ``h2load --rps`` (per connection) for V2 gRPC. wrk2 is not packaged here and the project's
  own open-loop generator is Locust, whose CPU cost (one Python process) would distort a comparison of
  servers on 2 cores. Both keep each connection closed-loop, so a server slower than the rate shows a
  lower achieved rate. (``h2load --h1`` was used for V2 JSON before: it cannot read a status line with
  an empty reason phrase, ``HTTP/1.1 200 ``, which TorchServe sends, and counted every answer as failed.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.v2_overhead import GRPC_HEADERS, LoadFigures, h2load_run, wrk_run

RATE_CONNECTIONS = 8
JSON_HEADERS = {"Content-Type": "application/json"}
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Point:
    """One load level: a concurrency (closed loop) or a request rate."""

    concurrency: int = 0
    rate: int = 0

    @property
    def label(self) -> str:
        return f"{self.rate}/s" if self.rate else f"c={self.concurrency}"


def points(concurrencies: list[int], rate: int) -> list[Point]:
    return [Point(concurrency=c) for c in concurrencies] + ([Point(rate=rate)] if rate else [])


def rest(url: str, body: bytes, point: Point, duration: int, work: Path) -> LoadFigures:
    if point.rate:
        return wrk_run(url, body, JSON_HEADERS, RATE_CONNECTIONS, duration, work, rate=point.rate)
    return wrk_run(url, body, JSON_HEADERS, point.concurrency, duration, work)


def grpc(port: int, frame: bytes, point: Point, duration: int, work: Path) -> LoadFigures:
    url = f"http://127.0.0.1:{port}{GRPC_PATH}"
    if point.rate:
        return h2load_run(url, frame, GRPC_HEADERS, RATE_CONNECTIONS, 1, duration, work,
                          (f"--rps={point.rate / RATE_CONNECTIONS:g}",))  # fmt: skip
    connections = min(point.concurrency, 8)
    return h2load_run(url, frame, GRPC_HEADERS, connections, point.concurrency // connections, duration, work)

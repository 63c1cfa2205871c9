"""A flood far past a model's queue bound on a real gateway: 429s with Retry-After, nothing lost, bounded memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.server_process import ServerProcess
from tests.onnx_models import write_model

pytestmark = pytest.mark.e2e
FLOOD = 300
QUEUE = 4


async def flood(url: str) -> list[httpx.Response]:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}
    limits = httpx.Limits(max_connections=FLOOD)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(f"{url}/v2/models/slow/infer", json=doc) for _ in range(FLOOD))))


def test_flood_past_the_queue_bound(tmp_path: Path) -> None:
    config = f"backend: onnxruntime\nmax_queue_size: {QUEUE}\nparameters: {{concurrency: 1}}\n"
    write_model(tmp_path, "slow", config, writer="slow")
    # A starved client can take seconds between opening one of its 300 connections and sending on it, and a
    # connection idle past the header deadline is closed unanswered (by design): here that deadline and
    # keep-alive are hang guards, so only the queue bound decides.
    guards = {"MODELGATE_HTTP_HEADER_TIMEOUT_SECONDS": "300", "MODELGATE_HTTP_KEEP_ALIVE_SECONDS": "300"}
    with ServerProcess(tmp_path, env=guards) as server:
        assert server.proc is not None
        process = psutil.Process(server.proc.pid)
        before = process.memory_info().rss
        responses = asyncio.run(flood(server.url))
        grown = process.memory_info().rss - before
        statuses = [r.status_code for r in responses]
        assert len(responses) == FLOOD and set(statuses) <= {200, 429}, set(statuses)
        assert statuses.count(429) >= FLOOD - 10 * QUEUE  # most were refused, none lost or hung
        assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 429)
        assert all(r.json()["outputs"][0]["data"] == [1.0] for r in responses if r.status_code == 200)
        metrics = httpx.get(f"http://127.0.0.1:{server.metrics}/metrics").text
        line = next(m for m in metrics.splitlines() if m.startswith("modelgate_rejected_requests_total{"))
        assert 'reason="resource_exhausted"' in line and float(line.split()[-1]) == statuses.count(429)
        assert grown < 64 * 1024 * 1024, f"server RSS grew by {grown / 2**20:.1f} MiB"

"""Deadlines and backpressure over REST, on a real slow ONNX model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.harness import loaded
from tests.onnx_models import write_model

pytestmark = pytest.mark.anyio
REQUEST = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [2.5]}]}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    params = "parameters: {concurrency: 1}\n"
    write_model(tmp_path, "hurried", f"backend: onnxruntime\ntimeout_seconds: 0.01\n{params}", writer="slow")
    write_model(tmp_path, "narrow", f"backend: onnxruntime\nmax_queue_size: 1\n{params}", writer="slow")
    async with loaded(tmp_path) as served:
        app = served.http_app(1 << 20)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as c:
            yield c


async def test_deadline_gives_504(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/models/hurried/infer", json=REQUEST)
    assert r.status_code == 504 and "did not answer within 0.01 s" in r.json()["error"]


async def test_queue_overflow_gives_fast_429_with_retry_after(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(client.post("/v2/models/narrow/infer", json=REQUEST) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 429, 429, 429]
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1" and "max_queue_size 1" in rejected.json()["error"]
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.json()["outputs"][0]["data"] == [2.5]

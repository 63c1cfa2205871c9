"""What the data plane and the dynamic batcher report as spans, on the fake backend.

The real OpenTelemetry SDK (in-memory exporter) behind :class:`gateway.core.tracing.Tracer`;
each request runs inside its own ``request`` span as a protocol would open it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.core import tracing
from gateway.core.codec.limits import TensorLimits
from gateway.core.dataplane import DataPlane, ModelRef
from gateway.core.errors import BackendError
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.tracing import NO_TRACER
from gateway.core.types import InferRequest, Tensor
from gateway.tracing.otel import OtelTracer, otel_tracer
from tests.core.fakes import echo_config, fake_registry, write_fake_model

pytestmark = pytest.mark.anyio

BATCHING = "dynamic_batching: {concurrency: 1}\n"


@dataclass
class Traced:
    plane: DataPlane
    tracer: OtelTracer
    exporter: InMemorySpanExporter

    async def infer(self, model: str, rows: int = 2, request_id: str = "") -> None:
        """One request inside its own request span, as a protocol runs it."""
        with self.tracer.span("request", {tracing.MODEL: model}):
            data = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
            await self.plane.infer(self.plane.resolve(ModelRef(model)), InferRequest(model, [Tensor("x", "FP32", data)],
                                                                                      id=request_id))  # fmt: skip

    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.parent is None]

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        assert span.context is not None
        found = [s for s in self.exporter.get_finished_spans()
                 if s.parent is not None and s.parent.span_id == span.context.span_id]  # fmt: skip
        return sorted(found, key=lambda s: s.start_time or 0)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_fake_model(tmp_path, "plain", echo_config())
    write_fake_model(tmp_path, "batched", echo_config(extra=BATCHING))
    write_fake_model(tmp_path, "failing", echo_config(extra="parameters: {fail_infer: true}\n"))
    write_fake_model(tmp_path, "failing_batched", echo_config(extra=BATCHING + "parameters: {fail_infer: true}\n"))
    return tmp_path


@pytest.fixture
async def traced(repo: Path) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    tracer = otel_tracer(SimpleSpanProcessor(exporter))
    manager = ModelManager(ModelRepository(repo), fake_registry(), tracer=tracer)
    await manager.load_all()
    yield Traced(DataPlane(manager, limits=TensorLimits(1 << 20)), tracer, exporter)
    await manager.unload_all()
    tracer.close()


async def test_an_unbatched_call_is_queue_then_backend(traced: Traced) -> None:
    await traced.infer("plain", request_id="r-1")
    (root,) = traced.roots()
    assert root.attributes is not None
    assert (root.attributes[tracing.VERSION], root.attributes[tracing.REQUEST_ID]) == ("1", "r-1")
    queue, backend = traced.children(root)
    assert (queue.name, backend.name) == ("queue", "backend")
    assert queue.attributes is not None and queue.attributes[tracing.QUEUE_DEPTH] == 1
    assert backend.attributes is not None and backend.attributes[tracing.BACKEND] == "fake"
    assert queue.end_time is not None and backend.start_time is not None
    assert queue.end_time <= backend.start_time


async def test_requests_sharing_a_batch_each_get_queue_and_batch_spans(traced: Traced) -> None:
    # Three requests started together queue behind one dispatcher and run as one backend call.
    await asyncio.gather(*(traced.infer("batched", rows=rows) for rows in (1, 2, 3)))
    roots = traced.roots()
    assert len(roots) == 3
    calls = set()
    for root in roots:
        queue, batch = traced.children(root)
        assert (queue.name, batch.name) == ("queue", "batch")
        assert batch.attributes is not None
        assert (batch.attributes[tracing.BATCH_ROWS], batch.attributes[tracing.BATCH_REQUESTS]) == (6, 3)
        (backend,) = traced.children(batch)
        assert backend.name == "backend" and backend.attributes is not None
        assert backend.attributes[tracing.BACKEND] == "fake"
        calls.add((backend.start_time, backend.end_time))
        assert root.context is not None and backend.context is not None
        assert backend.context.trace_id == root.context.trace_id  # each request's own trace
    assert len(calls) == 1  # one backend call, reported in every request's tree


@pytest.mark.parametrize("model", ["failing", "failing_batched"])
async def test_a_failed_backend_call_marks_its_spans(traced: Traced, model: str) -> None:
    with pytest.raises(BackendError):
        await traced.infer(model)
    assert len(traced.roots()) == 1
    failed = [s for s in traced.exporter.get_finished_spans() if s.status.status_code is StatusCode.ERROR]
    expected = {"backend", "batch", "request"} if model == "failing_batched" else {"backend", "request"}
    assert {s.name for s in failed} == expected
    live = [s for s in failed if s.name != "batch" and not (model == "failing_batched" and s.name == "backend")]
    for span in live:  # our own words, no exception event carrying a traceback
        assert span.status.description is not None and "the fake backend was told to fail" in span.status.description
        assert not span.events


async def test_the_no_op_tracer_reports_nothing_and_serves_the_same(repo: Path) -> None:
    manager = ModelManager(ModelRepository(repo), fake_registry(), tracer=NO_TRACER)
    await manager.load_all()
    plane = DataPlane(manager)
    try:
        assert plane.tracer is NO_TRACER and not plane.tracer.enabled
        for model in ("plain", "batched"):
            data = np.ones((2, 3), np.float32)
            response = await plane.infer(
                plane.resolve(ModelRef(model)), InferRequest(model, [Tensor("x", "FP32", data)])
            )
            assert response.outputs[0].data.tolist() == data.tolist()
    finally:
        await manager.unload_all()

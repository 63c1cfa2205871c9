"""Request spans on every protocol, for a batched and an unbatched ONNX Runtime model.

The real OpenTelemetry SDK records into its in-memory exporter; each test sends one real request
(the ASGI app in-process, or a real grpc.aio server on a free port) and checks the span tree:
``<protocol> infer`` holding ``decode``, ``queue``, ``backend`` (unbatched) or ``batch`` >
``backend`` (batched), and ``encode``, with the protocol, model, version, status and request id.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.core import tracing
from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from gateway.protos.tfserving.tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc
from gateway.tensorproto import tensor_to_proto
from gateway.tracing.otel import otel_tracer
from tests.harness import Served, grpc_served, loaded
from tests.onnx_models import write_digits_repo

pytestmark = pytest.mark.anyio

BATCHED = "digits_mlp"  # the demo config batches (dynamic_batching)
PLAIN = "digits_plain"  # the same model without dynamic batching
PIXELS = np.zeros((1, 64), np.float32)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("traced_repo")
    write_digits_repo(root, BATCHED)
    plain = root / PLAIN
    shutil.copytree(root / BATCHED, plain)
    config = (plain / "config.yaml").read_text(encoding="utf-8")
    (plain / "config.yaml").write_text(
        "\n".join(line for line in config.splitlines() if not line.startswith("dynamic_batching")), encoding="utf-8"
    )
    return root


@dataclass
class Traced:
    served: Served
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    async def request_spans(self) -> list[ReadableSpan]:
        """The finished spans once the request span has ended. It ends just after the answer is sent (an
        error status on gRPC, the response on REST), so a client can see the answer a moment before."""
        deadline = time.monotonic() + 60
        while not any(s.parent is None or s.parent.is_remote for s in self.spans()):
            assert time.monotonic() < deadline, "the request span never ended"
            await asyncio.sleep(0.01)  # polling interval, bounded by the deadline above
        return self.spans()


@pytest.fixture
async def traced(repo: Path) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    tracer = otel_tracer(SimpleSpanProcessor(exporter))
    async with loaded(repo, tracer=tracer) as served:
        yield Traced(served, exporter)
    tracer.close()


@pytest.fixture
async def http(traced: Traced) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=traced.served.http_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


@pytest.fixture
async def channel(traced: Traced) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc_served(traced.served) as (channel, _):
        yield channel


def tree(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one root span and its direct children in start order; every span in the root's trace."""
    roots = [s for s in spans if s.parent is None or s.parent.is_remote]
    assert len(roots) == 1, [s.name for s in spans]
    root = roots[0]
    assert root.context is not None
    assert {s.context.trace_id for s in spans if s.context is not None} == {root.context.trace_id}
    children = sorted((s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
                      key=lambda s: s.start_time or 0)  # fmt: skip
    return root, children


def children_of(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    assert span.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]


def check_tree(spans: list[ReadableSpan], protocol: str, model: str, status: str) -> ReadableSpan:
    root, children = tree(spans)
    assert root.name == f"{protocol} infer"
    assert root.attributes is not None
    assert root.attributes[tracing.PROTOCOL] == protocol
    assert root.attributes[tracing.MODEL] == model
    assert root.attributes[tracing.VERSION] == "1"
    assert root.attributes[tracing.STATUS] == status
    if model == BATCHED:
        assert [c.name for c in children] == ["decode", "queue", "batch", "encode"]
        batch = children[2]
        assert batch.attributes is not None and batch.attributes[tracing.BATCH_ROWS] == 1
        assert batch.attributes[tracing.BATCH_REQUESTS] == 1
        call = children_of(batch, spans)
    else:
        assert [c.name for c in children] == ["decode", "queue", "backend", "encode"]
        call = [children[2]]
    assert [c.name for c in call] == ["backend"]
    assert call[0].attributes is not None and call[0].attributes[tracing.BACKEND] == "onnxruntime"
    for child in children:
        assert root.start_time is not None and root.end_time is not None
        assert child.start_time is not None and child.end_time is not None
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    return root


@pytest.mark.parametrize("model", [PLAIN, BATCHED])
async def test_v2_rest_request_span_tree(traced: Traced, http: httpx.AsyncClient, model: str) -> None:
    doc = {"id": "body-7", "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                                       "data": PIXELS.ravel().tolist()}]}  # fmt: skip
    r = await http.post(f"/v2/models/{model}/infer", json=doc)
    assert r.status_code == 200
    root = check_tree(await traced.request_spans(), "rest", model, "200")
    assert root.attributes is not None and root.attributes[tracing.REQUEST_ID] == "body-7"


@pytest.mark.parametrize("model", [PLAIN, BATCHED])
async def test_tfserving_rest_request_span_tree(traced: Traced, http: httpx.AsyncClient, model: str) -> None:
    r = await http.post(f"/v1/models/{model}:predict", json={"instances": PIXELS.tolist()},
                        headers={"x-request-id": "tfs-rest-1"})  # fmt: skip
    assert r.status_code == 200
    root = check_tree(await traced.request_spans(), "tfs_rest", model, "200")
    assert root.attributes is not None and root.attributes[tracing.REQUEST_ID] == "tfs-rest-1"


@pytest.mark.parametrize("model", [PLAIN, BATCHED])
async def test_v2_grpc_request_span_tree(traced: Traced, channel: grpc.aio.Channel, model: str) -> None:
    request = pb.ModelInferRequest(model_name=model, id="grpc-body-1", raw_input_contents=[PIXELS.tobytes()])
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
    await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    root = check_tree(await traced.request_spans(), "grpc", model, "OK")
    assert root.attributes is not None and root.attributes[tracing.REQUEST_ID] == "grpc-body-1"


@pytest.mark.parametrize("model", [PLAIN, BATCHED])
async def test_tfserving_grpc_request_span_tree(traced: Traced, channel: grpc.aio.Channel, model: str) -> None:
    from gateway.core.types import Tensor

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model))
    request.inputs["pixels"].CopyFrom(tensor_to_proto(Tensor("pixels", "FP32", PIXELS)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    await stub.Predict(request, metadata=[("x-request-id", "tfs-grpc-1")])
    root = check_tree(await traced.request_spans(), "tfs_grpc", model, "OK")
    assert root.attributes is not None and root.attributes[tracing.REQUEST_ID] == "tfs-grpc-1"


async def test_a_caller_traceparent_is_continued(traced: Traced, http: httpx.AsyncClient) -> None:
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    r = await http.post(f"/v1/models/{PLAIN}:predict", json={"instances": PIXELS.tolist()},
                        headers={"traceparent": traceparent})  # fmt: skip
    assert r.status_code == 200
    root, _ = tree(await traced.request_spans())
    assert root.context is not None and f"{root.context.trace_id:032x}" == TRACE_ID
    assert root.parent is not None and f"{root.parent.span_id:016x}" == "00f067aa0ba902b7"


async def test_a_refused_request_has_only_its_request_span(
    traced: Traced, http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    r = await http.post("/v2/models/nope/infer", json={"inputs": []})
    assert r.status_code == 404
    (span,) = await traced.request_spans()
    assert span.attributes is not None and span.attributes[tracing.STATUS] == "404"
    assert span.status.is_ok  # the client's mistake is not a failed span
    traced.exporter.clear()
    request = pb.ModelInferRequest(model_name=PLAIN)  # no inputs: INVALID_ARGUMENT while decoding
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    root, children = tree(await traced.request_spans())
    assert root.attributes is not None and root.attributes[tracing.STATUS] == "INVALID_ARGUMENT"
    assert [c.name for c in children] == ["decode"]


def test_without_an_endpoint_a_request_never_imports_opentelemetry(repo: Path) -> None:
    """The untraced hot path: one V2 infer through the app, and OpenTelemetry is still not imported."""
    script = f"""
import asyncio, sys
import httpx
from pathlib import Path
from gateway.server import Gateway
from gateway.settings import Settings
from tests.harness import loaded

async def main() -> None:
    Gateway(Settings(model_repository=Path({str(repo)!r})))
    async with loaded(Path({str(repo)!r})) as served:
        transport = httpx.ASGITransport(app=served.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            doc = {{"inputs": [{{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}}]}}
            assert (await client.post("/v2/models/{PLAIN}/infer", json=doc)).status_code == 200
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.frameworks
@pytest.mark.parametrize("batching", ["", "dynamic_batching: {}\n"])
async def test_tflite_request_span_tree(tmp_path: Path, batching: str) -> None:
    """The same tree on the in-process TFLite backend (the demo Keras CNN's fp32 TFLite version)."""
    artifact = Path(__file__).resolve().parents[2] / "model_repo" / "digits_keras" / "3" / "model.tflite"
    assert artifact.is_file(), "build the demo models first (make models)"
    (tmp_path / "cnn" / "1").mkdir(parents=True)
    shutil.copy(artifact, tmp_path / "cnn" / "1" / "model.tflite")
    (tmp_path / "cnn" / "config.yaml").write_text(f"backend: tflite\nmax_batch_size: 8\n{batching}", encoding="utf-8")
    exporter = InMemorySpanExporter()
    tracer = otel_tracer(SimpleSpanProcessor(exporter))
    async with loaded(tmp_path, tracer=tracer) as served:
        transport = httpx.ASGITransport(app=served.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            r = await client.post("/v1/models/cnn:predict", json={"instances": np.zeros((1, 8, 8, 1)).tolist()})
            assert r.status_code == 200, r.text
    tracer.close()
    spans = list(exporter.get_finished_spans())
    root, children = tree(spans)
    assert root.name == "tfs_rest infer"
    names = [c.name for c in children]
    assert names == (["decode", "queue", "batch", "encode"] if batching else ["decode", "queue", "backend", "encode"])
    call = children_of(children[2], spans) if batching else [children[2]]
    assert [c.name for c in call] == ["backend"]
    assert call[0].attributes is not None and call[0].attributes[tracing.BACKEND] == "tflite"
